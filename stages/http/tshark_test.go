package http

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/stages/appproto/svtest"
)

// serverPy serves 200s with Content-Length, 404, a chunked body, and POST
// (echoes the body's length), HTTP/1.1 keep-alive.
const serverPy = `
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/missing":
            self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers(); return
        if self.path == "/chunked":
            self.send_response(200); self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked"); self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n"); return
        body = b"x" * 1000
        self.send_response(200); self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0")); data = self.rfile.read(n)
        body = b"got %d" % len(data)
        self.send_response(201); self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
`

// clientPy: two pipelined requests in one send, then a request whose
// headers are cut in two segments (TCP_NODELAY, two sends).
const clientPy = `
import socket, sys
port = int(sys.argv[1])
def recv_all(s, want):
    data = b""
    while data.count(b"HTTP/1.1 ") < want:
        d = s.recv(65536)
        if not d: break
        data += d
    return data
s = socket.create_connection(("127.0.0.1", port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.sendall(b"GET /pipe1 HTTP/1.1\r\nHost: pipe.example\r\nUser-Agent: pipeliner/1\r\n\r\nGET /pipe2 HTTP/1.1\r\nHost: pipe.example\r\nUser-Agent: pipeliner/1\r\n\r\n")
recv_all(s, 2)
s.sendall(b"GET /split HTTP/1.1\r\nHost: split.exa")
s.sendall(b"mple:8443\r\nUser-Agent: splitter/2\r\n\r\n")
recv_all(s, 1)
s.close()
`

type req struct{ host, uri, ua, code string }

// tsharkHTTP lists each connection's transactions in order: the requests'
// host, URI and user agent, and the responses' codes, paired in order.
func tsharkHTTP(t *testing.T, file string, ports ...int) map[string][]req {
	t.Helper()
	args := []string{"-r", file, "-Y", "http.request or http.response", "-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=\x1f",
		"-e", "tcp.stream", "-e", "ip.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "tcp.dstport",
		"-e", "http.host", "-e", "http.request.uri", "-e", "http.user_agent", "-e", "http.response.code"}
	for _, p := range ports {
		args = append(args, "-d", fmt.Sprintf("tcp.port==%d,http", p))
	}
	out, err := exec.Command("tshark", args...).Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	reqs := map[string][]req{}
	codes := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "|")
		if len(f) < 9 {
			continue
		}
		// A packet may carry several pipelined requests: the values of
		// each field are joined by the aggregator, one per request.
		k := f[1] + ":" + f[2] + " -> " + f[3] + ":" + f[4]
		if f[6] != "" {
			hosts, uris, uas := strings.Split(f[5], "\x1f"), strings.Split(f[6], "\x1f"), strings.Split(f[7], "\x1f")
			for i, u := range uris {
				r := req{uri: u}
				if i < len(hosts) {
					r.host = hosts[i]
				}
				if i < len(uas) {
					r.ua = uas[i]
				}
				reqs[k] = append(reqs[k], r)
			}
		}
		if f[8] != "" {
			k := f[3] + ":" + f[4] + " -> " + f[1] + ":" + f[2]
			codes[k] = append(codes[k], strings.Split(f[8], "\x1f")...)
		}
	}
	for k, rs := range reqs {
		for i := range rs {
			if i < len(codes[k]) {
				rs[i].code = codes[k][i]
			}
		}
	}
	return reqs
}

func pktpipeHTTP(t *testing.T, file string) map[string][]req {
	t.Helper()
	out := map[string][]req{}
	str := func(ev map[string]any, k string) string {
		v, ok := svtest.Lookup(ev, k)
		if !ok {
			return ""
		}
		return fmt.Sprint(v)
	}
	for _, ev := range runHTTP(t, file) {
		if ev["event_type"] != "http" {
			continue
		}
		k := fmt.Sprintf("%v:%v -> %v:%v", ev["src_ip"], ev["src_port"], ev["dest_ip"], ev["dest_port"])
		host := str(ev, "http.hostname")
		if p := str(ev, "http.http_port"); p != "" {
			host += ":" + p
		}
		out[k] = append(out[k], req{host: host, uri: str(ev, "http.url"), ua: str(ev, "http.http_user_agent"), code: str(ev, "http.status")})
	}
	return out
}

// TestRealHTTP: curl and a python client against a python HTTP/1.1
// server in a namespace of the test's own (port 8080, and 8443 for HTTP
// on another protocol's port): GET, POST, keep-alive, pipelining, 404,
// chunked, headers split over two segments. tshark's http.host,
// http.request.uri, http.user_agent and http.response.code must be
// pktpipe's, transaction by transaction.
func TestRealHTTP(t *testing.T) {
	for _, c := range []string{"curl", "python3", "tshark", "ss"} {
		testenv.NeedCommand(t, c)
	}
	lab := svtest.NewLab(t, 60*time.Second)
	srv := filepath.Join(lab.Dir, "server.py")
	cli := filepath.Join(lab.Dir, "client.py")
	if err := os.WriteFile(srv, []byte(serverPy), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cli, []byte(clientPy), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []int{8080, 8443} {
		lab.Start("python3", srv, fmt.Sprint(p))
	}
	lab.WaitPort(8080)
	lab.WaitPort(8443)
	cap := lab.StartCapture()
	curl := func(args ...string) {
		lab.In(append([]string{"curl", "-sS", "-o", "/dev/null", "--max-time", "10"}, args...)...)
	}
	// Keep-alive: three URLs on one connection.
	curl("-A", "curl-keepalive/1", "http://127.0.0.1:8080/a", "-o", "/dev/null", "http://127.0.0.1:8080/missing", "-o", "/dev/null", "http://127.0.0.1:8080/chunked")
	curl("-A", "curl-post/1", "-H", "Host: post.example", "--data-binary", strings.Repeat("p", 5000), "http://127.0.0.1:8080/upload")
	curl("-A", "curl-8443/1", "http://127.0.0.1:8443/on-8443?q=1")
	lab.In("python3", cli, "8080")
	lab.In("python3", cli, "8443")
	file := cap.Stop(t)
	if os.Getenv("HTTP_DEBUG") != "" {
		out, _ := exec.Command("tshark", "-r", file, "-q", "-z", "conv,tcp").Output()
		t.Log(string(out))
	}

	want := tsharkHTTP(t, file, 8080, 8443)
	got := pktpipeHTTP(t, file)
	n := 0
	for k, w := range want {
		g := got[k]
		if !slices.Equal(g, w) {
			t.Errorf("%s:\n tshark  %+v\n pktpipe %+v", k, w, g)
		}
		n += len(w)
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: pktpipe %+v, tshark nothing", k, g)
		}
	}
	// Body lengths (not in tshark's fields): Content-Length, chunked
	// (de-framed), POST's response.
	lengths := map[string]string{}
	for _, ev := range runHTTP(t, file) {
		if ev["event_type"] == "http" {
			u, _ := svtest.Lookup(ev, "http.url")
			m, _ := svtest.Lookup(ev, "http.http_method")
			l, _ := svtest.Lookup(ev, "http.length")
			lengths[fmt.Sprint(m, " ", u)] = fmt.Sprint(l)
		}
	}
	for k, v := range map[string]string{"GET /a": "1000", "GET /chunked": "19", "GET /missing": "0", "POST /upload": "8", "GET /split": "1000"} {
		if lengths[k] != v {
			t.Errorf("%s: length %q, want %s", k, lengths[k], v)
		}
	}
	if n < 11 {
		t.Errorf("only %d transactions compared", n)
	}
	t.Logf("%d connections, %d transactions equal to tshark's", len(want), n)
}
