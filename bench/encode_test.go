package bench

import (
	"io"
	"log/slog"
	"runtime"
	"testing"

	"github.com/pktpipe/pktpipe/internal/app"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sinks/encode"
)

// keeper is a sink that keeps the events it is given.
type keeper struct{ evs []event.Event }

func (k *keeper) Write(evs []event.Event) error { k.evs = append(k.evs, evs...); return nil }
func (k *keeper) Flush() error                  { return nil }
func (k *keeper) Close() error                  { return nil }

// BenchmarkEncodeEvents encodes the events of a 200k-packet bench capture
// (every analyzer and the flow features on, as `make bench-compare` runs
// them) with each format's encoder: the output goroutine's whole job, on
// the real mix of event types, without the pipeline's noise around it.
func BenchmarkEncodeEvents(b *testing.B) {
	file := capture(b, 200_000)
	var k keeper
	p, err := app.Build(app.Options{
		Files: []string{file}, Sink: &k, Format: "json",
		Workers: runtime.NumCPU(), FlowCap: 1 << 20, Stats: stats.NewRegistry(),
		Analyzers: []string{"all", "features"},
		Log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := p.Engine.Run(b.Context()); err != nil {
		b.Fatal(err)
	}
	for _, format := range []string{encode.FormatJSON, encode.FormatMsgpack} {
		b.Run(format, func(b *testing.B) {
			enc, err := encode.New(format)
			if err != nil {
				b.Fatal(err)
			}
			var buf []byte
			var size int
			for b.Loop() {
				size = 0
				for _, ev := range k.evs {
					buf = enc.Append(buf[:0], ev)
					size += len(buf)
				}
			}
			b.SetBytes(int64(size))
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(k.evs)), "ns/event")
			b.ReportMetric(float64(len(k.evs)), "events")
		})
	}
}
