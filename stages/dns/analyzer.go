package dns

import (
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/flow"
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
	free    []*state
	msg     Message // scratch

	cMsgs, cBad *stats.Counter
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
	return a
}

// SetSlot implements flow.SlotUser.
func (a *Analyzer) SetSlot(i int) { a.slot = i }

type state struct {
	pend  rtt.Pending
	fr    [2]TCPFramer
	stash [2]stash // a TCP message whose end is in a later segment
}

// stash holds a decoded message until the segment that completes it (its
// events are stamped with that segment's time, as Wireshark's reassembly
// does).
type stash struct {
	ok bool
	ev event.DNS
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
	f.SetState(a.slot, s)
	return s
}

// Packet implements flow.Analyzer.
func (a *Analyzer) Packet(f *flow.Flow, p *packet.Packet, dir flow.Dir, em *pipeline.Emitter) {
	m := &p.Meta
	if (m.Proto != packet.ProtoUDP && m.Proto != packet.ProtoTCP) || !(isDNSPort(m.SrcPort) || isDNSPort(m.DstPort)) {
		return
	}
	pl := p.Payload()
	if m.Proto == packet.ProtoUDP {
		if len(pl) == 0 {
			return
		}
		s := a.get(f)
		a.expire(f, s, p.Timestamp)
		a.message(f, s, pl, p, em, -1)
		return
	}
	// TCP
	d := dir & 1
	if len(pl) == 0 {
		if m.TCPFlags&packet.TCPSyn != 0 {
			a.get(f).fr[d].SYN(m.Seq)
		}
		return
	}
	s := a.get(f)
	a.expire(f, s, p.Timestamp)
	fr := &s.fr[d]
	if fr.Segment(m.Seq, pl) && s.stash[d].ok {
		a.emit(f, s, &s.stash[d].ev, p, em)
		s.stash[d].ok = false
	}
	for {
		msg, complete, ok := fr.Next()
		if !ok {
			break
		}
		di := -1
		if !complete {
			di = int(d)
		}
		a.message(f, s, msg, p, em, di)
	}
}

func (a *Analyzer) expire(f *flow.Flow, s *state, now int64) {
	if n := s.pend.Expire(now, a.timeout); n > 0 && a.rtt != nil {
		a.rtt.ObserveDNS(f, false, 0, n)
	}
}

// message decodes one DNS message, carried (or completed) by packet p;
// stashDir >= 0 defers its events to the segment that completes it.
func (a *Analyzer) message(f *flow.Flow, s *state, b []byte, p *packet.Packet, em *pipeline.Emitter, stashDir int) {
	m := &a.msg
	if err := m.Parse(b); err != nil {
		a.cBad.Inc()
		return
	}
	a.cMsgs.Inc()
	ev := event.DNS{Answer: m.QR(), ID: m.ID, Flags: m.Flags, Opcode: m.Opcode()}
	if m.HasQuestion {
		ev.RRName, ev.RRType = string(m.Name()), TypeName(m.QType)
	}
	if ev.Answer {
		ev.RCode = RCodeName(m.RCode())
	}
	if stashDir >= 0 {
		st := &s.stash[stashDir]
		st.ok, st.ev = true, ev
		return
	}
	a.emit(f, s, &ev, p, em)
}

// emit matches a message with the outstanding queries and emits its dns
// event (and rtt event), stamped with packet p: the one that carried or
// completed the message (its time and, as pcap_cnt, its Index).
func (a *Analyzer) emit(f *flow.Flow, s *state, d *event.DNS, p *packet.Packet, em *pipeline.Emitter) {
	ts := p.Timestamp
	ev := new(event.DNS)
	*ev = *d
	f.FillHeader(&ev.Header, ts)
	ev.PcapCnt = p.Index
	key := uint32(d.ID)
	if !d.Answer {
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
	r := &event.RTT{Kind: event.RTTDNS, ID: d.ID, RRName: d.RRName, RRType: d.RRType, RCode: d.RCode, NS: ns, Retransmitted: dup}
	r.Header = ev.Header
	em.Emit(r)
}

// ICMPError implements flow.Analyzer.
func (a *Analyzer) ICMPError(*flow.Flow, *packet.Packet, *pipeline.Emitter) {}

// End implements flow.Analyzer: queries still outstanding are unanswered.
func (a *Analyzer) End(f *flow.Flow, _ *event.Flow, _ *pipeline.Emitter) {
	s, ok := f.State(a.slot).(*state)
	if !ok {
		return
	}
	if n := s.pend.Len(); n > 0 && a.rtt != nil {
		a.rtt.ObserveDNS(f, false, 0, n)
	}
	s.pend.Reset()
	s.fr = [2]TCPFramer{}
	s.stash = [2]stash{}
	f.SetState(a.slot, nil)
	a.free = append(a.free, s)
}

// TCPFramer finds the length-prefixed DNS messages (RFC 1035 4.2.2) in one
// direction of a TCP stream, segment by segment, in sequence order:
// retransmitted segments are skipped, and the remainder of a message
// longer than its segment is skipped in the segments that follow. A gap in
// the sequence loses the message boundaries; the framer then assumes the
// next segment starts a message. The zero value is ready.
type TCPFramer struct {
	next   uint32 // next expected sequence number
	synced bool   // next is known
	rest   int    // bytes of the current message still to come
	buf    []byte
	off    int
}

// SYN tells the framer the direction's initial sequence number.
func (t *TCPFramer) SYN(seq uint32) { t.next, t.synced, t.rest = seq+1, true, 0 }

// Segment feeds one segment's payload; then call Next until it returns
// false. It reports whether a message that began in an earlier segment
// ended in this one.
func (t *TCPFramer) Segment(seq uint32, p []byte) (completed bool) {
	t.buf, t.off = nil, 0
	if t.synced {
		d := int32(seq - t.next)
		switch {
		case d < 0:
			if int32(seq+uint32(len(p))-t.next) <= 0 {
				return false // retransmission
			}
			// Overlaps what was seen: keep the new part only.
			p = p[-d:]
		case d > 0: // a gap: boundaries are lost
			t.rest = 0
		}
	}
	t.next, t.synced = seq+uint32(len(p)), true
	if t.rest > 0 {
		if t.rest > len(p) {
			t.rest -= len(p)
			return false
		}
		p = p[t.rest:]
		t.rest = 0
		completed = true
	}
	t.buf = p
	return completed
}

// Next returns the next message of the segment: its bytes (possibly only
// its start, complete false, when it continues in later segments).
func (t *TCPFramer) Next() (msg []byte, complete, ok bool) {
	b := t.buf[t.off:]
	if len(b) < 2 {
		if len(b) == 1 { // the length prefix itself is split: lose sync
			t.synced = false
		}
		t.buf, t.off = nil, 0
		return nil, false, false
	}
	n := int(be16(b))
	if 2+n <= len(b) {
		t.off += 2 + n
		return b[2 : 2+n], true, true
	}
	t.rest = 2 + n - len(b)
	t.buf, t.off = nil, 0
	return b[2:], false, true
}
