package http

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/flow"
	"github.com/pktpipe/pktpipe/stages/reassembly"
)

// liveHeap is the heap in use after a collection.
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// TestCapsHeap measures what the bad inputs of TestCaps leave on the
// heap: 200 flows at once each get an endless header line (1 MiB), 10,000
// headers, or a 1 GB body (Content-Length and chunked; 20 flows), through
// a budget large enough that only the per-flow caps bound them. The live
// heap per flow, measured by the runtime after a collection, must stay
// within the header cap and the tracker's own size, and each cap must be
// counted once per flow.
func TestCapsHeap(t *testing.T) {
	const trackerSize = 4 << 10 // a tracker, its two halves and queue, with room for the allocator's classes
	line := append([]byte("GET / HTTP/1.1\r\nX-Long: "), bytes.Repeat([]byte("a"), 1<<20)...)
	many := []byte("GET / HTTP/1.1\r\n" + strings.Repeat("X-H: v\r\n", 10000) + "\r\n")
	block := bytes.Repeat([]byte("z"), 64<<10)
	for _, c := range []struct {
		name  string
		flows int
		cap   int // counted once per flow (-1: none)
		feed  func(tr *tracker)
		limit int64 // per flow
	}{
		{"endless header line", 200, capHeaderBytes, func(tr *tracker) { stream(tr, flow.ToServer, line, 1400) }, MaxHeaderBytes + trackerSize},
		{"10000 headers", 200, capHeaderBytes, func(tr *tracker) { stream(tr, flow.ToServer, many, 1400) }, MaxHeaderBytes + trackerSize},
		{"1 GB body, Content-Length", 20, -1, func(tr *tracker) { hugeBody(tr, block, false) }, trackerSize},
		{"1 GB body, chunked", 20, -1, func(tr *tracker) { hugeBody(tr, block, true) }, trackerSize},
	} {
		reg := stats.NewRegistry()
		a := New(reassembly.NewBudget(1<<40, reg), reg)
		trs := make([]*tracker, c.flows)
		before := liveHeap()
		for i := range trs {
			trs[i] = a.get()
			c.feed(trs[i])
		}
		a.out = nil // the events of the body cases: not per-flow state
		per := (liveHeap() - before) / int64(c.flows)
		runtime.KeepAlive(trs)
		t.Logf("%s: %d bytes live per flow (limit %d)", c.name, per, c.limit)
		if per > c.limit {
			t.Errorf("%s: %d bytes live per flow, want at most %d", c.name, per, c.limit)
		}
		if c.cap >= 0 {
			if v := a.caps[c.cap].Load(); v != uint64(c.flows) {
				t.Errorf("%s: cap %s counted %d times, want %d", c.name, capNames[c.cap], v, c.flows)
			}
		}
	}
}

// hugeBody answers a GET with a 1 GB body in 64 KiB segments.
func hugeBody(tr *tracker, block []byte, chunked bool) {
	const size = 1 << 30
	stream(tr, flow.ToServer, []byte("GET /big HTTP/1.1\r\nHost: h\r\n\r\n"), 1400)
	h := "HTTP/1.1 200 OK\r\nContent-Length: " + fmt.Sprint(size) + "\r\n\r\n"
	if chunked {
		h = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	}
	stream(tr, flow.ToClient, []byte(h), 1400)
	size16 := []byte(fmt.Sprintf("%x\r\n", len(block)))
	for sent := 0; sent < size; sent += len(block) {
		if chunked {
			stream(tr, flow.ToClient, size16, 1400)
		}
		stream(tr, flow.ToClient, block, len(block))
		if chunked {
			stream(tr, flow.ToClient, []byte("\r\n"), 2)
		}
	}
}
