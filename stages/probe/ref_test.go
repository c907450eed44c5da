package probe

// The analyzer as it was before its state moved into a flow.Column (commit
// a02ea35): the reference of the differential tests (diff_test.go).

import (
	"net/netip"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/flow"
	"github.com/pktpipe/pktpipe/stages/icmpfb"
)

type refState struct {
	kind      Kind
	out       Outcome
	final     bool // the target answered
	answered  bool // the target or an ICMP error answered
	attempts  uint32
	seqFirst  uint32 // TCP: first and latest SYN sequence numbers
	seqLast   uint32
	lastProbe int64 // ns
	rtt       int64 // ns, when answered
	reporter  netip.Addr
	icmpType  uint8
	icmpCode  uint8
}

// refAnalyzer is one worker's probe analyzer (a flow.Analyzer).
type refAnalyzer struct {
	slot int
	free []*refState

	sink func(Record) // the scan detector's way in, when wired

	outcomes                    [NumOutcomes]*stats.Counter
	badAnswer, badQuote, badDir *stats.Counter
}

// New returns an analyzer for one worker; reg may be nil.
func newRef(reg *stats.Registry) *refAnalyzer {
	if reg == nil {
		reg = stats.NewRegistry()
	}
	a := &refAnalyzer{}
	for i := range a.outcomes {
		a.outcomes[i] = reg.Counter("pktpipe_probe_outcomes_total", "Connection attempts ended, by outcome.", "outcome", outcomeNames[i])
	}
	const help = "Answers to connection attempts that were ignored: a SYN/ACK or RST not acknowledging the client's SYN, an ICMP error quoting another sequence number or the server's direction."
	a.badAnswer = reg.Counter("pktpipe_probe_ignored_total", help, "reason", "answer_mismatch")
	a.badQuote = reg.Counter("pktpipe_probe_ignored_total", help, "reason", "quote_mismatch")
	a.badDir = reg.Counter("pktpipe_probe_ignored_total", help, "reason", "quote_direction")
	return a
}

// SetRecordSink makes End hand every ended attempt to send (the worker's
// sender into the scan detector's keyed stage). Set before the first
// packet.
func (a *refAnalyzer) SetRecordSink(send func(Record)) { a.sink = send }

// SetSlot implements flow.SlotUser.
func (a *refAnalyzer) SetSlot(i int) { a.slot = i }

// Packet implements flow.refAnalyzer.
func (a *refAnalyzer) Packet(f *flow.Flow, p *packet.Packet, dir flow.Dir, _ *pipeline.Emitter) {
	m := &p.Meta
	s, ok := f.State(a.slot).(*refState)
	if !ok {
		var k Kind
		if dir == flow.ToServer && f.Packets(flow.ToServer)+f.Packets(flow.ToClient) == 1 {
			k = attemptKind(m)
		}
		if k == 0 {
			f.SkipPackets(a.slot)
			return
		}
		if n := len(a.free); n > 0 {
			s = a.free[n-1]
			a.free = a.free[:n-1]
		} else {
			s = &refState{}
		}
		s.kind = k
		s.seqFirst = m.Seq
		f.SetState(a.slot, s)
	}
	if dir == flow.ToServer {
		if s.final {
			return
		}
		switch s.kind {
		case KindTCP:
			if m.TCPFlags&(packet.TCPSyn|packet.TCPAck|packet.TCPRst) != packet.TCPSyn {
				return
			}
			s.seqLast = m.Seq
		case KindEcho:
			if m.ICMPType != 8 && m.ICMPType != 128 {
				return
			}
		}
		s.attempts++
		s.lastProbe = p.Timestamp
		return
	}
	// From the server.
	switch s.kind {
	case KindTCP:
		fl := m.TCPFlags
		var o Outcome
		switch {
		case fl&(packet.TCPSyn|packet.TCPAck|packet.TCPRst) == packet.TCPSyn|packet.TCPAck:
			o = Open
		case fl&packet.TCPRst != 0 && fl&packet.TCPSyn == 0:
			o = Closed
		default:
			return
		}
		// An RST in answer to a SYN carries ACK (RFC 9293 3.10.7.1); one
		// without it, or acknowledging another sequence number, is not an
		// answer to these probes.
		if fl&packet.TCPAck == 0 || (m.Ack != s.seqFirst+1 && m.Ack != s.seqLast+1) {
			a.badAnswer.Inc()
			return
		}
		a.answer(s, o, p.Timestamp)
	case KindUDP:
		a.answer(s, Open, p.Timestamp)
	case KindEcho:
		if m.ICMPType != 0 && m.ICMPType != 129 {
			return
		}
		a.answer(s, Open, p.Timestamp)
	}
	s.reporter = netip.Addr{}
	f.SkipPackets(a.slot)
}

// answer records the target's own answer, which is final.
func (a *refAnalyzer) answer(s *refState, o Outcome, ts int64) {
	s.out, s.final, s.answered = o, true, true
	s.rtt = max(0, ts-s.lastProbe) // a capture's clock may step back
}

// ICMPError implements flow.refAnalyzer.
func (a *refAnalyzer) ICMPError(f *flow.Flow, p *packet.Packet, _ *pipeline.Emitter) {
	if f == nil {
		return
	}
	s, ok := f.State(a.slot).(*refState)
	if !ok || s.final {
		return
	}
	m := &p.Meta
	c, ok := icmpfb.Classify(m.Proto, m.ICMPType, m.ICMPCode)
	if !ok {
		return
	}
	var o Outcome
	switch c.Summary {
	case "rejected":
		o = Closed
	case "filtered":
		o = AdminProhibited
	case "unreachable":
		o = Unreachable
	case "ttl-exceeded":
		o = TTLExceeded
	default:
		return // frag-needed, redirect, ...: nothing about reachability
	}
	qk, ok := packet.QuoteKey(m)
	if !ok {
		return
	}
	if d, ok := f.DirOf(qk); !ok || d != flow.ToServer {
		a.badDir.Inc()
		return
	}
	if s.kind == KindTCP {
		q := m.Quoted()
		if !q.HasSeq || (q.Seq != s.seqFirst && q.Seq != s.seqLast) {
			a.badQuote.Inc()
			return
		}
	}
	s.out, s.answered = o, true
	s.rtt = max(0, p.Timestamp-s.lastProbe)
	s.reporter, s.icmpType, s.icmpCode = m.Src, m.ICMPType, m.ICMPCode
}

// End implements flow.refAnalyzer: the outcome joins the record's conn object.
func (a *refAnalyzer) End(f *flow.Flow, rec *event.Flow, _ *pipeline.Emitter) {
	s, ok := f.State(a.slot).(*refState)
	if !ok {
		return
	}
	c := &Conn{Outcome: s.out, Attempts: s.attempts, Answered: s.answered, RTTNS: s.rtt,
		Reporter: s.reporter, ICMPType: s.icmpType, ICMPCode: s.icmpCode}
	a.outcomes[s.out].Inc()
	if a.sink != nil {
		ca, _ := f.Client()
		sa, sp := f.Server()
		if s.kind == KindEcho {
			sp = 0
		}
		a.sink(Record{Src: ca, Dst: sa, DPort: sp, Proto: f.Proto(), Outcome: s.out, First: f.First(), Last: s.lastProbe})
	}
	for i, x := range rec.Extra {
		if x.Key() == "conn" {
			c.Inner = x
			rec.Extra[i] = c
			c = nil
			break
		}
	}
	if c != nil {
		rec.Extra = append(rec.Extra, c)
	}
	*s = refState{}
	f.SetState(a.slot, nil)
	a.free = append(a.free, s)
}

// Conn carries the probe's fields of a flow record's conn object. When
// another analyzer (tcpstate) already wrote a conn object, Inner is that
