package decode

import (
	"encoding/binary"
	"net/netip"
)

// Builders for hand-made test packets. Lengths and next-protocol fields
// are filled in; checksums are not (the decoder does not verify them).

var (
	v4a, v4b = netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	v4c, v4d = netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("198.51.100.9")
	v6a, v6b = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	v6c, v6d = netip.MustParseAddr("fd00::7"), netip.MustParseAddr("fd00::9")
)

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func u16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// eth is an Ethernet header with optional VLAN tags given as TPID, id pairs.
func eth(et uint16, tags ...uint16) []byte {
	b := cat([]byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2})
	for i := 0; i+1 < len(tags); i += 2 {
		b = cat(b, u16(tags[i]), u16(0x2000|tags[i+1]))
	}
	return cat(b, u16(et))
}

type ip4opt struct {
	ttl      uint8
	flags    uint16 // flags+fragment offset field, as on the wire
	id       uint16
	options  []byte // multiple of 4
	totalLen int    // overrides the computed total length when non-zero
}

func ip4(src, dst netip.Addr, proto uint8, payload []byte, o ip4opt) []byte {
	if o.ttl == 0 {
		o.ttl = 64
	}
	ihl := 20 + len(o.options)
	total := ihl + len(payload)
	if o.totalLen != 0 {
		total = o.totalLen
	}
	h := []byte{byte(0x40 | ihl/4), 0}
	h = cat(h, u16(uint16(total)), u16(o.id), u16(o.flags), []byte{o.ttl, proto, 0, 0}, src.AsSlice(), dst.AsSlice(), o.options)
	return cat(h, payload)
}

func ip6(src, dst netip.Addr, nh uint8, payload []byte) []byte {
	h := cat([]byte{0x60, 0, 0, 0}, u16(uint16(len(payload))), []byte{nh, 64}, src.AsSlice(), dst.AsSlice())
	return cat(h, payload)
}

// ext6 is an IPv6 extension header of 8*(1+n) bytes (AH: 4*(2+n)).
func ext6(kind, nh uint8, n int) []byte {
	if kind == ipv6AH {
		b := cat([]byte{nh, byte(n)}, make([]byte, 4*(2+n)-2))
		return b
	}
	return cat([]byte{nh, byte(n)}, make([]byte, 8*(1+n)-2))
}

func frag6(nh uint8, off uint16, more bool, id uint32) []byte {
	v := off &^ 7
	if more {
		v |= 1
	}
	return cat([]byte{nh, 0}, u16(v), u32(id))
}

func tcp(sp, dp uint16, flags uint8, payload []byte, opts ...byte) []byte {
	doff := 20 + len(opts)
	h := cat(u16(sp), u16(dp), u32(1000), u32(2000), []byte{byte(doff / 4 << 4), flags}, u16(512), u16(0), u16(0), opts)
	return cat(h, payload)
}

func udp(sp, dp uint16, payload []byte) []byte {
	return cat(u16(sp), u16(dp), u16(uint16(8+len(payload))), u16(0), payload)
}

func sctp(sp, dp uint16) []byte { return cat(u16(sp), u16(dp), u32(7), u32(0)) }

func icmp(typ, code uint8, rest uint32, body []byte) []byte {
	return cat([]byte{typ, code, 0, 0}, u32(rest), body)
}

func gre(flags, proto uint16, extra ...byte) []byte { return cat(u16(flags), u16(proto), extra) }

func vxlanHdr(vni uint32) []byte { return cat([]byte{0x08, 0, 0, 0}, u32(vni<<8)) }
