package http

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/flow"
	"github.com/pktpipe/pktpipe/stages/reassembly"
)

func newTracker(budget int64) (*tracker, *Analyzer, *reassembly.Budget) {
	reg := stats.NewRegistry()
	b := reassembly.NewBudget(budget, reg)
	a := New(b, reg)
	return a.get(), a, b
}

// held is what a tracker holds for its flow: buffers, held segments,
// queued transactions.
func (t *tracker) held() int {
	n := 0
	for i := range t.d {
		n += cap(t.d[i].buf) + t.d[i].pendBytes
	}
	return n + 64*len(t.queue)
}

// stream feeds data on a direction in segments of n bytes, in order,
// from sequence number 1; it returns the largest held() seen.
func stream(t *tracker, dir flow.Dir, data []byte, n int) int {
	peak := 0
	seq := uint32(1)
	if t.d[dir].started {
		seq = t.d[dir].next
	}
	for len(data) > 0 {
		k := min(n, len(data))
		t.segment(&t.d[dir], dir, seq, 0, data[:k])
		seq += uint32(k)
		data = data[k:]
		peak = max(peak, t.held())
	}
	return peak
}

func events(a *Analyzer) []event.HTTP {
	var out []event.HTTP
	for _, e := range a.out {
		out = append(out, *e)
	}
	return out
}

func TestTransactions(t *testing.T) {
	tr, a, b := newTracker(1 << 20)
	req := "GET /one HTTP/1.1\r\nHost: Example.COM:8080\r\nUser-Agent: ua/1\r\nReferer: http://r/\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n" +
		"POST /two HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello" +
		"POST /three HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
		"HEAD /four HTTP/1.1\r\nHost: example.com\r\n\r\n" +
		"GET http://proxy.example:3128/five HTTP/1.1\r\nHost: other\r\n\r\n"
	resp := "HTTP/1.1 100 Continue\r\n\r\n" +
		"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 3\r\n\r\nabc" +
		"HTTP/1.1 301 Moved\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n" +
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nwxyz\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: t\r\n\r\n" +
		"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n" + // HEAD: no body follows
		"HTTP/1.0 404 Not Found\r\n\r\nnot here"
	for _, n := range []int{1, 3, 17, 1400} {
		a.out = nil
		stream(tr, flow.ToServer, []byte(req), n)
		stream(tr, flow.ToClient, []byte(resp), n)
		tr.flush(nil, nil)
		got := events(a)
		want := []event.HTTP{
			{TxID: 0, Hostname: "example.com", Port: 8080, URL: "/one", UserAgent: "ua/1", Referer: "http://r/", XFF: "1.2.3.4", Method: "GET", Protocol: "HTTP/1.1", Status: 200, ContentType: "text/html", Length: 3},
			{TxID: 1, Hostname: "example.com", URL: "/two", Method: "POST", Protocol: "HTTP/1.1", Status: 301, Redirect: "/elsewhere"},
			{TxID: 2, Hostname: "example.com", URL: "/three", Method: "POST", Protocol: "HTTP/1.1", Status: 200, Length: 20},
			{TxID: 3, Hostname: "example.com", URL: "/four", Method: "HEAD", Protocol: "HTTP/1.1", Status: 200},
			{TxID: 4, Hostname: "proxy.example", Port: 3128, URL: "http://proxy.example:3128/five", Method: "GET", Protocol: "HTTP/1.1", Status: 404, Length: 8},
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("segments of %d:\n got %+v\nwant %+v", n, got, want)
		}
		a.put(tr)
		if b.Used() != 0 {
			t.Fatalf("budget holds %d", b.Used())
		}
		tr = a.get()
	}
}

// TestCaps: an endless header line, 10,000 headers, a 1 GB body and
// chunked body, too many header lines, and a deep pipeline keep what a
// flow holds at its caps, and each cap is counted.
func TestCaps(t *testing.T) {
	for _, c := range []struct {
		name    string
		dir     flow.Dir
		data    func() []byte
		cap     int
		bodyLen uint64
	}{
		{"endless header line", flow.ToServer, func() []byte {
			return append([]byte("GET / HTTP/1.1\r\nX-Long: "), bytes.Repeat([]byte("a"), 1<<20)...)
		}, capHeaderBytes, 0},
		{"10000 headers", flow.ToServer, func() []byte {
			return []byte("GET / HTTP/1.1\r\n" + strings.Repeat("X-H: v\r\n", 10000) + "\r\n")
		}, capHeaderBytes, 0},
		{"300 header lines", flow.ToServer, func() []byte {
			return []byte("GET / HTTP/1.1\r\n" + strings.Repeat("a:\r\n", 300) + "\r\n")
		}, capHeaderCount, 0},
		{"endless chunk-size line", flow.ToClient, func() []byte {
			return append([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), bytes.Repeat([]byte("1"), 1<<16)...)
		}, capHeaderBytes, 0},
		{"pipeline", flow.ToServer, func() []byte {
			return bytes.Repeat([]byte("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), 40)
		}, capPipeline, 0},
	} {
		tr, a, b := newTracker(1 << 20)
		peak := stream(tr, c.dir, c.data(), 1400)
		if peak > MaxHeaderBytes+8+64*maxQueue {
			t.Errorf("%s: %d bytes held", c.name, peak)
		}
		if v := a.caps[c.cap].Load(); v != 1 {
			t.Errorf("%s: cap %s counted %d times, want 1", c.name, capNames[c.cap], v)
		}
		a.put(tr)
		if b.Used() != 0 {
			t.Errorf("%s: budget holds %d after release", c.name, b.Used())
		}
	}
}

// TestHugeBodies: a 1 GB Content-Length body and a 1 GB chunked body are
// skipped, never buffered: nothing is held while they stream, and their
// lengths are exact.
func TestHugeBodies(t *testing.T) {
	const size = 1 << 30
	block := bytes.Repeat([]byte("z"), 64<<10)
	for _, chunked := range []bool{false, true} {
		tr, a, b := newTracker(1 << 20)
		stream(tr, flow.ToServer, []byte("GET /big HTTP/1.1\r\nHost: h\r\n\r\n"), 1400)
		h := "HTTP/1.1 200 OK\r\nContent-Length: " + fmt.Sprint(size) + "\r\n\r\n"
		if chunked {
			h = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
		}
		stream(tr, flow.ToClient, []byte(h), 1400)
		peak := 0
		for sent := 0; sent < size; sent += len(block) {
			if chunked {
				peak = max(peak, stream(tr, flow.ToClient, []byte(fmt.Sprintf("%x\r\n", len(block))), 1400))
			}
			peak = max(peak, stream(tr, flow.ToClient, block, len(block)))
			if chunked {
				peak = max(peak, stream(tr, flow.ToClient, []byte("\r\n"), 2))
			}
		}
		if chunked {
			stream(tr, flow.ToClient, []byte("0\r\n\r\n"), 5)
		}
		if peak > 1024+64 {
			t.Errorf("chunked=%v: %d bytes held while skipping the body", chunked, peak)
		}
		evs := events(a)
		if len(evs) != 1 || evs[0].Length != size || evs[0].Status != 200 {
			t.Errorf("chunked=%v: events %+v", chunked, evs)
		}
		a.put(tr)
		if b.Used() != 0 {
			t.Errorf("budget holds %d", b.Used())
		}
	}
}

func FuzzTracker(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"), []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), uint8(5), uint8(0))
	f.Add([]byte("GET /\r\n"), []byte("HTTP/1.0 101 Switching\r\n\r\n"), uint8(1), uint8(3))
	f.Add([]byte("CONNECT h:443 HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\n\r\n\x16\x03"), uint8(200), uint8(2))
	f.Fuzz(func(t *testing.T, req, resp []byte, step, skip uint8) {
		tr, a, b := newTracker(4 << 10)
		n := int(step)%64 + 1
		seq := [2]uint32{0xfffffff0, 100}
		data := [2][]byte{req, resp}
		for i := 0; len(data[0])+len(data[1]) > 0; i++ {
			d := flow.Dir(i & 1)
			k := min(n, len(data[d]))
			s := seq[d]
			if skip != 0 && i%int(skip) == 0 {
				s += uint32(k)
			}
			tr.segment(&tr.d[d], d, s, 0, data[d][:k])
			tr.acked(&tr.d[d^1], d^1, seq[d^1]+uint32(i%3))
			seq[d] += uint32(k)
			data[d] = data[d][k:]
			if tr.held() > 2*(MaxHeaderBytes+8)+2*maxPending*64+64*maxQueue {
				t.Fatalf("holds %d", tr.held())
			}
		}
		tr.flush(nil, nil)
		a.put(tr)
		if b.Used() != 0 {
			t.Fatalf("budget holds %d", b.Used())
		}
	})
}

func FuzzParseHead(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: [::1]:80\r\nContent-Length: 5"), true)
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked"), false)
	f.Fuzz(func(t *testing.T, b []byte, request bool) {
		var h head
		if parseHead(b, request, &h) {
			if _, p := hostPort(h.host); p < 0 || p > 65535 {
				t.Fatalf("port %d", p)
			}
			if a := uriAuthority(h.uri, h.method == "CONNECT"); len(a) > len(h.uri) {
				t.Fatalf("authority %q longer than %q", a, h.uri)
			}
		}
		headerEnd(b, 0)
		parseChunkSize(b)
	})
}

// TestBodyAllocs: skipping a body allocates nothing per segment.
func TestBodyAllocs(t *testing.T) {
	tr, _, _ := newTracker(1 << 20)
	stream(tr, flow.ToServer, []byte("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), 1400)
	stream(tr, flow.ToClient, []byte("HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n"), 1400)
	seg := bytes.Repeat([]byte("b"), 1400)
	h := &tr.d[flow.ToClient]
	n := testing.AllocsPerRun(1000, func() {
		tr.segment(h, flow.ToClient, h.next, 0, seg)
	})
	if n != 0 {
		t.Fatalf("%v allocations per body segment", n)
	}
}
