// Package icmpfb classifies ICMP and ICMPv6 errors in plain words and ties
// each to the flow whose packet it quotes (the "ICMP feedback" a path gives
// a flow: a closed port, a firewall's reject, a TTL that ran out, a smaller
// MTU).
//
// It is a flow.Analyzer. The decoder has already parsed the quoted packet
// (packet.Meta.Quoted), the engine has routed the error to the worker owning
// the quoted flow (packet.ShardKey), and the flow stage has looked that flow
// up in either direction and calls ICMPError with it, or with nil. For each
// error the analyzer emits one icmp_feedback event (event.ICMPFeedback),
// and when the flow ends it adds an icmp_feedback object to the flow
// record (event.FlowFeedback: count, summary, path_mtu, the first items).
//
// # Classes
//
// See Classify. ICMPv4 destination-unreachable codes 9, 10 and 13 and
// ICMPv6 code 1 are all admin-prohibited, with detail net-, host- or
// communication-prohibited. Frag-needed (v4 3/4) and packet-too-big (v6
// type 2) carry the next-hop MTU, parameter-problem its pointer, an ICMPv4
// redirect its gateway; ttl-exceeded's reporter is the router that dropped
// the packet (a traceroute hop), and the quote's TTL is in quoted.ttl.
//
// # Verification
//
// An error is only as trustworthy as its quote: anyone on the path can
// forge one. For TCP the analyzer keeps, per flow and direction, the range
// of sequence space the tap saw sent (from the lowest sequence number seen,
// normally the ISN, to the highest seq+len, SYN and FIN counting one, in
// serial-number arithmetic so wraparound works). An error whose quoted
// sequence number lies outside the range of the direction it quotes is
// verified:false (likely forged off-path, or quoting a packet the tap never
// saw); inside, verified:true. Without a TCP sequence number (UDP, ICMP, a
// truncated quote) or without state for that direction, verified is left
// out. Unverified errors are counted on the flow but do not change its
// summary or path_mtu.
//
// # Flow summary
//
// The strongest of: filtered (admin-prohibited, precedence cut-offs,
// v6 source-policy-failed and reject-route) > rejected (port- or
// protocol-unreachable: nothing listens) > unreachable (net, host,
// no-route, address-unreachable...) > ttl-exceeded. path_mtu is the
// smallest MTU a frag-needed or packet-too-big reported.
//
// # Cost
//
// Per packet: for TCP packets only, one range update in the flow's 20
// bytes of a flow.Column (no allocation, no pointer); other protocols'
// flows are skipped. The feedback of flows that drew errors is in a side
// table the state indexes. Events and the record's items allocate, once
// per ICMP error. A TCP flow's first packet without payload, and the
// reply of a handshake (flow.Flow's Handshake), leave no state: the flow
// table holds their sequence numbers, and their ranges are added when the
// flow needs a state.
package icmpfb

import (
	"net/netip"

	"github.com/pktpipe/pktpipe/internal/slab"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/communityid"
	"github.com/pktpipe/pktpipe/stages/flow"
)

// DefaultMaxItems is how many errors a flow record lists in full.
const DefaultMaxItems = 8

// Config sets up an Analyzer. Zero values take the defaults.
type Config struct {
	// MaxItems caps icmp_feedback.items on a flow record (default 8);
	// count still counts every error.
	MaxItems int
	// Community ID for unmatched errors (of the quoted tuple), as the flow
	// stage's settings.
	CommunityIDSeed uint16
	NoCommunityID   bool
	Stats           *stats.Registry
}

// Analyzer is the ICMP feedback analyzer of one worker.
type Analyzer struct {
	slot     int
	maxItems int
	cid      *communityid.Hasher
	col      flow.Column[flowState]
	fbs      []*event.FlowFeedback
	fbFree   []uint32
	events   slab.Slab[event.ICMPFeedback] // the icmp_feedback events

	cVerified, cUnverified, cUnknown *stats.Counter
}

// New returns an analyzer for one worker.
func New(cfg Config) *Analyzer {
	a := &Analyzer{maxItems: cfg.MaxItems}
	if a.maxItems <= 0 {
		a.maxItems = DefaultMaxItems
	}
	if !cfg.NoCommunityID {
		a.cid = communityid.New(cfg.CommunityIDSeed, true)
	}
	if r := cfg.Stats; r != nil {
		const help = "ICMP errors classified, by whether the quoted TCP sequence number fits the flow."
		a.cVerified = r.Counter("pktpipe_icmp_feedback_total", help, "verified", "true")
		a.cUnverified = r.Counter("pktpipe_icmp_feedback_total", help, "verified", "false")
		a.cUnknown = r.Counter("pktpipe_icmp_feedback_total", help, "verified", "unknown")
	}
	return a
}

// SetSlot implements flow.SlotUser.
func (a *Analyzer) SetSlot(slot int) { a.slot = slot }

// flowState is a flow's column element: the sequence space each direction
// of a TCP flow has sent, [lo, hi] in serial arithmetic, and its feedback.
type flowState struct {
	lo, hi [2]uint32 // by flow.Dir
	// Bits 0 and 1: the range of that Dir is known; from bit 2, 1 + the
	// index of the flow's feedback in Analyzer.fbs (0: none yet).
	bits uint32
}

func (st *flowState) known(d flow.Dir) bool { return st.bits&(1<<(d&1)) != 0 }

func (st *flowState) add(d flow.Dir, seq, end uint32) {
	d &= 1
	if !st.known(d) {
		st.lo[d], st.hi[d] = seq, end
		st.bits |= 1 << d
		return
	}
	if int32(seq-st.lo[d]) < 0 {
		st.lo[d] = seq
	}
	if int32(end-st.hi[d]) > 0 {
		st.hi[d] = end
	}
}

func (st *flowState) holds(d flow.Dir, seq uint32) bool {
	d &= 1
	return seq-st.lo[d] <= st.hi[d]-st.lo[d]
}

// feedback returns st's feedback, with a new one in the side table for a
// flow that has none.
func (a *Analyzer) feedback(st *flowState) *event.FlowFeedback {
	if i := st.bits >> 2; i != 0 {
		return a.fbs[i-1]
	}
	var i uint32
	if n := len(a.fbFree); n > 0 {
		i = a.fbFree[n-1]
		a.fbFree = a.fbFree[:n-1]
	} else {
		a.fbs = append(a.fbs, nil)
		i = uint32(len(a.fbs))
	}
	x := &event.FlowFeedback{}
	a.fbs[i-1] = x
	st.bits |= i << 2
	return x
}

// Packet tracks the TCP sequence range of each direction.
func (a *Analyzer) Packet(f *flow.Flow, p *packet.Packet, dir flow.Dir, _ *pipeline.Emitter) {
	m := &p.Meta
	if m.Proto != packet.ProtoTCP {
		f.SkipPackets(a.slot) // a flow keeps its protocol
		return
	}
	if !m.HasL4 {
		return
	}
	_, _, bare := f.FirstTCP()
	if bare && f.Packets(0)+f.Packets(1) == 1 {
		return // the flow table holds the range it sends (stateOf)
	}
	if st := a.col.Get(f); f.Handshake() && (st == nil || !st.known(dir)) {
		return // a handshake's reply, noted nowhere else yet: Engage
	}
	a.stateOf(f).add(dir, m.Seq, segEnd(m.Seq, segLen(m), m.TCPFlags))
}

// Engage implements flow.Engager: the ranges of a handshake.
func (a *Analyzer) Engage(f *flow.Flow) {
	if _, _, bare := f.FirstTCP(); bare {
		a.stateOf(f)
	}
}

// segEnd is the end of a segment's sequence range.
func segEnd(seq uint32, n int, fl uint8) uint32 {
	end := seq + uint32(n)
	if fl&packet.TCPSyn != 0 {
		end++
	}
	if fl&packet.TCPFin != 0 {
		end++
	}
	return end
}

// A TCP flow whose first packet had no payload keeps no state for it,
// nor for its reply while it is a handshake (Flow.Handshake): the flow
// table holds their sequence numbers and flags, and stateOf adds their
// ranges when the flow needs a state.

// stateOf returns f's state, with the ranges of a bare first packet and
// of a handshake's reply added if it does not hold them.
func (a *Analyzer) stateOf(f *flow.Flow) *flowState {
	st := a.col.Of(f)
	if st.bits&3 != 0 && !f.Handshake() {
		return st // it holds what it will ever be told (most packets)
	}
	if fl, seq, bare := f.FirstTCP(); bare && st.bits&3 == 0 {
		st.add(f.FirstDir(), seq, segEnd(seq, 0, fl))
	}
	if fl, seq, _, ok := f.Reply(); ok && !st.known(f.FirstDir()^1) {
		st.add(f.FirstDir()^1, seq, segEnd(seq, 0, fl))
	}
	return st
}

// segLen is a TCP segment's payload length on the wire (from the IP
// length, so a short snaplen does not shrink it).
func segLen(m *packet.Meta) int {
	hdrs := int(m.PayloadOff) - int(m.L3Off)
	if n := int(m.IPLen) - hdrs; hdrs > 0 && n >= 0 && m.IPLen != 0 {
		return n
	}
	return int(m.PayloadLen)
}

// ICMPError classifies one error, emits its event and records it on f.
func (a *Analyzer) ICMPError(f *flow.Flow, p *packet.Packet, em *pipeline.Emitter) {
	m := &p.Meta
	cls, ok := Classify(m.Proto, m.ICMPType, m.ICMPCode)
	if !ok {
		return
	}
	ev := a.events.New()
	*ev = event.ICMPFeedback{ICMPType: m.ICMPType, ICMPCode: m.ICMPCode}
	fb := &ev.Feedback
	fb.Class, fb.Detail, fb.Reporter = cls.Name, cls.Detail, m.Src
	switch cls.Rest {
	case restMTU16:
		if mtu := m.ICMPRest & 0xffff; mtu != 0 {
			fb.MTU, fb.HasMTU = mtu, true
		}
	case restMTU32:
		if m.ICMPRest != 0 {
			fb.MTU, fb.HasMTU = m.ICMPRest, true
		}
	case restPtr8:
		fb.Pointer, fb.HasPointer = m.ICMPRest>>24, true
	case restPtr32:
		fb.Pointer, fb.HasPointer = m.ICMPRest, true
	case restGateway:
		r := m.ICMPRest
		fb.Gateway = netip.AddrFrom4([4]byte{byte(r >> 24), byte(r >> 16), byte(r >> 8), byte(r)})
	}
	q := m.Quoted()
	if q.Present {
		fb.HasQuote = true
		fb.Quoted = event.Quoted{
			SrcIP: q.Src, DestIP: q.Dst, SrcPort: q.SrcPort, DestPort: q.DstPort, HasPorts: q.HasPorts,
			Proto: q.Proto, TTL: q.TTL, IPLen: q.IPLen, Seq: q.Seq, HasSeq: q.HasSeq,
			ICMPType: q.ICMPType, ICMPID: q.ICMPID, HasEcho: q.HasEcho,
		}
	}
	fb.Truncated = q.Truncated
	qk, hasKey := packet.QuoteKey(m)

	if f == nil || !hasKey {
		a.unmatchedHeader(&ev.Header, p, qk, hasKey)
		a.count(fb.Verified)
		em.Emit(ev)
		return
	}
	f.FillHeader(&ev.Header, p.Timestamp)
	ev.PcapCnt = p.Index
	fb.Matched = true
	dir, _ := f.DirOf(qk)
	fb.Direction = dir.String()
	if d := p.Timestamp - f.Last(); d >= 0 {
		fb.SinceLastNs, fb.HasSinceLast = d, true
	}
	st := a.stateOf(f)
	if q.HasSeq && q.Proto == packet.ProtoTCP && st.known(dir) {
		if st.holds(dir, q.Seq) {
			fb.Verified = event.VerdictTrue
		} else {
			fb.Verified = event.VerdictFalse
		}
	}
	a.count(fb.Verified)
	a.record(a.feedback(st), p.Timestamp, ev, cls)
	em.Emit(ev)
}

func (a *Analyzer) count(v event.Verdict) {
	if a.cVerified == nil {
		return
	}
	switch v {
	case event.VerdictTrue:
		a.cVerified.Inc()
	case event.VerdictFalse:
		a.cUnverified.Inc()
	default:
		a.cUnknown.Inc()
	}
}

// unmatchedHeader fills the header of an error whose flow is unknown: the
// quoted packet's tuple (sender as src), or, with no usable quote, the
// ICMP packet's own addresses.
func (a *Analyzer) unmatchedHeader(h *event.Header, p *packet.Packet, qk packet.FlowKey, hasKey bool) {
	m := &p.Meta
	*h = event.Header{Timestamp: p.Timestamp, VLAN: m.VLAN, IfIndex: p.IfIndex, PcapCnt: p.Index}
	if !hasKey {
		h.SrcIP, h.DestIP, h.Proto = m.Src, m.Dst, m.Proto
		return
	}
	h.SrcIP, h.DestIP, h.SrcPort, h.DestPort, h.Proto = qk.Src, qk.Dst, qk.SrcPort, qk.DstPort, qk.Proto
	if a.cid == nil {
		return
	}
	q := m.Quoted()
	if qk.Proto == packet.ProtoICMP || qk.Proto == packet.ProtoICMPv6 {
		if q.HasEcho {
			h.CommunityID = a.cid.IDICMP(qk, q.ICMPType, 0)
		}
		return
	}
	if q.HasPorts || (qk.Proto != packet.ProtoTCP && qk.Proto != packet.ProtoUDP && qk.Proto != packet.ProtoSCTP) {
		h.CommunityID = a.cid.ID(qk)
	}
}

func (a *Analyzer) record(x *event.FlowFeedback, ts int64, ev *event.ICMPFeedback, cls Class) {
	x.Count++
	fb := &ev.Feedback
	if fb.Verified == event.VerdictFalse {
		x.Unverified++
	} else {
		if summaryRank(cls.Summary) > summaryRank(x.Summary) {
			x.Summary = cls.Summary
		}
		if fb.HasMTU && (x.PathMTU == 0 || fb.MTU < x.PathMTU) {
			x.PathMTU = fb.MTU
		}
	}
	if len(x.Items) < a.maxItems {
		if x.Items == nil {
			x.Items = make([]event.FeedbackItem, 0, min(a.maxItems, 2))
		}
		x.Items = append(x.Items, event.FeedbackItem{Timestamp: ts, ICMPType: ev.ICMPType, ICMPCode: ev.ICMPCode, Feedback: *fb})
	}
}

// End hands the flow's feedback to its record and frees the state.
func (a *Analyzer) End(f *flow.Flow, rec *event.Flow, _ *pipeline.Emitter) {
	st := a.col.Get(f)
	if st == nil {
		return
	}
	if i := st.bits >> 2; i != 0 {
		rec.Extra = append(rec.Extra, a.fbs[i-1])
		a.fbs[i-1] = nil
		a.fbFree = append(a.fbFree, i)
	}
	*st = flowState{}
}
