package gen

import "net/netip"

// emit builds p's frame in the scratch buffer, writes it and credits the
// ground truth it completes.
func (g *gen) emit(f *flow, p *pkt) error {
	b := g.buf
	var src, dst netip.Addr
	l := &f.links[c2s]
	switch p.d {
	case c2s:
		src, dst = f.cli, f.srv
	case s2c:
		src, dst, l = f.srv, f.cli, &f.links[s2c]
	case r2c:
		src, dst, l = f.rtr, f.cli, &f.links[s2c]
	}
	ipOff := putLink(b, l, f.v6)
	ih := ipHdr{src: src, dst: dst, ttl: f.ttl[p.d], id: f.ipid[p.d], flowLabel: f.label[p.d]}
	f.ipid[p.d]++
	if p.ttl != 0 {
		ih.ttl = p.ttl
	}
	l4 := ipOff + ipHdrLen(f.v6)
	icmp := uint8(protoICMP)
	if f.v6 {
		icmp = protoICMPv6
	}
	var l4len int
	switch p.kind {
	case pTCP:
		ih.proto, ih.df = protoTCP, true
		hl := 20 + len(p.opts)
		f.st[p.d].read(b[l4+hl:l4+hl+p.n], p.off)
		win := uint16(2048) // scaled by 2^7
		if p.flags&fSYN != 0 {
			win = 64240
		}
		if p.flags&fRST != 0 {
			win = 0
		}
		putTCP(b[l4:], &ih, &tcpHdr{sport: f.port(p.d, true), dport: f.port(p.d, false),
			seq: p.seq, ack: p.ack, flags: p.flags, win: win, opts: p.opts}, p.n)
		l4len = hl + p.n
	case pUDP:
		ih.proto = protoUDP
		copy(b[l4+8:], p.data)
		putUDP(b[l4:], &ih, f.port(p.d, true), f.port(p.d, false), len(p.data))
		l4len = 8 + len(p.data)
	case pEcho:
		ih.proto = icmp
		copy(b[l4+8:], p.data)
		putICMP(b[l4:], &ih, p.typ, 0, p.rest, len(p.data))
		l4len = 8 + len(p.data)
	case pICMPErr:
		ih.proto = icmp
		// Quote the whole packet when it fits in the error (RFC 1812: a
		// 576-byte datagram; RFC 4443: 1280), else its IP header and the
		// first 8 bytes of its transport header (RFC 792). A quote cut in
		// the middle of the payload would make Wireshark check the quoted
		// TCP checksum over part of the segment and flag it as bad.
		q := f.quote
		hl := ipHdrLen(f.v6)
		if maxQ := 576 - 20 - 8; f.v6 {
			if len(q) > 1280-40-8 {
				q = q[:hl+8]
			}
		} else if len(q) > maxQ {
			q = q[:hl+8]
		}
		copy(b[l4+8:], q)
		putICMP(b[l4:], &ih, p.typ, p.code, p.rest, len(q))
		l4len = 8 + len(q)
	}
	putIP(b[ipOff:], &ih, l4len)
	frame := b[:l4+l4len]
	if p.quote {
		f.quote = append(f.quote[:0], frame[ipOff:]...)
	}
	if err := g.cw.record(p.t, frame); err != nil {
		return err
	}
	g.account(f, p, len(frame))
	return nil
}

// port returns the source (src) or destination port of a packet sent in d.
func (f *flow) port(d dir, src bool) uint16 {
	if (d == c2s) == src {
		return f.cport
	}
	return f.sport
}

func (g *gen) account(f *flow, p *pkt, n int) {
	s := &g.sum
	if s.Packets == 0 {
		s.First = p.t
	}
	s.Packets++
	s.Bytes += int64(n)
	s.Last = p.t
	tr := f.truth
	if f.emitted == 0 {
		s.Flows[tr.Kind]++
		if f.v6 {
			s.IPv6Flows++
		}
		if len(tr.VLAN) > 0 {
			s.VLANFlows++
		}
		if len(tr.VLAN) > 1 {
			s.QinQFlows++
		}
		tr.Start = p.t
		if g.cfg.Truth {
			g.truth = append(g.truth, tr)
		}
	}
	f.emitted++
	switch p.tag {
	case tagHandshake:
		s.Handshakes++
		s.HandshakeRTT.add(f.crtt + f.srtt)
		s.ClientRTT.add(f.crtt)
		s.ServerRTT.add(f.srtt)
		tr.HandshakeComplete = true
	case tagHello:
		s.TLSClientHellos++
		if f.split {
			s.TLSSplitHellos++
		}
		if f.odd {
			s.TLSOddSplit++
		}
		tr.TLS.HelloComplete = true
	case tagServerHello:
		s.TLSServerHellos++
		tr.TLS.ServerHelloSeen = true
	case tagDNSQuery:
		s.DNSQueries++
		tr.DNS[p.aux].Sent = true
	case tagDNSResponse:
		s.DNSResponses++
		tr.DNS[p.aux].Answered = true
	case tagEchoReq:
		s.EchoRequests++
		tr.Echo.Requests++
	case tagEchoRep:
		s.EchoReplies++
		tr.Echo.Replies++
	case tagICMPErr:
		s.ICMPErrors[tr.ICMP.Name]++
		tr.ICMP.Sent++
	case tagRefused:
		s.RefusedSYNs++
	case tagSYNRetx:
		s.SYNRetrans++
	}
}
