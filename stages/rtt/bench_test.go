package rtt_test

import (
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/flow"
)

// steady returns a processor whose flows are established (handshakes
// done) and the data segments that continue them, both directions.
func steady(tb testing.TB, withAnalyzers bool) (*flow.Processor, *pipeline.Emitter, []packet.Packet, func()) {
	reg := stats.NewRegistry()
	var as []flow.Analyzer
	if withAnalyzers {
		as = analyzers(reg)
	}
	p := flow.NewProcessor(flow.Config{Workers: 1, Stats: reg}, as...)
	ch := make(chan *event.Batch, 64)
	done := make(chan struct{})
	go func() {
		for b := range ch {
			b.Release()
		}
		close(done)
	}()
	em := pipeline.NewEmitter(ch)
	var data []packet.Packet
	for i := range 64 {
		c, s := true, false
		hs := []packet.Packet{
			tcp(t0, c, packet.TCPSyn, 100, 0, 0), tcp(t0+1, s, packet.TCPSyn|packet.TCPAck, 900, 101, 0),
			tcp(t0+2, c, packet.TCPAck, 101, 901, 0),
		}
		for j := range hs {
			hs[j].Meta.SrcPort += uint16(i) * (1 - uint16(j&1))
			hs[j].Meta.DstPort += uint16(i) * uint16(j&1)
			p.Packet(&hs[j], em)
		}
		d := tcp(t0+3, c, packet.TCPAck|packet.TCPPsh, 101, 901, 1000)
		d.Meta.SrcPort += uint16(i)
		r := tcp(t0+3, s, packet.TCPAck, 901, 1101, 0)
		r.Meta.DstPort += uint16(i)
		data = append(data, d, r)
	}
	stop := func() { em.Flush(); close(ch); <-done }
	return p, em, data, stop
}

// advance moves the segments on by one round (seq, ack, time), so every
// round is new data, not a retransmission.
func advance(pkts []packet.Packet) {
	for i := range pkts {
		m := &pkts[i].Meta
		if m.PayloadLen > 0 {
			m.Seq += uint32(m.PayloadLen)
		} else {
			m.Ack += 1000
		}
		pkts[i].Timestamp += 1000
	}
}

func BenchmarkSteadyTCP(b *testing.B) {
	for _, with := range []bool{false, true} {
		name := "flow-only"
		if with {
			name = "with-analyzers"
		}
		b.Run(name, func(b *testing.B) {
			p, em, pkts, stop := steady(b, with)
			defer stop()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				k := i % len(pkts)
				if k == 0 {
					advance(pkts)
				}
				p.Packet(&pkts[k], em)
			}
		})
	}
}

// BenchmarkEcho: request/reply pairs; every reply is an rtt event (the
// allocation per event is the event itself).
func BenchmarkEcho(b *testing.B) {
	reg := stats.NewRegistry()
	p := flow.NewProcessor(flow.Config{Workers: 1, Stats: reg}, analyzers(reg)...)
	ch := make(chan *event.Batch, 64)
	go func() {
		for bt := range ch {
			bt.Release()
		}
	}()
	em := pipeline.NewEmitter(ch)
	req, rep := echo(t0, true, 0), echo(t0, false, 0)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		ts := t0 + int64(i)*1000
		req.Timestamp, rep.Timestamp = ts, ts+500
		req.Meta.ICMPSeq, rep.Meta.ICMPSeq = uint16(i), uint16(i)
		p.Packet(&req, em)
		p.Packet(&rep, em)
	}
}

// TestSteadyStateAllocs: established TCP traffic through the flow table
// and our analyzers allocates nothing per packet.
func TestSteadyStateAllocs(t *testing.T) {
	p, em, pkts, stop := steady(t, true)
	defer stop()
	n := testing.AllocsPerRun(50, func() {
		advance(pkts)
		for i := range pkts {
			p.Packet(&pkts[i], em)
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per round of %d packets", n, len(pkts))
	}
}
