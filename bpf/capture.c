//go:build ignore

// SPDX-License-Identifier: GPL-2.0-only OR MIT
//
// capture: a TC/TCX classifier that copies each packet's metadata and its
// first snaplen bytes to user space through a perf event array. It never
// changes the packet and always returns TCX_NEXT (== TC_ACT_UNSPEC for a
// legacy cls_bpf filter), so programs after it still run.
//
// One program instance is loaded per attachment (interface x direction),
// sharing the events map; the instance's constants say which attachment
// it is, because an ifindex is not unique across network namespaces.

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Debian 12's uapi headers predate TCX.
#ifndef TCX_NEXT
#define TCX_NEXT -1
#endif

// A perf record's size is a __u16 including its 8-byte header and the
// 4-byte raw size; meta and the bytes must stay well under 64 KiB.
#define MAX_SNAPLEN 65000

enum { DIR_UNKNOWN = 0, DIR_INGRESS = 1, DIR_EGRESS = 2 };

// meta precedes the packet bytes in every sample. User space trusts
// cap_len, not the sample size (the kernel pads samples to 8 bytes).
struct meta {
	__u64 timestamp; // bpf_ktime_get_ns (CLOCK_MONOTONIC)
	__u32 ifindex;
	__u32 attach_id;
	__u32 orig_len; // skb->len: a GSO super-packet can be up to 64 KiB
	__u32 cap_len;
	__u8 direction;
	__u8 _pad[7];
};

// Keeps struct meta in BTF so bpf2go emits its Go twin.
const struct meta *unused_meta __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events SEC(".maps");

// Set per attachment before load.
volatile const __u32 attach_id = 0;
volatile const __u8 direction = DIR_UNKNOWN;
volatile const __u32 snaplen = MAX_SNAPLEN;

// Optional kernel-side filter, all conditions ANDed; zero means "any".
// filter_family 4 or 6 with filter_addr (network order; IPv4 in the first
// 4 bytes) matches source or destination. filter_proto is the IP protocol
// (IPv6: the first next-header). filter_port (host order) matches the TCP,
// UDP or SCTP source or destination port.
volatile const __u8 filter_family = 0;
volatile const __u8 filter_addr[16] = {};
volatile const __u8 filter_proto = 0;
volatile const __u16 filter_port = 0;

static __always_inline int addr_eq(const __u8 *a, int n)
{
	for (int i = 0; i < n; i++)
		if (a[i] != filter_addr[i])
			return 0;
	return 1;
}

// match applies the filter to an Ethernet frame with at most one in-band
// 802.1Q tag (offloaded tags are not in the data anyway).
static __always_inline int match(struct __sk_buff *skb)
{
	if (!filter_family && !filter_proto && !filter_port)
		return 1;

	__u32 off = ETH_HLEN;
	__u16 eth_proto;
	if (bpf_skb_load_bytes(skb, 12, &eth_proto, 2) < 0)
		return 0;
	if (eth_proto == bpf_htons(ETH_P_8021Q) || eth_proto == bpf_htons(ETH_P_8021AD)) {
		if (bpf_skb_load_bytes(skb, 16, &eth_proto, 2) < 0)
			return 0;
		off += 4;
	}

	__u8 proto;
	__u32 l4 = 0; // 0: ports not available
	if (eth_proto == bpf_htons(ETH_P_IP)) {
		__u8 h[20];
		if (bpf_skb_load_bytes(skb, off, h, sizeof h) < 0)
			return 0;
		if (filter_family == 6)
			return 0;
		if (filter_family == 4 && !addr_eq(h + 12, 4) && !addr_eq(h + 16, 4))
			return 0;
		proto = h[9];
		// Only a first fragment (offset 0) carries the ports.
		if ((h[6] & 0x1f) == 0 && h[7] == 0)
			l4 = off + (h[0] & 0xf) * 4;
	} else if (eth_proto == bpf_htons(ETH_P_IPV6)) {
		__u8 h[40];
		if (bpf_skb_load_bytes(skb, off, h, sizeof h) < 0)
			return 0;
		if (filter_family == 4)
			return 0;
		if (filter_family == 6 && !addr_eq(h + 8, 16) && !addr_eq(h + 24, 16))
			return 0;
		proto = h[6]; // extension headers are not walked
		l4 = off + 40;
	} else {
		return 0;
	}

	if (filter_proto && proto != filter_proto)
		return 0;
	if (filter_port) {
		__u16 ports[2];
		if (!l4 || (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_SCTP))
			return 0;
		if (bpf_skb_load_bytes(skb, l4, ports, sizeof ports) < 0)
			return 0;
		if (ports[0] != bpf_htons(filter_port) && ports[1] != bpf_htons(filter_port))
			return 0;
	}
	return 1;
}

SEC("tc")
int capture(struct __sk_buff *skb)
{
	if (!match(skb))
		return TCX_NEXT;

	struct meta m = {};
	__u32 cap = skb->len;
	__u32 snap = snaplen;
	if (snap > MAX_SNAPLEN)
		snap = MAX_SNAPLEN;
	if (cap > snap)
		cap = snap;

	m.timestamp = bpf_ktime_get_ns();
	m.ifindex = skb->ifindex;
	m.attach_id = attach_id;
	m.orig_len = skb->len;
	m.cap_len = cap;
	m.direction = direction;

	// The upper 32 bits of flags ask the helper to append that many bytes
	// of the skb (linear or not) after meta.
	bpf_perf_event_output(skb, &events, BPF_F_CURRENT_CPU | ((__u64)cap << 32), &m, sizeof m);
	return TCX_NEXT;
}

char __license[] SEC("license") = "Dual MIT/GPL";
