package decode

import "github.com/pktpipe/pktpipe/pipeline/packet"

// quote decodes the packet quoted by an ICMP error: its IP header (the
// version from the first nibble) and the first 8 bytes of its transport
// header. A quote can end anywhere; what is there is filled in, Truncated
// says something expected was missing, and the outer packet is never
// failed because of it.
func (s *state) quote(b []byte) {
	if len(b) == 0 {
		return // an error with no quote at all
	}
	switch b[0] >> 4 {
	case 4:
		quote4(&s.extra().Quote, b)
	case 6:
		quote6(&s.extra().Quote, b)
	}
}

func quote4(q *packet.Quote, b []byte) {
	q.IPVersion = 4
	if len(b) < 20 {
		q.Truncated = true
		return
	}
	q.Present = true
	q.IPLen = be.Uint16(b[2:])
	fl := be.Uint16(b[6:])
	q.DF = fl&0x4000 != 0
	q.MF = fl&0x2000 != 0
	q.FragOff = (fl & 0x1fff) * 8
	q.TTL = b[8]
	q.Proto = b[9]
	q.Src = addr4(b[12:])
	q.Dst = addr4(b[16:])
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 {
		return // a bad header: the addresses are all we trust
	}
	if len(b) < ihl {
		q.Truncated = true
		return
	}
	if q.FragOff != 0 {
		return // a later fragment has no transport header to quote
	}
	quoteL4(q, b[ihl:])
}

func quote6(q *packet.Quote, b []byte) {
	q.IPVersion = 6
	if len(b) < 40 {
		q.Truncated = true
		return
	}
	q.Present = true
	q.IPLen = 40 + be.Uint16(b[4:])
	q.TTL = b[7]
	q.Src = addr16(b[8:])
	q.Dst = addr16(b[24:])
	nh, p := b[6], 40
	for n := 0; ; n++ {
		switch nh {
		case ipv6HopByHop, ipv6Routing, ipv6DestOpts, ipv6Mobility, ipv6AH, ipv6Fragment:
		default:
			q.Proto = nh
			quoteL4(q, b[p:])
			return
		}
		if n == maxExtHeaders {
			return
		}
		if len(b) < p+8 {
			q.Truncated = true
			return
		}
		var hl int
		switch nh {
		case ipv6Fragment:
			hl = 8
			q.FragOff = be.Uint16(b[p+2:]) & 0xfff8
			q.MF = b[p+3]&1 != 0
		case ipv6AH:
			hl = (int(b[p+1]) + 2) * 4
		default:
			hl = (int(b[p+1]) + 1) * 8
		}
		nh = b[p]
		p += hl
		if len(b) < p {
			q.Truncated = true
			return
		}
		if q.FragOff != 0 {
			q.Proto = nh
			return
		}
	}
}

// quoteL4 reads the first 8 bytes of the quoted transport header, which
// RFC 792 and RFC 4443 guarantee an error carries.
func quoteL4(q *packet.Quote, t []byte) {
	switch q.Proto {
	case packet.ProtoTCP, packet.ProtoUDP, packet.ProtoSCTP:
		if len(t) >= 4 {
			q.SrcPort, q.DstPort = be.Uint16(t), be.Uint16(t[2:])
			q.HasPorts = true
		}
		if q.Proto == packet.ProtoTCP && len(t) >= 8 {
			q.Seq, q.HasSeq = be.Uint32(t[4:]), true
		}
	case packet.ProtoICMP, packet.ProtoICMPv6:
		if len(t) >= 1 {
			q.ICMPType = t[0]
		}
		if len(t) >= 8 && packet.IsEcho(q.Proto, t[0]) {
			q.ICMPID, q.ICMPSeq = be.Uint16(t[4:]), be.Uint16(t[6:])
			q.HasEcho = true
		}
	default:
		return
	}
	if len(t) < 8 {
		q.Truncated = true
	}
}
