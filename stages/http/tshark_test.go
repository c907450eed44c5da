package http

import (
	"crypto/sha256"
	"encoding/json"
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
// host, URI and user agent, and the final responses' codes (1xx left out,
// as pktpipe skips interim responses), paired in order. It reads tshark's
// JSON, where a packet carrying several pipelined messages has one http
// object for each.
func tsharkHTTP(t *testing.T, file string, ports ...int) map[string][]req {
	t.Helper()
	args := []string{"-r", file, "-Y", "http.request or http.response", "-T", "json", "--no-duplicate-keys", "-J", "ip ipv6 tcp http"}
	for _, p := range ports {
		args = append(args, "-d", fmt.Sprintf("tcp.port==%d,http", p))
	}
	out, err := exec.Command("tshark", args...).Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	var pkts []struct {
		Source struct {
			Layers map[string]any `json:"layers"`
		} `json:"_source"`
	}
	if err := json.Unmarshal(out, &pkts); err != nil {
		t.Fatalf("tshark json: %v", err)
	}
	reqs := map[string][]req{}
	codes := map[string][]string{}
	for _, pk := range pkts {
		l := pk.Source.Layers
		ipl := l["ip"]
		if ipl == nil {
			ipl = l["ipv6"]
		}
		src, dst := field(last(ipl), "ip.src", "ipv6.src"), field(last(ipl), "ip.dst", "ipv6.dst")
		tcp := last(l["tcp"])
		sp, dp := field(tcp, "tcp.srcport"), field(tcp, "tcp.dstport")
		hs, ok := l["http"].([]any)
		if !ok {
			hs = []any{l["http"]}
		}
		for _, h := range hs {
			if uri := field(h, "http.request.uri"); uri != "" {
				k := src + ":" + sp + " -> " + dst + ":" + dp
				reqs[k] = append(reqs[k], req{host: field(h, "http.host"), uri: uri, ua: field(h, "http.user_agent")})
			}
			if c := field(h, "http.response.code"); c != "" && !(len(c) == 3 && c[0] == '1' && c != "101") {
				k := dst + ":" + dp + " -> " + src + ":" + sp
				codes[k] = append(codes[k], c)
			}
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

// last is v, or the last element of v when tshark gave an array (the
// innermost header of a tunnel).
func last(v any) any {
	if a, ok := v.([]any); ok && len(a) > 0 {
		return a[len(a)-1]
	}
	return v
}

// field finds the first of names anywhere in a tshark JSON object.
func field(v any, names ...string) string {
	m, ok := v.(map[string]any)
	if !ok {
		return ""
	}
	for _, n := range names {
		if s, ok := m[n].(string); ok {
			return s
		}
	}
	for _, c := range m {
		if s := field(c, names...); s != "" {
			return s
		}
	}
	return ""
}

func pktpipeHTTP(t *testing.T, file string) map[string][]req {
	t.Helper()
	return viewsOf(runHTTP(t, file))
}

func viewsOf(evs []map[string]any) map[string][]req {
	out := map[string][]req{}
	str := func(ev map[string]any, k string) string {
		v, ok := svtest.Lookup(ev, k)
		if !ok {
			return ""
		}
		return fmt.Sprint(v)
	}
	for _, ev := range evs {
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

// TestTsharkConformance: on the suricata-verify HTTP/1 captures, every
// transaction tshark dissects has pktpipe's host, URI, user agent and
// status (host compared without case: pktpipe lower-cases it as libhtp;
// an absolute-URI request's host is the URI's in pktpipe, as libhtp, and
// the Host header's in tshark: not compared).
func TestTsharkConformance(t *testing.T) {
	testenv.NeedCommand(t, "tshark")
	mergecap := testenv.NeedCommand(t, "mergecap")
	root := testenv.Conformance(t, "suricata-verify", "tests")
	tests, err := svtest.Load(root)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var files []string
	for _, tc := range tests {
		has := false
		for _, c := range tc.Check {
			has = has || c.Match["event_type"] == "http"
		}
		if !has || strings.HasPrefix(tc.Name, "http2") || tc.Pcap == "" || seen[filepath.Clean(tc.Pcap)] {
			continue
		}
		raw, err := os.ReadFile(tc.Pcap)
		if err != nil {
			continue
		}
		// The same capture is copied under several tests: once is enough.
		sum := fmt.Sprintf("%x", sha256.Sum256(raw))
		seen[filepath.Clean(tc.Pcap)] = true
		if seen[sum] {
			continue
		}
		seen[sum] = true
		files = append(files, filepath.Clean(tc.Pcap))
	}
	slices.Sort(files)
	// pktpipe on each; captures merged in batches of distinct connections
	// for tshark (it takes seconds to start).
	got := map[string]map[string][]req{}
	var batches [][]string
	var batchKeys []map[string]bool
	ports := map[int]bool{}
	for _, f := range files {
		evs, err := svtest.RunErr(f, mkHTTP)
		if err != nil {
			continue // a truncated capture
		}
		got[f] = viewsOf(evs)
		for k := range got[f] {
			var p int
			fmt.Sscan(k[strings.LastIndexByte(k, ':')+1:], &p)
			ports[p] = true
		}
		placed := false
		for i, keys := range batchKeys {
			clash := false
			for k := range got[f] {
				clash = clash || keys[k]
			}
			if !clash {
				batches[i] = append(batches[i], f)
				for k := range got[f] {
					keys[k] = true
				}
				placed = true
				break
			}
		}
		if !placed {
			keys := map[string]bool{}
			for k := range got[f] {
				keys[k] = true
			}
			batches, batchKeys = append(batches, []string{f}), append(batchKeys, keys)
		}
	}
	var portList []int
	for p := range ports {
		if p != 0 {
			portList = append(portList, p)
		}
	}
	slices.Sort(portList)
	n, conns := 0, 0
	for i, b := range batches {
		merged := filepath.Join(t.TempDir(), fmt.Sprintf("merged%d.pcapng", i))
		if out, err := exec.Command(mergecap, append([]string{"-a", "-w", merged}, b...)...).CombinedOutput(); err != nil {
			t.Fatalf("mergecap: %v\n%s", err, out)
		}
		want := tsharkHTTP(t, merged, portList...)
		for _, f := range b {
			for k, g := range got[f] {
				w, ok := want[k]
				if !ok {
					continue // tshark did not dissect it (a gap, a one-sided capture)
				}
				if why, ok := tsharkDiffers[filepath.Base(filepath.Dir(f))]; ok {
					t.Logf("%s %s: not compared: %s", filepath.Base(filepath.Dir(f)), k, why)
					continue
				}
				conns++
				for j := range min(len(w), len(g)) {
					n++
					if !sameReq(w[j], g[j]) {
						t.Errorf("%s %s tx %d: tshark %+v, pktpipe %+v", filepath.Base(filepath.Dir(f)), k, j, w[j], g[j])
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("nothing compared")
	}
	t.Logf("%d captures (%d tshark runs), %d connections, %d transactions compared with tshark", len(files), len(batches), conns, n)
}

// tsharkDiffers: captures where tshark's reading is not Suricata's, and
// pktpipe's is.
var tsharkDiffers = map[string]string{
	// "GET /" then header lines: Suricata's test expects the User-Agent
	// read (not HTTP/0.9); tshark stops at the line without a colon.
	"http-not09": "request line without version followed by headers (Suricata reads them, tshark does not)",
	// Request on VLAN 3136, response untagged: two flows in pktpipe
	// (see TestSuricataVerify's known difference), one connection for
	// tshark.
	"bug-4376": "request and response on different VLANs",
}

func sameReq(w, g req) bool {
	hostOK := strings.EqualFold(w.host, g.host) || w.host == "" ||
		strings.Contains(g.uri, "://") || // absolute URI: pktpipe takes its host, as libhtp
		strings.HasPrefix(g.host, strings.ToLower(w.host)+":") // CONNECT: pktpipe adds the authority's port
	return hostOK && w.uri == g.uri && w.ua == g.ua && (w.code == "" || w.code == g.code || len(w.code) != 3)
}
