package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

func TestTwoSinksGetEveryEventAndAFailedOneIsDropped(t *testing.T) {
	reg := stats.NewRegistry()
	good, bad := &memSink{}, &memSink{failAt: 2}
	src := &sliceSource{frames: traffic(600, 2)}
	e, _ := newEngine(t, Config{Workers: 2, Stats: reg}, src,
		Output{Name: "file", Sink: good}, Output{Name: "kafka", Sink: bad})
	res, err := e.Run(context.Background())
	if err == nil || !errorsMention(err, "sink kafka") {
		t.Fatalf("error %v does not name the failed sink", err)
	}
	if len(good.events) != 600 || res.Events != 600 {
		t.Fatalf("the healthy sink got %d events of %d", len(good.events), res.Events)
	}
	failed, _ := reg.Value(`pktpipe_sink_failed_events_total{sink="kafka"}`)
	okFailed, _ := reg.Value(`pktpipe_sink_failed_events_total{sink="file"}`)
	if int(failed)+len(bad.events) != 600 || okFailed != 0 {
		t.Fatalf("kafka delivered %d and lost %v of 600; file lost %v", len(bad.events), failed, okFailed)
	}
	if r := res.Sinks[1]; r.Name != "kafka" || r.Delivered != uint64(len(bad.events)) || r.Lost != uint64(failed) || r.Err == nil {
		t.Fatalf("kafka result %+v", r)
	}
	if !good.closed || !bad.closed || src.closed.Load() != 1 {
		t.Fatalf("closed: file %v kafka %v source %d times", good.closed, bad.closed, src.closed.Load())
	}
}

func errorsMention(err error, s string) bool {
	return err != nil && contains(err.Error(), s)
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// batchProc emits one event per batch it processes, so that sinks are
// written while the source still runs.
type batchProc struct{}

func (batchProc) Process(b *packet.Batch, out *Emitter) {
	out.Emit(&countEvent{n: len(b.Packets)})
}
func (batchProc) Flush(int64, *Emitter) {}

// runUntilStopped runs a live-like source that waits forever once it has
// sent its packets: only the engine itself can stop it.
func runUntilStopped(t *testing.T, reg *stats.Registry, sink Sink) (Result, *sliceSource, error) {
	t.Helper()
	src := &sliceSource{frames: traffic(100, 4), block: 300}
	e, err := New(Config{Workers: 2, Stats: reg}, Parts{
		Sources:      []Source{src},
		NewDecoder:   func() Decoder { return testDecoder{} },
		NewProcessor: func(int) Processor { return batchProc{} },
		Sinks:        []Output{{Name: "out", Sink: sink}},
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Run(context.Background())
	return res, src, err
}

func TestNoSinkLeftStopsTheInput(t *testing.T) {
	reg := stats.NewRegistry()
	res, src, err := runUntilStopped(t, reg, &memSink{failAt: 1})
	if err == nil || len(res.Losses) == 0 {
		t.Fatalf("err %v, losses %v", err, res.Losses)
	}
	if src.closed.Load() != 1 {
		t.Fatal("source not closed")
	}
}

// goneSink fails its first Write as stdout does when `| head` exits.
type goneSink struct{ memSink }

func (s *goneSink) Write([]event.Event) error {
	return fmt.Errorf("write stdout: %w", ErrReaderGone)
}

func TestReaderGoneStopsQuietly(t *testing.T) {
	reg := stats.NewRegistry()
	res, _, err := runUntilStopped(t, reg, &goneSink{})
	if err != nil || len(res.Losses) != 0 {
		t.Fatalf("err %v losses %v: a reader that left is not a failure", err, res.Losses)
	}
	if r := res.Sinks[0]; !r.ReaderGone || r.Lost != res.Events || r.Lost == 0 || r.Delivered != 0 {
		t.Fatalf("result %+v, events %d", r, res.Events)
	}
}

// bufferSink accepts events into a buffer and loses the buffer on a
// later failure, reporting it as a LostError.
type bufferSink struct {
	memSink
	buffered uint64
	failAt   int
	n        int
}

func (s *bufferSink) Write(evs []event.Event) error {
	s.n++
	if s.n == s.failAt {
		lost := s.buffered
		s.buffered = 0
		return &LostError{Accepted: lost, Err: errors.New("no space left on device")}
	}
	s.buffered += uint64(len(evs))
	return nil
}

func TestEventsLostFromASinksBufferAreCounted(t *testing.T) {
	reg := stats.NewRegistry()
	sink := &bufferSink{failAt: 2}
	e, _ := newEngine(t, Config{Workers: 1, Stats: reg}, &sliceSource{frames: traffic(1000, 2)}, Output{Name: "file", Sink: sink})
	res, _ := e.Run(context.Background())
	r := res.Sinks[0]
	if r.Delivered != 0 || r.Lost != 1000 || res.Events != 1000 {
		t.Fatalf("delivered %d + lost %d, want 0 + 1000 (events %d)", r.Delivered, r.Lost, res.Events)
	}
}

type countTap struct {
	mu       sync.Mutex
	seen     map[int64]int
	closed   atomic.Int32
	observed atomic.Int64
}

type countObserver struct{ t *countTap }

func (t *countTap) NewObserver() PacketObserver { return countObserver{t} }
func (t *countTap) Close() error                { t.closed.Add(1); return nil }
func (o countObserver) Observe(p *packet.Packet) {
	o.t.mu.Lock()
	o.t.seen[p.Timestamp]++
	o.t.mu.Unlock()
	o.t.observed.Add(1)
}

type evenFilter struct{}

func (evenFilter) Match(p *packet.Packet) bool { return p.Timestamp%2000 == 0 }

func TestTapSeesEachFilteredPacketOnce(t *testing.T) {
	tap := &countTap{seen: map[int64]int{}}
	frames := traffic(100, 4)
	e, err := New(Config{Workers: 3, Stats: stats.NewRegistry()}, Parts{
		Sources:    []Source{&sliceSource{frames: frames}},
		NewDecoder: func() Decoder { return testDecoder{} },
		NewFilter:  func() Filter { return evenFilter{} },
		Taps:       []Tap{tap},
		NewProcessor: func(int) Processor {
			return &countProc{own: &owner{worker: map[packet.FlowKey]int{}}, counts: map[packet.FlowKey]int{}, seen: map[packet.FlowKey]bool{}}
		},
		Sink: &memSink{},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := tap.observed.Load(); n != int64(len(frames)/2) || len(tap.seen) != len(frames)/2 {
		t.Fatalf("tap saw %d packets (%d distinct), want %d", n, len(tap.seen), len(frames)/2)
	}
	if tap.closed.Load() != 1 {
		t.Fatal("tap not closed once")
	}
}
