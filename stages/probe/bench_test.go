package probe

import (
	"net/netip"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
)

// BenchmarkScanStage: ended attempts through the keyed stage and the
// detector (2 shards), from 4096 clients with 8 attempts each per round:
// the cost per flow record of turning scan detection on. Multiply by the
// flows per packet of a workload for its cost per packet.
func BenchmarkScanStage(b *testing.B) {
	ch := make(chan *event.Batch, 16)
	go func() {
		for bt := range ch {
			bt.Release()
		}
	}()
	d := NewDetector(ScanConfig{})
	k := pipeline.NewKeyed(d.KeyedConfig(2, 8192), func(int) pipeline.KeyedHandler[Record, SourceState] { return NewDetector(ScanConfig{}) })
	k.Start(func() *pipeline.Emitter { return pipeline.NewEmitter(ch) })
	s := k.NewSender()
	dst := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ts := t0 + int64(i)*1000
		r := Record{Src: host(i % 4096), Dst: dst, DPort: uint16(443 + i%8), Proto: 6, Outcome: Open, First: ts, Last: ts}
		s.Send(r.Src, &r)
	}
	s.Flush()
	k.Close()
	close(ch)
}
