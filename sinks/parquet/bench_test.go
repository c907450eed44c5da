package parquet_test

import (
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/pktpipe/pktpipe/internal/app"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/sinks/encode"
	"github.com/pktpipe/pktpipe/sinks/file"
	"github.com/pktpipe/pktpipe/sinks/parquet"
)

// collector keeps the events the pipeline hands its sink (events are not
// reused once written; only their slice is).
type collector struct{ events []event.Event }

func (c *collector) Write(evs []event.Event) error { c.events = append(c.events, evs...); return nil }
func (c *collector) Flush() error                  { return nil }
func (c *collector) Close() error                  { return nil }

// pipelineEvents runs a synthetic capture of n packets through every
// analyzer, flow features and SPLT included, and returns its events.
func pipelineEvents(tb testing.TB, n int) []event.Event {
	tb.Helper()
	capture, _ := synth(tb, n)
	var o app.Options
	fs := flag.NewFlagSet("pktpipe", flag.ContinueOnError)
	o.RegisterFlags(fs)
	must(tb, fs.Parse([]string{"-r", capture, "--workers", "2", "--analyzers", "all,features", "--splt", "10"}))
	c := &collector{}
	o.Sink = c
	p, err := app.Build(o)
	must(tb, err)
	defer p.Close()
	_, err = p.Run(tb.Context())
	must(tb, err)
	return c.events
}

// writeAll writes events in the engine's batch size.
func writeAll(tb testing.TB, s pipeline.Sink, events []event.Event) {
	for i := 0; i < len(events); i += event.MaxBatchEvents {
		must(tb, s.Write(events[i:min(i+event.MaxBatchEvents, len(events))]))
	}
}

func mallocs() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.Mallocs
}

// TestNoAllocationsPerEvent: once its buffers have grown, the sink
// allocates nothing per event beyond what the events' own Encode methods
// allocate (which the JSON encoder pays as well), plus a few allocations
// per file it begins. Row groups are kept from being written here: that
// is parquet-go's work, once per row group.
func TestNoAllocationsPerEvent(t *testing.T) {
	events := pipelineEvents(t, 30_000)
	s, err := parquet.New(parquet.Config{Dir: t.TempDir(), RowGroupBytes: 1 << 30})
	must(t, err)
	for range 2 { // grow the buffers, then complete the files
		writeAll(t, s, events)
		must(t, s.Reopen())
	}
	enc := encode.NewJSON()
	buf := make([]byte, 0, 1<<20)
	for _, e := range events { // warm
		buf = enc.Append(buf[:0], e)
	}
	m0 := mallocs()
	for _, e := range events {
		buf = enc.Append(buf[:0], e)
	}
	m1 := mallocs()
	writeAll(t, s, events)
	m2 := mallocs()
	must(t, s.Close())
	jsonAllocs, pqAllocs := m1-m0, m2-m1
	const perFile = 25 // a file for each of a few event types
	if pqAllocs > jsonAllocs+perFile*8 {
		t.Errorf("%d events: the Parquet sink allocated %d times, the JSON encoder %d", len(events), pqAllocs, jsonAllocs)
	}
	t.Logf("%d events: Parquet sink %d allocations, JSON encoder alone %d", len(events), pqAllocs, jsonAllocs)
}

// reopener is a sink that completes its files on demand (SIGHUP).
type reopener interface {
	pipeline.Sink
	Reopen() error
}

// cpuNS is the process's CPU time (user and system) so far.
func cpuNS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkSinks writes the events of a synthetic capture (every
// analyzer, features, SPLT 10) with the JSON file sink (plain and zstd)
// and with the Parquet sink (default row groups, zstd). Each pass writes
// every event and completes the files (Reopen, as SIGHUP or a rotation
// does: footer, fsync, rename), so the cost is the sink's whole cost per
// event in steady state. cpu-ns/event is the process's CPU time (user and
// system, GC included), which a loaded machine inflates less than
// ns/event; B/event is the output's size.
func BenchmarkSinks(b *testing.B) {
	events := pipelineEvents(b, 200_000)
	dir := b.TempDir()
	size := func() int64 {
		var n int64
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") {
				continue // a file in progress
			}
			fi, _ := e.Info()
			n += fi.Size()
			os.Remove(filepath.Join(dir, e.Name()))
		}
		return n
	}
	run := func(b *testing.B, s reopener) {
		b.ReportAllocs()
		writeAll(b, s, events) // grow the buffers
		must(b, s.Reopen())
		size()
		var bytes, cpu int64
		for b.Loop() {
			c0 := cpuNS()
			writeAll(b, s, events)
			must(b, s.Reopen())
			cpu += cpuNS() - c0
			b.StopTimer()
			bytes += size()
			b.StartTimer()
		}
		must(b, s.Close())
		n := float64(b.N) * float64(len(events))
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/event")
		b.ReportMetric(float64(cpu)/n, "cpu-ns/event")
		b.ReportMetric(float64(bytes)/n, "B/event")
	}
	b.Run("json-file", func(b *testing.B) {
		s, err := file.New(file.Config{Path: filepath.Join(dir, "events.json")})
		must(b, err)
		run(b, s)
	})
	b.Run("json-file-zstd", func(b *testing.B) {
		s, err := file.New(file.Config{Path: filepath.Join(dir, "events.json"), Compress: "zstd"})
		must(b, err)
		run(b, s)
	})
	for _, comp := range []string{"zstd", "snappy", "none"} {
		b.Run("parquet-"+comp, func(b *testing.B) {
			s, err := parquet.New(parquet.Config{Dir: dir, Compression: comp})
			must(b, err)
			run(b, s)
		})
	}
	b.Logf("%d events per pass", len(events))
}
