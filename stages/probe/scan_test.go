package probe

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

// feedDetector runs records through one detector synchronously and ends
// every source, as a shard would at shutdown.
func feedDetector(t testing.TB, cfg ScanConfig, recs []Record) []*event.Scan {
	t.Helper()
	d := NewDetector(cfg)
	states := map[netip.Addr]*SourceState{}
	var order []netip.Addr
	ch := make(chan *event.Batch, len(recs)+8)
	em := pipeline.NewEmitter(ch)
	for i := range recs {
		r := &recs[i]
		s, ok := states[r.Src]
		if !ok {
			s = &SourceState{}
			states[r.Src] = s
			order = append(order, r.Src)
		}
		d.Add(r.Src, s, !ok, r, em)
	}
	for _, src := range order {
		d.End(src, states[src], pipeline.KeyedShutdown, em)
	}
	em.Flush()
	close(ch)
	var out []*event.Scan
	for b := range ch {
		for _, e := range b.Events {
			out = append(out, e.(*event.Scan))
		}
		b.Release()
	}
	return out
}

func host(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}) }

func TestScanKinds(t *testing.T) {
	scanner := netip.MustParseAddr("10.9.9.9")
	rec := func(dst netip.Addr, port uint16, proto uint8, o Outcome, i int) Record {
		ts := t0 + int64(i)*ms
		return Record{Src: scanner, Dst: dst, DPort: port, Proto: proto, Outcome: o, First: ts, Last: ts}
	}
	var portscan, sweep, browser, ping, mixed, few []Record
	for p := 0; p < 20; p++ {
		o := Closed
		if p%7 == 0 {
			o = Open
		}
		portscan = append(portscan, rec(host(1), uint16(1000+p), 6, o, p))
		// nmap's retry of a filtered port from another source port: one
		// port, two probes.
		if p == 3 {
			portscan = append(portscan, rec(host(1), uint16(1000+p), 6, o, p))
		}
	}
	for h := 0; h < 30; h++ {
		sweep = append(sweep, rec(host(h), 445, 6, Filtered, h))
		browser = append(browser, rec(host(h), 443, 6, Open, h))
		ping = append(ping, rec(host(h), 0, 1, Unreachable, h))
		mixed = append(mixed, rec(host(h), 0, 1, Open, h), rec(host(h), 22, 6, Filtered, h))
	}
	mixed = append(mixed, portscan...)
	for p := 0; p < 10; p++ {
		few = append(few, rec(host(1), uint16(p), 17, Filtered, p))
	}
	for _, tc := range []struct {
		name  string
		recs  []Record
		kind  string // "" for none
		probe uint64
		tgts  uint64
		ports uint64
		open  int
	}{
		{"portscan", portscan, event.ScanPortscan, 21, 1, 20, 3},
		{"portsweep", sweep, event.ScanPortsweep, 30, 30, 1, 0},
		{"browser: sweep pattern, all open", browser, "", 0, 0, 0, 0},
		{"ping sweep", ping, event.ScanPingSweep, 30, 30, 0, 0},
		{"mixed", mixed, event.ScanMixed, 81, 30, 21, 33},
		{"below the thresholds", few, "", 0, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs := feedDetector(t, ScanConfig{}, tc.recs)
			if tc.kind == "" {
				if len(evs) != 0 {
					t.Fatalf("%d scan events, want none: %+v", len(evs), evs[0])
				}
				return
			}
			if len(evs) != 1 {
				t.Fatalf("%d scan events, want 1", len(evs))
			}
			e := evs[0]
			if e.Kind != tc.kind || e.Probes != tc.probe || e.Targets != tc.tgts || e.Ports != tc.ports {
				t.Errorf("kind %s probes %d targets %d ports %d, want %s %d %d %d", e.Kind, e.Probes, e.Targets, e.Ports, tc.kind, tc.probe, tc.tgts, tc.ports)
			}
			if got := len(e.Open) + int(e.OpenMore); got != tc.open || len(e.Open) > DefaultScanConfig.MaxOpen {
				t.Errorf("open %d + %d, want %d in all, at most %d listed", len(e.Open), e.OpenMore, tc.open, DefaultScanConfig.MaxOpen)
			}
			var sum uint64
			for _, n := range e.Outcomes {
				sum += n
			}
			if sum != e.Probes-uint64(len(tc.recs))+uint64(distinct(tc.recs)) {
				t.Errorf("outcomes %v sum to %d, want one per distinct port (%d)", e.Outcomes, sum, distinct(tc.recs))
			}
			if e.Src != scanner || e.Start != tc.recs[0].First || e.RatePPS <= 0 {
				t.Errorf("src %v start %d rate %v", e.Src, e.Start, e.RatePPS)
			}
		})
	}
}

func distinct(recs []Record) int {
	m := map[pair]bool{}
	for _, r := range recs {
		m[pair{r.Dst, r.DPort, r.Proto}] = true
	}
	return len(m)
}

// TestScanCapped: a source probing more distinct ports than MaxPairs keeps
// MaxPairs of them; the rest still count in outcomes, and the event says
// capped. The open list is the lowest MaxOpen, whatever the map's order.
func TestScanCapped(t *testing.T) {
	scanner := netip.MustParseAddr("10.9.9.9")
	var recs []Record
	for p := 0; p < 3000; p++ {
		recs = append(recs, Record{Src: scanner, Dst: host(1), DPort: uint16(p), Proto: 6, Outcome: Open, First: t0, Last: t0 + int64(p)*ms})
	}
	cfg := ScanConfig{MaxPairs: 1000, MaxOpen: 5}
	a, b := feedDetector(t, cfg, recs), feedDetector(t, cfg, recs)
	if len(a) != 1 {
		t.Fatalf("%d events", len(a))
	}
	e := a[0]
	if !e.Capped || e.Ports != 1000 || e.Outcomes[Open] != 3000 || len(e.Open) != 5 || e.OpenMore != 2995 {
		t.Errorf("capped %v ports %d open %d listed %d more %d", e.Capped, e.Ports, e.Outcomes[Open], len(e.Open), e.OpenMore)
	}
	for i, o := range e.Open {
		if o.DestPort != uint16(i) || b[0].Open[i] != o {
			t.Errorf("open[%d] = %+v (other run %+v)", i, o, b[0].Open[i])
		}
	}
}

// TestScanFloodBounded: a 2M-source random SYN flood (every record a
// filtered attempt from a new spoofed source) through the keyed stage and
// the detector: the sources held stay at the cap, the rest are evicted and
// counted, no scan event comes out, and the live heap stays bounded.
func TestScanFloodBounded(t *testing.T) {
	const n, capPerShard = 2_000_000, 8192
	reg := stats.NewRegistry()
	ch := make(chan *event.Batch, 16)
	var scans int
	done := make(chan struct{})
	go func() {
		for b := range ch {
			scans += len(b.Events)
			b.Release()
		}
		close(done)
	}()
	kc := NewDetector(ScanConfig{}).KeyedConfig(2, capPerShard)
	kc.Stats = reg
	k := pipeline.NewKeyed(kc, func(int) pipeline.KeyedHandler[Record, SourceState] { return NewDetector(ScanConfig{}) })
	k.Start(func() *pipeline.Emitter { return pipeline.NewEmitter(ch) })
	s := k.NewSender()
	rng := rand.New(rand.NewPCG(3, 4))
	dst := netip.MustParseAddr("192.0.2.1")
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	base, peak := m.HeapAlloc, uint64(0)
	for i := 0; i < n; i++ {
		ts := t0 + int64(i)*1000
		v := rng.Uint32()
		r := Record{Src: netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), Dst: dst, DPort: 80, Proto: 6, First: ts, Last: ts}
		s.Send(r.Src, &r)
		if i%250_000 == 249_999 {
			runtime.GC()
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapAlloc)
		}
	}
	s.Flush()
	id := func(name string) float64 { v, _ := reg.Value(name + `{stage="scan"}`); return v }
	testenv.WaitFor(t, 20*time.Second, "the shards to take every record", func() bool { return id("pktpipe_keyed_records_total") == n })
	held, evicted := id("pktpipe_keyed_keys"), id("pktpipe_keyed_evicted_total")
	k.Close()
	close(ch)
	<-done
	t.Logf("held %v sources (cap %d), evicted %v; live heap %.1f MiB before, %.1f MiB at most during the flood", held, 2*capPerShard, evicted, float64(base)/(1<<20), float64(peak)/(1<<20))
	if held > 2*capPerShard || held < 2*capPerShard*9/10 {
		t.Errorf("held %v sources, cap %d", held, 2*capPerShard)
	}
	if evicted+held < n-1000 {
		t.Errorf("evicted %v + held %v, want about %d", evicted, held, n)
	}
	if scans != 0 {
		t.Errorf("%d scan events from a flood of one probe per source", scans)
	}
	if peak > base+64<<20 {
		t.Errorf("live heap grew from %d to %d bytes", base, peak)
	}
}

// TestScanOnePairInline: a source whose probes all went to one target and
// port keeps it without a map, with the strongest outcome, and counts as
// a source of one pair where a threshold is 1; a second pair moves both
// into the map, or is capped when MaxPairs is 1.
func TestScanOnePairInline(t *testing.T) {
	src, dst := netip.MustParseAddr("10.0.0.9"), netip.MustParseAddr("10.0.0.1")
	d := NewDetector(ScanConfig{PortThreshold: 1, TargetThreshold: 1, PingThreshold: 1, MinFailed: 1})
	var s SourceState
	for i, o := range []Outcome{Filtered, Open, Closed} {
		r := Record{Src: src, Dst: dst, DPort: 443, Proto: 6, Outcome: o, First: int64(i), Last: int64(i)}
		d.Add(src, &s, i == 0, &r, nil)
	}
	if s.pairs != nil || !s.hasOne || s.oneOut != Open {
		t.Fatalf("one pair: map %v, inline %v %v", s.pairs, s.hasOne, s.oneOut)
	}
	ev := d.Classify(src, &s)
	if ev == nil || ev.Probes != 3 || ev.Targets != 1 || len(ev.Open) != 1 || ev.Open[0].DestPort != 443 || ev.Outcomes[Open] != 1 {
		t.Fatalf("one pair: %+v", ev)
	}
	r := Record{Src: src, Dst: dst, DPort: 22, Proto: 6, Outcome: Closed, First: 5, Last: 5}
	d.Add(src, &s, false, &r, nil)
	if len(s.pairs) != 2 || s.pairs[pair{dst, 443, 6}] != Open || s.pairs[pair{dst, 22, 6}] != Closed {
		t.Fatalf("two pairs: %v", s.pairs)
	}
	one := NewDetector(ScanConfig{MaxPairs: 1})
	var c SourceState
	for i, port := range []uint16{443, 22} {
		r := Record{Src: src, Dst: dst, DPort: port, Proto: 6, Outcome: Closed}
		one.Add(src, &c, i == 0, &r, nil)
	}
	if c.pairs != nil || c.one.port != 443 || !c.capped || c.overflow[Closed] != 1 {
		t.Fatalf("MaxPairs 1: %+v", c)
	}
}
