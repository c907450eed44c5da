// Package rtt is the flow analyzer that times request/response pairs from
// packet timestamps: the TCP handshake and ICMP/ICMPv6 echo here, DNS
// through stages/dns (which reports its times into this analyzer's flow
// summary), and the Pending table that any analyzer can reuse.
//
// Every correlation becomes an rtt event (event.RTT) stamped with the
// packet that completed it, and the flow record gets an rtt summary
// (event.RTTSummary: the handshake's times, and count/min/avg/max plus the
// unanswered count of echoes and DNS queries).
//
// # TCP handshake
//
// Matched by sequence numbers, as seen from the tap: a SYN (no ACK) from
// the client; a SYN/ACK from the server whose ack is the SYN's seq+1; the
// client's first segment with ACK and without SYN or RST whose ack is at
// least the SYN/ACK's seq+1 (more when the server already sent data or a
// FIN the client acknowledges at once). server_ns is SYN→SYN/ACK, client_ns SYN/ACK→ACK,
// handshake_ns their sum, SYN→ACK.
//
// A retransmitted SYN: the time counts from the latest SYN before the
// SYN/ACK that answers it (and a SYN seen after a SYN/ACK starts over),
// which is what Wireshark's tcp.analysis.initial_rtt does (it keeps the
// time of the most recent SYN, ts_mru_syn); syn_retransmitted is set. A
// retransmitted SYN/ACK: server_ns is measured to the first SYN/ACK and
// client_ns from it, so that the sum stays SYN→ACK; synack_retransmitted
// is set. Wireshark also gives an initial_rtt to a stream whose first
// ACK-without-SYN follows a SYN without any SYN/ACK (for example an
// RST/ACK refusing the connection); here an RST from the server after the
// SYN, with no SYN/ACK (and, when it has the ACK bit, acking the SYN), is
// reported as refused with rst_ns = SYN→RST and no RTT. Wireshark takes
// the first ACK-without-SYN of either side: when the server sends data
// before the client's ACK reaches the tap, its initial_rtt ends at the
// server's own segment, which measures nothing; here the handshake always
// ends at the client's ACK.
//
// ICMP echo replies are matched with the latest request of the same
// sequence (Wireshark's icmp.resptime does the same); DNS responses with
// the first query of the same id (as dns.time).
//
// # ICMP echo
//
// An echo flow is keyed by the addresses and the echo id (stages/flow);
// requests are matched with replies by sequence number in a Pending table
// (the latest request with that sequence, as Wireshark's icmp.resptime).
// Requests expire after Config.Timeout (10 s) of packet time, checked at
// each packet of the flow, and those still outstanding when the flow ends
// count as unanswered (pktpipe_rtt_unanswered_total{kind}); at most
// Config.MaxPending (64) are outstanding per flow, the oldest is dropped
// beyond that (counted as unanswered too).
//
// Results depend only on the flow's own packets, never on batch
// boundaries, other flows or the worker count.
//
// # Cost
//
// A flow's state is 32 bytes in a flow.Column (no allocation, no
// pointer): the handshake's sequence numbers and times, which once it is
// over hold its result. Echo requests and the echo and DNS statistics,
// which only ICMP echo and DNS flows need, are in a side table the state
// indexes, reused across flows. Flows of other protocols, and TCP flows
// whose handshake is over, are skipped. The steady state allocates only
// per event. A client's SYN, and the SYN/ACK of a handshake (flow.Flow's
// Handshake), leave no state: the flow table holds their times and
// sequence numbers, and the state is made from there when the flow needs
// one.
package rtt

import (
	"github.com/pktpipe/pktpipe/internal/slab"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/flow"
)

// Config tunes the analyzer. Zero values take the defaults.
type Config struct {
	Timeout    int64 // ns of packet time a request waits (DefaultTimeout)
	MaxPending int   // outstanding requests per flow (DefaultMaxPending)
	Stats      *stats.Registry
}

// Kinds, for counters.
const (
	KindHandshake = iota
	KindEcho
	KindDNS
	nKinds
)

var kindNames = [nKinds]string{event.RTTTCPHandshake, event.RTTICMPEcho, event.RTTDNS}

// Analyzer is one worker's RTT analyzer (a flow.Analyzer).
type Analyzer struct {
	cfg      Config
	slot     int
	col      flow.Column[state]
	sums     slab.Slab[event.RTTSummary] // the records' rtt objects
	events   slab.Slab[event.RTT]        // the rtt events
	more     []more
	moreFree []uint32

	measured, unanswered, unmatched [nKinds]*stats.Counter
	refused                         *stats.Counter
}

var _ flow.Analyzer = (*Analyzer)(nil)

// New returns an analyzer for one worker.
func New(cfg Config) *Analyzer {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.Stats == nil {
		cfg.Stats = stats.NewRegistry()
	}
	a := &Analyzer{cfg: cfg}
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
func (a *Analyzer) SetSlot(i int) { a.slot = i }

// Timeout and MaxPending are the configured limits (stages/dns uses the
// same for its Pending tables).
func (a *Analyzer) Timeout() int64  { return a.cfg.Timeout }
func (a *Analyzer) MaxPending() int { return a.cfg.MaxPending }

// state is a flow's column element: the TCP handshake tracker, and the
// index of its echo/DNS state (the zero value: nothing seen).
type state struct {
	// While the handshake goes on, the times of the latest SYN and of the
	// first SYN/ACK answering it; once it is over (stDone), server_ns and
	// client_ns, or rst_ns in t0 (stRefused).
	t0, t1        int64
	synSeq        uint32
	synackSeq     uint32
	more          uint32 // 1 + index in Analyzer.more, 0 = none
	syns, synacks uint8  // counts, saturating (only 0, 1 and more matter)
	flags         uint8
}

const (
	stSynRetrans = 1 << iota
	stDone       // the handshake is over: timed, or refused
	stRefused
)

// more is the state of a flow with echo requests or DNS outcomes.
type more struct {
	echo      Pending
	echoStats event.RTTStats
	dnsStats  event.RTTStats
}

// moreOf returns f's echo/DNS state, taking an entry of the side table
// for a flow that has none.
func (a *Analyzer) moreOf(f *flow.Flow) *more {
	s := a.stateOf(f)
	if s.more == 0 {
		if n := len(a.moreFree); n > 0 {
			s.more = a.moreFree[n-1]
			a.moreFree = a.moreFree[:n-1]
		} else {
			a.more = append(a.more, more{})
			s.more = uint32(len(a.more))
		}
		x := &a.more[s.more-1]
		x.echo.Max = a.cfg.MaxPending
		if echoFirst(f) {
			// The first packet's request, which kept no state.
			x.echo.Request(uint32(f.FirstEchoSeq()), f.First())
		}
	}
	return &a.more[s.more-1]
}

// echoFirst reports whether f's first packet was an echo request: it
// leaves no state (the flow table holds its time and sequence number)
// until the flow's next packet.
func echoFirst(f *flow.Flow) bool {
	t, _ := f.FirstICMP()
	return isEchoRequest(f.Proto(), t)
}

func inc(n *uint8) {
	if *n < 255 {
		*n++
	}
}

// Packet implements flow.Analyzer.
func (a *Analyzer) Packet(f *flow.Flow, p *packet.Packet, dir flow.Dir, em *pipeline.Emitter) {
	m := &p.Meta
	switch m.Proto {
	case packet.ProtoTCP:
		a.tcp(f, p, dir, em)
	case packet.ProtoICMP, packet.ProtoICMPv6:
		if packet.IsEcho(m.Proto, m.ICMPType) {
			a.echo(f, p, em)
		}
	default: // nothing to time here (DNS comes through ObserveDNS)
		f.SkipPackets(a.slot)
	}
}

// A client's SYN as a flow's first packet leaves no state: the flow
// table holds its time and sequence number, and stateOf makes the state
// it would have left when the flow needs one.

// synFirst reports whether f's first packet was the client's SYN.
func synFirst(f *flow.Flow) bool {
	fl, _, _ := f.FirstTCP()
	return fl&(packet.TCPSyn|packet.TCPAck|packet.TCPRst) == packet.TCPSyn && f.FirstDir() == flow.ToServer
}

// stateOf returns f's state, making it (with what a first SYN left, from
// the flow table) if f has none yet.
func (a *Analyzer) stateOf(f *flow.Flow) *state {
	s := a.col.Of(f)
	if s.syns == 0 && s.flags == 0 && synFirst(f) && f.Packets(0)+f.Packets(1) > 1 {
		_, seq, _ := f.FirstTCP()
		s.t0, s.synSeq, s.syns = f.First(), seq, 1
	}
	return s
}

func (a *Analyzer) tcp(f *flow.Flow, p *packet.Packet, dir flow.Dir, em *pipeline.Emitter) {
	m := &p.Meta
	fl := m.TCPFlags
	ts := p.Timestamp
	switch {
	case fl&(packet.TCPSyn|packet.TCPAck|packet.TCPRst) == packet.TCPSyn && dir == flow.ToServer:
		if f.Packets(0)+f.Packets(1) == 1 {
			return // the flow table holds what it says (stateOf)
		}
		s := a.stateOf(f)
		if s.syns > 0 {
			s.flags |= stSynRetrans
		}
		inc(&s.syns)
		s.t0, s.synSeq = ts, m.Seq
		s.t1, s.synacks = 0, 0 // a SYN/ACK must answer this SYN
	case fl&(packet.TCPSyn|packet.TCPAck|packet.TCPRst) == packet.TCPSyn|packet.TCPAck && dir == flow.ToClient:
		if f.Handshake() && synFirst(f) {
			return // the reply of a handshake: Engage
		}
		s := a.get(f)
		if s == nil || s.syns == 0 || m.Ack != s.synSeq+1 {
			return
		}
		if s.synacks == 0 {
			s.t1, s.synackSeq = ts, m.Seq
		}
		inc(&s.synacks)
	case fl&packet.TCPRst != 0 && dir == flow.ToClient:
		s := a.get(f)
		if s == nil || s.syns == 0 || s.synacks != 0 {
			return
		}
		if fl&packet.TCPAck != 0 && m.Ack != s.synSeq+1 {
			return
		}
		retrans := s.flags&stSynRetrans != 0
		s.t0, s.t1 = ts-s.t0, 0
		s.flags |= stDone | stRefused
		f.SkipPackets(a.slot)
		a.refused.Inc()
		ev := a.events.New()
		*ev = event.RTT{Kind: event.RTTTCPHandshake, Refused: true, RSTNS: s.t0, SYNRetransmitted: retrans}
		f.FillHeader(&ev.Header, ts)
		ev.PcapCnt = p.Index
		em.Emit(ev)
	case fl&(packet.TCPSyn|packet.TCPAck|packet.TCPRst) == packet.TCPAck && dir == flow.ToServer:
		s := a.col.Get(f)
		if s == nil || s.synacks == 0 || int32(m.Ack-(s.synackSeq+1)) < 0 {
			return
		}
		serverNS, clientNS := s.t1-s.t0, ts-s.t1
		s.t0, s.t1 = serverNS, clientNS
		s.flags |= stDone
		f.SkipPackets(a.slot)
		a.measured[KindHandshake].Inc()
		ev := a.events.New()
		*ev = event.RTT{
			Kind: event.RTTTCPHandshake, ServerNS: serverNS, ClientNS: clientNS, HandshakeNS: serverNS + clientNS,
			SYNRetransmitted: s.flags&stSynRetrans != 0, SYNACKRetransmitted: s.synacks > 1,
		}
		f.FillHeader(&ev.Header, ts)
		ev.PcapCnt = p.Index
		em.Emit(ev)
	}
}

// Engage implements flow.Engager: a handshake's SYN/ACK answering its
// SYN, which kept no state, is timed.
func (a *Analyzer) Engage(f *flow.Flow) {
	fl, seq, acks, ok := f.Reply()
	if !ok || !acks || fl&(packet.TCPSyn|packet.TCPAck|packet.TCPRst) != packet.TCPSyn|packet.TCPAck || !synFirst(f) {
		return
	}
	s := a.stateOf(f)
	s.t1, s.synackSeq = f.Last(), seq
	inc(&s.synacks)
}

// get returns f's state for an answer: nil when f has none (and its
// first packet was not the client's SYN), without allocating.
func (a *Analyzer) get(f *flow.Flow) *state {
	if s := a.col.Get(f); s != nil && (s.syns != 0 || s.flags != 0) {
		return s
	}
	if synFirst(f) {
		return a.stateOf(f)
	}
	return a.col.Get(f)
}

func (a *Analyzer) echo(f *flow.Flow, p *packet.Packet, em *pipeline.Emitter) {
	m := &p.Meta
	ts := p.Timestamp
	if f.Packets(0)+f.Packets(1) == 1 && echoFirst(f) {
		return // moreOf makes the request when the flow needs it
	}
	s := a.moreOf(f)
	if n := s.echo.Expire(ts, a.cfg.Timeout); n > 0 {
		s.echoStats.Unanswered += uint64(n)
		a.unanswered[KindEcho].Add(uint64(n))
	}
	if isEchoRequest(m.Proto, m.ICMPType) {
		if _, dropped := s.echo.Request(uint32(m.ICMPSeq), ts); dropped {
			s.echoStats.Unanswered++
			a.unanswered[KindEcho].Inc()
		}
		return
	}
	d, dup, ok := s.echo.Answer(uint32(m.ICMPSeq), ts)
	if !ok {
		a.unmatched[KindEcho].Inc()
		return
	}
	s.echoStats.Add(d)
	a.measured[KindEcho].Inc()
	ev := a.events.New()
	*ev = event.RTT{Kind: event.RTTICMPEcho, ID: m.ICMPID, Seq: m.ICMPSeq, NS: d, Retransmitted: dup}
	f.FillHeader(&ev.Header, ts)
	ev.PcapCnt = p.Index
	em.Emit(ev)
}

// ObserveDNS records a DNS outcome on f's summary: a query answered after
// ns, or (answered false) n queries that went unanswered. stages/dns calls
// it; it must be registered before this analyzer so that its End runs
// first.
func (a *Analyzer) ObserveDNS(f *flow.Flow, answered bool, ns int64, n int) {
	s := a.moreOf(f)
	if answered {
		s.dnsStats.Add(ns)
		a.measured[KindDNS].Inc()
		return
	}
	s.dnsStats.Unanswered += uint64(n)
	a.unanswered[KindDNS].Add(uint64(n))
}

// UnmatchedDNS counts a DNS response without an outstanding query.
func (a *Analyzer) UnmatchedDNS() { a.unmatched[KindDNS].Inc() }

// ICMPError implements flow.Analyzer (errors are stages/icmp's business).
func (a *Analyzer) ICMPError(*flow.Flow, *packet.Packet, *pipeline.Emitter) {}

// End implements flow.Analyzer: outstanding echoes count as unanswered and
// the summary goes on the record.
func (a *Analyzer) End(f *flow.Flow, rec *event.Flow, _ *pipeline.Emitter) {
	s := a.col.Get(f)
	if (s == nil || s.more == 0) && echoFirst(f) {
		// A lone echo request that kept no state: unanswered.
		a.unanswered[KindEcho].Inc()
		rec.Extra = append(rec.Extra, &event.RTTSummary{Echo: event.RTTStats{Unanswered: 1}})
		if s != nil {
			*s = state{}
		}
		return
	}
	if s == nil {
		return
	}
	var sum event.RTTSummary
	if s.flags&stDone != 0 {
		sum.SYNRetransmitted = s.flags&stSynRetrans != 0
		if s.flags&stRefused != 0 {
			sum.Refused, sum.RSTNS = true, s.t0
		} else {
			sum.Handshake = true
			sum.ServerNS, sum.ClientNS, sum.HandshakeNS = s.t0, s.t1, s.t0+s.t1
		}
	}
	if s.more != 0 {
		x := &a.more[s.more-1]
		if n := x.echo.Len(); n > 0 {
			x.echoStats.Unanswered += uint64(n)
			a.unanswered[KindEcho].Add(uint64(n))
		}
		sum.Echo, sum.DNS = x.echoStats, x.dnsStats
		x.echo.Reset()
		x.echoStats, x.dnsStats = event.RTTStats{}, event.RTTStats{}
		a.moreFree = append(a.moreFree, s.more)
	}
	if !sum.Empty() {
		x := a.sums.New()
		*x = sum
		rec.Extra = append(rec.Extra, x)
	}
	*s = state{}
}

func isEchoRequest(proto, typ uint8) bool {
	return (proto == packet.ProtoICMP && typ == 8) || (proto == packet.ProtoICMPv6 && typ == 128)
}
