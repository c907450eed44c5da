package decode

import "github.com/pktpipe/pktpipe/pipeline/packet"

// enter makes the packet's inner packet, from start to end, the decoded
// one: the link-layer and outermost-tunnel fields stay, the rest is reset.
// It returns false when the nesting limit is reached.
func (s *state) enter(kind packet.Tunnel, start, end int) bool {
	if s.depth == maxTunnels {
		s.fail(packet.MalformedTooManyHeaders)
		return false
	}
	s.depth++
	m := s.m
	keep := packet.Meta{VLAN: m.VLAN, NVLAN: m.NVLAN, Tunnel: m.Tunnel, X: m.X}
	if keep.Tunnel == packet.TunnelNone {
		x := s.extra()
		x.OuterSrc, x.OuterDst = m.Src, m.Dst
		keep.Tunnel, keep.X = kind, x
	}
	// Flows inside a tunnel count the inner packet's bytes, as Suricata
	// does with its tunnel pseudo-packets.
	keep.InnerLen = uint16(min(max(end-start, 0), 0xffff))
	*m = keep
	// The inner packet cannot reach past its carrier (Ethernet padding,
	// trailing bytes after a UDP datagram).
	s.data = s.data[:end]
	return true
}

// GRE header flags (RFC 2784/2890) and ERSPAN header sizes.
const (
	greChecksum = 0x8000
	greRouting  = 0x4000
	greKey      = 0x2000
	greSeq      = 0x1000
	greVersion  = 0x0007
)

// gre decodes a GRE header at off and, for the payloads it knows, the
// inner packet. Other payloads (PPTP's enhanced GRE, keepalives) leave the
// packet as plain GRE.
func (s *state) gre(off, end int) {
	data := s.data
	if end-off < 4 {
		s.fail(packet.MalformedTruncatedTunnel)
		return
	}
	flags, proto := be.Uint16(data[off:]), be.Uint16(data[off+2:])
	if flags&(greVersion|greRouting) != 0 {
		return
	}
	hl := 4
	if flags&greChecksum != 0 {
		hl += 4
	}
	if flags&greKey != 0 {
		hl += 4
	}
	if flags&greSeq != 0 {
		hl += 4
	}
	if end-off < hl {
		s.fail(packet.MalformedTruncatedTunnel)
		return
	}
	s.m.HasL4 = true
	p := off + hl
	switch proto {
	case etherIPv4, etherIPv6, etherMPLS:
		if s.enter(packet.TunnelGRE, p, end) {
			s.etherType(proto, p)
		}
	case etherTEB:
		if s.enter(packet.TunnelGRE, p, end) {
			s.ethernet(p)
		}
	case etherERSPAN2:
		// Type I has no sequence number and no ERSPAN header; type II
		// has both, the header being 8 bytes with version 1.
		if flags&greSeq != 0 {
			if end-p < 8 {
				s.fail(packet.MalformedTruncatedTunnel)
				return
			}
			if data[p]>>4 != 1 {
				return
			}
			p += 8
		}
		// Suricata counts an ERSPAN flow's bytes from the ERSPAN header.
		if s.enter(packet.TunnelERSPAN, off+hl, end) {
			if flags&greSeq != 0 {
				s.erspanVLAN(be.Uint16(data[off+hl:]) & 0x0fff)
			}
			s.ethernet(p)
		}
	case etherERSPAN3:
		// 12 bytes, version 2; the O bit (last bit) adds an 8-byte
		// platform-specific subheader.
		if end-p < 12 {
			s.fail(packet.MalformedTruncatedTunnel)
			return
		}
		if data[p]>>4 != 2 {
			return
		}
		hasSub := data[p+11]&1 != 0
		p += 12
		if hasSub {
			if end-p < 8 {
				s.fail(packet.MalformedTruncatedTunnel)
				return
			}
			p += 8
		}
		if s.enter(packet.TunnelERSPAN, off+hl, end) {
			s.erspanVLAN(be.Uint16(data[off+hl:]) & 0x0fff)
			s.ethernet(p)
		}
	}
}

// vxlan decodes a VXLAN header (RFC 7348) at off and the Ethernet frame it
// carries. A header without the I (valid VNI) flag is not VXLAN.
func (s *state) vxlan(off, end int) {
	if end-off < 8 {
		s.fail(packet.MalformedTruncatedTunnel)
		return
	}
	if s.data[off]&0x08 == 0 {
		return
	}
	if s.enter(packet.TunnelVXLAN, off+8, end) {
		s.ethernet(off + 8)
	}
}

// geneve decodes a Geneve header (RFC 8926) at off, skips its options and
// decodes an Ethernet, IPv4 or IPv6 payload.
func (s *state) geneve(off, end int) {
	data := s.data
	if end-off < 8 {
		s.fail(packet.MalformedTruncatedTunnel)
		return
	}
	if data[off]>>6 != 0 { // version 0 is the only one
		return
	}
	hl := 8 + int(data[off]&0x3f)*4
	proto := be.Uint16(data[off+2:])
	if end-off < hl {
		s.fail(packet.MalformedTruncatedTunnel)
		return
	}
	p := off + hl
	switch proto {
	case etherTEB:
		if s.enter(packet.TunnelGeneve, p, end) {
			s.ethernet(p)
		}
	case etherIPv4, etherIPv6:
		if s.enter(packet.TunnelGeneve, p, end) {
			s.etherType(proto, p)
		}
	}
}

// erspanVLAN records the VLAN id an ERSPAN II/III header says the mirrored
// frame had (0 = none), as Suricata does.
func (s *state) erspanVLAN(id uint16) {
	if id != 0 && s.m.NVLAN < 2 {
		s.m.VLAN[s.m.NVLAN] = id
		s.m.NVLAN++
	}
}
