package probe

import (
	"net/netip"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
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
