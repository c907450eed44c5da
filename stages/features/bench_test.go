package features_test

import (
	"net/netip"
	"runtime"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/features"
	"github.com/pktpipe/pktpipe/stages/flow"
)

var (
	cli = netip.MustParseAddr("10.0.0.1")
	srv = netip.MustParseAddr("10.0.0.2")
)

func seg(ts int64, toServer bool, port uint16, flags uint8, size uint32) packet.Packet {
	p := packet.Packet{OrigLen: size, Timestamp: ts, IfIndex: -1}
	m := &p.Meta
	m.IPVersion, m.Proto, m.TCPFlags = 4, packet.ProtoTCP, flags
	m.Src, m.Dst, m.SrcPort, m.DstPort = cli, srv, port, 443
	if !toServer {
		m.Src, m.Dst, m.SrcPort, m.DstPort = srv, cli, 443, port
	}
	return p
}

// steady returns a processor (with the features analyzer when on) whose
// 64 TCP flows are open, and a round of packets that continues them.
func steady(tb testing.TB, on bool, splt int) (*flow.Processor, *pipeline.Emitter, []packet.Packet, func()) {
	reg := stats.NewRegistry()
	var as []flow.Analyzer
	if on {
		as = append(as, features.New(splt))
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
	var round []packet.Packet
	const t0 = int64(1_700_000_000) * 1e9
	for i := range uint16(64) {
		for _, q := range []packet.Packet{
			seg(t0, true, 1000+i, packet.TCPSyn, 74), seg(t0+1e5, false, 1000+i, packet.TCPSyn|packet.TCPAck, 74),
			seg(t0+2e5, true, 1000+i, packet.TCPAck, 66),
		} {
			p.Packet(&q, em)
		}
		round = append(round, seg(t0+3e5, true, 1000+i, packet.TCPAck|packet.TCPPsh, 1514),
			seg(t0+4e5, false, 1000+i, packet.TCPAck, 66))
	}
	return p, em, round, func() { em.Flush(); close(ch); <-done }
}

func advance(pkts []packet.Packet) {
	for i := range pkts {
		pkts[i].Timestamp += 1_300_000 // 1.3 ms: gaps vary in whole ms
	}
}

// TestNoAllocPerPacket: in steady state the analyzer allocates nothing per
// packet, with SPLT on or off.
func TestNoAllocPerPacket(t *testing.T) {
	for _, n := range []int{0, 10} {
		p, em, round, stop := steady(t, true, n)
		allocs := testing.AllocsPerRun(200, func() {
			for i := range round {
				p.Packet(&round[i], em)
			}
			advance(round)
		})
		stop()
		if allocs != 0 {
			t.Errorf("splt=%d: %.2f allocations per round of %d packets, want 0", n, allocs, len(round))
		}
	}
}

// BenchmarkPacket is the flow table's per-packet cost without the
// analyzer, with it, and with SPLT=10 (ns/op is per packet).
func BenchmarkPacket(b *testing.B) {
	for _, c := range []struct {
		name string
		on   bool
		splt int
	}{{"off", false, 0}, {"on", true, 0}, {"splt10", true, 10}} {
		b.Run(c.name, func(b *testing.B) {
			p, em, round, stop := steady(b, c.on, c.splt)
			defer stop()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				k := i % len(round)
				p.Packet(&round[k], em)
				if k == len(round)-1 {
					advance(round)
				}
			}
		})
	}
}

// BenchmarkShortFlows is the per-packet cost on flows of 10 packets (a
// TCP connection: handshake, 2 requests and answers, FINs), ended and
// emitted, so per-flow work (state, SPLT buffers, the record) counts too.
func BenchmarkShortFlows(b *testing.B) {
	for _, c := range []struct {
		name string
		on   bool
		splt int
	}{{"off", false, 0}, {"on", true, 0}, {"splt10", true, 10}} {
		b.Run(c.name, func(b *testing.B) {
			reg := stats.NewRegistry()
			var as []flow.Analyzer
			if c.on {
				as = append(as, features.New(c.splt))
			}
			p := flow.NewProcessor(flow.Config{Workers: 1, Stats: reg, MaxFlows: 1 << 16}, as...)
			ch := make(chan *event.Batch, 64)
			done := make(chan struct{})
			go func() {
				for bt := range ch {
					bt.Release()
				}
				close(done)
			}()
			em := pipeline.NewEmitter(ch)
			ts := int64(1_700_000_000) * 1e9
			var conn [10]packet.Packet
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += len(conn) {
				port := uint16(1024 + (i/len(conn))%60000)
				conn = [10]packet.Packet{
					seg(ts, true, port, packet.TCPSyn, 74), seg(ts+1e5, false, port, packet.TCPSyn|packet.TCPAck, 74),
					seg(ts+2e5, true, port, packet.TCPAck, 66), seg(ts+3e5, true, port, packet.TCPAck|packet.TCPPsh, 400),
					seg(ts+9e5, false, port, packet.TCPAck|packet.TCPPsh, 1514), seg(ts+1e6, true, port, packet.TCPAck, 66),
					seg(ts+2e6, true, port, packet.TCPAck|packet.TCPPsh, 300), seg(ts+3e6, false, port, packet.TCPAck|packet.TCPPsh, 900),
					seg(ts+4e6, true, port, packet.TCPAck|packet.TCPFin, 66), seg(ts+5e6, false, port, packet.TCPAck|packet.TCPFin, 66),
				}
				for k := range conn {
					p.Packet(&conn[k], em)
				}
				ts += 1e6
				if i%(256*len(conn)) == 0 {
					p.Sweep(ts, em) // ends the closed flows past their linger
				}
			}
			b.StopTimer()
			p.Flush(ts+1e12, em)
			em.Flush()
			close(ch)
			<-done
		})
	}
}

// liveHeap returns the heap bytes held after building a flow table (the
// features analyzer on with SPLT n, or off) and opening flows TCP
// connections in it (handshake and one data packet each), and the table.
func liveHeap(on bool, splt, flows int) (uint64, *flow.Processor) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	var as []flow.Analyzer
	if on {
		as = append(as, features.New(splt))
	}
	p := flow.NewProcessor(flow.Config{Workers: 1, MaxFlows: flows, Stats: stats.NewRegistry()}, as...)
	em := pipeline.NewEmitter(make(chan *event.Batch, 1)) // nothing ends: no event
	const t0 = int64(1_700_000_000) * 1e9
	for i := range flows {
		a := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		for j, q := range []packet.Packet{
			seg(t0, true, 1000, packet.TCPSyn, 74), seg(t0+1e5, false, 1000, packet.TCPSyn|packet.TCPAck, 74),
			seg(t0+2e5, true, 1000, packet.TCPAck, 66), seg(t0+3e6, true, 1000, packet.TCPAck|packet.TCPPsh, 583),
		} {
			if j == 1 {
				q.Meta.Dst = a
			} else {
				q.Meta.Src = a
			}
			p.Packet(&q, em)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc - before, p
}

// TestBytesPerFlow measures what the features analyzer adds to each live
// flow: the heap of a table of 60,000 open TCP connections with it, less
// the same table without it (which is the table before the analyzer
// existed: a flow entry does not grow). Compact states: 96 bytes each
// plus the analyzer's 16-byte slot in the flow entry.
func TestBytesPerFlow(t *testing.T) {
	const n = 60_000
	off, p0 := liveHeap(false, 0, n)
	runtime.KeepAlive(p0)
	for _, c := range []struct {
		splt int
		max  float64
	}{{0, 120}, {10, 0}} {
		on, p1 := liveHeap(true, c.splt, n)
		if p0.Len() != n || p1.Len() != n {
			t.Fatalf("%d and %d live flows, want %d", p0.Len(), p1.Len(), n)
		}
		runtime.KeepAlive(p1)
		per := (float64(on) - float64(off)) / n
		t.Logf("splt %d: %.1f bytes per flow with features (table alone %.1f)", c.splt, per, float64(off)/n)
		if c.max > 0 && per > c.max {
			t.Errorf("features add %.1f bytes per flow, want <= %.0f", per, c.max)
		}
	}
}
