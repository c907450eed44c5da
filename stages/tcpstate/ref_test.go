package tcpstate

// The analyzer as it was before its state moved into a flow.Column (commit
// a02ea35): the reference of the differential fuzz test.

import (
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/stages/flow"
)

type refEndpoint struct {
	st      uint8
	synced  bool
	nholes  uint8
	letters uint16 // bit per history letter already recorded
	next    uint32
	size    uint64 // payload bytes
	missed  uint64
	holes   [maxHoles]hole
}

type refState struct {
	ep      [2]refEndpoint
	hist    [24]byte
	n       uint8
	started bool
}

// refAnalyzer is one worker's TCP refState analyzer (a flow.Analyzer).
type refAnalyzer struct {
	slot int
	free []*refState
}

// New returns an analyzer for one worker.
func newRef() *refAnalyzer { return &refAnalyzer{} }

// SetSlot implements flow.SlotUser.
func (a *refAnalyzer) SetSlot(i int) { a.slot = i }

// ICMPError implements flow.refAnalyzer.
func (a *refAnalyzer) ICMPError(*flow.Flow, *packet.Packet, *pipeline.Emitter) {}

// History letters, in the bit order of refEndpoint.letters.
func (s *refState) add(d flow.Dir, l int) {
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

// Packet implements flow.refAnalyzer.
func (a *refAnalyzer) Packet(f *flow.Flow, p *packet.Packet, dir flow.Dir, _ *pipeline.Emitter) {
	m := &p.Meta
	if m.Proto != packet.ProtoTCP {
		return
	}
	s := a.stateOf(f)
	d := dir & 1
	fl := m.TCPFlags
	syn, ack, fin, rst := fl&packet.TCPSyn != 0, fl&packet.TCPAck != 0, fl&packet.TCPFin != 0, fl&packet.TCPRst != 0
	plen := uint32(m.PayloadLen)
	if !s.started {
		s.started = true
		if d == flow.ToClient {
			s.hist[0], s.n = '^', 1
		}
	}
	s.history(d, syn, ack, fin, rst, plen, m.Window)
	e := &s.ep[d]
	e.size += uint64(plen)
	e.transition(&s.ep[d^1], d, syn, ack, fin, rst)

	// Sequence space.
	switch {
	case rst:
	case syn:
		e.next, e.synced = m.Seq+1, true
		if plen > 0 {
			e.track(m.Seq+1, plen, fin, s, d)
		}
	case plen > 0 || fin:
		e.track(m.Seq, plen, fin, s, d)
	}
}

// stateOf returns f's refState, taking one from the free list for a new flow.
func (a *refAnalyzer) stateOf(f *flow.Flow) *refState {
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
	f.SetState(a.slot, s)
	return s
}

// history records the Zeek history letters of one segment from side d.
func (s *refState) history(d flow.Dir, syn, ack, fin, rst bool, plen uint32, window uint16) {
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

// transition moves side e (d) and its peer through the refEndpoint states on
// one segment's flags.
func (e *refEndpoint) transition(peer *refEndpoint, d flow.Dir, syn, ack, fin, rst bool) {
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

// track follows one segment of the side's sequence space.
func (e *refEndpoint) track(seq, plen uint32, fin bool, s *refState, d flow.Dir) {
	end := seq + plen
	if fin {
		end++
	}
	if !e.synced {
		e.next, e.synced = end, true
		return
	}
	gap := int32(seq - e.next)
	switch {
	case gap > 0:
		if gap >= 1<<30 { // not a gap: a resynchronisation
			e.next = end
			return
		}
		e.addHole(e.next, seq)
		e.next = end
	case int32(end-e.next) > 0: // overlaps the edge: new data
		e.fill(seq, e.next)
		e.next = end
	default: // entirely below next
		if !e.fill(seq, end) && plen > 0 {
			s.add(d, lT)
		}
	}
}

func (e *refEndpoint) addHole(start, end uint32) {
	if e.nholes == maxHoles {
		e.missed += uint64(e.holes[0].end - e.holes[0].start)
		copy(e.holes[:], e.holes[1:])
		e.nholes--
	}
	e.holes[e.nholes] = hole{start, end}
	e.nholes++
}

// fill removes [start, end) from the holes and reports whether it covered
// any hole byte.
func (e *refEndpoint) fill(start, end uint32) bool {
	any := false
	for i := 0; i < int(e.nholes); i++ {
		h := &e.holes[i]
		if int32(start-h.end) >= 0 || int32(end-h.start) <= 0 {
			continue // no overlap
		}
		any = true
		coversStart := int32(start-h.start) <= 0
		coversEnd := int32(end-h.end) >= 0
		switch {
		case coversStart && coversEnd:
			copy(e.holes[i:], e.holes[i+1:e.nholes])
			e.nholes--
			i--
		case coversStart:
			h.start = end
		case coversEnd:
			h.end = start
		default: // inside: split
			right := hole{end, h.end}
			h.end = start
			if e.nholes < maxHoles {
				copy(e.holes[i+2:], e.holes[i+1:e.nholes])
				e.holes[i+1] = right
				e.nholes++
				i++
			} else {
				e.missed += uint64(right.end - right.start)
			}
		}
	}
	return any
}

func (a *refAnalyzer) End(f *flow.Flow, rec *event.Flow, _ *pipeline.Emitter) {
	s, ok := f.State(a.slot).(*refState)
	if !ok {
		return
	}
	var missed [2]uint64
	for d := range s.ep {
		e := &s.ep[d]
		for _, h := range e.holes[:e.nholes] {
			e.missed += uint64(h.end - h.start)
		}
		missed[d] = e.missed
		if e.missed > 0 {
			s.add(flow.Dir(d), lG)
		}
	}
	hist := string(s.hist[:s.n])
	rec.Extra = append(rec.Extra, &Conn{
		State: refConnState(&s.ep[flow.ToServer], &s.ep[flow.ToClient], hist), History: hist,
		MissedToServer: missed[flow.ToServer], MissedToClient: missed[flow.ToClient],
	})
	*s = refState{}
	f.SetState(a.slot, nil)
	a.free = append(a.free, s)
}

// refConnState is Zeek's conn_state() for TCP.
func refConnState(o, r *refEndpoint, hist string) string {
	oInactive := o.st == stInactive || o.st == stPartial
	rInactive := r.st == stInactive || r.st == stPartial
	switch {
	case r.st == stReset:
		switch {
		case o.st == stSynSent || o.st == stSynAckSent || (o.st == stReset && o.size == 0 && r.size == 0):
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
