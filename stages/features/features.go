// Package features is the flow analyzer that adds NFStream-compatible
// statistical flow features to each flow record, as a "features" object:
//
//	"features": {"bidirectional_packets": 9, "src2dst_mean_ps": 70.67, ...}
//
// The names and definitions are those of NFStream (6.6.0) with
// statistical_analysis=True and its defaults, checked against it by the
// oracle test (oracle_test.go):
//
//   - Sizes (ps, bytes) are link-layer sizes, as NFStream's default
//     accounting_mode 0: the packet's length on the wire (pcap orig_len),
//     not its captured length. For a tunnelled flow that is the whole
//     outer frame, as NFStream counts it (flow.bytes_* count the inner
//     packet there).
//   - Times are integer milliseconds since the epoch, truncated
//     (first_seen_ms, last_seen_ms); inter-arrival times (piat) are the
//     differences of those truncated times, so a 0.4 ms gap that crosses a
//     millisecond boundary counts 1 ms. duration_ms = last - first.
//   - Standard deviations are sample standard deviations (divisor n-1), 0
//     for fewer than two values.
//   - The first packet has no inter-arrival time: piat statistics are over
//     the n-1 gaps of a direction (bidirectional: between consecutive
//     packets of either direction). With no gap, every piat statistic is 0;
//     a direction without packets has all its statistics 0.
//   - src2dst is the record's src (the client) to its dest, so
//     src2dst_packets equals flow.pkts_toserver. NFStream's src is always
//     the sender of the first packet; the two differ only for a TCP flow
//     first seen from its server (SYN-ACK first, or picked up midstream)
//     and an ICMP echo reply seen first: there src2dst and dst2src swap.
//   - Time going backwards: a packet older than the flow's latest is taken
//     at the flow's latest time (gap 0). NFStream does the same with one
//     clock for the whole capture, so the two differ only when time goes
//     backwards across flows. Durations and gaps are never negative; past
//     2^32 ms (49 days) after the flow's first packet, times saturate.
//
// With --flow-active-timeout D, each record the flow table writes at the
// active timeout carries the features of its interval, and the next
// interval starts afresh (no gap before its first packet, SPLT from its
// first packet), as NFStream's active timeout starts a new flow; the
// sums of packets, bytes and flag counts over a flow_id's records are
// the flow's. NFStream's new flow takes the sender of its first packet as
// src, so its src2dst_/dst2src_ columns may be swapped relative to
// pktpipe's, whose src stays the client (TestNFStreamActiveTimeout).
//
// With --splt N (0 = off), splt_direction, splt_ps and splt_piat_ms list
// the first N packets: direction 0 (src to dest) or 1, size, and gap to
// the previous packet of the flow in ms (0 for the first), each padded
// with -1 to N entries.
//
// # State and cost
//
// Per flow, a fixed-size state (counters, extremes, and Welford sums of
// squared deviations; no stored samples), in one of two forms
// (compact.go); a compact flow's is made at its second packet, or when its
// TCP handshake ends (flow.Flow's Handshake), from what the flow table
// holds of the packets before (a flood's flows have none):
//
//   - compact, 96 bytes, from a per-worker free list: most flows. It
//     holds narrow fields (sizes, gaps and the PSH count up to 65535, the
//     other flag counts up to 255) and takes packets, bytes and the start
//     time from the flow table. With the analyzer's 16-byte state slot in
//     the flow entry, a flow costs 112 bytes more with features on
//     (TestBytesPerFlow measures the heap), and nothing with them off.
//   - wide, 240 bytes: the record extension itself, which End hands over
//     (the record outlives End: sinks encode it later). A flow is wide
//     from its first packet when it is tunnelled (its sizes are the outer
//     frame's, the flow table counts the inner packet), with SPLT, or
//     after an active timeout's record; a compact flow becomes wide when a
//     value outgrows its field. At End a compact flow's record is a wide
//     copy.
//
// Both run the same arithmetic, so the output does not depend on the form
// (FuzzCompactEqualsWide). The SPLT buffers are a separate block from a
// per-worker free list, only on flows of an analyzer built with N > 0;
// End copies them into the record (one allocation) and returns them.
// Packet allocates nothing, except once when a flow becomes wide.
//
// Flag counters are 32-bit and saturate at 2^32-1 (a flow would need more
// than four billion SYNs or ACKs in one direction); packet and byte
// counters are 64-bit.
package features

import (
	"math"
	"math/bits"

	"github.com/pktpipe/pktpipe/internal/slab"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/stages/flow"
)

// MaxSPLT bounds --splt.
const MaxSPLT = 1024

// Means need no state of their own: a direction's mean size is bytes /
// packets, and its mean gap is (last - first) / (packets - 1) since the
// gaps add up to the time between its first and last packets. The sums of
// squared deviations are kept with Welford's update, M2 += (x - mean
// before) * (x - mean after), from those exact means.

// m2add adds x, the n-th value, to m2, given the sums of the values
// before it and with it: Welford's (x - before/(n-1)) * (x - after/n)
// with one division.
func m2add(m2 *float64, x, before, after float64, n uint64) {
	if n < 2 {
		return
	}
	f := float64(n)
	*m2 += ((f-1)*x - before) * (f*x - after) / (f * (f - 1))
}

// stddev is the sample standard deviation of n values with squared
// deviations m2.
func stddev(m2 float64, n uint64) float64 {
	if n < 2 || !(m2 > 0) {
		return 0
	}
	return math.Sqrt(m2 / float64(n-1))
}

// ratio is a / b, 0 when b is 0.
func ratio(a float64, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return a / float64(b)
}

// The flag counters are indexed by bit (FIN 0 ... CWR 7); the columns
// are in NFStream's order: flagNames[j] counts bit flagBit[j].
var (
	flagNames = [8]string{"syn", "cwr", "ece", "urg", "ack", "psh", "rst", "fin"}
	flagBit   = [8]uint8{1, 7, 6, 5, 4, 3, 2, 0}
)

// dirStats are one direction's counters.
type dirStats struct {
	pkts, bytes      uint64
	minPS, maxPS     uint32
	minPIAT, maxPIAT uint32 // ms
	psM2, piatM2     float64
	flags            [8]uint32 // by bit: FIN 0 ... CWR 7
}

// state is one flow's features so far. What every packet touches comes
// first (times of both directions side by side), so a packet reads the
// head and its direction's counters.
type state struct {
	base        int64 // ms of the flow's first packet
	biM2        float64
	first, last [2]uint32 // by direction, ms after base
	biMin       uint32
	biMax       uint32
	splt        *splt
	d           [2]dirStats
}

// splt holds the first packets of a flow, pooled apart from state.
type splt struct {
	n    int
	dir  []int8
	ps   []int32
	piat []int32
}

// sat32 saturates v to [0, MaxUint32].
func sat32(v int64) uint32 {
	if v <= 0 {
		return 0
	}
	if v > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(v)
}

func satI32(v uint64) int32 {
	if v > math.MaxInt32 {
		return math.MaxInt32
	}
	return int32(v)
}

// floorMS is ns in whole milliseconds, rounded down.
func floorMS(ns int64) int64 {
	ms := ns / 1e6
	if ns < 0 && ms*1e6 != ns {
		ms--
	}
	return ms
}

// latest is the time of the flow's latest packet, in ms after base.
func (s *state) latest() uint32 { return max(s.last[0], s.last[1]) }

// add counts one packet of size n at time ts (ns) in direction d.
func (s *state) add(d flow.Dir, ts int64, size uint64, tcpFlags uint8) {
	ms := floorMS(ts)
	total := s.d[0].pkts + s.d[1].pkts // packets before this one
	var off, biGap uint32
	if total == 0 {
		s.base = ms
	} else {
		// A packet older than the latest is taken at the latest: no
		// negative gap. Past 2^32 ms (49 days) the offset saturates.
		prev := s.latest()
		off = max(sat32(ms-s.base), prev)
		g := off - prev
		biGap = g
		if total == 1 || g < s.biMin {
			s.biMin = g
		}
		s.biMax = max(s.biMax, g)
		m2add(&s.biM2, float64(g), float64(prev), float64(off), total)
	}
	d &= 1
	ds := &s.d[d]
	ps := uint32(min(size, math.MaxUint32))
	if ds.pkts == 0 {
		s.first[d], ds.minPS, ds.maxPS = off, ps, ps
	} else {
		g := off - s.last[d]
		if ds.pkts == 1 || g < ds.minPIAT {
			ds.minPIAT = g
		}
		ds.maxPIAT = max(ds.maxPIAT, g)
		m2add(&ds.piatM2, float64(g), float64(s.last[d]-s.first[d]), float64(off-s.first[d]), ds.pkts)
		ds.minPS = min(ds.minPS, ps)
		ds.maxPS = max(ds.maxPS, ps)
	}
	s.last[d] = off
	ds.pkts++
	ds.bytes += size
	m2add(&ds.psM2, float64(size), float64(ds.bytes-size), float64(ds.bytes), ds.pkts)
	for fl := tcpFlags; fl != 0; fl &= fl - 1 { // the bits set only
		if c := &ds.flags[bits.TrailingZeros8(fl)]; *c != math.MaxUint32 {
			*c++
		}
	}
	if sp := s.splt; sp != nil && sp.n < len(sp.dir) {
		i := sp.n
		sp.dir[i] = int8(d)
		sp.ps[i] = satI32(size)
		sp.piat[i] = satI32(uint64(biGap))
		sp.n++
	}
}

// Analyzer is one worker's features analyzer (a flow.Analyzer).
type Analyzer struct {
	slot        int
	n           int // SPLT length, 0 = off
	freeSPLT    []*splt
	freeCompact []*compact
	wideOnly    bool // tests: never compact
	// records holds the Features made at a flow's end for its record,
	// which the sinks drop soon after: not the state of a living flow
	// (start), which would keep a whole slab alive for as long as it
	// lives.
	records slab.Slab[Features]
}

var (
	_ flow.Analyzer       = (*Analyzer)(nil)
	_ flow.IntervalWriter = (*Analyzer)(nil)
)

// New returns an analyzer for one worker; splt is the SPLT length (0 = off).
func New(spltN int) *Analyzer {
	return &Analyzer{n: min(max(spltN, 0), MaxSPLT)}
}

// SetSlot implements flow.SlotUser.
func (a *Analyzer) SetSlot(i int) { a.slot = i }

// ICMPError implements flow.Analyzer: ICMP errors are not the flow's
// packets (the flow record does not count them either).
func (a *Analyzer) ICMPError(*flow.Flow, *packet.Packet, *pipeline.Emitter) {}

// Packet implements flow.Analyzer.
func (a *Analyzer) Packet(f *flow.Flow, p *packet.Packet, dir flow.Dir, _ *pipeline.Emitter) {
	m := &p.Meta
	tcp := m.Proto == packet.ProtoTCP
	var fl uint8
	if tcp {
		fl = m.TCPFlags
	}
	size := packetSize(p)
	var x *Features
	switch s := f.State(a.slot).(type) {
	case *compact:
		k := countsOf(f)
		if s.add(&k, dir, p.Timestamp, size, tcp, fl) {
			return
		}
		x = a.start()
		s.widen(&x.st, &k, tcp, true, dir, size)
		a.putCompact(s)
		f.SetState(a.slot, x)
	case *Features:
		x = s
	default:
		// A flow's first packet would be compact when the flow table's
		// counters are the features' (no tunnel, first interval) and
		// there is no SPLT: it needs no state at all, the flow table
		// holds all it says (deferred). The second packet makes the
		// compact state the first would have made, then adds itself.
		// After an active timeout's record the flow's counters are no
		// longer the interval's: wide.
		switch total := f.Packets(0) + f.Packets(1); {
		case total == 1 && a.deferrable(f) && size <= math.MaxUint16:
			return
		case total == 2 && f.Handshake() && a.deferred(f, dir, size) && a.replyFits(f):
			return // the reply of a handshake: Engage
		case total == 2 && a.deferred(f, dir, size):
			c := a.getCompact()
			c.replayFirst(f, firstSize(f, dir, size))
			k := countsOf(f)
			if c.add(&k, dir, p.Timestamp, size, tcp, fl) {
				f.SetState(a.slot, c)
				return
			}
			x = a.start()
			c.widen(&x.st, &k, tcp, true, dir, size)
			a.putCompact(c)
		default:
			x = a.start()
		}
		f.SetState(a.slot, x)
	}
	x.st.add(dir, p.Timestamp, size, fl)
}

// Engage implements flow.Engager: the compact state of a handshake that
// kept none (its first packet, and its reply if it fitted).
func (a *Analyzer) Engage(f *flow.Flow) {
	if f.State(a.slot) != nil || !a.deferrable(f) {
		return
	}
	c := a.getCompact()
	c.replay(f)
	f.SetState(a.slot, c)
}

// replyFits reports whether the reply of a handshake, counted, fits the
// compact state with the first packet (which did): its size and its gap
// (compact.add's tests, where one packet a way leaves no count to
// overflow).
func (a *Analyzer) replyFits(f *flow.Flow) bool {
	return f.Bytes(f.FirstDir()^1) <= math.MaxUint16 && sat32(floorMS(f.Last())-floorMS(f.First())) <= math.MaxUint16
}

// deferrable reports whether f's state may start compact: the flow
// table's counters are the features' (no tunnel, no active timeout's
// record yet) and there is no SPLT.
func (a *Analyzer) deferrable(f *flow.Flow) bool {
	return a.n == 0 && !a.wideOnly && !f.Tunneled() && f.FirstInterval()
}

// deferred reports whether f, with no state and two packets counted (the
// latest of size in direction d), kept none for its first packet: it
// could have been compact, and fitted (its size).
func (a *Analyzer) deferred(f *flow.Flow, d flow.Dir, size uint64) bool {
	return a.deferrable(f) && firstSize(f, d, size) <= math.MaxUint16
}

// firstSize is the size of f's first packet while f has two, the latest
// of size in direction d.
func firstSize(f *flow.Flow, d flow.Dir, size uint64) uint64 {
	fd := f.FirstDir()
	n := f.Bytes(fd)
	if d&1 == fd {
		n -= size
	}
	return n
}

func (a *Analyzer) getCompact() *compact {
	if k := len(a.freeCompact); k > 0 {
		c := a.freeCompact[k-1]
		a.freeCompact = a.freeCompact[:k-1]
		return c
	}
	return new(compact)
}

// maxFreeCompact bounds the compact states kept for reuse (6 MiB a
// worker): as the flow table keeps its entries, a worker keeps the states
// of its busiest moment, so a steady load allocates none.
const maxFreeCompact = 1 << 16

func (a *Analyzer) putCompact(c *compact) {
	if len(a.freeCompact) < maxFreeCompact {
		*c = compact{}
		a.freeCompact = append(a.freeCompact, c)
	}
}

// packetSize is NFStream's link-layer size: the frame's length on the
// wire, the whole frame for a tunnel too (the flow record's bytes count the
// inner packet there).
func packetSize(p *packet.Packet) uint64 {
	if p.OrigLen != 0 {
		return uint64(p.OrigLen)
	}
	return uint64(len(p.Data))
}

// start returns a new flow's record extension, whose state the flow's
// packets then update in place: the record is what a flow allocates (once,
// at its first packet), and End hands it over without copying. The SPLT
// buffers come from the free list.
func (a *Analyzer) start() *Features {
	x := &Features{n: a.n}
	if a.n > 0 {
		if k := len(a.freeSPLT); k > 0 {
			x.st.splt = a.freeSPLT[k-1]
			a.freeSPLT = a.freeSPLT[:k-1]
		} else {
			x.st.splt = &splt{dir: make([]int8, a.n), ps: make([]int32, a.n), piat: make([]int32, a.n)}
		}
	}
	return x
}

// End implements flow.Analyzer: the features object goes on the record.
func (a *Analyzer) End(f *flow.Flow, rec *event.Flow, _ *pipeline.Emitter) {
	var x *Features
	switch s := f.State(a.slot).(type) {
	case *compact:
		// The record outlives the flow: it gets a wide copy, and the
		// compact state goes back to the free list.
		x = a.records.New()
		k := countsOf(f)
		s.widen(&x.st, &k, f.Proto() == packet.ProtoTCP, false, 0, 0)
		a.putCompact(s)
	case *Features:
		x = s
	default:
		// A one-packet flow, or a handshake, kept nothing (deferred):
		// the compact state its packets would have made, widened.
		if (f.Packets(0)+f.Packets(1) != 1 && !f.Handshake()) || !a.deferrable(f) {
			return
		}
		var c compact
		c.replay(f)
		x = a.records.New()
		k := countsOf(f)
		c.widen(&x.st, &k, f.Proto() == packet.ProtoTCP, false, 0, 0)
	}
	a.end(x)
	rec.Extra = append(rec.Extra, x)
	f.SetState(a.slot, nil)
}

// Interval implements flow.IntervalWriter: at the active timeout the
// interval's features go on its record and the flow's next packet starts
// a fresh state (SPLT too), as NFStream starts a new flow there.
func (a *Analyzer) Interval(f *flow.Flow, rec *event.Flow, em *pipeline.Emitter) {
	a.End(f, rec, em)
}

// end readies x for its record: the SPLT arrays are copied out and the
// buffers returned to the free list.
func (a *Analyzer) end(x *Features) {
	if sp := x.st.splt; sp != nil {
		// The record keeps a copy (one allocation for the three arrays);
		// the buffers go back to the free list.
		buf := make([]int32, 3*sp.n)
		for i, d := range sp.dir[:sp.n] {
			buf[i] = int32(d)
		}
		copy(buf[sp.n:], sp.ps[:sp.n])
		copy(buf[2*sp.n:], sp.piat[:sp.n])
		x.splt = buf
		x.st.splt = nil
		sp.n = 0
		a.freeSPLT = append(a.freeSPLT, sp)
	}
}
