package dns

import (
	"github.com/pktpipe/pktpipe/internal/slab"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/appproto"
	"github.com/pktpipe/pktpipe/stages/flow"
	"github.com/pktpipe/pktpipe/stages/reassembly"
	"github.com/pktpipe/pktpipe/stages/rtt"
)

// Ports are the transport ports (either side) whose flows are decoded as
// DNS: 53 (DNS) and 5353 (mDNS).
func isDNSPort(p uint16) bool { return p == 53 || p == 5353 }

// Timings receives the query timings the DNS analyzer measures (stages/rtt's
// Analyzer is one): an rtt event per answered query, and the DNS figures
// of the flow summary. The Timings' End must run after the DNS analyzer's,
// which the registry's Needs ordering guarantees.
type Timings interface {
	ObserveDNS(f *flow.Flow, answered bool, ns int64, unanswered int)
	UnmatchedDNS()
	Timeout() int64  // ns of packet time a query waits for its answer
	MaxPending() int // outstanding queries per flow
}

// Analyzer emits dns events and times queries (a flow.Analyzer), reporting
// the timings to a Timings when it has one.
type Analyzer struct {
	rtt     Timings
	timeout int64
	max     int
	slot    int
	budget  *reassembly.Budget
	free    []*state
	msg     Message // scratch
	app     appproto.Finder

	// The events' memory: they go to the sinks and are dropped there.
	events  slab.Slab[event.DNS]
	rtts    slab.Slab[event.RTT]
	queries slab.Slab[event.DNSQuery]
	rrs     slab.Slab[event.DNSRR]
	text    slab.Strings

	cMsgs, cBad, cTrunc, cSpan, cGap, cLost, cOOO *stats.Counter
}

var _ flow.Analyzer = (*Analyzer)(nil)

// New returns one worker's DNS analyzer. r may be nil (no rtt events).
func New(r Timings, reg *stats.Registry) *Analyzer {
	if reg == nil {
		reg = stats.NewRegistry()
	}
	a := &Analyzer{rtt: r, timeout: rtt.DefaultTimeout, max: rtt.DefaultMaxPending}
	if r != nil {
		a.timeout, a.max = r.Timeout(), r.MaxPending()
	}
	a.cMsgs = reg.Counter("pktpipe_dns_messages_total", "DNS messages decoded.")
	a.cBad = reg.Counter("pktpipe_dns_malformed_total", "Payloads on DNS ports that did not decode as DNS.")
	a.cTrunc = reg.Counter("pktpipe_dns_truncated_total", "DNS messages decoded only in part (more than 256 questions and records, or a bad authority/additional section).")
	a.cSpan = reg.Counter("pktpipe_dns_tcp_reassembled_total", "DNS-over-TCP messages reassembled from several segments.")
	a.cGap = reg.Counter("pktpipe_dns_tcp_gaps_total", "Sequence gaps in DNS-over-TCP streams (a message in progress is lost; framing resumes at the next segment).")
	a.cOOO = reg.Counter("pktpipe_dns_tcp_out_of_order_total", "DNS-over-TCP segments that came ahead of the sequence and waited for the ones before them.")
	a.cLost = reg.Counter("pktpipe_dns_tcp_given_up_total", "DNS-over-TCP messages (or segments held ahead of a hole) not reassembled because the reassembly budget was full.")
	return a
}

// SetBudget makes the analyzer account its TCP reassembly buffers to b
// (the worker's reassembly budget; nil: unbounded but for the 64 KiB a
// DNS message can have).
func (a *Analyzer) SetBudget(b *reassembly.Budget) { a.budget = b }

// SetSlot implements flow.SlotUser.
func (a *Analyzer) SetSlot(i int) { a.slot = i }

type state struct {
	pend rtt.Pending
	tcp  [2]tcpDir
}

func (a *Analyzer) get(f *flow.Flow) *state {
	if s, ok := f.State(a.slot).(*state); ok {
		return s
	}
	var s *state
	if n := len(a.free); n > 0 {
		s = a.free[n-1]
		a.free = a.free[:n-1]
	} else {
		s = &state{}
	}
	s.pend.Max, s.pend.KeepFirst = a.max, true
	// A flow's first packet, a SYN without payload, left no state: the
	// flow table holds its sequence number.
	if fl, seq, bare := f.FirstTCP(); bare && fl&packet.TCPSyn != 0 {
		s.tcp[f.FirstDir()&1].syn(seq)
	}
	f.SetState(a.slot, s)
	return s
}

// Packet implements flow.Analyzer.
func (a *Analyzer) Packet(f *flow.Flow, p *packet.Packet, dir flow.Dir, em *pipeline.Emitter) {
	m := &p.Meta
	if (m.Proto != packet.ProtoUDP && m.Proto != packet.ProtoTCP) || !(isDNSPort(m.SrcPort) || isDNSPort(m.DstPort)) {
		f.SkipPackets(a.slot) // a flow keeps its protocol and ports
		return
	}
	pl := p.Payload()
	if m.Proto == packet.ProtoUDP {
		if len(pl) == 0 {
			return
		}
		s := a.get(f)
		a.expire(f, s, p.Timestamp)
		a.message(f, s, pl, p, em)
		return
	}
	// TCP
	d := dir & 1
	if m.TCPFlags&packet.TCPAck != 0 {
		// The peer acknowledged data past a hole the capture missed:
		// it will not come, go on with what was held after it.
		if s, ok := f.State(a.slot).(*state); ok {
			if o := &s.tcp[1-d]; len(o.ooo) > 0 && int32(m.Ack-o.next) > 0 {
				a.flush(f, s, o, em)
			}
		}
	}
	if len(pl) == 0 {
		if m.TCPFlags&packet.TCPSyn != 0 {
			if _, _, bare := f.FirstTCP(); bare && f.Packets(0)+f.Packets(1) == 1 {
				return // the flow's first: see get
			}
			a.get(f).tcp[d].syn(m.Seq)
		}
		return
	}
	s := a.get(f)
	a.expire(f, s, p.Timestamp)
	a.segment(f, s, &s.tcp[d], m.Seq, pl, p, em)
}

func (a *Analyzer) expire(f *flow.Flow, s *state, now int64) {
	if n := s.pend.Expire(now, a.timeout); n > 0 && a.rtt != nil {
		a.rtt.ObserveDNS(f, false, 0, n)
	}
}

// message decodes one DNS message, carried (or completed) by packet p,
// and emits its event.
func (a *Analyzer) message(f *flow.Flow, s *state, b []byte, p *packet.Packet, em *pipeline.Emitter) {
	m := &a.msg
	if err := m.Parse(b); err != nil {
		a.cBad.Inc()
		return
	}
	a.cMsgs.Inc()
	if m.Truncated {
		a.cTrunc.Inc()
	}
	a.emit(f, s, a.event(m), p, em)
}

// event builds the dns event of a decoded message: one string holds all
// its text, which the records' fields slice.
func (a *Analyzer) event(m *Message) *event.DNS {
	ev := a.events.New()
	*ev = event.DNS{Response: m.QR(), ID: m.ID, Flags: m.Flags, Truncated: m.Truncated}
	text := a.text.String(m.Text)
	str := func(s Span) string { return text[s.Off : s.Off+s.Len] }
	if n := len(m.Questions); n == 1 {
		ev.Queries = ev.Q1[:]
	} else if n > 1 {
		ev.Queries = a.queries.Take(n)
	}
	for i, q := range m.Questions {
		ev.Queries[i] = event.DNSQuery{RRName: str(q.Name), RRType: TypeName(q.Type)}
	}
	if len(m.RRs) == 0 {
		return ev
	}
	rrs := a.rrs.Take(len(m.RRs))
	var n [3]int
	var raw string
	for i := range m.RRs {
		r := &m.RRs[i]
		n[r.Section]++
		o := &rrs[i]
		*o = event.DNSRR{RRName: str(r.Name), RRType: TypeName(r.Type), TTL: r.TTL, N: r.N}
		switch r.Kind {
		case KindText:
			o.Kind, o.RData = event.DNSText, str(r.Data)
		case KindSOA:
			o.Kind, o.RData, o.RData2 = event.DNSSOA, str(r.Data), str(r.Data2)
		case KindSRV:
			o.Kind, o.RData = event.DNSSRV, str(r.Data)
		case KindSVCB:
			o.Kind, o.RData = event.DNSSVCB, str(r.Data)
		case KindOPT:
			o.Kind = event.DNSOPT
		case KindSSHFP:
			o.Kind = event.DNSSSHFP
		}
		if r.Raw.Len > 0 {
			if raw == "" { // wire bytes are rare (OPT options, alpn): copied once
				raw = string(m.raw)
			}
			o.Raw = raw[r.Raw.Off : r.Raw.Off+r.Raw.Len]
		}
	}
	ev.Answers = rrs[:n[0]:n[0]]
	ev.Authorities = rrs[n[0] : n[0]+n[1] : n[0]+n[1]]
	ev.Additionals = rrs[n[0]+n[1]:]
	return ev
}

// emit matches a message with the outstanding queries and emits its dns
// event (and rtt event), stamped with packet p: the one that carried or
// completed the message (its time and, as pcap_cnt, its Index).
func (a *Analyzer) emit(f *flow.Flow, s *state, ev *event.DNS, p *packet.Packet, em *pipeline.Emitter) {
	ts := p.Timestamp
	f.FillHeader(&ev.Header, ts)
	ev.PcapCnt = p.Index
	ev.AppProto = a.app.Of(f)
	key := uint32(ev.ID)
	if !ev.Response {
		if _, dropped := s.pend.Request(key, ts); dropped && a.rtt != nil {
			a.rtt.ObserveDNS(f, false, 0, 1)
		}
		em.Emit(ev)
		return
	}
	ns, dup, ok := s.pend.Answer(key, ts)
	if ok {
		ev.RTTNS, ev.HasRTT = ns, true
	}
	em.Emit(ev)
	if a.rtt == nil {
		return
	}
	if !ok {
		a.rtt.UnmatchedDNS()
		return
	}
	a.rtt.ObserveDNS(f, true, ns, 0)
	r := a.rtts.New()
	*r = event.RTT{Kind: event.RTTDNS, ID: ev.ID, RCode: RCodeName(uint8(ev.Flags & 0xf)), NS: ns, Retransmitted: dup}
	if len(ev.Queries) > 0 {
		r.RRName, r.RRType = ev.Queries[0].RRName, ev.Queries[0].RRType
	}
	r.Header = ev.Header
	em.Emit(r)
}

// ICMPError implements flow.Analyzer.
func (a *Analyzer) ICMPError(*flow.Flow, *packet.Packet, *pipeline.Emitter) {}

// End implements flow.Analyzer: queries still outstanding are unanswered.
func (a *Analyzer) End(f *flow.Flow, _ *event.Flow, em *pipeline.Emitter) {
	s, ok := f.State(a.slot).(*state)
	if !ok {
		return
	}
	for d := range s.tcp {
		if t := &s.tcp[d]; len(t.ooo) > 0 {
			// Segments still held behind a hole: decode them.
			a.flush(f, s, t, em)
		}
	}
	if n := s.pend.Len(); n > 0 && a.rtt != nil {
		a.rtt.ObserveDNS(f, false, 0, n)
	}
	s.pend.Reset()
	for d := range s.tcp {
		s.tcp[d].reset(a.budget)
	}
	f.SetState(a.slot, nil)
	a.free = append(a.free, s)
}
