package rtt

// The analyzer as it was before its state moved into a flow.Column (commit
// a02ea35): the reference of the differential tests (diff_test.go).

import (
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/flow"
)

func (a *refAnalyzer) SetSlot(i int) { a.slot = i }

// refAnalyzer is one worker's RTT analyzer (a flow.Analyzer).
type refAnalyzer struct {
	cfg  Config
	slot int
	free []*refState

	measured, unanswered, unmatched [nKinds]*stats.Counter
	refused                         *stats.Counter
}

// New returns an analyzer for one worker.
func newRef(cfg Config) *refAnalyzer {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.Stats == nil {
		cfg.Stats = stats.NewRegistry()
	}
	a := &refAnalyzer{cfg: cfg}
	r := cfg.Stats
	for k := range nKinds {
		a.measured[k] = r.Counter("pktpipe_rtt_measured_total", "Request/response pairs timed, by kind.", "kind", kindNames[k])
		a.unanswered[k] = r.Counter("pktpipe_rtt_unanswered_total", "Requests that expired, were dropped from a full table, or were outstanding when their flow ended, by kind.", "kind", kindNames[k])
		a.unmatched[k] = r.Counter("pktpipe_rtt_unmatched_total", "Responses with no outstanding request, by kind.", "kind", kindNames[k])
	}
	a.refused = r.Counter("pktpipe_rtt_refused_total", "TCP connections refused (SYN answered by RST).")
	return a
}

// SetSlot implements flow.SlotUser.

// refHandshake is the TCP refHandshake tracker of one flow.
type refHandshake struct {
	synTS, synackTS int64
	synSeq          uint32
	synackSeq       uint32
	syns, synacks   uint32
	synRetrans      bool
	done            bool
}

type refState struct {
	hs   refHandshake
	echo Pending
	sum  event.RTTSummary
}

func (a *refAnalyzer) get(f *flow.Flow) *refState {
	if s, ok := f.State(a.slot).(*refState); ok {
		return s
	}
	var s *refState
	if n := len(a.free); n > 0 {
		s = a.free[n-1]
		a.free = a.free[:n-1]
	} else {
		s = &refState{}
	}
	s.echo.Max = a.cfg.MaxPending
	f.SetState(a.slot, s)
	return s
}

// Packet implements flow.refAnalyzer.
func (a *refAnalyzer) Packet(f *flow.Flow, p *packet.Packet, dir flow.Dir, em *pipeline.Emitter) {
	m := &p.Meta
	switch m.Proto {
	case packet.ProtoTCP:
		if s, ok := f.State(a.slot).(*refState); ok && s.hs.done {
			return
		}
		a.tcp(f, p, dir, em)
	case packet.ProtoICMP, packet.ProtoICMPv6:
		if packet.IsEcho(m.Proto, m.ICMPType) {
			a.echo(f, p, em)
		}
	}
}

func (a *refAnalyzer) tcp(f *flow.Flow, p *packet.Packet, dir flow.Dir, em *pipeline.Emitter) {
	m := &p.Meta
	fl := m.TCPFlags
	ts := p.Timestamp
	switch {
	case fl&(packet.TCPSyn|packet.TCPAck|packet.TCPRst) == packet.TCPSyn && dir == flow.ToServer:
		s := a.get(f)
		h := &s.hs
		if h.syns > 0 {
			h.synRetrans = true
		}
		h.syns++
		h.synTS, h.synSeq = ts, m.Seq
		h.synackTS, h.synacks = 0, 0 // a SYN/ACK must answer this SYN
	case fl&(packet.TCPSyn|packet.TCPAck|packet.TCPRst) == packet.TCPSyn|packet.TCPAck && dir == flow.ToClient:
		s, ok := f.State(a.slot).(*refState)
		if !ok || s.hs.syns == 0 || m.Ack != s.hs.synSeq+1 {
			return
		}
		h := &s.hs
		if h.synacks == 0 {
			h.synackTS, h.synackSeq = ts, m.Seq
		}
		h.synacks++
	case fl&packet.TCPRst != 0 && dir == flow.ToClient:
		s, ok := f.State(a.slot).(*refState)
		if !ok || s.hs.syns == 0 || s.hs.synacks != 0 {
			return
		}
		h := &s.hs
		if fl&packet.TCPAck != 0 && m.Ack != h.synSeq+1 {
			return
		}
		h.done = true
		s.sum.Refused, s.sum.RSTNS, s.sum.SYNRetransmitted = true, ts-h.synTS, h.synRetrans
		a.refused.Inc()
		ev := &event.RTT{Kind: event.RTTTCPHandshake, Refused: true, RSTNS: ts - h.synTS, SYNRetransmitted: h.synRetrans}
		f.FillHeader(&ev.Header, ts)
		ev.PcapCnt = p.Index
		em.Emit(ev)
	case fl&(packet.TCPSyn|packet.TCPAck|packet.TCPRst) == packet.TCPAck && dir == flow.ToServer:
		s, ok := f.State(a.slot).(*refState)
		if !ok || s.hs.synacks == 0 || int32(m.Ack-(s.hs.synackSeq+1)) < 0 {
			return
		}
		h := &s.hs
		h.done = true
		sum := &s.sum
		sum.Handshake = true
		sum.ServerNS, sum.ClientNS, sum.HandshakeNS = h.synackTS-h.synTS, ts-h.synackTS, ts-h.synTS
		sum.SYNRetransmitted = h.synRetrans
		a.measured[KindHandshake].Inc()
		ev := &event.RTT{
			Kind: event.RTTTCPHandshake, ServerNS: sum.ServerNS, ClientNS: sum.ClientNS, HandshakeNS: sum.HandshakeNS,
			SYNRetransmitted: h.synRetrans, SYNACKRetransmitted: h.synacks > 1,
		}
		f.FillHeader(&ev.Header, ts)
		ev.PcapCnt = p.Index
		em.Emit(ev)
	}
}

func (a *refAnalyzer) echo(f *flow.Flow, p *packet.Packet, em *pipeline.Emitter) {
	m := &p.Meta
	ts := p.Timestamp
	s := a.get(f)
	if n := s.echo.Expire(ts, a.cfg.Timeout); n > 0 {
		s.sum.Echo.Unanswered += uint64(n)
		a.unanswered[KindEcho].Add(uint64(n))
	}
	if isEchoRequest(m.Proto, m.ICMPType) {
		if _, dropped := s.echo.Request(uint32(m.ICMPSeq), ts); dropped {
			s.sum.Echo.Unanswered++
			a.unanswered[KindEcho].Inc()
		}
		return
	}
	d, dup, ok := s.echo.Answer(uint32(m.ICMPSeq), ts)
	if !ok {
		a.unmatched[KindEcho].Inc()
		return
	}
	s.sum.Echo.Add(d)
	a.measured[KindEcho].Inc()
	ev := &event.RTT{Kind: event.RTTICMPEcho, ID: m.ICMPID, Seq: m.ICMPSeq, NS: d, Retransmitted: dup}
	f.FillHeader(&ev.Header, ts)
	ev.PcapCnt = p.Index
	em.Emit(ev)
}

// ObserveDNS records a DNS outcome on f's summary: a query answered after
// ns, or (answered false) n queries that went unanswered. stages/dns calls
// it; it must be registered before this analyzer so that its End runs
// first.
func (a *refAnalyzer) ObserveDNS(f *flow.Flow, answered bool, ns int64, n int) {
	s := a.get(f)
	if answered {
		s.sum.DNS.Add(ns)
		a.measured[KindDNS].Inc()
		return
	}
	s.sum.DNS.Unanswered += uint64(n)
	a.unanswered[KindDNS].Add(uint64(n))
}

// UnmatchedDNS counts a DNS response without an outstanding query.
func (a *refAnalyzer) UnmatchedDNS() { a.unmatched[KindDNS].Inc() }

// ICMPError implements flow.refAnalyzer (errors are stages/icmp's business).
func (a *refAnalyzer) ICMPError(*flow.Flow, *packet.Packet, *pipeline.Emitter) {}

// End implements flow.refAnalyzer: outstanding echoes count as unanswered and
// the summary goes on the record.
func (a *refAnalyzer) End(f *flow.Flow, rec *event.Flow, _ *pipeline.Emitter) {
	s, ok := f.State(a.slot).(*refState)
	if !ok {
		return
	}
	if n := s.echo.Len(); n > 0 {
		s.sum.Echo.Unanswered += uint64(n)
		a.unanswered[KindEcho].Add(uint64(n))
	}
	if !s.sum.Empty() {
		sum := s.sum // the record is encoded later: it needs its own copy
		rec.Extra = append(rec.Extra, &sum)
	}
	s.hs = refHandshake{}
	s.sum = event.RTTSummary{}
	s.echo.Reset()
	f.SetState(a.slot, nil)
	a.free = append(a.free, s)
}
