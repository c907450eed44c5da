package icmpfb

// The analyzer as it was before its state moved into a flow.Column (commit
// a02ea35): the reference of the differential tests (diff_test.go).

import (
	"net/netip"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/communityid"
	"github.com/pktpipe/pktpipe/stages/flow"
)

type refAnalyzer struct {
	slot     int
	maxItems int
	cid      *communityid.Hasher
	free     *refFlowState

	cVerified, cUnverified, cUnknown *stats.Counter
}

func newRef(cfg Config) *refAnalyzer {
	a := &refAnalyzer{maxItems: cfg.MaxItems}
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

func (a *refAnalyzer) SetSlot(slot int) { a.slot = slot }

type refSeqRange struct {
	lo, hi uint32
	ok     bool
}

func (r *refSeqRange) add(seq, end uint32) {
	if !r.ok {
		r.lo, r.hi, r.ok = seq, end, true
		return
	}
	if int32(seq-r.lo) < 0 {
		r.lo = seq
	}
	if int32(end-r.hi) > 0 {
		r.hi = end
	}
}

func (r *refSeqRange) holds(seq uint32) bool { return seq-r.lo <= r.hi-r.lo }

type refFlowState struct {
	seq  [2]refSeqRange // by flow.Dir
	fb   *event.FlowFeedback
	next *refFlowState // free list
}

func (a *refAnalyzer) state(f *flow.Flow) *refFlowState {
	if st, ok := f.State(a.slot).(*refFlowState); ok {
		return st
	}
	st := a.free
	if st != nil {
		a.free = st.next
		*st = refFlowState{}
	} else {
		st = &refFlowState{}
	}
	f.SetState(a.slot, st)
	return st
}

// Packet tracks the TCP sequence range of each direction.
func (a *refAnalyzer) Packet(f *flow.Flow, p *packet.Packet, dir flow.Dir, _ *pipeline.Emitter) {
	m := &p.Meta
	if m.Proto != packet.ProtoTCP || !m.HasL4 {
		return
	}
	st := a.state(f)
	end := m.Seq + uint32(segLen(m))
	if m.TCPFlags&packet.TCPSyn != 0 {
		end++
	}
	if m.TCPFlags&packet.TCPFin != 0 {
		end++
	}
	st.seq[dir&1].add(m.Seq, end)
}

func (a *refAnalyzer) ICMPError(f *flow.Flow, p *packet.Packet, em *pipeline.Emitter) {
	m := &p.Meta
	cls, ok := Classify(m.Proto, m.ICMPType, m.ICMPCode)
	if !ok {
		return
	}
	ev := &event.ICMPFeedback{ICMPType: m.ICMPType, ICMPCode: m.ICMPCode}
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
	st, _ := f.State(a.slot).(*refFlowState)
	if q.HasSeq && q.Proto == packet.ProtoTCP && st != nil && st.seq[dir&1].ok {
		if st.seq[dir&1].holds(q.Seq) {
			fb.Verified = event.VerdictTrue
		} else {
			fb.Verified = event.VerdictFalse
		}
	}
	a.count(fb.Verified)
	if st == nil {
		st = a.state(f)
	}
	a.record(st, p.Timestamp, ev, cls)
	em.Emit(ev)
}

func (a *refAnalyzer) count(v event.Verdict) {
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

func (a *refAnalyzer) unmatchedHeader(h *event.Header, p *packet.Packet, qk packet.FlowKey, hasKey bool) {
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
	if qk.Proto == packet.ProtoICMP || qk.Proto == packet.ProtoICMPv6 {
		if m.Quoted().HasEcho {
			h.CommunityID = a.cid.IDICMP(qk, m.Quoted().ICMPType, 0)
		}
		return
	}
	if m.Quoted().HasPorts || (qk.Proto != packet.ProtoTCP && qk.Proto != packet.ProtoUDP && qk.Proto != packet.ProtoSCTP) {
		h.CommunityID = a.cid.ID(qk)
	}
}

func (a *refAnalyzer) record(st *refFlowState, ts int64, ev *event.ICMPFeedback, cls Class) {
	x := st.fb
	if x == nil {
		x = &event.FlowFeedback{}
		st.fb = x
	}
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

func (a *refAnalyzer) End(f *flow.Flow, rec *event.Flow, _ *pipeline.Emitter) {
	st, ok := f.State(a.slot).(*refFlowState)
	if !ok {
		return
	}
	if st.fb != nil {
		rec.Extra = append(rec.Extra, st.fb)
	}
	*st = refFlowState{next: a.free}
	a.free = st
	f.SetState(a.slot, nil)
}
