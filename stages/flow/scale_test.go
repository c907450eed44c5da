package flow

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
)

// errEvent is what errEmitter emits for each ICMP error: which flow (if
// any) it was matched to, so determinism covers the matching too.
type errEvent struct {
	event.Header
	matched uint64
}

func (*errEvent) Type() event.Type { return "icmp_test" }
func (e *errEvent) EncodeBody(w event.Writer) {
	w.Key("matched_flow")
	w.Uint(e.matched)
}

type errEmitter struct{ nop }

func (errEmitter) ICMPError(f *Flow, p *packet.Packet, em *pipeline.Emitter) {
	e := &errEvent{Header: event.Header{Timestamp: p.Timestamp, IfIndex: -1}}
	if f != nil {
		e.matched = f.ID()
	}
	em.Emit(e)
}

// traffic makes a reproducible mix: TCP sessions closed by FIN or RST,
// left open, picked up midstream or idle past their timeout and resumed;
// UDP exchanges with long gaps; pings; one-way flows; ICMP errors quoting
// live, dead and unknown flows. Packets come sorted by time.
func traffic(seed uint64, sessions int) []packet.Packet {
	r := rand.New(rand.NewPCG(seed, 7))
	var out []packet.Packet
	host := func() netip.Addr {
		if r.IntN(4) == 0 {
			var b [16]byte
			b[0], b[1] = 0xfd, 0
			binary.BigEndian.PutUint16(b[14:], uint16(r.IntN(64)))
			return netip.AddrFrom16(b)
		}
		return netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(4)), byte(r.IntN(64))})
	}
	for range sessions {
		a := host()
		var b netip.Addr
		for b = host(); b.Is4() != a.Is4() || b == a; b = host() {
		}
		ts := t0 + r.Int64N(3000*sec)
		step := func() int64 {
			switch r.IntN(20) {
			case 0:
				ts += 700 * sec // past every timeout
			case 1:
				ts += 45 * sec // past new/icmp, within udp
			default:
				ts += r.Int64N(sec)
			}
			return ts
		}
		sp, dp := uint16(1024+r.IntN(60000)), uint16([]int{22, 53, 80, 443, 8080}[r.IntN(5)])
		switch r.IntN(6) {
		case 0, 1: // TCP
			if r.IntN(5) > 0 {
				out = append(out, tcpPkt(step(), a, sp, b, dp, syn, 74), tcpPkt(step(), b, dp, a, sp, synack, 74))
			}
			for range r.IntN(8) {
				if r.IntN(2) == 0 {
					out = append(out, tcpPkt(step(), a, sp, b, dp, pshack, uint32(60+r.IntN(1400))))
				} else {
					out = append(out, tcpPkt(step(), b, dp, a, sp, pshack, uint32(60+r.IntN(1400))))
				}
			}
			switch r.IntN(3) {
			case 0:
				out = append(out, tcpPkt(step(), a, sp, b, dp, finack, 66), tcpPkt(step(), b, dp, a, sp, finack, 66), tcpPkt(step(), a, sp, b, dp, ack, 66))
			case 1:
				out = append(out, tcpPkt(step(), b, dp, a, sp, rst, 60))
			}
		case 2: // UDP
			for range 1 + r.IntN(6) {
				out = append(out, udpPkt(step(), a, sp, b, dp, uint32(60+r.IntN(500))))
				if r.IntN(3) > 0 {
					out = append(out, udpPkt(step(), b, dp, a, sp, uint32(60+r.IntN(500))))
				}
			}
			if r.IntN(2) == 0 { // an error quoting it, either way, maybe late
				if r.IntN(2) == 0 {
					out = append(out, icmpErr(step(), b, a, 3, 3, packet.ProtoUDP, a, sp, b, dp))
				} else {
					out = append(out, icmpErr(step(), a, b, 3, 1, packet.ProtoUDP, b, dp, a, sp))
				}
			}
		case 3: // ping
			id := uint16(r.IntN(65536))
			for range 1 + r.IntN(5) {
				out = append(out, icmpPkt(step(), a, b, 8, 0, id, 98))
				if r.IntN(4) > 0 {
					out = append(out, icmpPkt(step(), b, a, 0, 0, id, 98))
				}
			}
		case 4: // one-way flows
			out = append(out, udpPkt(step(), a, sp, b, dp, 200), udpPkt(step(), a, sp, b, dp, 200), tcpPkt(step(), a, sp+1, b, dp, syn, 74))
		case 5: // an error quoting nothing known
			out = append(out, icmpErr(step(), b, a, 11, 0, packet.ProtoTCP, a, sp, b, dp))
		}
	}
	slices.SortStableFunc(out, func(x, y packet.Packet) int {
		switch {
		case x.Timestamp < y.Timestamp:
			return -1
		case x.Timestamp > y.Timestamp:
			return 1
		}
		return 0
	})
	// A few flows still active when the capture ends (shutdown).
	end := out[len(out)-1].Timestamp
	for i := range 10 {
		a, b := host(), netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
		if a.Is6() {
			a = netip.AddrFrom4([4]byte{10, 9, 9, byte(i)})
		}
		out = append(out, tcpPkt(end+int64(i)*1000, a, uint16(2000+i), b, 443, syn, 74),
			tcpPkt(end+int64(i)*1000+500, b, 443, a, uint16(2000+i), synack, 74))
	}
	return out
}

// runSharded plays the dispatcher: packets in batches of n, each sharded by
// ShardKey hash over workers, every sub-batch carrying the batch clock.
func runSharded(t testing.TB, pkts []packet.Packet, workers, n int) []event.Event {
	t.Helper()
	c := newCollector(true)
	procs := make([]*Processor, workers)
	for i := range procs {
		procs[i] = NewProcessor(Config{MaxFlows: 1 << 16, Workers: workers}, errEmitter{})
	}
	pool := packet.NewPool(n, 1<<20)
	var now int64
	for len(pkts) > 0 {
		chunk := pkts[:min(n, len(pkts))]
		pkts = pkts[len(chunk):]
		sub := make([]*packet.Batch, workers)
		for i := range chunk {
			now = max(now, chunk[i].Timestamp)
			k, _ := packet.ShardKey(&chunk[i].Meta)
			w := k.Hash() % uint64(workers)
			if sub[w] == nil {
				sub[w] = pool.Get()
			}
			sub[w].AppendPacket(&chunk[i])
		}
		for w, b := range sub {
			if b != nil {
				b.Now = now
				procs[w].Process(b, c.em)
				b.Release()
			}
		}
	}
	for _, p := range procs {
		p.Flush(now, c.em)
	}
	return c.close()
}

// TestDeterminism: the same packets give the same records whatever the
// batch size and the number of workers.
func TestDeterminism(t *testing.T) {
	pkts := traffic(1, 3000)
	want := jsonLines(t, runSharded(t, pkts, 1, 256))
	reasons := map[string]int{}
	for _, l := range want {
		for _, r := range []string{"fin", "rst", "timeout", "shutdown"} {
			if strings.Contains(l, `"reason":"`+r+`"`) {
				reasons[r]++
			}
		}
	}
	matched := strings.Count(strings.Join(want, "\n"), `"matched_flow":0`)
	errs := strings.Count(strings.Join(want, "\n"), `icmp_test`)
	t.Logf("%d packets, %d events, reasons %v, icmp errors %d (%d unmatched)", len(pkts), len(want), reasons, errs, matched)
	for _, r := range []string{"fin", "rst", "timeout", "shutdown"} {
		if reasons[r] == 0 {
			t.Fatalf("traffic has no %s flow: the test would prove little", r)
		}
	}
	if matched == 0 || matched == errs {
		t.Fatal("traffic needs both matched and unmatched ICMP errors")
	}
	for _, c := range []struct{ workers, n int }{{1, 1}, {1, 7}, {4, 1}, {4, 7}, {4, 256}, {3, 64}} {
		got := jsonLines(t, runSharded(t, pkts, c.workers, c.n))
		if !slices.Equal(got, want) {
			for i := range min(len(got), len(want)) {
				if got[i] != want[i] {
					t.Fatalf("workers=%d batch=%d: %d vs %d events, first difference:\n got %s\nwant %s", c.workers, c.n, len(got), len(want), got[i], want[i])
				}
			}
			t.Fatalf("workers=%d batch=%d: %d events, want %d", c.workers, c.n, len(got), len(want))
		}
	}
}

// floodPackets fills b with n UDP packets of distinct tuples starting at
// index i (the source address is i times an odd constant: a bijection).
func floodBatch(b *packet.Batch, tmpl *packet.Packet, i, n int) {
	for j := range n {
		tmpl.Meta.Src, tmpl.Meta.SrcPort = floodTuple(i + j)
		tmpl.Timestamp = t0 + int64(i+j)*1000
		b.AppendPacket(tmpl)
	}
}

// floodTuple is the client of flow i: a pseudo-random address (i times an
// odd constant, so distinct for every i) and port.
func floodTuple(i int) (netip.Addr, uint16) {
	x := uint32(i) * 2654435761
	return netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)}), uint16(x>>13) | 1024
}

// TestFlood: 1M distinct tuples through a 100k cap. The table never
// exceeds its cap, 900k flows are evicted (and emitted), and once full the
// table allocates nothing more: only each record and its Community ID.
func TestFlood(t *testing.T) {
	const total, cap = 1_000_000, 100_000
	p := NewProcessor(Config{MaxFlows: cap})
	c := newCollector(false)
	pool := packet.NewPool(256, 1<<20)
	tmpl := udpPkt(0, cli, 0, srv, 53, 80)
	var ms runtime.MemStats
	var mallocs0, heap0 uint64
	for i := 0; i < total; i += 256 {
		b := pool.Get()
		floodBatch(b, &tmpl, i, min(256, total-i))
		b.Now = b.Packets[len(b.Packets)-1].Timestamp
		p.Process(b, c.em)
		c.em.Flush()
		b.Release()
		if p.Len() > cap {
			t.Fatalf("table holds %d > cap", p.Len())
		}
		if i == 256*800 { // table full and warm
			runtime.GC()
			runtime.ReadMemStats(&ms)
			mallocs0, heap0 = ms.Mallocs, ms.HeapAlloc
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	flowsAfter := total - 256*800
	perFlow := float64(ms.Mallocs-mallocs0) / float64(flowsAfter)
	growth := int64(ms.HeapAlloc) - int64(heap0)
	p.Flush(t0+total*1000, c.em)
	c.close()
	t.Logf("allocs per new flow once full: %.2f; live heap growth %d KiB", perFlow, growth/1024)
	if perFlow > 3 { // the record, its Community ID string, amortised event batches
		t.Errorf("%.2f allocations per flow once full, want <= 3", perFlow)
	}
	if growth > 4<<20 {
		t.Errorf("live heap grew %d bytes while the table was full", growth)
	}
	if v := counter(t, p, "pktpipe_flow_evicted_total"); v != total-cap {
		t.Errorf("evicted %v, want %d", v, total-cap)
	}
	if v := counter(t, p, `pktpipe_flow_ended_total{reason="shutdown"}`); v != cap {
		t.Errorf("shutdown %v, want %d", v, cap)
	}
	if v := counter(t, p, "pktpipe_flow_created_total"); v != total {
		t.Errorf("created %v", v)
	}
	if c.count != total {
		t.Errorf("%d records, want %d", c.count, total)
	}
}

// stateful is an analyzer that keeps a pointer in its slot, allocated once
// per flow, to show that steady-state packets allocate nothing with it.
type stateful struct {
	nop
}

func (s *stateful) Packet(f *Flow, p *packet.Packet, d Dir, _ *pipeline.Emitter) {
	st, _ := f.State(0).(*recState)
	if st == nil {
		st = &recState{}
		f.SetState(0, st)
	}
	st.pkts++
}

func TestSteadyStateAllocs(t *testing.T) {
	p := NewProcessor(Config{MaxFlows: 1024}, &stateful{})
	c := newCollector(false)
	defer c.close()
	pool := packet.NewPool(256, 1<<20)
	b := pool.Get()
	for i := range 256 {
		pk := tcpPkt(t0+int64(i), cli, uint16(1000+i%64), srv, 443, ack, 100)
		if i%2 == 1 {
			pk = tcpPkt(t0+int64(i), srv, 443, cli, uint16(1000+i%64), ack, 1500)
		}
		b.AppendPacket(&pk)
	}
	b.Now = t0 + 256
	p.Process(b, c.em) // creates the 64 flows
	n := testing.AllocsPerRun(100, func() {
		for i := range b.Packets {
			b.Packets[i].Timestamp += 1000
		}
		b.Now += 1000
		p.Process(b, c.em)
	})
	if n != 0 {
		t.Errorf("%v allocs per batch in steady state, want 0", n)
	}
	if p.Len() != 64 {
		t.Errorf("%d flows", p.Len())
	}
}

// hitPackets are packets of flows 0..flows-1 in random order, both ways.
func hitPackets(flows int) []packet.Packet {
	r := rand.New(rand.NewPCG(1, 2))
	pkts := make([]packet.Packet, 1<<14)
	for j := range pkts {
		src, port := floodTuple(r.IntN(flows))
		pkts[j] = udpPkt(t0+int64(j), src, port, srv, 53, 80)
		if j%2 == 1 {
			pkts[j] = udpPkt(t0+int64(j), srv, 53, src, port, 80)
		}
	}
	return pkts
}

func fill(p *Processor, em *pipeline.Emitter, flows int) {
	pool := packet.NewPool(256, 1<<20)
	tmpl := udpPkt(0, cli, 0, srv, 53, 80)
	for i := 0; i < flows; i += 256 {
		bt := pool.Get()
		floodBatch(bt, &tmpl, i, min(256, flows-i))
		p.Process(bt, em)
		bt.Release()
	}
}

// BenchmarkPacket: ns per packet lookup and update with N live flows.
// bytes/flow is the live heap per flow (entries, buckets, Community IDs).
func BenchmarkPacket(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("flows=%d", n), func(b *testing.B) {
			pkts := hitPackets(n)
			c := newCollector(false)
			var m0, m1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m0)
			p := NewProcessor(Config{MaxFlows: n})
			fill(p, c.em, n)
			runtime.GC()
			runtime.ReadMemStats(&m1)
			perFlow := float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / float64(n)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			var i int
			for b.Loop() {
				p.Packet(&pkts[i&(len(pkts)-1)], c.em)
				i++
			}
			b.StopTimer()
			// CPU time per packet: wall time is meaningless on a shared,
			// overloaded machine.
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(perFlow, "bytes/flow")
			if p.Len() != n {
				b.Fatalf("table holds %d flows, want %d (the packets missed)", p.Len(), n)
			}
			c.close()
		})
	}
}

// cpuTime is the process's user+system CPU time in ns.
func cpuTime() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkProcess: ns per packet with N live flows, in batches of 256
// whose packets carry the dispatcher's hash, as the engine hands them to a
// worker.
func BenchmarkProcess(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("flows=%d", n), func(b *testing.B) {
			pkts := hitPackets(n)
			pool := packet.NewPool(256, 1<<20)
			var batches []*packet.Batch
			for i := 0; i < len(pkts); i += 256 {
				bt := pool.Get()
				for j := i; j < i+256; j++ {
					pk := &pkts[j]
					k, _ := packet.KeyOf(&pk.Meta)
					pk.Meta.FlowHash = k.Hash()
					bt.AppendPacket(pk)
				}
				bt.Now = bt.Packets[255].Timestamp
				batches = append(batches, bt)
			}
			c := newCollector(false)
			p := NewProcessor(Config{MaxFlows: n})
			fill(p, c.em, n)
			b.ResetTimer()
			cpu0 := cpuTime()
			var i int
			for b.Loop() {
				p.Process(batches[i%len(batches)], c.em)
				i++
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/256, "cpu-ns/packet")
			if p.Len() != n {
				b.Fatalf("table holds %d flows, want %d (the packets missed)", p.Len(), n)
			}
			c.close()
		})
	}
}
