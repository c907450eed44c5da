// Package bench holds whole-pipeline benchmarks; the per-stage ones live in
// each stage's package (stages/decode, stages/flow, sources/pcapfile,
// sinks/encode) and `make bench` (bench/cmd/benchrun) is the full-size run.
//
//	go test -run '^$' -bench . ./bench/
//
// Without -bench only TestPipeline runs, on a small capture, to keep the
// benchmark's setup from rotting.
package bench

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	"github.com/pktpipe/pktpipe/bench/gen"
	"github.com/pktpipe/pktpipe/internal/app"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

// capture writes a synthetic capture of n packets (seed 1) into a temp dir.
func capture(tb testing.TB, n int) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "synth.pcap")
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	if _, err := gen.Write(bw, gen.Config{Seed: 1, Packets: n}, gen.Format{}); err != nil {
		tb.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return path
}

// runPipeline runs the pipeline the CLI builds for `pktpipe -r file
// --workers N` (JSON, default flow cap), with its output thrown away
// after encoding (the stdout sink over io.Discard).
func runPipeline(tb testing.TB, file string) pipeline.Result {
	tb.Helper()
	p, err := app.Build(app.Options{
		Files: []string{file}, Outputs: []string{"-"}, Stdout: io.Discard, Format: "json",
		Workers: runtime.NumCPU(), FlowCap: 1 << 20, Stats: stats.NewRegistry(),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		tb.Fatal(err)
	}
	res, err := p.Engine.Run(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

func TestPipeline(t *testing.T) {
	const n = 2000
	res := runPipeline(t, capture(t, n))
	if res.Packets != n || res.Events == 0 || len(res.Losses) != 0 {
		t.Fatalf("result %+v", res)
	}
}

// BenchmarkPipeline runs the whole pipeline over a 100k-packet capture per
// iteration. Besides ns/op it reports packets/s (wall), CPU ns per packet
// (user+sys of the process: the machine is shared, so wall time moves with
// the load) and allocations per packet.
func BenchmarkPipeline(b *testing.B) {
	const n = 100_000
	file := capture(b, n)
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	cpu0 := cpuTime()
	var events uint64
	for b.Loop() {
		res := runPipeline(b, file)
		if res.Packets != n {
			b.Fatalf("read %d packets, want %d", res.Packets, n)
		}
		events = res.Events
	}
	cpu := cpuTime() - cpu0
	runtime.ReadMemStats(&m1)
	pkts := float64(n) * float64(b.N)
	b.ReportMetric(pkts/b.Elapsed().Seconds(), "packets/s")
	b.ReportMetric(float64(cpu)/pkts, "cpu-ns/packet")
	b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/pkts, "allocs/packet")
	b.ReportMetric(float64(events), "events/op")
}

// cpuTime is the process's user+system CPU time in ns.
func cpuTime() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
