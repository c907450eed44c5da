// Package eventid checks event_id (pipeline/event/id.go) on real output:
// every event has one, no two events of a run share one, and a run with
// 1 worker and one with 4 give every event the same id. It runs on every
// conformance capture and on a bench-generator capture (200k packets; the
// 2M-packet bench capture with PKTPIPE_EVENTID_BENCH=PATH, as
// `make event-id-check` does).
package eventid

import (
	"bufio"
	"bytes"
	"encoding/json"
	"hash/fnv"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/pktpipe/pktpipe/bench/gen"
	"github.com/pktpipe/pktpipe/internal/app"
	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	_ "github.com/pktpipe/pktpipe/sinks/all"
	_ "github.com/pktpipe/pktpipe/sources/all"
	_ "github.com/pktpipe/pktpipe/stages/all"
)

// run is one run's events: event_id -> a hash of the event's line, and
// how many events there were.
type run struct {
	ids    map[string]uint64
	events int
	dups   []string // lines whose id an earlier event had
}

var idRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

// runFile runs pktpipe in-process on file with every analyzer.
func runFile(t *testing.T, file string, workers int) run {
	t.Helper()
	var out bytes.Buffer
	o := app.Options{Files: []string{file}, Stdout: &out, Workers: workers, SensorName: "sensor-a",
		Analyzers: []string{"all", "features"}, Stats: stats.NewRegistry()}
	p, err := app.Build(o)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	_, _ = p.Run(t.Context()) // a truncated capture's error is part of its output
	r := run{ids: map[string]uint64{}}
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var ev struct {
			EventID string `json:"event_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || !idRE.MatchString(ev.EventID) {
			t.Fatalf("%s: event without a 16-hex-digit event_id (%v): %.300s", file, err, sc.Bytes())
		}
		h := fnv.New64a()
		h.Write(sc.Bytes())
		if _, dup := r.ids[ev.EventID]; dup {
			r.dups = append(r.dups, sc.Text())
		}
		r.ids[ev.EventID] = h.Sum64()
		r.events++
	}
	return r
}

// check runs file with 1 and 4 workers and returns the events and the
// distinct ids of the first run.
func check(t *testing.T, file string) (events, distinct int) {
	t.Helper()
	one := runFile(t, file, 1)
	four := runFile(t, file, 4)
	name := filepath.Base(file)
	for _, r := range []run{one, four} {
		if len(r.dups) > 0 {
			t.Errorf("%s: %d events, %d distinct event_ids; shared by e.g. %.300s", name, r.events, len(r.ids), r.dups[0])
		}
	}
	if one.events != four.events || len(one.ids) != len(four.ids) {
		t.Errorf("%s: %d events with 1 worker, %d with 4", name, one.events, four.events)
	}
	for id, line := range one.ids {
		if other, ok := four.ids[id]; !ok || other != line {
			t.Errorf("%s: event_id %s names another event (or none) with 4 workers", name, id)
			break
		}
	}
	return one.events, len(one.ids)
}

func TestEventIDConformance(t *testing.T) {
	var total, distinct int
	files := testenv.ConformanceCaptures(t)
	for _, f := range files {
		n, d := check(t, f)
		total += n
		distinct += d
	}
	t.Logf("%d conformance captures: %d events, %d distinct event_ids (each capture's own), the same with 1 and 4 workers", len(files), total, distinct)
}

// TestEventIDBench uses the bench generator's mix (TLS, QUIC, DNS, ICMP
// errors, scans, bulk).
func TestEventIDBench(t *testing.T) {
	file := os.Getenv("PKTPIPE_EVENTID_BENCH")
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
	n, d := check(t, file)
	t.Logf("%s: %d events, %d distinct event_ids, the same with 1 and 4 workers", filepath.Base(file), n, d)
}
