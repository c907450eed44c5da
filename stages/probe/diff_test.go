package probe

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sinks/encode"
	"github.com/pktpipe/pktpipe/stages/flow"
	"github.com/pktpipe/pktpipe/stages/tcpstate"
)

// FuzzSameAsBefore: FuzzProbe's packets, through a table from too small
// to large enough, give the same records, scan records and counters with
// the analyzer as it is and as it was before its state moved into a
// Column (ref_test.go).
func FuzzSameAsBefore(f *testing.F) {
	f.Add([]byte{0, 0, 2, 1, 0, 1, 1, 18, 2, 1, 0, 0})
	f.Add([]byte{0, 0, 2, 1, 0, 3, 0, 13, 1, 0, 0, 0, 0, 1, 20, 3, 2, 1})
	f.Add([]byte{2, 0, 8, 0, 0, 0, 3, 1, 8, 0, 0, 0, 2, 1, 0, 0, 0, 0})
	f.Fuzz(sameAsBefore)
}

// TestSameAsBefore runs the comparison on random sequences.
func TestSameAsBefore(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 3000 {
		data := make([]byte, 6*(1+r.IntN(80)))
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		sameAsBefore(t, data)
	}
}

type recordSinker interface {
	flow.Analyzer
	SetRecordSink(func(Record))
}

func sameAsBefore(t *testing.T, data []byte) {
	pkts := fuzzPackets(data)
	got := outcomes(t, func(reg *stats.Registry) recordSinker { return New(reg) }, pkts)
	want := outcomes(t, func(reg *stats.Registry) recordSinker { return newRef(reg) }, pkts)
	if !bytes.Equal(got, want) {
		t.Fatalf("outputs differ:\n got %s\nwant %s", got, want)
	}
}

func outcomes(t *testing.T, mk func(*stats.Registry) recordSinker, pkts []packet.Packet) []byte {
	t.Helper()
	reg := stats.NewRegistry()
	pr := mk(reg)
	var out []byte
	pr.SetRecordSink(func(r Record) { out = fmt.Appendf(out, "%+v\n", r) })
	p := flow.NewProcessor(flow.Config{Workers: 1, Stats: reg, MaxFlows: 2 + len(pkts)%16}, tcpstate.New(), pr)
	ch := make(chan *event.Batch, 4*len(pkts)+8)
	em := pipeline.NewEmitter(ch)
	ts := t0
	for i := range pkts {
		pk := pkts[i]
		ts = pk.Timestamp
		p.Packet(&pk, em)
	}
	p.Flush(ts, em)
	em.Flush()
	close(ch)
	enc, err := encode.New("json")
	if err != nil {
		t.Fatal(err)
	}
	for b := range ch {
		for _, e := range b.Events {
			out = enc.Append(out, e)
			out = append(out, '\n')
		}
		b.Release()
	}
	for _, id := range []string{
		`pktpipe_probe_ignored_total{reason="answer_mismatch"}`,
		`pktpipe_probe_ignored_total{reason="quote_mismatch"}`,
		`pktpipe_probe_ignored_total{reason="quote_direction"}`,
	} {
		v, ok := reg.Value(id)
		if !ok {
			t.Fatalf("no counter %s", id)
		}
		out = fmt.Appendf(out, "%s %v\n", id, v)
	}
	return out
}
