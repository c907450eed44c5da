package app_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/app"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/stages/flow"
)

const sample = "../../testdata/sample.pcap"

// packetCount is a throw-away analyzer, registered from this test package
// only: it adds {"t_packets": N} to every flow record. Nothing else in the
// tree knows it.
type packetCount struct {
	slot int
	step int
}

type countOptions struct{ step int }

func (o *countOptions) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&o.step, "t-count-step", 1, "what each packet adds")
}

type countExt struct{ n int }

func (countExt) Key() string             { return "t_packets" }
func (c countExt) Encode(w event.Writer) { w.Int(int64(c.n)) }

func (a *packetCount) SetSlot(i int) { a.slot = i }
func (a *packetCount) Packet(f *flow.Flow, _ *packet.Packet, _ flow.Dir, _ *pipeline.Emitter) {
	n, _ := f.State(a.slot).(int)
	f.SetState(a.slot, n+a.step)
}
func (a *packetCount) ICMPError(*flow.Flow, *packet.Packet, *pipeline.Emitter) {}
func (a *packetCount) End(f *flow.Flow, rec *event.Flow, _ *pipeline.Emitter) {
	n, _ := f.State(a.slot).(int)
	rec.Extra = append(rec.Extra, countExt{n})
}

func init() {
	flow.RegisterAnalyzer(flow.AnalyzerSpec{
		Name: "t_count", Order: 99,
		NewOptions: func() registry.Options { return &countOptions{} },
		New: func(o registry.Options, _ flow.AnalyzerEnv) (flow.Analyzer, error) {
			return &packetCount{step: o.(*countOptions).step}, nil
		},
	})
}

func run(t *testing.T, o app.Options) []map[string]any {
	t.Helper()
	var out bytes.Buffer
	o.Files, o.Stdout, o.Workers = []string{sample}, &out, 2
	p, err := app.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	var evs []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, m)
	}
	return evs
}

func TestThrowAwayAnalyzerRunsWithItsOwnFlag(t *testing.T) {
	var o app.Options
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	o.RegisterFlags(fs)
	if err := fs.Parse([]string{"--analyzers", "t_count", "--t-count-step", "2"}); err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, ev := range run(t, o) {
		if ev["event_type"] != "flow" {
			t.Fatalf("only flow records expected with t_count alone: %v", ev["event_type"])
		}
		f := ev["flow"].(map[string]any)
		n, ok := ev["t_packets"].(float64)
		if !ok || n != 2*(f["pkts_toserver"].(float64)+f["pkts_toclient"].(float64)) {
			t.Fatalf("t_packets %v for flow %v", ev["t_packets"], f)
		}
		total += n
	}
	if total == 0 {
		t.Fatal("the throw-away analyzer saw no packet")
	}
}

func TestAnalyzersDNSBringsRTT(t *testing.T) {
	types := map[string]int{}
	for _, ev := range run(t, app.Options{Analyzers: []string{"dns"}}) {
		types[ev["event_type"].(string)]++
		if _, ok := ev["tls"]; ok {
			t.Fatal("tls ran although only dns was asked for")
		}
	}
	// dns needs rtt: its query timings come out as rtt events.
	if types["dns"] == 0 || types["rtt"] == 0 || types["tls"] != 0 {
		t.Fatalf("event types %v: want dns and rtt (dns needs rtt), no tls", types)
	}
}

func TestUnknownAnalyzerIsAUsageError(t *testing.T) {
	err := app.Check(&app.Options{Files: []string{sample}, Analyzers: []string{"nope"}})
	if !registry.IsUsage(err) || !strings.Contains(err.Error(), `unknown analyzer "nope"`) {
		t.Fatalf("%v", err)
	}
}

// TestGCTarget: the heap may grow by half of what is live or by
// GCHeadroom, whichever is more; a heap under 4 MB counts as 4.
func TestGCTarget(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 1600}, {4 << 20, 1600}, {32 << 20, 200}, {64 << 20, 100},
		{128 << 20, 50}, {129 << 20, 50}, {1 << 30, 50},
	} {
		if got := app.GCTarget(c.live); got != c.want {
			t.Errorf("GCTarget(%d MiB) = %d, want %d", c.live>>20, got, c.want)
		}
	}
}

// TestTuneGC: without GOGC in the environment the collector's target
// follows the live heap after each collection; with GOGC set, it is left
// alone.
func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	gogc := func() int {
		s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
		metrics.Read(s)
		return int(s[0].Value.Uint64())
	}
	t.Setenv("GOGC", "77") // restored after the test
	debug.SetGCPercent(77)
	app.TuneGC()()
	runtime.GC()
	if got := gogc(); got != 77 {
		t.Errorf("with GOGC set, the target became %d", got)
	}
	os.Unsetenv("GOGC")
	stop := app.TuneGC()
	defer stop()
	debug.SetGCPercent(1) // what the tuner must replace at the next collection
	keep := make([]byte, 40<<20)
	deadline := time.Now().Add(10 * time.Second)
	for gogc() == 1 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(time.Millisecond) // the cleanup runs on its own goroutine
	}
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(live)
	if got, want := gogc(), app.GCTarget(live[0].Value.Uint64()); got != want {
		t.Errorf("after a collection with %d MiB live the target is %d, want %d", live[0].Value.Uint64()>>20, got, want)
	}
	runtime.KeepAlive(keep)
}
