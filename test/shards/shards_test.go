// Package shards checks --shard I/N: for N = 1, 2, 3 and 5, the union of
// the shards' events equals one unsharded run's, on every conformance
// capture and on a bench-generator capture (the full 2M-packet bench
// capture with PKTPIPE_SHARD_BENCH=PATH, as `make shard-check` does).
package shards

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pktpipe/pktpipe/bench/gen"
	"github.com/pktpipe/pktpipe/internal/app"
	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	_ "github.com/pktpipe/pktpipe/sinks/all"
	_ "github.com/pktpipe/pktpipe/sources/all"
	_ "github.com/pktpipe/pktpipe/stages/all"
	"github.com/pktpipe/pktpipe/stages/probe"
)

var shardCounts = []int{1, 2, 3, 5}

// events runs pktpipe in-process on file and returns its JSON lines, sorted.
// Scan detection is off in every run, the reference included: it is an
// aggregate across flows that --shard turns off (see stages/probe).
func events(t *testing.T, file string, workers int, shard pipeline.Shard, analyzers []string) ([]string, *stats.Registry) {
	t.Helper()
	var out bytes.Buffer
	o := app.Options{Files: []string{file}, Stdout: &out, Workers: workers, Shard: shard, Analyzers: analyzers, Stats: stats.NewRegistry()}
	noScan := probe.NewOptions()
	noScan.Scan = false
	o.Components = map[string]registry.Options{"analyzer:probe": noScan}
	p, err := app.Build(o)
	if err != nil {
		t.Fatalf("%s shard %v: %v", file, shard.String(), err)
	}
	_, runErr := p.Run(t.Context())
	_ = runErr // a truncated capture's error is part of its output, the same in every run
	var lines []string
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	slices.Sort(lines)
	return lines, o.Stats
}

// checkUnion runs file unsharded, then as N shards for each N, and fails
// unless the shards' events together are exactly the reference's (the same
// multiset: nothing missing, nothing twice).
func checkUnion(t *testing.T, file string, workers int, analyzers []string) {
	t.Helper()
	want, _ := events(t, file, workers, pipeline.Shard{}, analyzers)
	for _, n := range shardCounts {
		var got []string
		var other uint64
		for i := range n {
			lines, reg := events(t, file, workers, pipeline.Shard{Index: i, Count: n}, analyzers)
			got = append(got, lines...)
			other += counter(reg, "pktpipe_dispatch_skipped_total", "other_shard")
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s, %d shards, %d workers: %d events, want %d; first difference: %s",
				filepath.Base(file), n, workers, len(got), len(want), firstDiff(got, want))
		}
		if n == 1 && other != 0 {
			t.Errorf("%s: shard 0/1 skipped %d packets", filepath.Base(file), other)
		}
	}
}

func counter(reg *stats.Registry, name, reason string) uint64 {
	var n uint64
	for _, s := range reg.Snapshot() {
		if s.Name == name && slices.Contains(s.Labels, reason) {
			n += uint64(s.Value)
		}
	}
	return n
}

func firstDiff(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return "got " + got[i] + "\nwant " + want[i]
		}
	}
	if len(got) > len(want) {
		return "extra " + got[len(want)]
	}
	if len(want) > len(got) {
		return "missing " + want[len(got)]
	}
	return "none"
}

func TestShardsUnionConformance(t *testing.T) {
	for _, f := range testenv.ConformanceCaptures(t) {
		checkUnion(t, f, 2, nil)
	}
}

// TestShardsUnionBench uses the bench generator's mix (TLS, QUIC, DNS,
// ICMP errors, scans, bulk), 200k packets here; PKTPIPE_SHARD_BENCH names
// a bigger capture (make shard-check gives it the 2M-packet one).
func TestShardsUnionBench(t *testing.T) {
	file := os.Getenv("PKTPIPE_SHARD_BENCH")
	if file == "" {
		file = filepath.Join(t.TempDir(), "bench.pcap")
		f, err := os.Create(file)
		if err != nil {
			t.Fatal(err)
		}
		w := bufio.NewWriter(f)
		if _, err := gen.Write(w, gen.Config{Seed: 1, Packets: 200_000}, gen.Format{}); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	for _, workers := range []int{1, 4} {
		checkUnion(t, file, workers, []string{"all", "features"})
	}
}
