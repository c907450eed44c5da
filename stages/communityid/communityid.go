// Package communityid computes Community ID v1 flow hashes
// (https://github.com/corelight/community-id-spec).
//
// The hashed input is seed (u16 BE) . saddr . daddr . proto . 0x00 and, for
// TCP, UDP, SCTP, ICMP and ICMPv6, . sport . dport (u16 BE each), with the
// endpoints ordered so that the smaller (address, port) pair comes first.
// The digest is SHA-1, written as "1:" + base64 (or lowercase hex).
//
// ICMP and ICMPv6 have no ports; as Zeek does, the message type becomes the
// source "port" and, for types that come in request/reply pairs (echo,
// router/neighbour discovery, MLD, ...), the counterpart type becomes the
// destination "port", so a request and its reply share an ID. Any other
// type is one-way: the destination "port" is the code and the endpoints are
// never reordered (so A→B and B→A of a one-way type get different IDs).
//
// Use IDICMP with the raw type and code for ICMP flows. ID takes a FlowKey
// as is; for ICMP keys it reads SrcPort/DstPort as already-mapped values
// (type, counter-type or code), which is how the spec's JSON baselines and
// Zeek's conn_id carry them.
//
// A Hasher keeps its scratch buffers and is not safe for concurrent use:
// each worker owns one. SHA-1 runs on a stack digest (crypto/sha1.Sum), so
// the only allocation is the returned string; AppendID allocates nothing.
package communityid

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"net/netip"

	"github.com/pktpipe/pktpipe/pipeline/packet"
)

// Hasher computes Community IDs with one seed and one output encoding.
type Hasher struct {
	seed   uint16
	base64 bool
	// in is the hash input: 2 + 16 + 16 + 2 + 4 bytes at most.
	in  [40]byte
	out [64]byte // "1:" + 28 base64 chars or 40 hex chars
}

// New returns a Hasher. seed is the spec's seed (0 by default); base64
// false writes the digest in hex, as community-id's --no-base64.
func New(seed uint16, base64 bool) *Hasher {
	return &Hasher{seed: seed, base64: base64}
}

// ID returns the Community ID of k. For ICMP/ICMPv6, k's ports must already
// be mapped (see the package doc); use IDICMP for raw type and code. It
// returns "" when k has no valid addresses or mixes IPv4 and IPv6.
func (h *Hasher) ID(k packet.FlowKey) string {
	b := h.AppendID(h.out[:0], k)
	return string(b)
}

// IDICMP returns the Community ID of an ICMP or ICMPv6 packet sent from
// k.Src to k.Dst with type typ and code code (k's ports are ignored). For
// other protocols it is ID(k).
func (h *Hasher) IDICMP(k packet.FlowKey, typ, code uint8) string {
	return string(h.AppendIDICMP(h.out[:0], k, typ, code))
}

// AppendID appends ID(k) to dst.
func (h *Hasher) AppendID(dst []byte, k packet.FlowKey) []byte {
	switch k.Proto {
	case packet.ProtoICMP, packet.ProtoICMPv6:
		_, paired := packet.ICMPCounterpart(k.Proto, uint8(k.SrcPort))
		return h.appendHash(dst, k, true, !paired || k.SrcPort > 0xff)
	case packet.ProtoTCP, packet.ProtoUDP, packet.ProtoSCTP:
		return h.appendHash(dst, k, true, false)
	}
	return h.appendHash(dst, k, false, false)
}

// AppendIDICMP appends IDICMP(k, typ, code) to dst.
func (h *Hasher) AppendIDICMP(dst []byte, k packet.FlowKey, typ, code uint8) []byte {
	if k.Proto != packet.ProtoICMP && k.Proto != packet.ProtoICMPv6 {
		return h.AppendID(dst, k)
	}
	sport, dport, oneWay := MapICMP(k.Proto, typ, code)
	k.SrcPort, k.DstPort = sport, dport
	return h.appendHash(dst, k, true, oneWay)
}

// MapICMP maps an ICMP (proto 1) or ICMPv6 (proto 58) type and code to the
// port pair Community ID hashes, and says whether the message is one-way
// (packet.ICMPPorts, which the flow table keys ICMP flows by too).
func MapICMP(proto, typ, code uint8) (sport, dport uint16, oneWay bool) {
	return packet.ICMPPorts(proto, typ, code)
}

func (h *Hasher) appendHash(dst []byte, k packet.FlowKey, ports, oneWay bool) []byte {
	src, dstA := k.Src.Unmap(), k.Dst.Unmap()
	if !src.IsValid() || !dstA.IsValid() || src.Is4() != dstA.Is4() {
		return dst
	}
	sport, dport := k.SrcPort, k.DstPort
	if !oneWay {
		// Smaller (address, port) first. Compare orders addresses of one
		// family as their big-endian bytes, as the spec does.
		if c := src.Compare(dstA); c > 0 || (c == 0 && sport > dport) {
			src, dstA, sport, dport = dstA, src, dport, sport
		}
	}
	in := h.in[:0]
	in = binary.BigEndian.AppendUint16(in, h.seed)
	in = appendAddr(in, src)
	in = appendAddr(in, dstA)
	in = append(in, k.Proto, 0)
	if ports {
		in = binary.BigEndian.AppendUint16(in, sport)
		in = binary.BigEndian.AppendUint16(in, dport)
	}
	sum := sha1.Sum(in)
	dst = append(dst, '1', ':')
	if h.base64 {
		return base64.StdEncoding.AppendEncode(dst, sum[:])
	}
	return hex.AppendEncode(dst, sum[:])
}

func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		v := a.As4()
		return append(b, v[:]...)
	}
	v := a.As16()
	return append(b, v[:]...)
}
