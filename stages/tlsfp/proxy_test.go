package tlsfp

import (
	"testing"
)

// feedFlow runs one tracker over a client and a server byte stream, cut
// into segments of step bytes, client first.
func feedFlow(c, s []byte, step int) *Tracker {
	tr := &Tracker{Scratch: new(Scratch)}
	tr.Segment(ToServer, 10, 0x02, nil, 0)
	tr.Segment(ToClient, 20, 0x12, nil, 0)
	feed := func(d Dir, base uint32, data []byte, from, to int) {
		for off := from; off < to; off += step {
			end := min(off+step, to)
			tr.Segment(d, base+uint32(off), 0x10, data[off:end], int64(off))
		}
	}
	feed(ToServer, 11, c, 0, len(c))
	feed(ToClient, 21, s, 0, len(s))
	return tr
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

func TestTLSAfterAProxyHandshake(t *testing.T) {
	client, server, _ := helloFlow(t)
	plain := feedFlow(client, server, 100).Result()
	if plain.Client == nil || plain.Server == nil {
		t.Fatal("the plain flow has no hellos")
	}
	socks5req := []byte{5, 1, 0, 3, 11, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'o', 'r', 'g', 1, 187}
	for _, c := range []struct {
		name       string
		pc, ps     []byte
		kind, host string
		port       uint16
	}{
		{"connect", []byte("CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n"),
			[]byte("HTTP/1.1 200 Connection established\r\n\r\n"), ProxyHTTPConnect, "example.org", 443},
		{"connect ipv6", []byte("CONNECT [fd00::2]:8443 HTTP/1.1\r\n\r\n"),
			[]byte("HTTP/1.0 200 OK\r\nVia: x\r\n\r\n"), ProxyHTTPConnect, "fd00::2", 8443},
		{"socks4", []byte{4, 1, 1, 187, 10, 0, 0, 2, 'u', 0}, []byte{0, 0x5a, 0, 0, 0, 0, 0, 0}, ProxySOCKS4, "10.0.0.2", 443},
		{"socks4a", []byte{4, 1, 1, 187, 0, 0, 0, 1, 0, 'h', '.', 'e', 'x', 0}, []byte{0, 0x5a, 0, 0, 0, 0, 0, 0}, ProxySOCKS4a, "h.ex", 443},
		{"socks5", cat([]byte{5, 2, 0, 1}, socks5req), []byte{5, 0, 5, 0, 0, 1, 10, 0, 0, 2, 1, 187}, ProxySOCKS5, "example.org", 443},
	} {
		for _, step := range []int{1, 3, 1000} { // the preamble split over segments, or whole
			r := feedFlow(cat(c.pc, client), cat(c.ps, server), step).Result()
			if r.Client == nil || r.Server == nil || r.Client.JA4 != plain.Client.JA4 || r.Server.JA3S != plain.Server.JA3S {
				t.Fatalf("%s step %d: hellos %v %v, want the plain flow's", c.name, step, r.Client != nil, r.Server != nil)
			}
			if r.Proxy != c.kind || r.ProxyHost != c.host || r.ProxyPort != c.port {
				t.Errorf("%s: proxy %q %q %d, want %q %q %d", c.name, r.Proxy, r.ProxyHost, r.ProxyPort, c.kind, c.host, c.port)
			}
		}
	}
}

// A proxy that refuses does not open a TLS stream.
func TestRefusedProxyIsNotTLS(t *testing.T) {
	client, server, _ := helloFlow(t)
	for name, c := range map[string][2][]byte{
		"connect 407": {[]byte("CONNECT a:443 HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")},
		"socks4 91":   {[]byte{4, 1, 1, 187, 10, 0, 0, 2, 0}, []byte{0, 0x5b, 0, 0, 0, 0, 0, 0}},
		"socks5 auth": {[]byte{5, 1, 2}, []byte{5, 2}},
	} {
		tr := feedFlow(cat(c[0], client), cat(c[1], server), 50)
		if tr.HasHandshake() && tr.Result().Server != nil {
			t.Errorf("%s: a server hello was read after a refusal", name)
		}
	}
}
