package appproto_test

import (
	"crypto/tls"
	"encoding/hex"
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/appproto"
	"github.com/pktpipe/pktpipe/stages/appproto/svtest"
	"github.com/pktpipe/pktpipe/stages/dns"
	"github.com/pktpipe/pktpipe/stages/flow"
	"github.com/pktpipe/pktpipe/stages/http"
	"github.com/pktpipe/pktpipe/stages/ssh"
	"github.com/pktpipe/pktpipe/stages/tlsfp"
)

// clientHello is the first flight of Go's TLS client, read off a pipe.
func clientHello(t *testing.T) []byte {
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	go func() { _ = tls.Client(c, &tls.Config{ServerName: "events.test"}).Handshake() }()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(s, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(s, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// TestEventsCarryAppProto: the tls, dns, http and ssh events of a flow
// carry its app_proto (on other protocols' ports, so that it is the
// detector's and not a port's), including the ssh event written at the
// flow's end; with the detector off they carry none.
func TestEventsCarryAppProto(t *testing.T) {
	c := svtest.NewCapture()
	cli, srv := netip.MustParseAddr("10.2.0.1"), netip.MustParseAddr("10.2.0.2")
	ap := func(a netip.Addr, p uint16) netip.AddrPort { return netip.AddrPortFrom(a, p) }
	cl := func(b []byte) svtest.Seg { return svtest.Seg{FromClient: true, Data: b} }
	sv := func(b []byte) svtest.Seg { return svtest.Seg{Data: b} }
	c.TCP(ap(cli, 41001), ap(srv, 53), cl(clientHello(t)))
	c.TCP(ap(cli, 41002), ap(srv, 443), sv([]byte("SSH-2.0-OpenSSH_9.2\r\n")), cl([]byte("SSH-2.0-OpenSSH_9.6\r\n")))
	c.TCP(ap(cli, 41003), ap(srv, 8443), cl([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")), sv([]byte("HTTP/1.1 204 No Content\r\n\r\n")))
	q, _ := hex.DecodeString("abcd01000001000000000000076578616d706c6503636f6d0000010001")
	c.UDP(ap(cli, 41004), ap(srv, 5353), svtest.Seg{FromClient: true, Data: q})
	file := c.Write(t)

	run := func(detector bool) map[string]any {
		got := map[string]any{}
		evs := svtest.Run(t, file, func(reg *stats.Registry) []flow.Analyzer {
			as := []flow.Analyzer{tlsfp.NewAnalyzer(), ssh.New(nil, reg), http.New(nil, reg), dns.New(nil, reg)}
			if detector {
				as = append([]flow.Analyzer{appproto.New(reg)}, as...)
			}
			return as
		})
		for _, ev := range evs {
			if et := ev["event_type"].(string); et != "flow" {
				got[et] = ev["app_proto"]
			}
		}
		return got
	}
	want := map[string]any{"tls": "tls", "ssh": "ssh", "http": "http", "dns": "dns"}
	got := run(true)
	for et, w := range want {
		if got[et] != w {
			t.Errorf("%s event: app_proto %v, want %v", et, got[et], w)
		}
	}
	for et, v := range run(false) {
		if v != nil {
			t.Errorf("detector off: %s event has app_proto %v", et, v)
		}
	}
}
