// Package probe is the flow analyzer that says what happened to every
// connection attempt on the wire, the way an active prober (nmap) would
// report it: open, closed, filtered, admin_prohibited, unreachable or
// ttl_exceeded. It adds outcome, attempts and, when the attempt was
// answered, the answer's RTT to the flow record's conn object:
//
//	"conn": {"state": "REJ", "history": "Sr", "missed_bytes": 0,
//	         "outcome": "closed", "attempts": 1, "rtt_ms": 0.051, "rtt_ns": 51000}
//
// # Attempts
//
// A flow is an attempt when its first packet, from the client, is a TCP
// SYN (without ACK), a UDP datagram, or an ICMP/ICMPv6 echo request. Other
// flows (TCP picked up midstream or from its SYN/ACK, other ICMP) get no
// outcome. attempts counts the probes the client sent until the target
// answered (every one when it never did; an ICMP error does not stop the
// count, as the client may try again): SYNs (the first and its
// retransmissions), datagrams, echo requests. So a connection whose SYN was
// answered only after two retransmissions is "open" with attempts 3, and a
// ping of five answered requests is "open" with attempts 1.
//
// # Outcome
//
// From the target itself (final: later packets and errors change nothing):
//   - open: a SYN/ACK acknowledging one of the client's SYNs, any UDP
//     datagram back, an echo reply;
//   - closed: an RST acknowledging one of the client's SYNs.
//
// From an ICMP/ICMPv6 error quoting the client's probe (the latest error
// counts, until the target answers; see icmpfb.Classify for the classes):
//   - closed: port or protocol unreachable;
//   - admin_prohibited: administratively prohibited (v4 codes 9, 10, 13,
//     precedence cut-offs 14, 15; v6 code 1, source policy failed 5, reject
//     route 6);
//   - unreachable: net, host or address unreachable, no route, unknown
//     net/host, beyond scope;
//   - ttl_exceeded: time exceeded in transit (not reassembly timeouts).
//
// Errors that say nothing about reachability (frag-needed, packet too big,
// redirect, source quench, parameter problem) leave the outcome alone.
// Otherwise, with no answer before the flow ends: filtered.
//
// This follows the vocabulary, which differs from nmap's in one
// place: nmap calls a TCP port answered by ICMP port-unreachable
// "filtered"; here it is "closed", as for UDP (nmap's -sU does the same).
//
// # Trust
//
// Anyone on the path can forge an answer, so answers are checked against
// what the client sent: a SYN/ACK or RST must acknowledge the first or the
// latest SYN's sequence number + 1, and an ICMP error quoting TCP must
// quote the first or the latest SYN's sequence number. An error must quote
// the client's direction. Anything else is ignored and counted in
// pktpipe_probe_ignored_total{reason}.
//
// # RTT
//
// rtt_ms / rtt_ns run from the latest probe before the answer to the
// answer (the target's or the ICMP error's): after retransmissions the
// answer is taken to answer the latest copy, as Wireshark and stages/rtt
// do.
//
// # conn
//
// stages/tcpstate writes the conn object of TCP records. The probe
// analyzer runs after it (Order 45) and, when a conn extension is already
// on the record, wraps it so the probe's fields close the same object;
// otherwise (UDP, ICMP, tcpstate off) it adds a conn object of its own.
//
// # Scans
//
// With a scan sender (SetScanSender), End also hands each ended attempt,
// as a Record, to the scan detector (Detector, scan.go): a
// pipeline.Keyed stage keyed by the client's address, so one source's
// attempts meet whichever worker owned their flows. The detector keeps,
// per source, the distinct (target, proto, port) probed with the
// strongest outcome each drew, and when the source goes quiet (ScanConfig
// Idle, in packet time), is evicted or the run ends, writes one scan
// event (event.Scan) if it crossed a threshold: portscan, portsweep,
// ping_sweep or mixed. Decoy and distributed scans (many sources, one
// target) are not detected.
//
// # Cost
//
// A flow's state is 40 bytes in a flow.Column (no allocation, no
// pointer); the address of an ICMP error's sender, which few attempts
// draw, is in a side table the state indexes. Flows that are not attempts,
// and attempts once the target has answered, are skipped. The record's
// extension allocates once per attempt. An attempt of one packet, or a
// TCP handshake (flow.Flow's Handshake), has no state: the flow table
// holds what its packets said, and Engage, End and ICMPError make it from
// there.
package probe

import (
	"net/netip"
	"sync"

	"github.com/pktpipe/pktpipe/internal/slab"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/flow"
	"github.com/pktpipe/pktpipe/stages/icmpfb"
)

// Outcome is what happened to an attempt.
type Outcome uint8

const (
	Filtered Outcome = iota // no answer (the zero value: nothing came back)
	Open
	Closed
	AdminProhibited
	Unreachable
	TTLExceeded
	NumOutcomes
)

var outcomeNames = [NumOutcomes]string{"filtered", "open", "closed", "admin_prohibited", "unreachable", "ttl_exceeded"}

func (o Outcome) String() string {
	if o < NumOutcomes {
		return outcomeNames[o]
	}
	return "filtered"
}

// ParseOutcome is the inverse of String.
func ParseOutcome(s string) (Outcome, bool) {
	for i, n := range outcomeNames {
		if n == s {
			return Outcome(i), true
		}
	}
	return 0, false
}

// Kind is what the attempt probed with.
type Kind uint8

const (
	KindTCP Kind = iota + 1
	KindUDP
	KindEcho
)

// state is a flow's column element (kind 0: not an attempt, or not seen).
type state struct {
	lastProbe int64 // ns
	rtt       int64 // ns, when answered
	attempts  uint32
	seqFirst  uint32 // TCP: first and latest SYN sequence numbers
	seqLast   uint32
	reporter  uint32 // 1 + index in Analyzer.reporters of the ICMP error's sender, 0 = none
	kind      Kind
	out       Outcome
	final     bool // the target answered
	answered  bool // the target or an ICMP error answered
	icmpType  uint8
	icmpCode  uint8
}

// Analyzer is one worker's probe analyzer (a flow.Analyzer).
type Analyzer struct {
	slot      int
	col       flow.Column[state]
	conns     slab.Slab[Conn] // the records' conn objects
	reporters []netip.Addr
	repFree   []uint32

	sink  func(Record) // the scan detector's way in, when wired
	flush func()

	outcomes                    [NumOutcomes]*stats.Counter
	badAnswer, badQuote, badDir *stats.Counter
}

// setReporter records the sender of the ICMP error behind s's outcome.
func (a *Analyzer) setReporter(s *state, addr netip.Addr) {
	if s.reporter == 0 {
		if n := len(a.repFree); n > 0 {
			s.reporter = a.repFree[n-1]
			a.repFree = a.repFree[:n-1]
		} else {
			a.reporters = append(a.reporters, netip.Addr{})
			s.reporter = uint32(len(a.reporters))
		}
	}
	a.reporters[s.reporter-1] = addr
}

// dropReporter forgets s's ICMP error sender, returning it.
func (a *Analyzer) dropReporter(s *state) netip.Addr {
	if s.reporter == 0 {
		return netip.Addr{}
	}
	r := a.reporters[s.reporter-1]
	a.reporters[s.reporter-1] = netip.Addr{}
	a.repFree = append(a.repFree, s.reporter)
	s.reporter = 0
	return r
}

var _ flow.Analyzer = (*Analyzer)(nil)

// New returns an analyzer for one worker; reg may be nil.
func New(reg *stats.Registry) *Analyzer {
	if reg == nil {
		reg = stats.NewRegistry()
	}
	a := &Analyzer{}
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
func (a *Analyzer) SetRecordSink(send func(Record)) { a.sink = send }

// SetScanSender wires the analyzer to the scan detector: every ended
// attempt goes to s (this worker's sender into the detector's
// pipeline.Keyed stage), and FlushWorker flushes it.
func (a *Analyzer) SetScanSender(s *pipeline.KeyedSender[Record, SourceState]) {
	a.sink = func(r Record) { s.Send(r.Src, &r) }
	a.flush = s.Flush
}

// FlushWorker hands the records still batched to the detector; the worker
// calls it once its flows have all ended (after Processor.Flush).
func (a *Analyzer) FlushWorker() {
	if a.flush != nil {
		a.flush()
	}
}

// SetSlot implements flow.SlotUser.
func (a *Analyzer) SetSlot(i int) { a.slot = i }

// attemptKind says whether p, the first packet of its flow, starts an
// attempt.
func attemptKind(m *packet.Meta) Kind {
	switch m.Proto {
	case packet.ProtoTCP:
		if m.TCPFlags&(packet.TCPSyn|packet.TCPAck|packet.TCPRst) == packet.TCPSyn {
			return KindTCP
		}
	case packet.ProtoUDP:
		return KindUDP
	case packet.ProtoICMP:
		if m.ICMPType == 8 {
			return KindEcho
		}
	case packet.ProtoICMPv6:
		if m.ICMPType == 128 {
			return KindEcho
		}
	}
	return 0
}

// firstAttempt is the kind of attempt f's first packet started (0:
// none), from the flow table: what an attempt's first packet leaves is
// the flow's first time and TCP sequence number, so an attempt keeps no
// state until its second packet or an ICMP error about it (stateOf).
func firstAttempt(f *flow.Flow) Kind {
	if f.FirstDir() != flow.ToServer {
		return 0
	}
	switch f.Proto() {
	case packet.ProtoTCP:
		if fl, _, _ := f.FirstTCP(); fl&(packet.TCPSyn|packet.TCPAck|packet.TCPRst) == packet.TCPSyn {
			return KindTCP
		}
	case packet.ProtoUDP:
		return KindUDP
	case packet.ProtoICMP:
		if t, _ := f.FirstICMP(); t == 8 {
			return KindEcho
		}
	case packet.ProtoICMPv6:
		if t, _ := f.FirstICMP(); t == 128 {
			return KindEcho
		}
	}
	return 0
}

// firstState is the state an attempt's first packet leaves (kind k).
func firstState(f *flow.Flow, k Kind) state {
	s := state{kind: k, attempts: 1, lastProbe: f.First()}
	if k == KindTCP {
		_, s.seqFirst, _ = f.FirstTCP()
		s.seqLast = s.seqFirst
	}
	return s
}

// stateOf returns f's state, made from the flow table if f has none yet
// and its first packet started an attempt (kind 0 if not).
func (a *Analyzer) stateOf(f *flow.Flow) *state {
	s := a.col.Of(f)
	if s.kind == 0 {
		if k := firstAttempt(f); k != 0 {
			a.replay(f, s, k)
		}
	}
	return s
}

// replay makes s what an attempt (kind k) that kept no state would hold:
// its first packet's, and the answer of a handshake's reply.
func (a *Analyzer) replay(f *flow.Flow, s *state, k Kind) {
	*s = firstState(f, k)
	if fl, _, acks, ok := f.Reply(); ok {
		a.fromServer(f, s, fl, acks, f.Last())
	}
}

// view returns f's state without making one: what the flow table says
// for an attempt that has kept none, in tmp (nil if not an attempt).
func (a *Analyzer) view(f *flow.Flow, tmp *state) *state {
	if s := a.col.Get(f); s != nil && s.kind != 0 {
		return s
	}
	if k := firstAttempt(f); k != 0 {
		a.replay(f, tmp, k)
		return tmp
	}
	return nil
}

// Engage implements flow.Engager: the answer of a handshake's reply to
// an attempt that kept no state.
func (a *Analyzer) Engage(f *flow.Flow) {
	if _, _, _, ok := f.Reply(); ok && firstAttempt(f) != 0 {
		a.stateOf(f)
	}
}

// Packet implements flow.Analyzer.
func (a *Analyzer) Packet(f *flow.Flow, p *packet.Packet, dir flow.Dir, _ *pipeline.Emitter) {
	m := &p.Meta
	switch f.Packets(flow.ToServer) + f.Packets(flow.ToClient) {
	case 1:
		if firstAttempt(f) == 0 {
			f.SkipPackets(a.slot)
		}
		return // an attempt: the flow table holds what its first packet says
	case 2:
		if g := a.col.Get(f); f.Handshake() && (g == nil || g.kind == 0) {
			// The reply of a handshake (an attempt's: not skipped) that
			// kept no state (no ICMP error came): Engage.
			return
		}
	}
	s := a.stateOf(f)
	if s.kind == 0 {
		f.SkipPackets(a.slot)
		return
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
		acks := m.Ack == s.seqFirst+1 || m.Ack == s.seqLast+1
		a.fromServer(f, s, m.TCPFlags, m.TCPFlags&packet.TCPAck != 0 && acks, p.Timestamp)
		return
	case KindUDP:
		a.answer(s, Open, p.Timestamp)
	case KindEcho:
		if m.ICMPType != 0 && m.ICMPType != 129 {
			return
		}
		a.answer(s, Open, p.Timestamp)
	}
	a.dropReporter(s)
	f.SkipPackets(a.slot)
}

// fromServer takes a TCP segment from the target, with flags fl, acks
// telling whether it acknowledged one of the client's SYNs (ACK set, the
// acknowledgment number one of theirs + 1).
func (a *Analyzer) fromServer(f *flow.Flow, s *state, fl uint8, acks bool, ts int64) {
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
	if !acks {
		a.badAnswer.Inc()
		return
	}
	a.answer(s, o, ts)
	a.dropReporter(s)
	f.SkipPackets(a.slot)
}

// answer records the target's own answer, which is final.
func (a *Analyzer) answer(s *state, o Outcome, ts int64) {
	s.out, s.final, s.answered = o, true, true
	s.rtt = max(0, ts-s.lastProbe) // a capture's clock may step back
}

// ICMPError implements flow.Analyzer.
func (a *Analyzer) ICMPError(f *flow.Flow, p *packet.Packet, _ *pipeline.Emitter) {
	if f == nil {
		return
	}
	var s *state
	switch g := a.col.Get(f); {
	case g != nil && g.kind != 0:
		s = g
	case firstAttempt(f) != 0:
		s = a.stateOf(f) // an attempt that kept no state: now it does
	default:
		return
	}
	if s.final {
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
	a.setReporter(s, m.Src)
	s.icmpType, s.icmpCode = m.ICMPType, m.ICMPCode
}

// End implements flow.Analyzer: the outcome joins the record's conn object.
func (a *Analyzer) End(f *flow.Flow, rec *event.Flow, _ *pipeline.Emitter) {
	var tmp state
	s := a.view(f, &tmp)
	if s == nil {
		return
	}
	c := a.conns.New()
	*c = Conn{Outcome: s.out, Attempts: s.attempts, Answered: s.answered, RTTNS: s.rtt,
		Reporter: a.dropReporter(s), ICMPType: s.icmpType, ICMPCode: s.icmpCode}
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
	*s = state{}
}

// Conn carries the probe's fields of a flow record's conn object. When
// another analyzer (tcpstate) already wrote a conn object, Inner is that
// extension and these fields are written at the end of its object.
type Conn struct {
	Inner    event.Extension
	Outcome  Outcome
	Attempts uint32
	Answered bool  // RTTNS is meaningful
	RTTNS    int64 // latest probe → answer
	// The ICMP error behind the outcome, if any: its sender and type/code.
	Reporter           netip.Addr
	ICMPType, ICMPCode uint8
}

func (*Conn) Key() string { return "conn" }

func (c *Conn) Encode(w event.Writer) {
	if c.Inner != nil {
		// (An inner conn that is not an object would lose these fields;
		// tcpstate's always is.)
		sp := splicePool.Get().(*splice)
		*sp = splice{Writer: w, c: c}
		c.Inner.Encode(sp)
		*sp = splice{}
		splicePool.Put(sp)
		return
	}
	w.BeginObject()
	c.fields(w)
	w.EndObject()
}

func (c *Conn) fields(w event.Writer) {
	w.Key("outcome")
	w.String(c.Outcome.String())
	w.Key("attempts")
	w.Uint(uint64(c.Attempts))
	if c.Answered {
		w.Key("rtt_ms")
		w.Float(float64(c.RTTNS) / 1e6)
		w.Key("rtt_ns")
		w.Int(c.RTTNS)
	}
	if c.Reporter.IsValid() {
		w.Key("icmp_reporter")
		w.IP(c.Reporter)
		w.Key("icmp_type")
		w.Uint(uint64(c.ICMPType))
		w.Key("icmp_code")
		w.Uint(uint64(c.ICMPCode))
	}
}

// Pooled: a splice handed to an interface method escapes, and encoders
// run once per record per sink.
var splicePool = sync.Pool{New: func() any { return new(splice) }}

// splice passes an inner extension's output through and writes the probe's
// fields just before the inner top-level object closes.
type splice struct {
	event.Writer
	c     *Conn
	depth int
	done  bool
}

func (s *splice) BeginObject() { s.depth++; s.Writer.BeginObject() }
func (s *splice) BeginArray()  { s.depth++; s.Writer.BeginArray() }
func (s *splice) EndArray()    { s.depth--; s.Writer.EndArray() }
func (s *splice) EndObject() {
	s.depth--
	if s.depth == 0 && !s.done {
		s.done = true
		s.c.fields(s.Writer)
	}
	s.Writer.EndObject()
}
