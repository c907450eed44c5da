package tlsfp

import "testing"

// BenchmarkHandshake measures parsing and fingerprinting one ClientHello
// and one ServerHello (JA3, JA4 in four forms, JA3S) with a warm Scratch.
func BenchmarkHandshake(b *testing.B) {
	ch, sh := helloBodies(b)
	var s Scratch
	b.ReportAllocs()
	for b.Loop() {
		if s.ch.Parse(ch) != nil || s.sh.Parse(sh) != nil {
			b.Fatal("parse")
		}
		_ = s.Client(&s.ch)
		_ = s.Server(&s.sh)
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
