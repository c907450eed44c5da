package tlsfp

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strconv"
)

// A TLS stream may begin after a proxy's handshake: an HTTP CONNECT
// request and its 2xx answer, or a SOCKS4/4a/5 exchange. The tracker then
// skips that preamble in each direction and reads TLS from where it ends,
// and the event names the proxy and the target the client asked for.
// Only the preamble's own bytes are parsed; anything unexpected ends the
// tracker as a stream that is not TLS, as before.

// Proxy kinds, as the event writes them.
const (
	ProxyHTTPConnect = "http_connect"
	ProxySOCKS4      = "socks4"
	ProxySOCKS4a     = "socks4a"
	ProxySOCKS5      = "socks5"
)

// maxPreamble caps the bytes of a proxy handshake in one direction.
const maxPreamble = 4096

type preambleResult uint8

const (
	preWait    preambleResult = iota // not enough bytes yet
	preNone                          // no preamble: TLS starts here
	preSkipped                       // the preamble was skipped
	preBad                           // a preamble that went wrong
)

// preamble looks at the start of direction d's stream.
func (t *Tracker) preamble(d Dir) preambleResult {
	h := &t.half[d]
	if h.records != 0 || h.hsLen != 0 {
		return preNone
	}
	b := h.buf[h.recOff:]
	var n int
	var r preambleResult
	if t.res.Proxy == "" || d == t.proxyClient {
		// The client's request, read again from its start until whole.
		n, r = t.clientPreamble(b)
		if t.res.Proxy != "" {
			t.proxyClient = d
		}
	} else {
		n, r = t.serverPreamble(b)
	}
	if r == preWait && len(b) >= maxPreamble {
		return preBad
	}
	if r == preSkipped {
		h.recOff += n
	}
	return r
}

// clientPreamble recognises a proxy request at the start of a stream.
func (t *Tracker) clientPreamble(b []byte) (int, preambleResult) {
	switch {
	case len(b) == 0:
		return 0, preWait
	case b[0] == 22: // a TLS handshake record: no proxy
		return 0, preNone
	case bytes.HasPrefix(b, []byte("CONNECT ")):
		t.res.Proxy = ProxyHTTPConnect
		end := bytes.Index(b, []byte("\r\n\r\n"))
		if end < 0 {
			return 0, preWait
		}
		line := b[:bytes.IndexByte(b, '\r')]
		fields := bytes.Fields(line)
		if len(fields) < 2 {
			return 0, preBad
		}
		ap, err := netip.ParseAddrPort(string(fields[1]))
		if err == nil {
			t.res.ProxyHost, t.res.ProxyPort = ap.Addr().String(), ap.Port()
		} else if i := bytes.LastIndexByte(fields[1], ':'); i > 0 {
			p, _ := strconv.ParseUint(string(fields[1][i+1:]), 10, 16)
			t.res.ProxyHost, t.res.ProxyPort = string(fields[1][:i]), uint16(p)
		}
		return end + 4, preSkipped
	case len(b) < len("CONNECT ") && bytes.HasPrefix([]byte("CONNECT "), b):
		return 0, preWait
	case b[0] == 4:
		return t.socks4Request(b)
	case b[0] == 5:
		return t.socks5Request(b)
	}
	return 0, preNone
}

// socks4Request: VER=4 CMD=1 DSTPORT DSTIP USERID\0 [HOST\0 (4a)].
func (t *Tracker) socks4Request(b []byte) (int, preambleResult) {
	if len(b) >= 2 && b[1] != 1 {
		return 0, preNone
	}
	t.res.Proxy = ProxySOCKS4
	if len(b) < 9 {
		return 0, preWait
	}
	user := bytes.IndexByte(b[8:], 0)
	if user < 0 {
		return 0, preWait
	}
	n := 8 + user + 1
	ip := netip.AddrFrom4([4]byte(b[4:8]))
	t.res.ProxyPort = binary.BigEndian.Uint16(b[2:4])
	if a := ip.As4(); a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] != 0 { // 4a: a name follows
		host := bytes.IndexByte(b[n:], 0)
		if host < 0 {
			return 0, preWait
		}
		t.res.Proxy, t.res.ProxyHost = ProxySOCKS4a, string(b[n:n+host])
		return n + host + 1, preSkipped
	}
	t.res.ProxyHost = ip.String()
	return n, preSkipped
}

// socks5Request: the greeting (VER=5 NMETHODS METHODS) and then the
// request (VER=5 CMD=1 RSV ATYP ADDR PORT).
func (t *Tracker) socks5Request(b []byte) (int, preambleResult) {
	if len(b) >= 2 && (b[1] == 0 || b[1] > 16) {
		return 0, preNone
	}
	t.res.Proxy = ProxySOCKS5
	if len(b) < 2 || len(b) < 2+int(b[1]) {
		return 0, preWait
	}
	off := 2 + int(b[1])
	n, host, port, r := socks5Addr(b[off:], 1)
	if r != preSkipped {
		return 0, r
	}
	t.res.ProxyHost, t.res.ProxyPort = host, port
	return off + n, preSkipped
}

// socks5Addr reads a SOCKS5 request or reply (VER=5 CODE RSV ATYP ADDR
// PORT) whose CODE must be code.
func socks5Addr(b []byte, code byte) (n int, host string, port uint16, r preambleResult) {
	if len(b) < 5 {
		return 0, "", 0, preWait
	}
	if b[0] != 5 || b[1] != code {
		return 0, "", 0, preBad
	}
	switch b[3] {
	case 1:
		n = 4 + 4
	case 4:
		n = 4 + 16
	case 3:
		n = 4 + 1 + int(b[4])
	default:
		return 0, "", 0, preBad
	}
	if len(b) < n+2 {
		return 0, "", 0, preWait
	}
	switch b[3] {
	case 1:
		host = netip.AddrFrom4([4]byte(b[4:8])).String()
	case 4:
		host = netip.AddrFrom16([16]byte(b[4:20])).String()
	case 3:
		host = string(b[5:n])
	}
	return n + 2, host, binary.BigEndian.Uint16(b[n : n+2]), preSkipped
}

// serverPreamble skips the proxy's answers; a refusal is preBad.
func (t *Tracker) serverPreamble(b []byte) (int, preambleResult) {
	switch t.res.Proxy {
	case ProxyHTTPConnect:
		end := bytes.Index(b, []byte("\r\n\r\n"))
		if end < 0 {
			return 0, preWait
		}
		// "HTTP/1.1 200 Connection established": any 2xx opens the tunnel.
		if !bytes.HasPrefix(b, []byte("HTTP/1.")) || len(b) < 12 || b[9] != '2' {
			return 0, preBad
		}
		return end + 4, preSkipped
	case ProxySOCKS4, ProxySOCKS4a:
		if len(b) < 8 {
			return 0, preWait
		}
		if b[0] != 0 || b[1] != 0x5a {
			return 0, preBad
		}
		return 8, preSkipped
	case ProxySOCKS5:
		// Method selection (VER=5 METHOD=0, no authentication), then the
		// reply (CODE 0 = succeeded).
		if len(b) < 2 {
			return 0, preWait
		}
		if b[0] != 5 || b[1] != 0 {
			return 0, preBad
		}
		n, _, _, r := socks5Addr(b[2:], 0)
		return 2 + n, r
	}
	return 0, preNone
}
