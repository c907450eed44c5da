package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

// The engine's tests use a source built from packets made in memory and a
// decoder that reads the fields those packets carry, so they check the
// engine alone; the real pcap source and decoder have their own tests and
// end-to-end tests in cmd/pktpipe.

// synthPkt encodes a tiny fake frame: proto, src, dst (IPv4), sport, dport,
// and for an ICMP error the quoted tuple. testDecoder reads it back.
func synthPkt(proto byte, src, dst [4]byte, sp, dp uint16, quote bool) []byte {
	b := []byte{proto, src[0], src[1], src[2], src[3], dst[0], dst[1], dst[2], dst[3], byte(sp >> 8), byte(sp), byte(dp >> 8), byte(dp), 0}
	if quote {
		b[13] = 1
	}
	return b
}

type testDecoder struct{}

func (testDecoder) DecodeIn(p *packet.Packet, _ *packet.Extra) {
	d := p.Data
	p.Meta = packet.Meta{}
	if len(d) < 14 {
		p.Meta.Err = packet.MalformedTruncatedIP
		return
	}
	m := &p.Meta
	m.IPVersion = 4
	m.Src = netip.AddrFrom4([4]byte(d[1:5]))
	m.Dst = netip.AddrFrom4([4]byte(d[5:9]))
	m.Proto = d[0]
	m.SrcPort = uint16(d[9])<<8 | uint16(d[10])
	m.DstPort = uint16(d[11])<<8 | uint16(d[12])
	if d[13] == 1 { // an ICMP error from dst's router quoting src→dst as the original sender sent it
		m.X = &packet.Extra{}
		q := &m.X.Quote
		q.Present, q.IPVersion, q.HasPorts = true, 4, true
		q.Src, q.Dst, q.Proto, q.SrcPort, q.DstPort = m.Src, m.Dst, m.Proto, m.SrcPort, m.DstPort
		m.Src, m.Dst = netip.AddrFrom4([4]byte{10, 9, 9, 9}), m.Src
		m.Proto, m.SrcPort, m.DstPort, m.ICMPType = packet.ProtoICMP, 0, 0, 3
	}
}

type sliceSource struct {
	frames [][]byte
	// block, when set, makes Run stop after sending this many packets and
	// wait for ctx to be cancelled (a live source with no more traffic).
	block  int
	closed atomic.Int32 // Close calls
}

func (s *sliceSource) Name() string { return "slice" }
func (s *sliceSource) Close() error { s.closed.Add(1); return nil }

func (s *sliceSource) Run(ctx context.Context, pool *packet.Pool, out chan<- *packet.Batch) error {
	return s.run(ctx, pool, func(b *packet.Batch) { out <- b })
}

func (s *sliceSource) run(ctx context.Context, pool *packet.Pool, send func(*packet.Batch)) error {
	b := pool.Get()
	for i, f := range s.frames {
		if s.block > 0 && i == s.block {
			break
		}
		if b.Full(len(f)) {
			send(b)
			b = pool.Get()
		}
		p := b.Append(f)
		p.Timestamp = int64(i+1) * 1000
		p.OrigLen = uint32(len(f))
	}
	send(b)
	if s.block > 0 {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// directSource is sliceSource as a DirectSource: the engine dispatches on
// its goroutine, and never reads its channel.
type directSource struct {
	sliceSource
	direct atomic.Int32 // RunDirect calls
}

func (s *directSource) Run(context.Context, *packet.Pool, chan<- *packet.Batch) error {
	return errors.New("Run called on a DirectSource")
}

func (s *directSource) RunDirect(ctx context.Context, pool *packet.Pool, deliver func(*packet.Batch)) error {
	s.direct.Add(1)
	return s.sliceSource.run(ctx, pool, deliver)
}

// sources returns the channel-fed and the direct form of a sliceSource.
func sources(frames [][]byte, block int) map[string]func() Source {
	return map[string]func() Source{
		"channel": func() Source { return &sliceSource{frames: frames, block: block} },
		"direct":  func() Source { return &directSource{sliceSource: sliceSource{frames: frames, block: block}} },
	}
}

// countEvent is emitted once per flow at Flush.
type countEvent struct {
	event.Header
	n int
}

func (*countEvent) Type() Type                  { return "count" }
func (c *countEvent) EncodeBody(w event.Writer) { w.Key("n"); w.Int(int64(c.n)) }

type Type = event.Type

// owner records which worker saw each canonical flow.
type owner struct {
	mu     sync.Mutex
	worker map[packet.FlowKey]int
	dup    atomic.Int64 // flows seen by two workers
	quoted atomic.Int64 // ICMP errors that reached the worker owning their flow
}

type countProc struct {
	id     int
	own    *owner
	counts map[packet.FlowKey]int
	seen   map[packet.FlowKey]bool
}

func (c *countProc) Process(b *packet.Batch, out *Emitter) {
	for i := range b.Packets {
		m := &b.Packets[i].Meta
		if m.Quoted().Present {
			qk, _ := packet.QuoteKey(m)
			ck, _ := qk.Canonical()
			if c.seen[ck] {
				c.own.quoted.Add(1)
			}
			continue
		}
		k, _ := packet.KeyOf(m)
		ck, _ := k.Canonical()
		c.seen[ck] = true
		c.counts[ck]++
		c.own.mu.Lock()
		if w, ok := c.own.worker[ck]; ok && w != c.id {
			c.own.dup.Add(1)
		}
		c.own.worker[ck] = c.id
		c.own.mu.Unlock()
	}
}

func (c *countProc) Flush(now int64, out *Emitter) {
	for k, n := range c.counts {
		out.Emit(&countEvent{Header: event.Header{SrcIP: k.Src, DestIP: k.Dst, SrcPort: k.SrcPort, DestPort: k.DstPort, Proto: k.Proto, Timestamp: now}, n: n})
	}
}

type memSink struct {
	mu     sync.Mutex
	events []event.Event
	delay  time.Duration
	failAt int // fail the Nth Write (1-based); 0 = never
	writes int
	closed bool
}

func (s *memSink) Write(evs []event.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	if s.failAt > 0 && s.writes >= s.failAt {
		return errors.New("disk full")
	}
	time.Sleep(s.delay)
	s.events = append(s.events, evs...)
	return nil
}
func (s *memSink) Flush() error { return nil }
func (s *memSink) Close() error { s.mu.Lock(); s.closed = true; s.mu.Unlock(); return nil }

// traffic makes nFlows flows of perFlow packets each, interleaved, with an
// ICMP error quoting every 10th flow after its packets.
func traffic(nFlows, perFlow int) [][]byte {
	var out [][]byte
	for i := 0; i < perFlow; i++ {
		for f := 0; f < nFlows; f++ {
			a := [4]byte{10, 0, byte(f >> 8), byte(f)}
			z := [4]byte{10, 1, 0, 1}
			if i%2 == 0 {
				out = append(out, synthPkt(packet.ProtoUDP, a, z, uint16(1000+f), 53, false))
			} else {
				out = append(out, synthPkt(packet.ProtoUDP, z, a, 53, uint16(1000+f), false))
			}
		}
	}
	for f := 0; f < nFlows; f += 10 {
		out = append(out, synthPkt(packet.ProtoUDP, [4]byte{10, 0, byte(f >> 8), byte(f)}, [4]byte{10, 1, 0, 1}, uint16(1000+f), 53, true))
	}
	return out
}

// newEngine builds an engine of the test parts around src and sinks.
func newEngine(t *testing.T, cfg Config, src Source, sinks ...Output) (*Engine, *owner) {
	t.Helper()
	own := &owner{worker: map[packet.FlowKey]int{}}
	e, err := New(cfg, Parts{
		Sources:    []Source{src},
		NewDecoder: func() Decoder { return testDecoder{} },
		NewProcessor: func(i int) Processor {
			return &countProc{id: i, own: own, counts: map[packet.FlowKey]int{}, seen: map[packet.FlowKey]bool{}}
		},
		Sinks: sinks,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e, own
}

func run(t *testing.T, ctx context.Context, cfg Config, src Source, sink *memSink) (Result, *owner, error) {
	t.Helper()
	e, own := newEngine(t, cfg, src, Output{Name: "sink", Sink: sink})
	res, err := e.Run(ctx)
	return res, own, err
}

func TestEveryPacketReachesTheWorkerOwningItsFlow(t *testing.T) {
	const flows, per = 500, 20
	for kind, newSource := range sources(traffic(flows, per), 0) {
		for _, workers := range []int{1, 3, 4} {
			t.Run(fmt.Sprintf("%s/workers=%d", kind, workers), func(t *testing.T) {
				everyPacketReachesItsWorker(t, newSource(), workers, flows, per)
			})
		}
	}
}

func everyPacketReachesItsWorker(t *testing.T, src Source, workers, flows, per int) {
	{
		sink := &memSink{}
		cfg := Config{Workers: workers, BatchPackets: 64, Stats: stats.NewRegistry()}
		res, own, err := run(t, context.Background(), cfg, src, sink)
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := src.(*directSource); ok && d.direct.Load() != 1 {
			t.Fatalf("RunDirect called %d times, want 1", d.direct.Load())
		}
		if want := uint64(flows*per + flows/10); res.Packets != want {
			t.Errorf("workers=%d: read %d packets, want %d", workers, res.Packets, want)
		}
		if len(sink.events) != flows {
			t.Fatalf("workers=%d: %d flow events, want %d", workers, len(sink.events), flows)
		}
		for _, ev := range sink.events {
			if n := ev.(*countEvent).n; n != per {
				t.Fatalf("workers=%d: flow %v has %d packets, want %d", workers, ev.Head().SrcIP, n, per)
			}
		}
		if d := own.dup.Load(); d != 0 {
			t.Errorf("workers=%d: %d flows were split across workers", workers, d)
		}
		if q := own.quoted.Load(); q != int64(flows/10) {
			t.Errorf("workers=%d: %d ICMP errors reached their quoted flow's worker, want %d", workers, q, flows/10)
		}
		if !sink.closed {
			t.Error("sink not closed")
		}
		if len(res.Losses) != 0 {
			t.Errorf("losses: %v", res.Losses)
		}
	}
}

func TestSlowSinkLosesNothing(t *testing.T) {
	// A sink slower than the source: bounded queues must push back, not drop.
	sink := &memSink{delay: 2 * time.Millisecond}
	cfg := Config{Workers: 2, BatchPackets: 16, QueueBatches: 1, Stats: stats.NewRegistry()}
	// 1000 flows × 2 packets: flow events arrive in many batches of 256.
	res, _, err := run(t, context.Background(), cfg, &sliceSource{frames: traffic(1000, 2)}, sink)
	if err != nil {
		t.Fatal(err)
	}
	if len(sink.events) != 1000 || res.Events != 1000 {
		t.Fatalf("sink got %d events (result says %d), want 1000", len(sink.events), res.Events)
	}
}

func TestCancelDrainsWhatWasRead(t *testing.T) {
	for kind, newSource := range sources(traffic(100, 6), 300) {
		t.Run(kind, func(t *testing.T) { cancelDrainsWhatWasRead(t, newSource()) })
	}
}

func cancelDrainsWhatWasRead(t *testing.T, src Source) {
	// A live-like source that delivers 300 packets and then waits: cancelling
	// must stop it, and the 300 packets must still become events.
	ctx, cancel := context.WithCancel(context.Background())
	sink := &memSink{}
	done := make(chan struct{})
	var res Result
	var err error
	reg := stats.NewRegistry()
	e, _ := newEngine(t, Config{Workers: 2, Stats: reg}, src, Output{Name: "sink", Sink: sink})
	go func() {
		res, err = e.Run(ctx)
		close(done)
	}()
	// Cancel once the dispatcher has counted all 300 packets as read.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if v, _ := reg.Value(`pktpipe_source_packets_total{source="slice"}`); v == 300 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("source never delivered its 300 packets")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if err != nil {
		t.Fatalf("cancelled run returned %v", err)
	}
	if res.Packets != 300 {
		t.Fatalf("read %d packets, want 300", res.Packets)
	}
	total := 0
	for _, ev := range sink.events {
		total += ev.(*countEvent).n
	}
	if total != 300 {
		t.Fatalf("events cover %d packets, want 300", total)
	}
}

func TestSinkFailureIsCountedAndReturned(t *testing.T) {
	sink := &memSink{failAt: 1}
	reg := stats.NewRegistry()
	res, _, err := run(t, context.Background(), Config{Workers: 2, Stats: reg}, &sliceSource{frames: traffic(300, 2)}, sink)
	if err == nil {
		t.Fatal("run with a failing sink returned no error")
	}
	failed, _ := reg.Value(`pktpipe_sink_failed_events_total{sink="sink"}`)
	if failed != 300 {
		t.Fatalf("failed events counter = %v, want 300", failed)
	}
	if len(res.Losses) == 0 {
		t.Fatal("result reports no loss")
	}
}

func TestMalformedAndNonFlowPacketsAreCounted(t *testing.T) {
	reg := stats.NewRegistry()
	frames := append(traffic(10, 2), []byte{1, 2, 3}) // too short for testDecoder
	res, _, err := run(t, context.Background(), Config{Workers: 2, Stats: reg}, &sliceSource{frames: frames}, &memSink{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Packets != uint64(len(frames)) {
		t.Fatalf("read %d, want %d", res.Packets, len(frames))
	}
	bad, _ := reg.Value(`pktpipe_decode_malformed_total{reason="truncated_ip"}`)
	skipped, _ := reg.Value(`pktpipe_dispatch_skipped_total{reason="malformed"}`)
	if bad != 1 || skipped != 1 {
		t.Fatalf("malformed=%v skipped=%v, want 1 and 1", bad, skipped)
	}
}

func TestBatchesAreRecycled(t *testing.T) {
	if raceEnabled {
		// make test runs this package without -race too, where it counts.
		t.Skip("under -race, sync.Pool drops a quarter of the batches put back")
	}
	pool := packet.NewPool(4, 1024)
	b := pool.Get()
	for i := 0; i < 4; i++ {
		b.Append([]byte{1, 2, 3})
	}
	if !b.Full(1) {
		t.Fatal("batch of 4 with cap 4 not full")
	}
	b.Release()
	// AllocsPerRun counts the whole process's allocations, and goroutines
	// an earlier test left behind can add some: a batch that is really
	// not recycled shows in three measurements in a row.
	var allocs float64
	for range 3 {
		allocs = testing.AllocsPerRun(1000, func() {
			b := pool.Get()
			b.Append(make([]byte, 0))
			b.Release()
		})
		if allocs == 0 {
			break
		}
	}
	if allocs > 0 {
		t.Fatalf("Get/Append/Release allocates %v per run", allocs)
	}
}
