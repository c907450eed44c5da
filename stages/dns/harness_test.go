package dns_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sinks/memsink"
	"github.com/pktpipe/pktpipe/sources/pcapfile"
	"github.com/pktpipe/pktpipe/stages/decode"
	"github.com/pktpipe/pktpipe/stages/dns"
	"github.com/pktpipe/pktpipe/stages/flow"
	"github.com/pktpipe/pktpipe/stages/reassembly"
	"github.com/pktpipe/pktpipe/stages/rtt"
	"github.com/pktpipe/pktpipe/stages/tcpstate"
)

// runPcap runs the real engine (pcapfile → decode → flow with tcpstate,
// dns and rtt → memsink) on file and returns the events, decoded, and the
// registry. budget is the worker's reassembly budget (0: default).
func runPcap(t testing.TB, file string, budget int64) ([]map[string]any, *stats.Registry) {
	t.Helper()
	reg := stats.NewRegistry()
	src, err := pcapfile.New(pcapfile.Config{Files: []string{file}, Stats: reg})
	if err != nil {
		t.Fatal(err)
	}
	if budget == 0 {
		budget = reassembly.DefaultProcessBytes
	}
	sink := memsink.New(nil)
	eng, err := pipeline.New(pipeline.Config{Workers: 1, Stats: reg}, pipeline.Parts{
		Sources:    []pipeline.Source{src},
		NewDecoder: func() pipeline.Decoder { return decode.New() },
		NewProcessor: func(w int) pipeline.Processor {
			r := rtt.New(rtt.Config{Stats: reg})
			d := dns.New(r, reg)
			d.SetBudget(reassembly.NewBudget(budget, reg))
			return flow.NewProcessor(flow.Config{Workers: 1, Stats: reg}, tcpstate.New(), d, r)
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
		d := json.NewDecoder(bytes.NewReader(l))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		out = append(out, m)
	}
	return out, reg
}

func ofType(evs []map[string]any, typ string) []map[string]any {
	var out []map[string]any
	for _, e := range evs {
		if e["event_type"] == typ {
			out = append(out, e)
		}
	}
	return out
}

// get follows a dotted path with [i] indexes ("dns.answers[0].rrname").
func get(v any, path string) (any, bool) {
	for path != "" {
		var key string
		if i := indexAny(path, ".["); i >= 0 {
			key, path = path[:i], path[i:]
		} else {
			key, path = path, ""
		}
		if key != "" {
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = m[key]; !ok {
				return nil, false
			}
		}
		switch {
		case len(path) > 0 && path[0] == '.':
			path = path[1:]
		case len(path) > 0 && path[0] == '[':
			end := indexAny(path, "]")
			n := 0
			for _, c := range path[1:end] {
				n = n*10 + int(c-'0')
			}
			path = path[end+1:]
			if len(path) > 0 && path[0] == '.' {
				path = path[1:]
			}
			a, ok := v.([]any)
			if !ok || n >= len(a) {
				return nil, false
			}
			v = a[n]
		}
	}
	return v, true
}

func indexAny(s, chars string) int {
	for i := 0; i < len(s); i++ {
		for j := 0; j < len(chars); j++ {
			if s[i] == chars[j] {
				return i
			}
		}
	}
	return -1
}
