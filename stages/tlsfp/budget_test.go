package tlsfp

import (
	"net/netip"
	"runtime"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/flow"
	"github.com/pktpipe/pktpipe/stages/reassembly"
)

// stallBytes is what each direction of a stalled flow sends: a handshake
// record announcing 16 KiB, cut short, so the direction holds a full
// buffer (bufSize(stallBytes) = MaxBuffer) and never completes nor
// reaches the cap.
const stallBytes = 16000

// stalledPayload returns a direction's bytes: a TLS handshake record of
// 16384 bytes holding a hello (1: client, 2: server) that never ends.
func stalledPayload(hello byte) []byte {
	b := make([]byte, stallBytes)
	copy(b, []byte{22, 3, 1, 0x40, 0x00, hello, 0x00, 0x3f, 0xfc, 3, 3})
	return b
}

// driver feeds flows through a flow.Processor, as a worker does.
type driver struct {
	proc   *flow.Processor
	em     *pipeline.Emitter
	out    chan *event.Batch
	done   chan struct{}
	events []event.Event
	ts     int64
}

func newDriver(maxFlows int, as ...flow.Analyzer) *driver {
	d := &driver{out: make(chan *event.Batch, 64), done: make(chan struct{}), ts: 1_700_000_000e9}
	d.em = pipeline.NewEmitter(d.out)
	d.proc = flow.NewProcessor(flow.Config{Workers: 1, MaxFlows: maxFlows, Stats: stats.NewRegistry()}, as...)
	go func() {
		defer close(d.done)
		for b := range d.out {
			for _, e := range b.Events {
				if _, ok := e.(*event.Flow); !ok {
					d.events = append(d.events, e)
				}
			}
		}
	}()
	return d
}

// seg sends one TCP segment of flow i (client 10.a.b.c:port to server
// 192.0.2.1:443), from the client or from the server.
func (d *driver) seg(i int, fromClient bool, flags uint8, seq uint32, payload []byte) {
	cli := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	srv := netip.AddrFrom4([4]byte{192, 0, 2, 1})
	sp, dp := uint16(40000+i%20000), uint16(443)
	if !fromClient {
		cli, srv, sp, dp = srv, cli, dp, sp
	}
	d.ts += 1000
	p := packet.Packet{Data: payload, Timestamp: d.ts, IfIndex: -1, OrigLen: uint32(54 + len(payload)), Meta: packet.Meta{
		IPVersion: 4, Src: cli, Dst: srv, Proto: packet.ProtoTCP, SrcPort: sp, DstPort: dp,
		HasL4: true, TCPFlags: flags, Seq: seq, PayloadLen: uint16(len(payload)),
	}}
	d.proc.Packet(&p, d.em)
}

// handshake opens flow i (SYN, SYN-ACK) and sends client and server in
// MSS-sized segments, interleaved as a real exchange would be.
func (d *driver) handshake(i int, client, server []byte) {
	const mss = 1448
	d.seg(i, true, 0x02, 1000, nil)
	d.seg(i, false, 0x12, 5000, nil)
	for off := 0; off < max(len(client), len(server)); off += mss {
		if off < len(client) {
			d.seg(i, true, 0x18, 1001+uint32(off), client[off:min(off+mss, len(client))])
		}
		if off < len(server) {
			d.seg(i, false, 0x18, 5001+uint32(off), server[off:min(off+mss, len(server))])
		}
	}
}

func (d *driver) finish() {
	d.proc.Flush(d.ts, d.em)
	d.em.Flush()
	close(d.out)
	<-d.done
}

// liveHeap is the heap in use once garbage is collected.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestBudgetBoundsStalledHandshakes is issue 19's case: 100k flows, each
// holding an incomplete 16 KiB handshake in both directions. Without a
// budget that is 3.2 GB of buffers; with one, the heap stays within the
// budget plus the flow table (measured on the same flows without
// payload), the oldest buffers are given up, and a real handshake that
// comes after still reads in full.
func TestBudgetBoundsStalledHandshakes(t *testing.T) {
	flows := 100_000
	if testing.Short() {
		flows = 10_000
	}
	// The default split over 4 workers: what one worker of a 4-worker
	// process gets.
	limit := reassembly.PerWorker(reassembly.DefaultProcessBytes, 4)
	client, server := stalledPayload(1), stalledPayload(2)

	// Unbounded, on a few flows: what one stalled flow costs.
	const few = 2000
	base := liveHeap()
	d := newDriver(few, NewAnalyzer())
	for i := range few {
		d.handshake(i, client, server)
	}
	perFlow := (liveHeap() - base) / few
	d.finish()
	d = nil
	t.Logf("unbounded: %d B of heap per stalled flow (2 directions of %d B); %d flows would take %.1f GiB",
		perFlow, stallBytes, flows, float64(perFlow)*float64(flows)/(1<<30))
	if perFlow < 2*MaxBuffer {
		t.Fatalf("a stalled flow costs %d B: the handshakes did not stall in both directions", perFlow)
	}

	// The flow table and trackers alone: the same flows, SYNs only.
	base = liveHeap()
	d = newDriver(flows, New(Config{Budget: reassembly.NewBudget(limit, nil)}))
	for i := range flows {
		d.seg(i, true, 0x02, 1000, nil)
		d.seg(i, false, 0x12, 5000, nil)
	}
	table := liveHeap() - base
	d.finish()
	d = nil
	// A tracker is made at a flow's first payload, so SYNs alone do not
	// make one: add the trackers of the stalled flows below, measured.
	base = liveHeap()
	trackers := make([]*Tracker, flows)
	for i := range trackers {
		trackers[i] = new(Tracker)
	}
	table += liveHeap() - base
	runtime.KeepAlive(trackers)

	// Stalled handshakes within the budget.
	reg := stats.NewRegistry()
	budget := reassembly.NewBudget(limit, reg)
	base = liveHeap()
	d = newDriver(flows, New(Config{Budget: budget}))
	var peak, peakInuse uint64
	var m runtime.MemStats
	for i := range flows {
		d.handshake(i, client, server)
		if budget.Used() > limit {
			t.Fatalf("flow %d: %d bytes in use, budget %d", i, budget.Used(), limit)
		}
		if i%10_000 == 9_999 {
			runtime.ReadMemStats(&m) // before GC: garbage included
			peakInuse = max(peakInuse, m.HeapInuse)
			peak = max(peak, liveHeap()-base)
		}
	}
	ceiling := table + uint64(limit) + uint64(limit)/20 // 5%: pools, size classes
	t.Logf("%d stalled flows, budget %d MiB: peak live heap %.1f MiB (flow table and trackers %.1f MiB + budget %d MiB = %.1f MiB), peak HeapInuse %.1f MiB; %d buffers given up",
		flows, limit>>20, mib(peak), mib(table), limit>>20, mib(table+uint64(limit)), mib(peakInuse), budget.GivenUp())
	if peak > ceiling {
		t.Fatalf("peak live heap %.1f MiB over the budget plus the flow table (%.1f MiB)", mib(peak), mib(ceiling))
	}
	if v, _ := reg.Value("pktpipe_reassembly_bytes"); int64(v) != budget.Used() || v < float64(limit)*0.9 {
		t.Fatalf("bytes gauge %v, in use %d: the budget should be nearly full", v, budget.Used())
	}
	// Every direction beyond what the budget holds was given up.
	if want := uint64(2*flows) - uint64(limit/MaxBuffer); budget.GivenUp() < want {
		t.Fatalf("%d given up, want at least %d", budget.GivenUp(), want)
	}
	if v, _ := reg.Value("pktpipe_reassembly_given_up_total"); uint64(v) != budget.GivenUp() {
		t.Fatalf("given up counter %v", v)
	}

	// A real handshake after the flood: it gets room and reads in full.
	hc, hs, _ := helloFlow(t)
	d.handshake(flows, hc, hs)
	d.finish()
	if budget.Used() != 0 {
		t.Fatalf("%d bytes still held after every flow ended", budget.Used())
	}
	var got *event.TLS
	for _, e := range d.events {
		if te, ok := e.(*event.TLS); ok {
			if got != nil {
				t.Fatalf("more than one tls event: the stalled flows must give none (no hello was read)")
			}
			got = te
		}
	}
	want := refJA4(t, hc, 0)
	if got == nil || got.JA4 != want || got.JA3SHash == "" || got.Truncated {
		t.Fatalf("handshake after the flood: %+v, want ja4 %s with ja3s", got, want)
	}
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// newBudgetTracker returns a tracker sharing sc, whose pool holds b.
func newBudgetTracker(sc *Scratch, b *reassembly.Budget) *Tracker {
	sc.bufs.bud = b
	return &Tracker{Scratch: sc}
}

// TestGivenUpDirectionEndsTruncated: when the budget takes a direction's
// buffer for a younger one, that direction ends as if it had hit the cap:
// the tracker reports what it read, marked truncated, and frees nothing
// twice.
func TestGivenUpDirectionEndsTruncated(t *testing.T) {
	client, _, isn := helloFlow(t)
	want := refJA4(t, client, isn)
	var sc Scratch
	b := reassembly.NewBudget(MaxBuffer+MaxBuffer/2, nil)
	old := newBudgetTracker(&sc, b)
	old.Segment(ToServer, isn, 0x02, nil, 0)
	old.Segment(ToClient, 5000, 0x12, nil, 0)
	old.Segment(ToServer, isn+1, 0x18, client, 1) // the hello is read
	stalled := stalledPayload(2)
	old.Segment(ToClient, 5001, 0x18, stalled, 2) // the server's flight stalls
	if b.Used() != MaxBuffer {
		t.Fatalf("%d bytes in use, want the stalled direction's %d", b.Used(), MaxBuffer)
	}
	young := newBudgetTracker(&sc, b)
	young.Segment(ToServer, 1, 0x02, nil, 0)
	young.Segment(ToServer, 2, 0x18, stalledPayload(1), 3)
	if b.GivenUp() != 1 || b.Used() != MaxBuffer {
		t.Fatalf("given up %d, in use %d: the older buffer should have made room", b.GivenUp(), b.Used())
	}
	if old.half[ToClient].buf != nil || old.state[ToClient] != stDone {
		t.Fatal("the given-up direction kept its buffer or its state")
	}
	// Later bytes of that direction are ignored; the flow's end reports.
	old.Segment(ToClient, 5001+stallBytes, 0x18, []byte{1}, 4)
	if old.half[ToClient].buf != nil || b.Used() != MaxBuffer {
		t.Fatal("a given-up direction took more bytes")
	}
	e := old.Event(event.Header{})
	if e == nil || e.JA4 != want || !e.Truncated || e.Server != nil {
		t.Fatalf("event %+v: want the client's ja4 %s, truncated", e, want)
	}
	old.Release()
	young.Release()
	if b.Used() != 0 {
		t.Fatalf("%d bytes in use after release", b.Used())
	}
}

// TestBudgetRefusesOversizedBuffer: a budget smaller than one buffer
// refuses it; the direction is given up, truncated, without panicking.
func TestBudgetRefusesOversizedBuffer(t *testing.T) {
	client, _, isn := helloFlow(t)
	var sc Scratch
	b := reassembly.NewBudget(minBuf-1, nil)
	tr := newBudgetTracker(&sc, b)
	tr.Segment(ToServer, isn, 0x02, nil, 0)
	tr.Segment(ToServer, isn+1, 0x18, client, 1)
	tr.Segment(ToServer, isn+1+uint32(len(client)), 0x18, client, 2)
	if tr.state[ToServer] != stDone || !tr.Result().Truncated || tr.half[ToServer].buf != nil || b.GivenUp() != 1 || b.Used() != 0 {
		t.Fatalf("truncated %v, buf %d, given up %d, used %d", tr.Result().Truncated, cap(tr.half[ToServer].buf), b.GivenUp(), b.Used())
	}
}

// TestPendingSegmentsAccounted: out-of-order copies count in the budget
// until they are taken, and are cut at the cap.
func TestPendingSegmentsAccounted(t *testing.T) {
	client, _, isn := helloFlow(t)
	want := refJA4(t, client, isn)
	var sc Scratch
	b := reassembly.NewBudget(1<<20, nil)
	tr := newBudgetTracker(&sc, b)
	tr.Segment(ToServer, isn, 0x02, nil, 0)
	n := uint32(len(client))
	tr.Segment(ToServer, isn+1+n/2, 0x18, client[n/2:], 1) // ahead: held
	if got := b.Used(); got != int64(n-n/2) {
		t.Fatalf("%d bytes in use with one held copy of %d", got, n-n/2)
	}
	tr.Segment(ToServer, isn+1, 0x18, client[:n/2], 2)
	wantJA4(t, tr, want)
	h := &tr.half[ToServer]
	if b.Used() != int64(cap(h.buf)) || h.pendBytes != 0 {
		t.Fatalf("%d bytes in use, buffer %d, pending %d", b.Used(), cap(h.buf), h.pendBytes)
	}
	// A segment far ahead is kept only up to the cap.
	var tr2 Tracker
	tr2.Segment(ToServer, 0, 0x02, nil, 0)
	tr2.Segment(ToServer, 1+MaxBuffer-100, 0x18, make([]byte, 1400), 1)
	if p := tr2.half[ToServer].pending; len(p) != 1 || len(p[0].data) != 100 {
		t.Fatalf("held copy not cut at the cap: %v", len(p))
	}
}

// TestNoAllocPerSegmentWithBudget: with the pool warm, a whole stalled
// direction (segments, buffer growth, eviction, release) allocates
// nothing.
func TestNoAllocPerSegmentWithBudget(t *testing.T) {
	var sc Scratch
	b := reassembly.NewBudget(4*MaxBuffer, nil)
	trs := make([]*Tracker, 8)
	for i := range trs {
		trs[i] = newBudgetTracker(&sc, b)
	}
	stalled := stalledPayload(1)
	feed := func(tr *Tracker) {
		tr.Segment(ToServer, 0, 0x02, nil, 0)
		for off := 0; off < len(stalled); off += 1448 {
			tr.Segment(ToServer, 1+uint32(off), 0x18, stalled[off:min(off+1448, len(stalled))], 1)
		}
	}
	i := 0
	run := func() {
		tr := trs[i%len(trs)]
		tr.Release()
		*tr = Tracker{Scratch: &sc}
		feed(tr) // gives up the oldest once the budget is full
		i++
	}
	for range 2 * len(trs) {
		run() // warm the pool
	}
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Fatalf("%v allocations per stalled direction", n)
	}
	if b.GivenUp() == 0 {
		t.Fatal("the budget never filled")
	}
}
