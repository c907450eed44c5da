package rtt_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sinks/memsink"
	"github.com/pktpipe/pktpipe/sources/pcapfile"
	"github.com/pktpipe/pktpipe/stages/decode"
	"github.com/pktpipe/pktpipe/stages/dns"
	"github.com/pktpipe/pktpipe/stages/flow"
	"github.com/pktpipe/pktpipe/stages/rtt"
	"github.com/pktpipe/pktpipe/stages/tcpstate"
)

// analyzers is the set internal/app registers (ours only), in its order.
func analyzers(reg *stats.Registry) []flow.Analyzer {
	r := rtt.New(rtt.Config{Stats: reg})
	return []flow.Analyzer{tcpstate.New(), dns.New(r, reg), r}
}

// runPcap runs the real engine (pcapfile → decode → flow with our
// analyzers → memsink) and returns the decoded events.
func runPcap(t testing.TB, file string, workers int) ([]map[string]any, *stats.Registry) {
	t.Helper()
	reg := stats.NewRegistry()
	src, err := pcapfile.New(pcapfile.Config{Files: []string{file}, Stats: reg})
	if err != nil {
		t.Fatal(err)
	}
	sink := memsink.New(nil)
	eng, err := pipeline.New(pipeline.Config{Workers: workers, Stats: reg}, pipeline.Parts{
		Sources:    []pipeline.Source{src},
		NewDecoder: func() pipeline.Decoder { return decode.New() },
		NewProcessor: func(w int) pipeline.Processor {
			return flow.NewProcessor(flow.Config{Workers: workers, Stats: reg}, analyzers(reg)...)
		},
		Sink: sink,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range sink.Lines() {
		var m map[string]any
		d := json.NewDecoder(bytesReader(l))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		out = append(out, m)
	}
	return out, reg
}

func ofType(evs []map[string]any, typ event.Type) []map[string]any {
	var out []map[string]any
	for _, e := range evs {
		if e["event_type"] == string(typ) {
			out = append(out, e)
		}
	}
	return out
}

func obj(e map[string]any, k string) map[string]any {
	m, _ := e[k].(map[string]any)
	return m
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func i64(v any) int64 {
	n, ok := v.(json.Number)
	if !ok {
		return -1
	}
	x, err := n.Int64()
	if err != nil {
		return -1
	}
	return x
}
