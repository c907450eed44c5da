package packet

import (
	"encoding/binary"
	"net/netip"
)

// FlowKey is a directed 5-tuple plus the VLAN id (flows in different VLANs
// are different flows, as in Suricata's default vlan.use-for-tracking).
// ICMP flows use the echo identifier as SrcPort/DstPort for echo
// request/reply and 0 otherwise; see KeyOf.
type FlowKey struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            uint8
	VLAN             uint16
}

// Reverse returns the key of the opposite direction.
func (k FlowKey) Reverse() FlowKey {
	return FlowKey{Src: k.Dst, Dst: k.Src, SrcPort: k.DstPort, DstPort: k.SrcPort, Proto: k.Proto, VLAN: k.VLAN}
}

// Canonical returns the key with its endpoints in a fixed order (the lower
// address/port first) and whether that swapped them. A→B and B→A give the
// same canonical key.
func (k FlowKey) Canonical() (FlowKey, bool) {
	c := k.Src.Compare(k.Dst)
	if c < 0 || (c == 0 && k.SrcPort <= k.DstPort) {
		return k, false
	}
	return k.Reverse(), true
}

// Hash is a symmetric 64-bit hash of the key: Hash(k) == Hash(k.Reverse()).
// It is deterministic across runs and machines, so it can name flows
// (flow_id) as well as shard them.
func (k FlowKey) Hash() uint64 {
	return Hash16(k.Src.As16(), k.Dst.As16(), k.SrcPort, k.DstPort, k.Proto, k.VLAN)
}

// Hash16 is FlowKey.Hash of a key given as its addresses' 16-byte forms
// (netip.Addr.As16), for tables that keep keys packed that way.
func Hash16(a16, b16 [16]byte, srcPort, dstPort uint16, proto uint8, vlan uint16) uint64 {
	a0, a1 := binary.LittleEndian.Uint64(a16[:8]), binary.LittleEndian.Uint64(a16[8:])
	b0, b1 := binary.LittleEndian.Uint64(b16[:8]), binary.LittleEndian.Uint64(b16[8:])
	pa, pb := uint64(srcPort), uint64(dstPort)
	// Order the two endpoints so the hash does not depend on direction.
	if a0 > b0 || (a0 == b0 && (a1 > b1 || (a1 == b1 && pa > pb))) {
		a0, a1, b0, b1, pa, pb = b0, b1, a0, a1, pb, pa
	}
	h := uint64(proto)<<32 | uint64(vlan)<<8 | 0x9e
	h = mix(h, a0)
	h = mix(h, a1)
	h = mix(h, b0)
	h = mix(h, b1)
	h = mix(h, pa<<16|pb)
	return fmix(h)
}

// mix folds v into h (one round of a multiply-xorshift, as in wyhash/murmur).
func mix(h, v uint64) uint64 {
	h ^= v * 0x9fb21c651e98df25
	h = (h << 31) | (h >> 33)
	return h * 0xc2b2ae3d27d4eb4f
}

// fmix is murmur3's 64-bit finaliser.
func fmix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// KeyOf returns the directed flow key of a decoded packet, and false when the
// packet has no IP layer or failed to decode far enough to have one.
// ICMP echo request/reply use the echo id as both ports so that a ping
// session is one flow; other ICMP messages use (type, code) 0/0, except
// errors, which belong to the flow they quote (see QuoteKey).
func KeyOf(m *Meta) (FlowKey, bool) {
	if m.IPVersion == 0 {
		return FlowKey{}, false
	}
	k := FlowKey{Src: m.Src, Dst: m.Dst, Proto: m.Proto, VLAN: m.VLAN[0]}
	k.SrcPort, k.DstPort = KeyPorts(m)
	return k, true
}

// KeyPorts returns the ports of KeyOf(m): the transport ports, the echo id
// twice, ICMPPorts for other ICMP messages, or zeros.
func KeyPorts(m *Meta) (sport, dport uint16) {
	switch m.Proto {
	case ProtoTCP, ProtoUDP, ProtoSCTP:
		return m.SrcPort, m.DstPort
	case ProtoICMP, ProtoICMPv6:
		if IsEcho(m.Proto, m.ICMPType) {
			return m.ICMPID, m.ICMPID
		}
		sport, dport, _ = ICMPPorts(m.Proto, m.ICMPType, m.ICMPCode)
	}
	return sport, dport
}

// ICMPPorts maps an ICMP (proto 1) or ICMPv6 (proto 58) type and code to
// the port pair of the Community ID spec: the type, and the type that
// answers it for request/reply pairs (so a request and its reply share a
// canonical key, and an exchange started from the other side is a flow of
// its own), or the code for a one-way type. oneWay says which.
func ICMPPorts(proto, typ, code uint8) (sport, dport uint16, oneWay bool) {
	if c, ok := ICMPCounterpart(proto, typ); ok {
		return uint16(typ), uint16(c), false
	}
	return uint16(typ), uint16(code), true
}

// ICMPCounterpart returns the type that answers (or is answered by) typ,
// as Zeek's ICMP4_counterpart/ICMP6_counterpart and the Community ID spec
// pair them.
func ICMPCounterpart(proto, typ uint8) (uint8, bool) {
	if proto == ProtoICMP {
		switch typ {
		case 8: // echo request / reply
			return 0, true
		case 0:
			return 8, true
		case 13: // timestamp request / reply
			return 14, true
		case 14:
			return 13, true
		case 15: // information request / reply
			return 16, true
		case 16:
			return 15, true
		case 10: // router solicitation / advertisement
			return 9, true
		case 9:
			return 10, true
		case 17: // address mask request / reply
			return 18, true
		case 18:
			return 17, true
		}
		return 0, false
	}
	switch typ {
	case 128: // echo request / reply
		return 129, true
	case 129:
		return 128, true
	case 130: // MLD query / report
		return 131, true
	case 131:
		return 130, true
	case 133: // router solicitation / advertisement
		return 134, true
	case 134:
		return 133, true
	case 135: // neighbour solicitation / advertisement
		return 136, true
	case 136:
		return 135, true
	case 139: // node information query / reply
		return 140, true
	case 140:
		return 139, true
	case 144: // home agent address discovery request / reply
		return 145, true
	case 145:
		return 144, true
	}
	return 0, false
}

// QuoteKey returns the directed key of the packet an ICMP error quotes (as
// its sender sent it), and false if the packet is not an error with a quote
// holding at least the quoted addresses.
func QuoteKey(m *Meta) (FlowKey, bool) {
	q := m.Quoted()
	if !q.Present || q.IPVersion == 0 {
		return FlowKey{}, false
	}
	k := FlowKey{Src: q.Src, Dst: q.Dst, Proto: q.Proto, VLAN: m.VLAN[0]}
	switch {
	case q.HasPorts:
		k.SrcPort, k.DstPort = q.SrcPort, q.DstPort
	case q.HasEcho:
		k.SrcPort, k.DstPort = q.ICMPID, q.ICMPID
	}
	return k, true
}

// IsEcho reports whether an ICMP (proto 1) or ICMPv6 (proto 58) type is an
// echo request or reply.
func IsEcho(proto, typ uint8) bool {
	if proto == ProtoICMP {
		return typ == 8 || typ == 0
	}
	return typ == 128 || typ == 129
}

// IsICMPError reports whether an ICMP/ICMPv6 type is an error message that
// quotes the packet which caused it.
func IsICMPError(proto, typ uint8) bool {
	if proto == ProtoICMP {
		switch typ {
		case 3, 4, 5, 11, 12: // unreachable, source quench, redirect, time exceeded, parameter problem
			return true
		}
		return false
	}
	return proto == ProtoICMPv6 && typ < 128 && typ >= 1 && typ <= 4
}

// ShardHash is ShardKey(m).Hash() without building the key; own says
// that the key is the packet's own (KeyOf), not a quoted one, so that h
// is its FlowHash.
func ShardHash(m *Meta) (h uint64, own, ok bool) {
	if m.X != nil && m.X.Quote.Present {
		if k, ok := QuoteKey(m); ok {
			return k.Hash(), false, true
		}
	}
	if m.IPVersion == 0 {
		return 0, false, false
	}
	sp, dp := KeyPorts(m)
	return Hash16(m.Src.As16(), m.Dst.As16(), sp, dp, m.Proto, m.VLAN[0]), true, true
}

// ShardKey is the key a packet is sharded by: the quoted flow for an ICMP
// error (so the error reaches the worker that owns that flow), else its own.
func ShardKey(m *Meta) (FlowKey, bool) {
	if m.Quoted().Present {
		if k, ok := QuoteKey(m); ok {
			return k, true
		}
	}
	return KeyOf(m)
}
