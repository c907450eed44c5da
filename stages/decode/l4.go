package decode

import "github.com/pktpipe/pktpipe/pipeline/packet"

// transport decodes the header of protocol proto at off. ipEnd is where
// the IP length says the packet ends; it may lie beyond the captured bytes.
func (s *state) transport(proto uint8, off, ipEnd int) {
	m, data := s.m, s.data
	m.Proto = proto
	m.L4Off = uint16(off)
	end := min(ipEnd, len(data))
	// short is the error for a header that does not fit: the capture was
	// cut (snap length), or the IP length itself is too small.
	short := packet.MalformedTruncatedL4
	if ipEnd <= len(data) {
		short = packet.MalformedBadL4Header
	}
	avail := end - off
	switch proto {
	case packet.ProtoTCP:
		if avail < 20 {
			s.fail(short)
			return
		}
		h := data[off:end]
		m.SrcPort = be.Uint16(h[0:])
		m.DstPort = be.Uint16(h[2:])
		m.Seq = be.Uint32(h[4:])
		m.Ack = be.Uint32(h[8:])
		m.TCPFlags = h[13]
		m.Window = be.Uint16(h[14:])
		doff := int(h[12]>>4) * 4
		if doff < 20 {
			s.fail(packet.MalformedBadL4Header)
			return
		}
		if doff > avail {
			// Options cut by the snap length: the ports are good and
			// there is no payload. Cut by the IP length: malformed.
			if short == packet.MalformedBadL4Header {
				s.fail(short)
			}
			return
		}
		m.HasL4 = true
		s.payload(off+doff, end)
	case packet.ProtoUDP:
		if avail < 8 {
			s.fail(short)
			return
		}
		m.SrcPort = be.Uint16(data[off:])
		m.DstPort = be.Uint16(data[off+2:])
		ulen := int(be.Uint16(data[off+4:]))
		if ulen != 0 && ulen < 8 || off+ulen > ipEnd {
			s.fail(packet.MalformedBadL4Header)
			return
		}
		if ulen != 0 { // 0: a jumbogram; the IP length rules
			end = min(end, off+ulen)
		}
		m.HasL4 = true
		s.payload(off+8, end)
		// Either port, as Wireshark does: senders pick the source port
		// by hash, and some pick the tunnel port. The header checks in
		// vxlan and geneve keep ordinary UDP out.
		switch {
		case m.DstPort == portVXLAN || m.SrcPort == portVXLAN:
			s.vxlan(off+8, end)
		case m.DstPort == portGeneve || m.SrcPort == portGeneve:
			s.geneve(off+8, end)
		}
	case packet.ProtoSCTP:
		if avail < 12 {
			s.fail(short)
			return
		}
		m.SrcPort = be.Uint16(data[off:])
		m.DstPort = be.Uint16(data[off+2:])
		m.HasL4 = true
		s.payload(off+12, end)
	case packet.ProtoICMP, packet.ProtoICMPv6:
		if avail < 8 {
			if avail >= 2 {
				m.ICMPType, m.ICMPCode = data[off], data[off+1]
			}
			s.fail(short)
			return
		}
		h := data[off:end]
		m.ICMPType, m.ICMPCode = h[0], h[1]
		// The rest of the header: echo id/seq, the MTU (frag-needed, low
		// 16 bits; packet-too-big, all 32), the redirect gateway, the
		// parameter-problem pointer.
		m.ICMPRest = be.Uint32(h[4:])
		if packet.IsEcho(proto, h[0]) {
			m.ICMPID = be.Uint16(h[4:])
			m.ICMPSeq = be.Uint16(h[6:])
		}
		m.HasL4 = true
		s.payload(off+8, end)
		if packet.IsICMPError(proto, h[0]) {
			s.quote(h[8:])
		}
	case protoGRE:
		s.gre(off, end)
	case protoIPIP:
		if s.enter(packet.TunnelIPIP, off, end) {
			s.ipv4(off)
		}
	case protoIPv6inIP:
		if s.enter(packet.TunnelIPIP, off, end) {
			s.ipv6(off)
		}
	}
}

// payload records [off, end) as the payload; end is already clipped to the
// captured bytes and the IP (or UDP) length.
func (s *state) payload(off, end int) {
	if end > off {
		s.m.PayloadOff = uint16(off)
		s.m.PayloadLen = uint16(end - off)
	}
}
