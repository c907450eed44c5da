//go:build ignore

// SPDX-License-Identifier: GPL-2.0-only OR MIT
//
// fanout: the PACKET_FANOUT_EBPF program of sources/afpacket. The kernel
// runs it for every packet that reaches the fanout group and delivers the
// packet to socket (return value % number of sockets) (fanout_demux_bpf in
// net/packet/af_packet.c), so it returns a 32-bit hash and needs no count.
//
// The hash is symmetric in the two endpoints (address, port), so both
// directions of a flow reach one socket, and an ICMP or ICMPv6 error is
// hashed by the packet it quotes (quoted IP header + 8 bytes), so it
// reaches the socket of the flow it is about. PACKET_FANOUT_HASH hashes
// the error by its own addresses instead.
//
//   - Ports: TCP, UDP, SCTP ports; ICMP/ICMPv6 echo use the echo id as
//     both ports (as pktpipe's flow key does); anything else hashes on
//     addresses and protocol.
//   - IPv4 fragments: the group also has PACKET_FANOUT_FLAG_DEFRAG, so the
//     program sees reassembled datagrams; a fragment that still gets here
//     hashes without ports. A quoted IPv4 header with offset 0 (a first
//     fragment) hashes with ports, as its reassembled datagram did.
//   - IPv6 fragments (not reassembled by the kernel): every fragment,
//     and a quote of one, hashes on addresses and next header only, so a
//     datagram's fragments stay together.
//   - VLAN: an offloaded tag is skb metadata and not in the data; up to
//     two in-band 802.1Q/802.1ad tags are skipped.
//
// Where the data starts: at a packet socket's hook an outgoing skb starts
// at the link header, an incoming one at the network header (the link
// header was pulled, with skb->protocol set from it). Devices without a
// link header (link_ethernet = 0: tun, wireguard) start at the network
// header both ways. BPF_PROG_TEST_RUN hands a socket filter an incoming
// skb, as the kernel does on receive.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif

// Set before load: 0 for devices without an Ethernet header.
volatile const __u8 link_ethernet = 1;

struct tuple {
	__u32 a[4], b[4]; // source, destination address (IPv4: a[0], b[0])
	__u16 pa, pb;     // source, destination port (network order)
	__u8 proto;
	__u8 err;   // the packet is an ICMP/ICMPv6 error
	__u32 qoff; // where its quote starts
};

static __always_inline __u32 rotl(__u32 x, int r) { return (x << r) | (x >> (32 - r)); }

// One murmur3 block step and its finaliser.
static __always_inline __u32 step(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51;
	k = rotl(k, 15);
	k *= 0x1b873593;
	h ^= k;
	h = rotl(h, 13);
	return h * 5 + 0xe6546b64;
}

static __always_inline __u32 fmix(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

static __always_inline __u32 endpoint(const __u32 *a, __u16 port)
{
	__u32 h = 0x7077;
	h = step(h, a[0]);
	h = step(h, a[1]);
	h = step(h, a[2]);
	h = step(h, a[3]);
	h = step(h, port);
	return fmix(h);
}

// hash is symmetric: the endpoints are combined in value order.
static __always_inline __u32 hash(const struct tuple *t)
{
	__u32 x = endpoint(t->a, t->pa), y = endpoint(t->b, t->pb);
	__u32 lo = x < y ? x : y, hi = x < y ? y : x;
	__u32 h = step(0x66616e, lo);
	h = step(h, hi);
	h = step(h, t->proto);
	return fmix(h);
}

static __always_inline int is_echo(__u8 proto, __u8 type)
{
	if (proto == IPPROTO_ICMP)
		return type == 8 || type == 0;
	return type == 128 || type == 129;
}

static __always_inline int is_error(__u8 proto, __u8 type)
{
	if (proto == IPPROTO_ICMP)
		return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
	return type >= 1 && type <= 4;
}

// l4 fills the ports from the transport header at off (and, when quote is
// 0, notes an ICMP error). A missing transport header leaves ports 0.
static __always_inline void l4(struct __sk_buff *skb, __u32 off, struct tuple *t, int quote)
{
	__u8 h[8];
	switch (t->proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		if (bpf_skb_load_bytes(skb, off, h, 4) == 0) {
			__builtin_memcpy(&t->pa, h, 2);
			__builtin_memcpy(&t->pb, h + 2, 2);
		}
		return;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if (bpf_skb_load_bytes(skb, off, h, 8) < 0) {
			// A quote must hold only 8 bytes; 6 are enough for the id.
			if (bpf_skb_load_bytes(skb, off, h, 6) < 0)
				return;
			h[6] = h[7] = 0;
		}
		if (is_echo(t->proto, h[0])) {
			__builtin_memcpy(&t->pa, h + 4, 2);
			t->pb = t->pa;
		} else if (!quote && is_error(t->proto, h[0])) {
			t->err = 1;
			t->qoff = off + 8;
		}
		return;
	}
}

// ip parses the IPv4 or IPv6 header at off. It returns 0 when there is no
// usable header.
static __always_inline int ip(struct __sk_buff *skb, __u32 off, int v6, struct tuple *t, int quote)
{
	if (!v6) {
		__u8 h[20];
		if (bpf_skb_load_bytes(skb, off, h, sizeof h) < 0 || (h[0] >> 4) != 4)
			return 0;
		__builtin_memcpy(&t->a[0], h + 12, 4);
		__builtin_memcpy(&t->b[0], h + 16, 4);
		t->proto = h[9];
		__u32 ihl = (h[0] & 0xf) * 4;
		if (ihl < 20)
			return 1;
		int first = (h[6] & 0x1f) == 0 && h[7] == 0;
		int more = h[6] & 0x20;
		// See the top: a quote of a first fragment keeps its ports.
		if (first && (quote || !more))
			l4(skb, off + ihl, t, quote);
		return 1;
	}
	__u8 h[40];
	if (bpf_skb_load_bytes(skb, off, h, sizeof h) < 0 || (h[0] >> 4) != 6)
		return 0;
	__builtin_memcpy(t->a, h + 8, 16);
	__builtin_memcpy(t->b, h + 24, 16);
	__u8 nh = h[6];
	off += 40;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u8 e[4];
		switch (nh) {
		case 0:   // hop-by-hop
		case 43:  // routing
		case 60:  // destination options
			if (bpf_skb_load_bytes(skb, off, e, 2) < 0)
				goto done;
			nh = e[0];
			off += ((__u32)e[1] + 1) * 8;
			continue;
		case 51: // AH
			if (bpf_skb_load_bytes(skb, off, e, 2) < 0)
				goto done;
			nh = e[0];
			off += ((__u32)e[1] + 2) * 4;
			continue;
		case 44: // fragment: no ports, unless it is an atomic fragment
			if (bpf_skb_load_bytes(skb, off, e, 4) < 0)
				goto done;
			nh = e[0];
			off += 8;
			if (e[2] != 0 || (e[3] & 0xf9) != 0) {
				t->proto = nh;
				return 1;
			}
			continue;
		}
		break;
	}
	t->proto = nh;
	l4(skb, off, t, quote);
	return 1;
done:
	t->proto = nh;
	return 1;
}

SEC("socket")
int fanout(struct __sk_buff *skb)
{
	__u32 off = 0;
	__u16 proto; // network order
	int v6;

	if (!link_ethernet) {
		__u8 v;
		if (bpf_skb_load_bytes(skb, 0, &v, 1) < 0)
			return 0;
		if ((v >> 4) == 4)
			proto = bpf_htons(ETH_P_IP);
		else if ((v >> 4) == 6)
			proto = bpf_htons(ETH_P_IPV6);
		else
			return 0;
	} else if (skb->pkt_type == PACKET_OUTGOING) {
		if (bpf_skb_load_bytes(skb, 12, &proto, 2) < 0)
			return 0;
		off = ETH_HLEN;
	} else {
		proto = (__u16)skb->protocol;
	}
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if (bpf_skb_load_bytes(skb, off + 2, &proto, 2) < 0)
			return 0;
		off += 4;
	}
	if (proto == bpf_htons(ETH_P_IP))
		v6 = 0;
	else if (proto == bpf_htons(ETH_P_IPV6))
		v6 = 1;
	else
		return 0; // ARP and the like: socket 0

	struct tuple t = {};
	if (!ip(skb, off, v6, &t, 0))
		return 0;
	if (t.err) {
		// Hash by the quoted packet; keep the error's own tuple if the
		// quote is not there.
		struct tuple q = {};
		if (ip(skb, t.qoff, v6, &q, 1))
			return hash(&q);
	}
	return hash(&t);
}

char __license[] SEC("license") = "Dual MIT/GPL";
