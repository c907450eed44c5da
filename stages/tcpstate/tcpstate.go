// Package tcpstate is the flow analyzer that gives each TCP flow record a
// Zeek-style connection summary: the conn object,
//
//	"conn": {"state": "SF", "history": "ShADadFf", "missed_bytes": 0}
//
// # State
//
// Each side (originator = the flow's client, responder = its server) has
// the state of Zeek's TCP analyzer: inactive, SYN sent, SYN/ACK sent,
// partial (seen without a SYN), established, closed (FIN sent) or reset.
// A SYN/ACK from the responder establishes it, and the originator too if
// that had sent a SYN (S1 needs no third packet). conn.state is then
// derived from the two as Zeek's conn_state() does: S0 (SYN, no reply), S1
// (established, not closed), SF (both closed), REJ (SYN answered by RST),
// S2/S3 (established, only the originator/responder closed), RSTO/RSTR
// (established, originator/responder sent an RST), RSTOS0 (SYN then RST
// from the originator, no SYN/ACK), RSTRH (SYN/ACK then RST from the
// responder, no SYN seen), SH/SHR (SYN or SYN/ACK then FIN with the peer
// silent: half-open), OTH (midstream, no SYN seen).
//
// # History
//
// Zeek's letters, uppercase for the originator and lowercase for the
// responder, each recorded once per side in the order first seen:
// S SYN, H SYN/ACK, A pure ACK, D payload, F FIN, R RST, Q SYN with FIN
// or RST, T retransmitted payload, W zero window, G content gap (added
// when the flow ends, for a side that had missed bytes), and ^ first when
// the flow's first packet came from the responder (Zeek's direction flip).
//
// # missed_bytes
//
// Each side's sequence space is followed from its SYN (or its first
// segment when picked up midstream), in 32-bit serial arithmetic, so
// wraparound is harmless. A segment starting beyond the next expected
// sequence opens a hole; later segments that fall into a hole fill it (out
// of order delivery is not a gap), and segments entirely below the next
// expected sequence that fill no hole are retransmissions (T), never gaps.
// Up to four holes are tracked per side; when a fifth opens, the oldest is
// counted as missed. Holes still open when the flow ends are missed.
// missed_bytes is the sum of both sides, and missed_bytes_toserver /
// missed_bytes_toclient split it when it is not zero. Jumps of 1 GiB or
// more are taken as a resynchronisation, not a gap. RST segments are not
// followed (their sequence number is often arbitrary).
//
// # Cost
//
// A TCP flow's state is 44 bytes in a flow.Column (no allocation, no
// pointer): each side's state, letters seen and next sequence number, and
// the history. Holes and missed bytes, which only flows with gaps have,
// are in a side table the state indexes. Other protocols' flows are
// skipped. The steady state allocates only the record's extension. A
// flow that is only a SYN or RST, or a handshake of those (flow.Flow's
// Handshake), has no state: the flow table holds what its packets said,
// and Engage or End rebuild it from there.
package tcpstate

import (
	"strings"

	"github.com/pktpipe/pktpipe/internal/slab"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/stages/flow"
)

// Endpoint states (Zeek's TCP_ENDPOINT_*).
const (
	stInactive = iota
	stSynSent
	stSynAckSent
	stPartial
	stEstablished
	stClosed
	stReset
)

const maxHoles = 4

type hole struct{ start, end uint32 }

type endpoint struct {
	st      uint8
	flags   uint8  // epSynced, epData
	letters uint16 // bit per history letter already recorded
	next    uint32
}

const (
	epSynced = 1 << iota // next is known
	epData               // the side sent payload
)

// state is a TCP flow's column element (the zero value: no packet yet).
type state struct {
	ep [2]endpoint
	// hist holds at most '^' and the 10 letters of each side.
	hist    [21]byte
	n       uint8
	started bool
	gaps    uint32 // 1 + index in Analyzer.gaps, 0 = no hole ever opened
}

// gapState is the sequence holes of a flow that has had some, by Dir.
type gapState struct {
	holes  [2][maxHoles]hole
	nholes [2]uint8
	missed [2]uint64
}

// Analyzer is one worker's TCP state analyzer (a flow.Analyzer).
type Analyzer struct {
	slot    int
	col     flow.Column[state]
	gaps    []gapState
	gapFree []uint32
	conns   slab.Slab[Conn] // the records' conn objects
	// histories holds the history strings met (at most maxHistories):
	// flows repeat a few, which then cost no allocation.
	histories map[string]string
}

const maxHistories = 1024

var _ flow.Analyzer = (*Analyzer)(nil)

// New returns an analyzer for one worker.
func New() *Analyzer { return &Analyzer{} }

// SetSlot implements flow.SlotUser.
func (a *Analyzer) SetSlot(i int) { a.slot = i }

// ICMPError implements flow.Analyzer.
func (a *Analyzer) ICMPError(*flow.Flow, *packet.Packet, *pipeline.Emitter) {}

// History letters, in the bit order of endpoint.letters.
const letters = "SHADFRQTWG"

const (
	lS = iota
	lH
	lA
	lD
	lF
	lR
	lQ
	lT
	lW
	lG
)

func (s *state) add(d flow.Dir, l int) {
	e := &s.ep[d]
	if e.letters&(1<<l) != 0 || int(s.n) >= len(s.hist) {
		return
	}
	e.letters |= 1 << l
	c := letters[l]
	if d == flow.ToClient {
		c += 'a' - 'A'
	}
	s.hist[s.n] = c
	s.n++
}

// Packet implements flow.Analyzer.
func (a *Analyzer) Packet(f *flow.Flow, p *packet.Packet, dir flow.Dir, _ *pipeline.Emitter) {
	m := &p.Meta
	if m.Proto != packet.ProtoTCP {
		f.SkipPackets(a.slot) // a flow keeps its protocol
		return
	}
	switch f.Packets(0) + f.Packets(1) {
	case 1:
		if deferred(f) {
			return // the flow table holds what this packet says
		}
	case 2:
		if f.Handshake() && replyDeferred(f) {
			return // the reply of a handshake: Engage
		}
	}
	s := a.col.Of(f)
	if !s.started && deferred(f) {
		a.replayFirst(f, s)
	}
	a.segment(s, dir, m.TCPFlags, uint32(m.PayloadLen), m.Window, m.Seq)
}

// deferred reports whether f's first packet left no state (Packet): a
// SYN or RST without payload, whose letters and sequence numbers do not
// depend on what the flow table does not keep (its window).
func deferred(f *flow.Flow) bool {
	fl, _, bare := f.FirstTCP()
	return bare && fl&(packet.TCPSyn|packet.TCPRst) != 0
}

// replyDeferred reports whether the reply of f, a handshake, left no
// state either: a SYN/ACK or RST (no payload, as in every handshake).
func replyDeferred(f *flow.Flow) bool {
	fl, _, _, ok := f.Reply()
	return ok && fl&(packet.TCPSyn|packet.TCPRst) != 0 && deferred(f)
}

// Engage implements flow.Engager: the state of a handshake that kept
// none.
func (a *Analyzer) Engage(f *flow.Flow) {
	if !deferred(f) {
		return
	}
	if s := a.col.Of(f); !s.started {
		a.replay(f, s)
	}
}

// replay makes s, empty, what f's deferred packets would have made it:
// its first, and the reply of a handshake.
func (a *Analyzer) replay(f *flow.Flow, s *state) {
	a.replayFirst(f, s)
	if replyDeferred(f) {
		fl, seq, _, _ := f.Reply()
		a.segment(s, f.FirstDir()^1, fl, 0, 1, seq)
	}
}

// replayFirst makes s, empty, what f's deferred first packet would have
// made it, from the flow table.
func (a *Analyzer) replayFirst(f *flow.Flow, s *state) {
	fl, seq, _ := f.FirstTCP()
	a.segment(s, f.FirstDir(), fl, 0, 1, seq) // a SYN's or RST's window makes no letter
}

// segment follows one TCP segment of side dir.
func (a *Analyzer) segment(s *state, dir flow.Dir, fl uint8, plen uint32, window uint16, seq uint32) {
	d := dir & 1
	syn, ack, fin, rst := fl&packet.TCPSyn != 0, fl&packet.TCPAck != 0, fl&packet.TCPFin != 0, fl&packet.TCPRst != 0
	if !s.started {
		s.started = true
		if d == flow.ToClient {
			s.hist[0], s.n = '^', 1
		}
	}
	s.history(d, syn, ack, fin, rst, plen, window)
	e := &s.ep[d]
	if plen > 0 {
		e.flags |= epData
	}
	e.transition(&s.ep[d^1], d, syn, ack, fin, rst)

	// Sequence space.
	switch {
	case rst:
	case syn:
		e.next = seq + 1
		e.flags |= epSynced
		if plen > 0 {
			a.track(s, d, seq+1, plen, fin)
		}
	case plen > 0 || fin:
		a.track(s, d, seq, plen, fin)
	}
}

// history records the Zeek history letters of one segment from side d.
func (s *state) history(d flow.Dir, syn, ack, fin, rst bool, plen uint32, window uint16) {
	switch {
	case syn && (fin || rst):
		s.add(d, lQ)
	case syn && ack:
		s.add(d, lH)
	case syn:
		s.add(d, lS)
	}
	if fin && !syn {
		s.add(d, lF)
	}
	if rst && !syn {
		s.add(d, lR)
	}
	if plen > 0 {
		s.add(d, lD)
	} else if ack && !syn && !fin && !rst {
		s.add(d, lA)
	}
	if window == 0 && !syn && !rst {
		s.add(d, lW)
	}
}

// transition moves side e (d) and its peer through the endpoint states on
// one segment's flags.
func (e *endpoint) transition(peer *endpoint, d flow.Dir, syn, ack, fin, rst bool) {
	switch e.st {
	case stInactive:
		switch {
		case syn && ack:
			e.st = stSynAckSent
			if d == flow.ToClient {
				e.st = stEstablished
				if peer.st == stSynSent {
					peer.st = stEstablished
				}
			}
		case syn:
			e.st = stSynSent
			if peer.st == stSynSent { // simultaneous open
				peer.st, e.st = stEstablished, stEstablished
			}
		case rst:
			e.st = stReset
		case fin:
			e.st = stClosed
		default:
			e.st = stPartial
		}
	case stSynSent, stSynAckSent, stEstablished, stPartial:
		switch {
		case rst:
			e.st = stReset
		case fin:
			e.st = stClosed
		}
	case stClosed:
		if rst {
			e.st = stReset
		}
	}
}

// track follows one segment of side d's sequence space.
func (a *Analyzer) track(s *state, d flow.Dir, seq, plen uint32, fin bool) {
	e := &s.ep[d]
	end := seq + plen
	if fin {
		end++
	}
	if e.flags&epSynced == 0 {
		e.next = end
		e.flags |= epSynced
		return
	}
	gap := int32(seq - e.next)
	switch {
	case gap > 0:
		if gap >= 1<<30 { // not a gap: a resynchronisation
			e.next = end
			return
		}
		a.gapsOf(s).addHole(d, e.next, seq)
		e.next = end
	case int32(end-e.next) > 0: // overlaps the edge: new data
		if s.gaps != 0 {
			a.gaps[s.gaps-1].fill(d, seq, e.next)
		}
		e.next = end
	default: // entirely below next
		filled := s.gaps != 0 && a.gaps[s.gaps-1].fill(d, seq, end)
		if !filled && plen > 0 {
			s.add(d, lT)
		}
	}
}

// gapsOf returns s's holes, taking an entry of the side table for its
// first.
func (a *Analyzer) gapsOf(s *state) *gapState {
	if s.gaps == 0 {
		if n := len(a.gapFree); n > 0 {
			s.gaps = a.gapFree[n-1]
			a.gapFree = a.gapFree[:n-1]
		} else {
			a.gaps = append(a.gaps, gapState{})
			s.gaps = uint32(len(a.gaps))
		}
	}
	return &a.gaps[s.gaps-1]
}

func (g *gapState) addHole(d flow.Dir, start, end uint32) {
	holes := &g.holes[d]
	if g.nholes[d] == maxHoles {
		g.missed[d] += uint64(holes[0].end - holes[0].start)
		copy(holes[:], holes[1:])
		g.nholes[d]--
	}
	holes[g.nholes[d]] = hole{start, end}
	g.nholes[d]++
}

// fill removes [start, end) from side d's holes and reports whether it
// covered any hole byte.
func (g *gapState) fill(d flow.Dir, start, end uint32) bool {
	holes, n := &g.holes[d], &g.nholes[d]
	any := false
	for i := 0; i < int(*n); i++ {
		h := &holes[i]
		if int32(start-h.end) >= 0 || int32(end-h.start) <= 0 {
			continue // no overlap
		}
		any = true
		coversStart := int32(start-h.start) <= 0
		coversEnd := int32(end-h.end) >= 0
		switch {
		case coversStart && coversEnd:
			copy(holes[i:], holes[i+1:*n])
			*n--
			i--
		case coversStart:
			h.start = end
		case coversEnd:
			h.end = start
		default: // inside: split
			right := hole{end, h.end}
			h.end = start
			if *n < maxHoles {
				copy(holes[i+2:], holes[i+1:*n])
				holes[i+1] = right
				*n++
				i++
			} else {
				g.missed[d] += uint64(right.end - right.start)
			}
		}
	}
	return any
}

// Conn is the conn extension of a TCP flow record.
type Conn struct {
	State          string
	History        string
	MissedToServer uint64
	MissedToClient uint64
}

func (*Conn) Key() string { return "conn" }

func (c *Conn) Encode(w event.Writer) {
	w.BeginObject()
	w.Key("state")
	w.String(c.State)
	w.Key("history")
	w.String(c.History)
	w.Key("missed_bytes")
	w.Uint(c.MissedToServer + c.MissedToClient)
	if c.MissedToServer+c.MissedToClient != 0 {
		w.Key("missed_bytes_toserver")
		w.Uint(c.MissedToServer)
		w.Key("missed_bytes_toclient")
		w.Uint(c.MissedToClient)
	}
	w.EndObject()
}

// End implements flow.Analyzer: the conn object goes on the record.
func (a *Analyzer) End(f *flow.Flow, rec *event.Flow, _ *pipeline.Emitter) {
	s := a.col.Get(f)
	if s == nil || !s.started {
		if !deferred(f) {
			return
		}
		// A one-packet flow or a handshake kept nothing: its state from
		// the flow table.
		var one state
		a.replay(f, &one)
		s = &one
	}
	var missed [2]uint64
	if s.gaps != 0 {
		g := &a.gaps[s.gaps-1]
		for d := range missed {
			for _, h := range g.holes[d][:g.nholes[d]] {
				g.missed[d] += uint64(h.end - h.start)
			}
			missed[d] = g.missed[d]
		}
		*g = gapState{}
		a.gapFree = append(a.gapFree, s.gaps)
	}
	for d, n := range missed {
		if n > 0 {
			s.add(flow.Dir(d), lG)
		}
	}
	hist := a.history(s.hist[:s.n])
	c := a.conns.New()
	*c = Conn{
		State: connState(&s.ep[flow.ToServer], &s.ep[flow.ToClient], hist), History: hist,
		MissedToServer: missed[flow.ToServer], MissedToClient: missed[flow.ToClient],
	}
	rec.Extra = append(rec.Extra, c)
	*s = state{}
}

// history returns h as a string, the one met before if there was one.
func (a *Analyzer) history(h []byte) string {
	if s, ok := a.histories[string(h)]; ok {
		return s
	}
	s := string(h)
	if len(a.histories) < maxHistories {
		if a.histories == nil {
			a.histories = make(map[string]string)
		}
		a.histories[s] = s
	}
	return s
}

// connState is Zeek's conn_state() for TCP.
func connState(o, r *endpoint, hist string) string {
	oInactive := o.st == stInactive || o.st == stPartial
	rInactive := r.st == stInactive || r.st == stPartial
	switch {
	case r.st == stReset:
		switch {
		case o.st == stSynSent || o.st == stSynAckSent || (o.st == stReset && (o.flags|r.flags)&epData == 0):
			return "REJ"
		case oInactive:
			return "RSTRH"
		}
		return "RSTR"
	case o.st == stReset:
		if rInactive {
			if rstos0(hist) {
				return "RSTOS0"
			}
			return "OTH"
		}
		return "RSTO"
	case r.st == stClosed && o.st == stClosed:
		return "SF"
	case o.st == stClosed:
		if rInactive {
			return "SH"
		}
		return "S2"
	case r.st == stClosed:
		if oInactive {
			return "SHR"
		}
		return "S3"
	case o.st == stSynSent && r.st == stInactive:
		return "S0"
	case o.st == stEstablished && r.st == stEstablished:
		return "S1"
	}
	return "OTH"
}

// rstos0 matches Zeek's /\^?S[^HAFGIQ]*R.*/ on the history.
func rstos0(h string) bool {
	h = strings.TrimPrefix(h, "^")
	if !strings.HasPrefix(h, "S") {
		return false
	}
	for _, c := range h[1:] {
		switch c {
		case 'H', 'A', 'F', 'G', 'I', 'Q':
			return false
		case 'R':
			return true
		}
	}
	return false
}
