package appproto

import (
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/pktpipe/pktpipe/stages/appproto/svtest"
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

var (
	clientHello = unhex("16030100a5010000a10303") // record + handshake header start
	sshBanner   = []byte("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
	httpReq     = []byte("GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.0\r\n\r\n")
	httpResp    = []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
	// A DNS query for example.com A IN, and the DHCP/SNMP/... samples
	// below, are real messages (tshark dissects them as such).
	dnsQuery = unhex("abcd01000001000000000000076578616d706c6503636f6d0000010001")
	nbnsQry  = unhex("80f00110000100000000000020434b4141414141414141414141414141414141414141414141414141414141410000210001")
	snmpGet  = unhex("302602010104067075626c6963a019020405f5e10002010002010030" + "0b300906052b06010201050500")
	krbASReq = unhex("6a81a53081a2a103020105a20302010a")
	ldapBind = unhex("300c020101600702010304008000")
	mqttConn = unhex("101000044d5154540402003c0004746573")
	rdpCR    = unhex("0300002b26e00000000000436f6f6b69653a206d737473686173683d")
	smb2Neg  = unhex("000000a4fe534d4240000000")
	tftpRRQ  = append([]byte("\x00\x01file.txt\x00"), []byte("octet\x00")...)
	dhtPing  = []byte("d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe")
	sipOpt   = []byte("OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1\r\n\r\n")
	h2Pre    = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	quicInit = unhex("c000000001088394c8f03e5157080000449e")
	rfbBan   = []byte("RFB 003.008\n")
	// ONC RPC calls: xid, call, RPC v2, program, version, procedure,
	// then empty credentials and verifier.
	nfs3NullUDP = unhex("38438a19 00000000 00000002 000186a3 00000003 00000000 0000000000000000 0000000000000000")
	nfs4Null    = append(unhex("8000002c"), unhex("12345678 00000000 00000002 000186a3 00000004 00000000 0000000000000000 0000000000000000")...)
	portmapCall = unhex("38438a19 00000000 00000002 000186a0 00000003 00000003 0000000000000000 0000000000000000 000186a3 00000003 00000011 00000000")
)

// realClientHello is the first flight of Go's TLS client (SNI, ALPN h2
// and http/1.1), read off a pipe.
func realClientHello() []byte {
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	go func() {
		_ = tls.Client(c, &tls.Config{ServerName: "www.example.com", NextProtos: []string{"h2", "http/1.1"}}).Handshake()
	}()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(s, hdr); err != nil {
		panic(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(s, body); err != nil {
		panic(err)
	}
	return append(hdr, body...)
}

func dhcpDiscover() []byte {
	b := make([]byte, 300)
	b[0], b[1], b[2] = 1, 1, 6
	copy(b[236:], "\x63\x82\x53\x63")
	return b
}

func TestProbe(t *testing.T) {
	for _, c := range []struct {
		proto    uint8
		toServer bool
		dport    uint16
		b        []byte
		want     Proto
		v        Verdict
	}{
		{tcp, true, 53, clientHello, TLS, Match},
		{tcp, true, 443, sshBanner, SSH, Match},
		{tcp, false, 443, sshBanner, SSH, Match},
		{tcp, true, 8443, httpReq, HTTP, Match},
		{tcp, false, 8443, httpResp, HTTP, Match},
		{tcp, true, 80, []byte("GE"), Unknown, NeedMore},
		{tcp, true, 80, h2Pre, HTTP2, Match},
		{tcp, true, 5060, sipOpt, SIP, Match},
		{tcp, true, 80, []byte("OPTIONS * HTTP/1.1\r\n\r\n"), HTTP, Match},
		{tcp, true, 445, smb2Neg, SMB, Match},
		{tcp, true, 3389, rdpCR, RDP, Match},
		{tcp, true, 1883, mqttConn, MQTT, Match},
		{tcp, false, 5900, rfbBan, RFB, Match},
		{tcp, true, 389, ldapBind, LDAP, Match},
		{tcp, true, 88, append(unhex("000000a8"), krbASReq...), KRB5, Match},
		{tcp, true, 53, append(unhex("001d"), dnsQuery...), DNS, Match},
		{tcp, false, 25, []byte("220 mx.example.com ESMTP Postfix\r\n"), SMTP, Match},
		{tcp, false, 21, []byte("220 (vsFTPd 3.0.3)\r\n"), FTP, Match},
		{tcp, false, 21, []byte("220 welcome\r\n"), Unknown, NoMatch},
		{tcp, true, 21, []byte("QUIT\r\n"), FTP, Match},
		{tcp, true, 25, []byte("QUIT\r\n"), SMTP, Match},
		{tcp, true, 6667, []byte("PASS secret\r\nNICK me\r\n"), Unknown, NoMatch},
		{tcp, false, 110, []byte("+OK POP3 ready\r\n"), POP3, Match},
		{tcp, false, 143, []byte("* OK IMAP4rev1 ready\r\n"), IMAP, Match},
		{tcp, true, 80, []byte("\x00\x01\x02\x03 junk junk"), Unknown, NoMatch},
		{udp, true, 53, dnsQuery, DNS, Match},
		{udp, true, 5353, dnsQuery, DNS, Match},
		{udp, true, 137, nbnsQry, Unknown, NoMatch},
		{udp, true, 67, dhcpDiscover(), DHCP, Match},
		{udp, true, 161, snmpGet, SNMP, Match},
		{udp, true, 88, krbASReq, KRB5, Match},
		{udp, true, 69, tftpRRQ, TFTP, Match},
		{udp, true, 6881, dhtPing, BitTorrentDHT, Match},
		{udp, true, 5060, sipOpt, SIP, Match},
		{udp, true, 443, append(quicInit, make([]byte, 1200)...), QUIC, Match},
		{udp, true, 123, append([]byte{0x23}, make([]byte, 47)...), NTP, Match},
		// NFS: a v4 NULL call over TCP (nfs4-01), a v3 call seen from
		// the server's side (midstream), a 40-byte v3 NULL datagram that
		// Suricata leaves failed (nfs3-01), portmap.
		{tcp, true, 2049, nfs4Null, NFS, Match},
		{tcp, false, 939, nfs4Null, NFS, Match},
		{udp, true, 2049, nfs3NullUDP, Unknown, NoMatch},
		{udp, true, 2049, append(nfs3NullUDP, make([]byte, 8)...), NFS, Match},
		{udp, true, 111, portmapCall, Unknown, NoMatch},
		{udp, true, 9999, append([]byte{0x23}, make([]byte, 47)...), Unknown, NoMatch},
	} {
		p, v := Probe(c.proto, c.toServer, 40000, c.dport, c.b)
		if p != c.want || v != c.v {
			t.Errorf("Probe(%d, ts=%v, port %d, %q) = %v %v, want %v %v", c.proto, c.toServer, c.dport, c.b[:min(len(c.b), 24)], p, v, c.want, c.v)
		}
	}
}

type want struct{ app, ts, tc string }

// anyPortSessions builds the sessions of TestAnyPort and what each
// client port's flow must say.
func anyPortSessions() (*svtest.Capture, map[uint16]want) {
	c := svtest.NewCapture()
	cli := netip.MustParseAddr("10.1.0.1")
	srv := netip.MustParseAddr("10.1.0.2")
	wants := map[uint16]want{}
	sess := func(sport, dport uint16, w want, segs ...svtest.Seg) {
		c.TCP(netip.AddrPortFrom(cli, sport), netip.AddrPortFrom(srv, dport), segs...)
		wants[sport] = w
	}
	cl := func(b []byte) svtest.Seg { return svtest.Seg{FromClient: true, Data: b} }
	sv := func(b []byte) svtest.Seg { return svtest.Seg{Data: b} }
	sess(40001, 53, want{app: "tls"}, cl(realClientHello()), sv(unhex("160303003a020000360303")))
	sess(40002, 443, want{app: "ssh"}, sv(sshBanner), cl(sshBanner))
	sess(40003, 8443, want{app: "http"}, cl(httpReq), sv(httpResp))
	sess(40004, 80, want{app: "http"}, svtest.Seg{FromClient: true, Data: httpReq, Split: 2}, sv(httpResp))
	sess(40005, 80, want{app: "http", tc: "ssh"}, cl(httpReq), sv(sshBanner))
	sess(40006, 9000, want{app: "failed"}, cl([]byte("\x01\x02\x03\x04hello")), sv([]byte("\x05\x06\x07\x08")))
	sess(40007, 9001, want{}, cl([]byte("\x01\x02\x03\x04hello")))
	sess(40008, 110, want{app: "pop3"}, sv([]byte("+OK ready\r\n")), cl([]byte("USER bob\r\n")), sv([]byte("+OK\r\n")))
	sess(40009, 25, want{app: "smtp"}, sv([]byte("220 mx ESMTP\r\n")), cl([]byte("EHLO me\r\n")))
	sess(40010, 8080, want{app: "http2"}, cl(h2Pre), sv(unhex("000000040000000000")))
	sess(40011, 21, want{app: "ftp"}, sv([]byte("220 hi\r\n")), cl([]byte("USER anonymous\r\n")))
	sess(40012, 7000, want{}) // no payload
	c.UDP(netip.AddrPortFrom(cli, 40100), netip.AddrPortFrom(srv, 5353), svtest.Seg{FromClient: true, Data: dnsQuery})
	wants[40100] = want{app: "dns"}
	c.UDP(netip.AddrPortFrom(cli, 40101), netip.AddrPortFrom(srv, 53), svtest.Seg{FromClient: true, Data: []byte("junkjunkjunkjunk")})
	wants[40101] = want{app: "failed"}
	c.UDP(netip.AddrPortFrom(cli, 40102), netip.AddrPortFrom(srv, 443), svtest.Seg{FromClient: true, Data: append(quicInit, make([]byte, 1200)...)})
	wants[40102] = want{app: "quic"}

	return c, wants
}

// anyPortCapture writes anyPortSessions to a capture file.
func anyPortCapture(t *testing.T) string {
	c, _ := anyPortSessions()
	return c.Write(t)
}

// TestAnyPort runs built sessions through the engine: protocols found by
// content on other protocols' ports, requests split after two bytes, the
// two directions disagreeing, and failed flows.
func TestAnyPort(t *testing.T) {
	c, wants := anyPortSessions()
	evs := runApp(t, c.Write(t))
	seen := 0
	for _, ev := range evs {
		if ev["event_type"] != "flow" {
			continue
		}
		sp, _ := svtest.Lookup(ev, "src_port")
		var port uint16
		fmt.Sscan(fmt.Sprint(sp), &port)
		w, ok := wants[port]
		if !ok {
			t.Errorf("unexpected flow %v", ev)
			continue
		}
		seen++
		str := func(k string) string { s, _ := ev[k].(string); return s }
		if got := (want{str("app_proto"), str("app_proto_ts"), str("app_proto_tc")}); got != w {
			t.Errorf("port %d: app_proto %+v, want %+v", port, got, w)
		}
	}
	if seen != len(wants) {
		t.Errorf("%d flows, want %d", seen, len(wants))
	}
}

func TestProbeAllocs(t *testing.T) {
	samples := [][]byte{clientHello, sshBanner, httpReq, dnsQuery, snmpGet, []byte("\x01\x02junk"), sipOpt}
	n := testing.AllocsPerRun(100, func() {
		for _, b := range samples {
			Probe(tcp, true, 1, 2, b)
			Probe(udp, false, 1, 2, b)
			Confirm(SMTP, tcp, true, b)
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations per run", n)
	}
}

var sinkAny any

// TestEndedAllocs: the result left in the slot at End is not allocated.
func TestEndedAllocs(t *testing.T) {
	p := TLS
	if n := testing.AllocsPerRun(100, func() { sinkAny = ended(p) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

func BenchmarkProbe(b *testing.B) {
	junk := []byte("\x01\x02\x03\x04 some binary protocol nobody knows")
	b.ReportAllocs()
	for b.Loop() {
		Probe(tcp, true, 40000, 9000, junk)
	}
}

func FuzzProbe(f *testing.F) {
	for _, s := range [][]byte{clientHello, sshBanner, httpReq, httpResp, dnsQuery, nbnsQry, snmpGet, krbASReq, ldapBind, mqttConn, rdpCR, smb2Neg, tftpRRQ, dhtPing, sipOpt, h2Pre, quicInit, rfbBan, dhcpDiscover()} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, proto := range []uint8{tcp, udp} {
			for _, ts := range []bool{true, false} {
				p, v := Probe(proto, ts, 123, 21, b)
				if (v == Match) != (p != Unknown) {
					t.Fatalf("Probe = %v %v", p, v)
				}
				for q := Proto(0); q < numProtos; q++ {
					Confirm(q, proto, ts, b)
				}
			}
		}
	})
}
