package tlsfp

import (
	"testing"

	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/reassembly"
)

// BenchmarkHandshake measures parsing and fingerprinting one ClientHello
// and one ServerHello (JA3, JA4 in four forms, JA3S) with a warm Scratch:
// "recalled" when the Scratch remembers the fingerprints (TLS stacks it
// has met), "computed" when it does not.
func BenchmarkHandshake(b *testing.B) {
	ch, sh := helloBodies(b)
	for _, recall := range []bool{true, false} {
		name := map[bool]string{true: "recalled", false: "computed"}[recall]
		b.Run(name, func(b *testing.B) {
			var s Scratch
			b.ReportAllocs()
			for b.Loop() {
				if s.ch.Parse(ch) != nil || s.sh.Parse(sh) != nil {
					b.Fatal("parse")
				}
				if recall {
					_ = s.Client(&s.ch)
					_ = s.Server(&s.sh)
				} else {
					_ = s.client(&s.ch)
					_ = s.server(&s.sh)
				}
			}
		})
	}
}

// BenchmarkTracker measures a whole handshake through the tracker:
// reassembly, parsing, fingerprints and the kept result.
func BenchmarkTracker(b *testing.B) {
	client, server, isn := helloFlow(b)
	var s Scratch
	b.ReportAllocs()
	for b.Loop() {
		tr := Tracker{Scratch: &s}
		tr.Segment(ToServer, isn, 0x02, nil, 0)
		tr.Segment(ToServer, isn+1, 0x18, client, 1)
		if !tr.Segment(ToClient, 5001, 0x18, server, 2) {
			b.Fatal("not done")
		}
	}
}

// BenchmarkStalledDirection: 12 MSS-sized segments of a handshake that
// never completes, on a fresh tracker with a warm pool (the per-packet
// path: sequence checks, copies, buffer growth), without a budget and
// with a full one (every direction gives up the oldest).
func BenchmarkStalledDirection(b *testing.B) {
	stalled := stalledPayload(1)
	for _, c := range []struct {
		name   string
		budget *reassembly.Budget
	}{
		{"unlimited", nil},
		{"budget", reassembly.NewBudget(4*MaxBuffer, nil)},
		{"budget+metrics", reassembly.NewBudget(4*MaxBuffer, stats.NewRegistry())},
	} {
		b.Run(c.name, func(b *testing.B) {
			var sc Scratch
			trs := make([]*Tracker, 8)
			for i := range trs {
				trs[i] = newBudgetTracker(&sc, c.budget)
			}
			b.SetBytes(int64(len(stalled)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				tr := trs[i%len(trs)]
				i++
				tr.Release()
				*tr = Tracker{Scratch: &sc}
				tr.Segment(ToServer, 0, 0x02, nil, 0)
				for off := 0; off < len(stalled); off += 1448 {
					tr.Segment(ToServer, 1+uint32(off), 0x18, stalled[off:min(off+1448, len(stalled))], 1)
				}
			}
		})
	}
}
