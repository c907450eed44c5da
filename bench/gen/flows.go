package gen

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"strconv"
)

// newFlow draws a flow starting at t and schedules its first phase.
func (g *gen) newFlow(t int64) *flow {
	id := g.ids
	g.ids++
	// Each flow has its own random stream, so a flow's content does not
	// depend on how many draws other flows made.
	r := rand.New(rand.NewPCG(uint64(g.cfg.Seed), uint64(id)))
	f := &flow{id: id, r: r, phaseAt: -1}
	w := r.IntN(100)
	for k, kw := range kindWeights {
		if w < kw {
			f.kind = kind(k)
			break
		}
		w -= kw
	}
	f.v6 = r.Float64() < g.cfg.IPv6Share
	ci := r.IntN(nClients)
	f.cli = clientAddr(ci, f.v6)
	f.cport = g.ports[ci]
	if g.ports[ci]++; g.ports[ci] > 60999 {
		g.ports[ci] = 32768
	}
	f.srv = serverAddr(r.IntN(1000), f.v6)
	var vlan [2]uint16
	if r.Float64() < g.cfg.VLANShare {
		if r.Float64() < g.cfg.QinQShare {
			vlan = [2]uint16{uint16(100 + r.IntN(100)), uint16(1 + r.IntN(4000))}
		} else {
			vlan[0] = uint16(1 + r.IntN(4000))
		}
	}
	f.links[c2s] = link{dst: gwMAC, src: macOf(f.cli), vlan: vlan}
	f.links[s2c] = link{dst: macOf(f.cli), src: gwMAC, vlan: vlan}
	f.ttl[c2s] = 64
	if r.IntN(4) == 0 {
		f.ttl[c2s] = 128
	}
	f.ttl[s2c] = []uint8{64, 128, 255}[r.IntN(3)] - uint8(1+r.IntN(20))
	f.ttl[r2c] = 64
	for i := range f.ipid {
		f.ipid[i] = uint16(r.Uint32())
		f.label[i] = r.Uint32() & 0xfffff
	}
	f.crtt = logNs(r, 1e5, 8e7)
	f.srtt = logNs(r, 1e5, 8e7)
	f.rate = logUniform(r, 2e7, 2e9)
	f.mss = 1460
	if f.v6 {
		f.mss = 1440
	}
	f.isn = [2]uint32{r.Uint32(), r.Uint32()}
	f.truth = &Conn{ID: id, Kind: kindNames[f.kind], Client: f.cli, Server: f.srv, Start: t}
	if vlan[0] != 0 {
		f.truth.VLAN = []uint16{vlan[0]}
		if vlan[1] != 0 {
			f.truth.VLAN = append(f.truth.VLAN, vlan[1])
		}
	}

	switch f.kind {
	case kindTLS, kindTCP:
		f.startConn(t, g.cfg.BulkShare)
	case kindDNS:
		f.dns(t)
	case kindEcho:
		f.echo(t)
	case kindRefused, kindUnanswered:
		f.deadSYN(t)
	case kindUDPClosed:
		f.udpClosed(t)
	case kindTTLExceeded:
		f.ttlExceeded(t)
	case kindFragNeeded:
		f.fragNeeded(t)
	}
	f.truth.ClientPort, f.truth.ServerPort = f.cport, f.sport
	if f.kind == kindEcho {
		f.truth.ClientPort, f.truth.ServerPort = 0, 0
	}
	f.truth.Proto = protoName(f)
	return f
}

func protoName(f *flow) string {
	switch f.kind {
	case kindDNS, kindUDPClosed:
		return "udp"
	case kindEcho:
		if f.v6 {
			return "ipv6-icmp"
		}
		return "icmp"
	}
	return "tcp"
}

func (f *flow) setRTTTruth() {
	f.truth.ClientRTT, f.truth.ServerRTT = f.crtt, f.srtt
}

// startConn runs a TLS or HTTP connection: handshake, (TLS handshake),
// request/response exchanges of which the last may be a bulk transfer,
// then close.
func (f *flow) startConn(t int64, bulkShare float64) {
	r := f.r
	f.setRTTTruth()
	var bulk int64
	if r.Float64() < bulkShare {
		bulk = int64(logUniform(r, 100e3, 5e6))
		f.truth.BulkBytes = bulk
	}
	up := r.IntN(5) == 0 // a fifth of bulk transfers are uploads
	if bulk > 0 && up {
		f.truth.BulkUpload = true
	}
	tls := f.kind == kindTLS
	host := hostname(r)
	if tls {
		f.sport = 443
		if r.IntN(100) < 12 {
			f.sport = []uint16{8443, 993, 995, 465}[r.IntN(4)]
		}
	} else {
		f.sport = 80
		if r.IntN(5) == 0 {
			f.sport = 8080
		}
	}
	f.truth.ServerPort = f.sport

	t = f.handshake(t)
	t += 1000 + r.Int64N(300_000) // the client answers the SYN/ACK at once
	if tls {
		t = f.tlsHandshake(t, host)
	}
	n := 1 + r.IntN(5)
	for i := range n {
		if i > 0 {
			t += logNs(r, 1e6, 5e8) // think time
		}
		last := i == n-1
		if last && bulk > 0 {
			f.bulkExchange(t, tls, host, bulk, up)
			return
		}
		t = f.exchange(t, tls, host, int64(logUniform(r, 200, 14000)))
	}
	f.closeConn(t + logNs(r, 1e5, 1e8))
}

// writeReq appends a request to the client stream and returns its length.
func (f *flow) writeReq(tls bool, host string, body int64) int64 {
	s := &f.st[c2s]
	if tls {
		return f.writeRecords(c2s, int64(60+f.r.IntN(800))+body)
	}
	if body > 0 {
		h := "POST /upload/" + strconv.Itoa(f.r.IntN(1e6)) + " HTTP/1.1\r\nHost: " + host +
			"\r\nContent-Type: application/octet-stream\r\nContent-Length: " + strconv.FormatInt(body, 10) + "\r\n\r\n"
		return int64(s.write([]byte(h))) + s.fill(f.r, body)
	}
	h := "GET /" + nameWords[f.r.IntN(len(nameWords))] + "/" + strconv.Itoa(f.r.IntN(1e6)) +
		" HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: pktgen/1\r\nAccept: */*\r\n\r\n"
	return int64(s.write([]byte(h)))
}

// writeResp appends a response with a body of n bytes to the server stream.
func (f *flow) writeResp(tls bool, n int64) int64 {
	if tls {
		return f.writeRecords(s2c, n)
	}
	s := &f.st[s2c]
	status := "200 OK"
	if n == 0 {
		status = "201 Created"
	}
	h := "HTTP/1.1 " + status + "\r\nContent-Type: application/octet-stream\r\nContent-Length: " + strconv.FormatInt(n, 10) + "\r\n\r\n"
	return int64(s.write([]byte(h))) + s.fill(f.r, n)
}

// writeRecords appends TLS application-data records carrying n bytes.
func (f *flow) writeRecords(d dir, n int64) int64 {
	s := &f.st[d]
	var total int64
	for n > 0 {
		k := min(n, maxRecordPlaintxt)
		n -= k
		rec := k + 17 // content type and AEAD tag
		total += int64(s.write([]byte{recordAppData, 3, 3, byte(rec >> 8), byte(rec)}))
		total += s.fill(f.r, rec)
	}
	return total
}

// exchange sends a request at t and its response of about n bytes; it
// returns when the client has acknowledged the response.
func (f *flow) exchange(t int64, tls bool, host string, n int64) int64 {
	q := f.writeReq(tls, host, 0)
	t = f.send(t, c2s, int(q), false)
	t += f.srtt + logNs(f.r, 2e4, 5e6)
	p := f.writeResp(tls, n)
	t = f.send(t, s2c, int(p), true)
	return t + f.crtt
}

// bulkExchange moves n bytes one way in windows, then closes.
func (f *flow) bulkExchange(t int64, tls bool, host string, n int64, up bool) {
	if up {
		q := f.writeReq(tls, host, n)
		f.bulk(t, c2s, q, func(t int64) {
			t += f.srtt + logNs(f.r, 2e4, 5e6)
			p := f.writeResp(tls, 0)
			if tls {
				p = f.writeRecords(s2c, 40)
			}
			t = f.send(t, s2c, int(p), true)
			f.closeConn(t + f.crtt + logNs(f.r, 1e5, 1e8))
		})
		return
	}
	q := f.writeReq(tls, host, 0)
	t = f.send(t, c2s, int(q), false)
	t += f.srtt + logNs(f.r, 2e4, 5e6)
	p := f.writeResp(tls, n)
	f.bulk(t, s2c, p, func(t int64) {
		f.closeConn(t + f.crtt + logNs(f.r, 1e5, 1e8))
	})
}

// tlsHandshake sends the ClientHello at t (split as chosen), the server's
// flight and the client's finish; it returns when the application data
// may start.
func (f *flow) tlsHandshake(t int64, host string) int64 {
	r := f.r
	s := &helloSpec{}
	switch v := r.IntN(100); {
	case v < 50:
		s.profile = profileChrome
		s.mlkem = r.IntN(2) == 0
	case v < 80:
		s.profile = profileFirefox
		s.mlkem = r.IntN(3) == 0
	default:
		s.profile = profileLegacy
	}
	s.sni = host
	if s.profile == profileLegacy && r.IntN(10) == 0 {
		s.sni = "" // a client connecting by address
	}
	switch {
	case f.sport != 443 && f.sport != 8443:
		// mail over TLS: no ALPN
	case s.profile != profileLegacy:
		s.alpn = []string{"h2", "http/1.1"}
	case r.IntN(2) == 0:
		s.alpn = []string{"http/1.1"}
	}
	ch := clientHello(r, s)
	f.spec = s
	f.st[c2s].write(ch)
	var sizes []int
	if r.IntN(100) < 8 {
		f.odd = true
		sizes = append([]int{100}, f.mssSizes(len(ch)-100, f.mss)...)
	} else {
		sizes = f.mssSizes(len(ch), f.mss)
	}
	f.split = len(sizes) > 1
	c := choose(s)
	tt := &TLSTruth{
		SNI: s.sni, ALPN: s.alpn, MLKEM: s.mlkem, Split: f.split, OddSplit: f.odd,
		Segments: len(sizes), HelloLen: len(ch), Version: c.version, Cipher: c.cipher, ChosenALPN: c.alpn,
	}
	for _, v := range s.versions {
		if !isGrease(v) {
			tt.SupportedVersions = append(tt.SupportedVersions, v)
		}
	}
	tt.JA3, tt.JA3Hash = ja3(s)
	f.truth.TLS = tt

	t = f.sendSizes(t, c2s, sizes, false, tagHello)
	hello := t
	t += f.srtt + logNs(r, 2e4, 3e6)
	tt.HelloRTT = t - hello
	sf := serverFlight(r, s, c, 1500+r.IntN(3500))
	f.st[s2c].write(sf)
	t = f.send(t, s2c, len(sf), false)
	// Tag the segment that completes the ServerHello message.
	f.tagServerHello()
	t += f.crtt + logNs(r, 2e4, 2e6)
	cf := clientFinish(r, c)
	f.st[c2s].write(cf)
	if c.version == 0x0303 {
		t = f.send(t, c2s, len(cf), false)
		t += f.srtt + logNs(r, 2e4, 1e6)
		sfin := serverFinish(r)
		f.st[s2c].write(sfin)
		t = f.send(t, s2c, len(sfin), true)
		return t + f.crtt
	}
	return f.send(t, c2s, len(cf), true)
}

// tagServerHello marks the server segment that ends the ServerHello
// handshake message (the first thing in the server's stream).
func (f *flow) tagServerHello() {
	sh := f.st[s2c].chunks[0].b
	shEnd := int64(5 + 4 + (int(sh[6])<<16 | int(sh[7])<<8 | int(sh[8])))
	for i := range f.pend {
		p := &f.pend[i]
		if p.d == s2c && p.kind == pTCP && p.n > 0 && p.off < shEnd && p.off+int64(p.n) >= shEnd {
			p.tag = tagServerHello
		}
	}
}

// dns sends one query, or an A and an AAAA query from the same socket,
// answered after a known delay unless the resolver stays silent.
func (f *flow) dns(t int64) {
	r := f.r
	f.sport = 53
	if f.v6 {
		f.srv = resolvers6[r.IntN(len(resolvers6))]
	} else {
		f.srv = resolvers4[r.IntN(len(resolvers4))]
	}
	f.truth.Server = f.srv
	name := hostname(r)
	types := []uint16{1}
	switch r.IntN(10) {
	case 0, 1, 2:
		types = []uint16{1, 28}
	case 3, 4:
		types = []uint16{28}
	}
	for j, qt := range types {
		id := uint16(r.Uint32())
		q := dnsQuery(id, name, qt)
		tq := t + int64(j)*r.Int64N(200_000)
		f.push(pkt{t: tq, kind: pUDP, d: c2s, data: q, tag: tagDNSQuery, aux: j})
		dq := DNSQuery{ID: id, Name: name, Type: qt, Delay: logNs(r, 2e5, 5e7)}
		if r.IntN(100) >= 8 {
			var addrs []netip.Addr
			if r.IntN(100) >= 8 {
				for range 1 + r.IntN(3) {
					addrs = append(addrs, serverAddr(r.IntN(1000), qt == 28))
				}
			} else {
				dq.RCode = 3
			}
			dq.Answers = addrs
			resp := dnsResponse(q, qt, addrs, uint32(60+r.IntN(3600)))
			f.push(pkt{t: tq + dq.Delay, kind: pUDP, d: s2c, data: resp, tag: tagDNSResponse, aux: j})
		}
		f.truth.DNS = append(f.truth.DNS, dq)
	}
}

// echo sends 1–8 echo requests at a fixed interval, each answered one
// server RTT later, except in dead sessions and for a few losses.
func (f *flow) echo(t int64) {
	r := f.r
	id := uint16(r.Uint32())
	f.cport, f.sport = id, id
	k := 1 + r.IntN(8)
	interval := int64(1e9)
	if r.IntN(5) == 0 {
		interval = 2e8
	}
	dead := r.IntN(100) < 10
	req, rep := uint8(8), uint8(0)
	if f.v6 {
		req, rep = 128, 129
	}
	f.truth.Echo = &EchoTruth{ID: id, RTT: f.srtt}
	for s := 1; s <= k; s++ {
		ts := t + int64(s-1)*interval
		body := make([]byte, 56)
		binary.LittleEndian.PutUint64(body[0:], uint64(ts/1e9))
		binary.LittleEndian.PutUint64(body[8:], uint64(ts%1e9/1e3))
		for i := 16; i < 56; i++ {
			body[i] = byte(i)
		}
		rest := uint32(id)<<16 | uint32(s)
		f.push(pkt{t: ts, kind: pEcho, d: c2s, typ: req, rest: rest, data: body, tag: tagEchoReq})
		if !dead && r.IntN(100) >= 3 {
			f.push(pkt{t: ts + f.srtt, kind: pEcho, d: s2c, typ: rep, rest: rest, data: body, tag: tagEchoRep})
		}
	}
}

var deadPorts = []uint16{22, 23, 25, 3306, 3389, 5900, 6379, 8000, 9000}

// deadSYN is a SYN refused with RST/ACK, or a SYN nobody answers,
// retransmitted with the same sequence number after 1 s and 3 s.
func (f *flow) deadSYN(t int64) {
	f.sport = deadPorts[f.r.IntN(len(deadPorts))]
	opt := synOpts(uint16(f.mss))
	f.push(pkt{t: t, kind: pTCP, d: c2s, flags: fSYN, seq: f.isn[c2s], opts: opt})
	if f.kind == kindRefused {
		f.truth.ServerRTT = f.srtt
		f.push(pkt{t: t + f.srtt, kind: pTCP, d: s2c, flags: fRST | fACK, ack: f.isn[c2s] + 1, tag: tagRefused})
		return
	}
	f.push(pkt{t: t + 1e9, kind: pTCP, d: c2s, flags: fSYN, seq: f.isn[c2s], opts: opt, tag: tagSYNRetx})
	f.push(pkt{t: t + 3e9, kind: pTCP, d: c2s, flags: fSYN, seq: f.isn[c2s], opts: opt, tag: tagSYNRetx})
}

// udpClosed sends one or two datagrams to a closed port; the server
// answers each with an ICMP port unreachable quoting it.
func (f *flow) udpClosed(t int64) {
	r := f.r
	f.sport = uint16(33434 + r.IntN(100))
	typ, code := uint8(3), uint8(3)
	if f.v6 {
		typ, code = 1, 4
	}
	f.truth.ServerRTT = f.srtt
	f.truth.ICMP = &ICMPTruth{From: f.srv, Type: typ, Code: code, Name: "port-unreachable"}
	for i := range 1 + r.IntN(2) {
		ts := t + int64(i)*1e9
		f.push(pkt{t: ts, kind: pUDP, d: c2s, data: randBytes(r, 20+r.IntN(100)), quote: true})
		f.push(pkt{t: ts + f.srtt, kind: pICMPErr, d: s2c, typ: typ, code: code, tag: tagICMPErr})
	}
}

// ttlExceeded is a SYN sent with a small TTL (a TCP traceroute probe) and
// the time-exceeded error from the router where it expired.
func (f *flow) ttlExceeded(t int64) {
	r := f.r
	f.sport = []uint16{80, 443}[r.IntN(2)]
	hop := 1 + r.IntN(3)
	f.rtr = routerAddr(hop, r.IntN(4), f.v6)
	f.ttl[r2c] = uint8(64 - (hop - 1))
	typ := uint8(11)
	if f.v6 {
		typ = 3
	}
	rrtt := logNs(r, 5e4, 2e7)
	f.truth.ICMP = &ICMPTruth{From: f.rtr, Type: typ, Code: 0, Name: "ttl-exceeded", Hop: hop, Delay: rrtt}
	f.push(pkt{t: t, kind: pTCP, d: c2s, flags: fSYN, seq: f.isn[c2s], opts: synOpts(uint16(f.mss)), ttl: uint8(hop), quote: true})
	f.push(pkt{t: t + rrtt, kind: pICMPErr, d: r2c, typ: typ, tag: tagICMPErr})
}

// fragNeeded uploads a few full-sized segments through a router with a
// smaller MTU: the router drops them and answers the first with
// fragmentation needed (IPv4) or packet too big (IPv6); the client sends
// the data again in smaller segments.
func (f *flow) fragNeeded(t int64) {
	r := f.r
	f.sport = 80
	f.setRTTTruth()
	host := hostname(r)
	t = f.handshake(t)
	t += 1000 + r.Int64N(300_000)
	f.rtr = routerAddr(1+r.IntN(3), r.IntN(4), f.v6)
	var typ, code uint8
	var mtu int
	var name string
	if f.v6 {
		typ, name = 2, "packet-too-big"
		mtu = []int{1280, 1420}[r.IntN(2)]
	} else {
		typ, code, name = 3, 4, "frag-needed"
		mtu = []int{1400, 1450, 1480, 1492}[r.IntN(4)]
	}
	rrtt := max(f.srtt/10, f.srtt*int64(1+r.IntN(9))/10)
	f.truth.ICMP = &ICMPTruth{From: f.rtr, Type: typ, Code: code, Name: name, MTU: mtu, Delay: rrtt}
	off0 := f.nxt[c2s]
	n := f.writeReq(false, host, int64(2*f.mss+r.IntN(2*f.mss)))
	sizes := f.mssSizes(int(n), f.mss)
	last := f.sendSizes(t, c2s, sizes, false, tagNone)
	for i := range f.pend {
		if f.pend[i].d == c2s && f.pend[i].off == off0 && f.pend[i].n > 0 {
			f.pend[i].quote = true
		}
	}
	terr := t + rrtt
	f.push(pkt{t: terr, kind: pICMPErr, d: r2c, typ: typ, code: code, rest: uint32(mtu), tag: tagICMPErr})
	// Send again from the start, sized for the path MTU.
	f.nxt[c2s] = off0
	hdr := 40
	if f.v6 {
		hdr = 60
	}
	t = max(terr+f.crtt, last) + 1000
	t = f.sendSizes(t, c2s, f.mssSizes(int(n), mtu-hdr), true, tagNone)
	t += f.srtt + logNs(r, 2e4, 2e6)
	p := f.writeResp(false, 0)
	t = f.send(t, s2c, int(p), true)
	f.closeConn(t + f.crtt + logNs(r, 1e5, 5e7))
}
