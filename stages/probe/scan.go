package probe

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
)

// Record is one ended attempt, as a worker's probe analyzer hands it to
// the scan detector (through a pipeline.Keyed stage keyed by Src).
type Record struct {
	Src, Dst    netip.Addr
	DPort       uint16 // 0 for an echo
	Proto       uint8
	Outcome     Outcome
	First, Last int64 // first and latest probe, ns
}

// ScanConfig holds the detector's thresholds, window and caps. Zero
// values take the defaults (DefaultScanConfig).
//
// The defaults follow Zeek's scan policy (scan.zeek: 15 distinct ports on
// one host is a port scan, 25 distinct hosts on one port an address scan,
// within 5 minutes) rather than sfPortscan's sensitivity levels (low: 5
// negative responses within 60 s, which flags busy NAT gateways): 15 and
// 25 are far above what normal clients do in a minute (a browser opens a
// burst of connections to one or a few ports of few servers). Like
// sfPortscan, a sweep must also draw negative answers (MinFailed): a
// client fetching from 25 CDN hosts on 443 gets them all open. The idle
// window is 60 s (sfPortscan's low sensitivity window, Zeek's 5 minutes
// being long for a per-source state cap); it must exceed the flow table's
// timeout for new flows (30 s), since an unanswered probe's record only
// arrives when its flow times out.
type ScanConfig struct {
	PortThreshold   int           // distinct ports on one target: portscan (15)
	TargetThreshold int           // distinct targets on one port: portsweep (25)
	PingThreshold   int           // distinct targets of echo requests: ping_sweep (25)
	MinFailed       int           // negative outcomes a portsweep needs (5)
	Idle            time.Duration // a source quiet this long (packet time) is closed (60 s)
	// MaxPairs caps the distinct (target, proto, port) kept per source
	// (256: ten times the thresholds; a map of about 16 KiB a source at most, so
	// the detector's worst case is MaxPairs × the keyed stage's MaxKeys).
	MaxPairs int
	MaxOpen  int // scan.open entries (32)
}

// DefaultScanConfig holds the defaults.
var DefaultScanConfig = ScanConfig{
	PortThreshold: 15, TargetThreshold: 25, PingThreshold: 25, MinFailed: 5,
	Idle: 60 * time.Second, MaxPairs: 256, MaxOpen: 32,
}

func (c *ScanConfig) defaults() {
	d := DefaultScanConfig
	if c.PortThreshold <= 0 {
		c.PortThreshold = d.PortThreshold
	}
	if c.TargetThreshold <= 0 {
		c.TargetThreshold = d.TargetThreshold
	}
	if c.PingThreshold <= 0 {
		c.PingThreshold = d.PingThreshold
	}
	if c.MinFailed <= 0 {
		c.MinFailed = d.MinFailed
	}
	if c.Idle <= 0 {
		c.Idle = d.Idle
	}
	if c.MaxPairs <= 0 {
		c.MaxPairs = d.MaxPairs
	}
	if c.MaxOpen <= 0 {
		c.MaxOpen = d.MaxOpen
	}
}

type pair struct {
	dst   netip.Addr
	port  uint16
	proto uint8
}

// SourceState is one source's scan state in the keyed stage.
type SourceState struct {
	start, end int64
	probes     uint64
	protos     uint8 // bit per protocol seen (see protoBit)
	// The distinct (target, proto, port) with the strongest outcome each
	// drew: the first inline (one, while pairs is nil), the map once
	// there are two, so that a source of one probe (a flood's, or most
	// clients') allocates none.
	one      pair
	oneOut   Outcome
	hasOne   bool
	pairs    map[pair]Outcome
	overflow [NumOutcomes]uint64 // outcomes of probes beyond MaxPairs
	capped   bool
}

func protoBit(p uint8) uint8 {
	switch p {
	case 6:
		return 1
	case 17:
		return 2
	case 1:
		return 4
	case 58:
		return 8
	}
	return 16
}

// Detector is the scan detector: a pipeline.KeyedHandler of Records by
// source, one per shard.
type Detector struct{ cfg ScanConfig }

var _ pipeline.KeyedHandler[Record, SourceState] = (*Detector)(nil)

// NewDetector returns one shard's detector.
func NewDetector(cfg ScanConfig) *Detector {
	cfg.defaults()
	return &Detector{cfg: cfg}
}

// KeyedConfig returns the keyed stage's settings the detector needs (its
// idle window), for shards and a cap of maxSources each.
func (d *Detector) KeyedConfig(shards, maxSources int) pipeline.KeyedConfig {
	return pipeline.KeyedConfig{Name: "scan", Shards: shards, MaxKeys: maxSources, Idle: d.cfg.Idle}
}

// Time implements pipeline.KeyedHandler.
func (*Detector) Time(r *Record) int64 { return r.Last }

// rankOutcome orders answers: a port probed twice keeps the strongest.
var rankOutcome = [NumOutcomes]uint8{Filtered: 0, Open: 5, Closed: 4, AdminProhibited: 3, Unreachable: 2, TTLExceeded: 1}

// Add implements pipeline.KeyedHandler.
func (d *Detector) Add(_ netip.Addr, s *SourceState, fresh bool, r *Record, _ *pipeline.Emitter) {
	if fresh || s.probes == 0 {
		s.start, s.end = r.First, r.Last
	}
	s.start, s.end = min(s.start, r.First), max(s.end, r.Last)
	s.probes++
	s.protos |= protoBit(r.Proto)
	k := pair{r.Dst, r.DPort, r.Proto}
	if s.pairs == nil {
		if !s.hasOne || s.one == k {
			if !s.hasOne || rankOutcome[r.Outcome] > rankOutcome[s.oneOut] {
				s.one, s.oneOut, s.hasOne = k, r.Outcome, true
			}
			return
		}
		if d.cfg.MaxPairs <= 1 {
			s.capped = true
			s.overflow[r.Outcome]++
			return
		}
		s.pairs = make(map[pair]Outcome, 4)
		s.pairs[s.one] = s.oneOut
	}
	if o, ok := s.pairs[k]; ok {
		if rankOutcome[r.Outcome] > rankOutcome[o] {
			s.pairs[k] = r.Outcome
		}
		return
	}
	if len(s.pairs) >= d.cfg.MaxPairs {
		s.capped = true
		s.overflow[r.Outcome]++
		return
	}
	s.pairs[k] = r.Outcome
}

// End implements pipeline.KeyedHandler: a source that crossed a threshold
// gets its scan event.
func (d *Detector) End(src netip.Addr, s *SourceState, why pipeline.KeyedEnd, em *pipeline.Emitter) {
	ev := d.Classify(src, s)
	*s = SourceState{}
	if ev == nil {
		return
	}
	ev.Reason = why.String()
	em.Emit(ev)
}

// Classify returns the scan event s amounts to, or nil.
func (d *Detector) Classify(src netip.Addr, s *SourceState) *event.Scan {
	c := &d.cfg
	pairs := s.pairs
	if pairs == nil && s.hasOne {
		pairs = map[pair]Outcome{s.one: s.oneOut}
	}
	if len(pairs) < min(c.PortThreshold, c.TargetThreshold, c.PingThreshold) {
		return nil
	}
	type pp struct {
		port  uint16
		proto uint8
	}
	portsOf := map[netip.Addr]int{}  // distinct ports per target
	targetsOf := map[pp]int{}        // distinct targets per port
	targets := map[netip.Addr]bool{} // all
	echoTargets := map[netip.Addr]bool{}
	var out [NumOutcomes]uint64
	for k, o := range pairs {
		targets[k.dst] = true
		out[o]++
		if k.proto == 1 || k.proto == 58 {
			echoTargets[k.dst] = true
			continue
		}
		portsOf[k.dst]++
		targetsOf[pp{k.port, k.proto}]++
	}
	maxPorts, maxTargets := 0, 0
	for _, n := range portsOf {
		maxPorts = max(maxPorts, n)
	}
	for _, n := range targetsOf {
		maxTargets = max(maxTargets, n)
	}
	for i, n := range s.overflow {
		out[i] += n
	}
	failed := uint64(0)
	for i, n := range out {
		if Outcome(i) != Open {
			failed += n
		}
	}
	portscan := maxPorts >= c.PortThreshold
	sweep := maxTargets >= c.TargetThreshold && failed >= uint64(c.MinFailed)
	ping := len(echoTargets) >= c.PingThreshold
	var kind string
	switch n := b2i(portscan) + b2i(sweep) + b2i(ping); {
	case n == 0:
		return nil
	case n > 1:
		kind = event.ScanMixed
	case portscan:
		kind = event.ScanPortscan
	case sweep:
		kind = event.ScanPortsweep
	default:
		kind = event.ScanPingSweep
	}
	ev := &event.Scan{
		Kind: kind, Start: s.start, End: s.end, Probes: s.probes,
		Targets: uint64(len(targets)), Ports: uint64(len(targetsOf)), Outcomes: out,
		Capped: s.capped,
	}
	ev.Header = event.Header{Timestamp: s.end, IfIndex: -1}
	ev.Src = src
	ev.Proto = "mixed"
	switch s.protos {
	case 1:
		ev.Proto = "TCP"
	case 2:
		ev.Proto = "UDP"
	case 4:
		ev.Proto = "ICMP"
	case 8:
		ev.Proto = "IPv6-ICMP"
	}
	for k, o := range pairs {
		if o == Open {
			ev.Open = append(ev.Open, event.ScanOpen{DestIP: k.dst, DestPort: k.port, Proto: k.proto})
		}
	}
	// Sorted before the cap: the map's order is random, the output must
	// not be.
	slices.SortFunc(ev.Open, func(a, b event.ScanOpen) int {
		return cmp.Or(a.DestIP.Compare(b.DestIP), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.DestPort, b.DestPort))
	})
	if len(ev.Open) > c.MaxOpen {
		ev.OpenMore = uint64(len(ev.Open) - c.MaxOpen)
		ev.Open = ev.Open[:c.MaxOpen]
	}
	ev.OpenMore += s.overflow[Open]
	if d := float64(s.end-s.start) / 1e9; d > 0 {
		ev.RatePPS = float64(s.probes) / d
	} else {
		ev.RatePPS = float64(s.probes)
	}
	return ev
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
