package decode

import "github.com/pktpipe/pktpipe/pipeline/packet"

// ipv4 decodes an IPv4 header at off and what it carries.
func (s *state) ipv4(off int) {
	data, m := s.data, s.m
	if len(data) < off+20 {
		s.fail(packet.MalformedTruncatedIP)
		return
	}
	h := data[off:]
	if h[0]>>4 != 4 {
		s.fail(packet.MalformedBadIPHeader)
		return
	}
	m.IPVersion = 4
	m.L3Off = uint16(off)
	m.TTL = h[8]
	m.Proto = h[9]
	m.Src = addr4(h[12:])
	m.Dst = addr4(h[16:])
	total := int(be.Uint16(h[2:]))
	fl := be.Uint16(h[6:])
	m.DF = fl&0x4000 != 0
	if fo, mf := (fl&0x1fff)*8, fl&0x2000 != 0; mf || fo != 0 {
		m.Frag = packet.Fragment{Is: true, First: fo == 0, More: mf, Offset: fo, ID: uint32(be.Uint16(h[4:]))}
	}
	ihl := int(h[0]&0x0f) * 4
	if total == 0 {
		// Segmentation offload hands captures a 0 total length; the
		// captured bytes are the packet (as Wireshark assumes).
		total = len(data) - off
	}
	m.IPLen = uint16(total)
	if ihl < 20 || total < ihl {
		s.fail(packet.MalformedBadIPHeader)
		return
	}
	if len(data) < off+ihl {
		s.fail(packet.MalformedTruncatedIP)
		return
	}
	if m.Frag.Is && !m.Frag.First {
		return // later fragments carry no transport header
	}
	s.transport(m.Proto, off+ihl, off+total)
}

// ipv6 decodes an IPv6 header at off, its extension headers, and what they
// carry. A fragment header is recorded in Meta.Frag; the first fragment
// still carries the transport header.
func (s *state) ipv6(off int) {
	data, m := s.data, s.m
	if len(data) < off+40 {
		s.fail(packet.MalformedTruncatedIP)
		return
	}
	h := data[off:]
	if h[0]>>4 != 6 {
		s.fail(packet.MalformedBadIPHeader)
		return
	}
	m.IPVersion = 6
	m.L3Off = uint16(off)
	m.TTL = h[7]
	m.Src = addr16(h[8:])
	m.Dst = addr16(h[24:])
	plen := int(be.Uint16(h[4:]))
	if plen == 0 {
		// A jumbogram or an offloaded segment: use what was captured.
		plen = len(data) - off - 40
	}
	total := min(40+plen, 0xffff)
	m.IPLen = uint16(total)
	ipEnd := off + total
	end := min(ipEnd, len(data))
	nh, p := h[6], off+40
	for n := 0; ; n++ {
		switch nh {
		case ipv6HopByHop, ipv6Routing, ipv6DestOpts, ipv6Mobility, ipv6AH, ipv6Fragment:
		default:
			s.transport(nh, p, ipEnd)
			return
		}
		m.Proto = nh // where decoding stopped, should it stop here
		if n == maxExtHeaders {
			s.fail(packet.MalformedTooManyHeaders)
			return
		}
		if end < p+8 {
			s.fail(packet.MalformedTruncatedIP)
			return
		}
		var hl int
		switch nh {
		case ipv6Fragment:
			hl = 8
			fo := be.Uint16(data[p+2:]) & 0xfff8
			m.Frag = packet.Fragment{Is: true, First: fo == 0, More: data[p+3]&1 != 0, Offset: fo, ID: be.Uint32(data[p+4:])}
		case ipv6AH:
			hl = (int(data[p+1]) + 2) * 4
		default:
			hl = (int(data[p+1]) + 1) * 8
		}
		nh = data[p]
		p += hl
		if p > end {
			s.fail(packet.MalformedTruncatedIP)
			return
		}
		if m.Frag.Is && !m.Frag.First {
			m.Proto = nh
			return
		}
	}
}
