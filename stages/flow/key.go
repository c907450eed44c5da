package flow

import (
	"net/netip"

	"github.com/pktpipe/pktpipe/pipeline/packet"
)

// key is a canonical packet.FlowKey packed without pointers: each address
// as its 16-byte form (IPv4 as ::ffff:a.b.c.d) and a bit saying it was
// IPv4. A netip.Addr is 24 bytes with a pointer; this keeps an entry 16
// bytes smaller and lets it be compared with one memory comparison.
// Zones are not kept: decoded packets have none.
type key struct {
	a, b   [16]byte // lower endpoint first, as FlowKey.Canonical
	ap, bp uint16
	vlan   uint16
	proto  uint8
	v4     uint8 // bit 0: a is IPv4, bit 1: b is IPv4
}

// canonicalKey packs the canonical form of the directed key (src, sp) →
// (dst, dp) and reports whether that swapped the endpoints, as
// FlowKey.Canonical does.
func canonicalKey(src, dst netip.Addr, sp, dp uint16, proto uint8, vlan uint16) (k key, swapped bool) {
	c := src.Compare(dst)
	if c > 0 || (c == 0 && sp > dp) {
		src, dst, sp, dp, swapped = dst, src, dp, sp, true
	}
	k.a, k.b = src.As16(), dst.As16()
	k.ap, k.bp, k.proto, k.vlan = sp, dp, proto, vlan
	if src.Is4() {
		k.v4 |= 1
	}
	if dst.Is4() {
		k.v4 |= 2
	}
	return k, swapped
}

// packetKey is the packed canonical key of a packet's own flow (KeyOf).
func packetKey(m *packet.Meta) (key, bool) {
	sp, dp := packet.KeyPorts(m)
	return canonicalKey(m.Src, m.Dst, sp, dp, m.Proto, m.VLAN[0])
}

// packFlowKey is the packed canonical form of a directed or canonical key.
func packFlowKey(k packet.FlowKey) (key, bool) {
	return canonicalKey(k.Src, k.Dst, k.SrcPort, k.DstPort, k.Proto, k.VLAN)
}

// hash is FlowKey.Hash of the key.
func (k *key) hash() uint64 { return packet.Hash16(k.a, k.b, k.ap, k.bp, k.proto, k.vlan) }

func (k *key) addrA() netip.Addr { return unpackAddr(k.a, k.v4&1 != 0) }
func (k *key) addrB() netip.Addr { return unpackAddr(k.b, k.v4&2 != 0) }

func unpackAddr(b [16]byte, v4 bool) netip.Addr {
	a := netip.AddrFrom16(b)
	if v4 {
		return a.Unmap()
	}
	return a
}

// flowKey unpacks the key.
func (k *key) flowKey() packet.FlowKey {
	return packet.FlowKey{Src: k.addrA(), Dst: k.addrB(), SrcPort: k.ap, DstPort: k.bp, Proto: k.proto, VLAN: k.vlan}
}
