package features_test

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
	"github.com/pktpipe/pktpipe/stages/features"
	"github.com/pktpipe/pktpipe/stages/flow"
)

// runPcap runs the real engine (pcapfile → decode → flow table with the
// features analyzer → memsink) with the flow timeouts to (zero fields:
// the defaults) and returns the flow records, or the engine's error.
func runPcap(t testing.TB, file string, splt int, to flow.Timeouts) ([]map[string]any, error) {
	t.Helper()
	reg := stats.NewRegistry()
	src, err := pcapfile.New(pcapfile.Config{Files: []string{file}, Stats: reg})
	if err != nil {
		t.Fatal(err)
	}
	sink := memsink.New(nil)
	eng, err := pipeline.New(pipeline.Config{Workers: 1, Stats: reg}, pipeline.Parts{
		Sources:    []pipeline.Source{src},
		NewDecoder: func() pipeline.Decoder { return decode.New() },
		NewProcessor: func(int) pipeline.Processor {
			return flow.NewProcessor(flow.Config{Workers: 1, Stats: reg, Timeouts: to}, features.New(splt))
		},
		Sink: sink,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Run(context.Background()); err != nil {
		return nil, err
	}
	var out []map[string]any
	for _, l := range sink.Lines() {
		var m map[string]any
		d := json.NewDecoder(bytes.NewReader(l))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		if m["event_type"] == "flow" {
			out = append(out, m)
		}
	}
	return out, nil
}
