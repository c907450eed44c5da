// Package appproto names each flow's application protocol from its
// content, on any port, with Suricata's names, and writes it on the flow
// record as app_proto.
//
// # Detection
//
// Each direction of a flow is probed once, on its first payload bytes, as
// Suricata's probing parsers do: a handful of cheap checks (Probe), each
// reading a few bytes at fixed offsets. A check that needs more bytes than
// the first segment holds says so, and the direction's next in-order
// segments are appended to a 64-byte buffer (at most maxTries segments),
// taken from the worker's slab while the direction needs it; otherwise
// nothing is copied. Once both directions are decided (or, for
// UDP, the first one) the analyzer sets the flow's skip bit, so the cost
// is paid once per flow direction, not per packet.
//
// Only NTP falls back to the port (UDP 123, with a plausible header): its
// 48-byte header has no value that other traffic could not carry.
//
// # Result
//
//   - One direction named a protocol and the other did not (or had no
//     payload): app_proto is that protocol.
//   - Both named the same protocol: app_proto.
//   - They disagree: app_proto is the client's, and app_proto_tc the
//     server's (Suricata writes app_proto_ts/app_proto_tc only when they
//     differ from app_proto).
//   - TCP: both directions had payload and neither matched: "failed".
//     UDP: the first datagram with payload did not match: "failed" (as
//     Suricata, which decides a UDP flow on its first datagram).
//   - Otherwise (no payload, or one TCP direction only and unmatched):
//     no app_proto key, as Suricata leaves such flows unknown.
package appproto

import (
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/flow"
)

const (
	bufSize  = 64 // bytes kept per direction while a probe needs more
	maxTries = 4  // payload segments looked at per direction
	// maxFree bounds the idle states kept for reuse (32 bytes each):
	// after a peak of flows the rest go to the garbage collector.
	maxFree = 4096
)

// half is one direction's detection state: 12 bytes, so that a flow's
// state fits one cache line and holds no pointer (the collector does
// not scan it).
type half struct {
	proto   Proto
	done    bool
	payload bool // the direction carried payload
	synSeen bool // next is known from the SYN
	tries   uint8
	n       uint8  // bytes held in the slab buffer buf
	buf     uint16 // index+1 of its buffer in the worker's slab; 0: none
	next    uint32 // TCP: sequence number of the next in-order byte
}

type state struct {
	d       [2]half
	matched bool     // a direction named a protocol
	first   flow.Dir // the first that did: its protocol is app_proto
}

// Analyzer is one worker's detector (a flow.Analyzer).
type Analyzer struct {
	slot int
	free []*state
	// slab holds the buffers of directions whose probe needs more than
	// their first segment (few at a time); freeBufs are its unused
	// indices. When all 65535 are taken, a direction that needs more is
	// decided on what it has.
	slab     [][bufSize]byte
	freeBufs []uint16

	flows [numProtos]*stats.Counter
}

var _ flow.Analyzer = (*Analyzer)(nil)

// New returns a detector; its counters go to reg (nil: none kept).
func New(reg *stats.Registry) *Analyzer {
	if reg == nil {
		reg = stats.NewRegistry()
	}
	a := &Analyzer{}
	for p := Proto(0); p < numProtos; p++ {
		name := p.String()
		if p == Unknown {
			name = "unknown"
		}
		a.flows[p] = reg.Counter("pktpipe_app_proto_flows_total", "Flows ended, by the app_proto detected (unknown: no payload, or one TCP direction that matched nothing).", "app_proto", name)
	}
	return a
}

// SetSlot implements flow.SlotUser.
func (a *Analyzer) SetSlot(i int) { a.slot = i }

func (a *Analyzer) get(f *flow.Flow) *state {
	switch s := f.State(a.slot).(type) {
	case *state:
		return s
	case ended:
		return nil
	}
	var s *state
	if n := len(a.free); n > 0 {
		s = a.free[n-1]
		a.free = a.free[:n-1]
	} else {
		s = &state{}
	}
	// A flow's first packet, a SYN without payload, left no state: what
	// it would have left is the start of its direction.
	if fl, seq, bare := f.FirstTCP(); bare && fl&packet.TCPSyn != 0 {
		h := &s.d[f.FirstDir()&1]
		h.synSeen, h.next = true, seq+1
	}
	f.SetState(a.slot, s)
	return s
}

// Engage implements flow.Engager: the start of each direction a
// handshake's SYNs gave, while it kept no state.
func (a *Analyzer) Engage(f *flow.Flow) {
	fl, _, _ := f.FirstTCP()
	rfl, seq, _, ok := f.Reply()
	if f.State(a.slot) != nil || (fl|rfl)&packet.TCPSyn == 0 {
		return
	}
	s := a.get(f) // with the first packet's
	if h := &s.d[(f.FirstDir()^1)&1]; ok && rfl&packet.TCPSyn != 0 {
		h.synSeen, h.next = true, seq+1
	}
}

// Packet implements flow.Analyzer.
func (a *Analyzer) Packet(f *flow.Flow, p *packet.Packet, dir flow.Dir, _ *pipeline.Emitter) {
	m := &p.Meta
	if m.Proto != packet.ProtoTCP && m.Proto != packet.ProtoUDP {
		f.SkipPackets(a.slot)
		return
	}
	payload := p.Payload()
	tcp := m.Proto == packet.ProtoTCP
	if len(payload) == 0 && !(tcp && m.TCPFlags&packet.TCPSyn != 0) {
		return
	}
	if _, _, bare := f.FirstTCP(); bare && f.Packets(0)+f.Packets(1) == 1 {
		return // a SYN first: the flow table holds its sequence number (get)
	}
	if f.Handshake() {
		return // a handshake's reply: the flow table holds it (Engage)
	}
	s := a.get(f)
	if s == nil {
		return // decided (a slot past SkipPackets' 32 still sees packets)
	}
	h := &s.d[dir&1]
	if h.done {
		return
	}
	if tcp {
		seq := m.Seq
		if m.TCPFlags&packet.TCPSyn != 0 {
			// The latest SYN before any payload sets the start: a client
			// may retry with another initial sequence number.
			if !h.payload && h.n == 0 {
				h.synSeen, h.next = true, seq+1
			}
			seq++
		}
		if len(payload) == 0 {
			return
		}
		if h.synSeen || h.n > 0 {
			off := int32(seq - h.next)
			if off > 0 { // a gap: wait for the missing bytes, a few segments at most
				if h.tries++; h.tries >= 2*maxTries {
					a.decide(f, s, dir, Unknown)
				}
				return
			}
			if int(-off) >= len(payload) {
				return // retransmission
			}
			payload = payload[-off:]
		}
		h.next = seq + uint32(len(payload))
		h.synSeen = true
	}
	h.payload = true
	h.tries++
	b := payload
	if h.n > 0 {
		buf := &a.slab[h.buf-1]
		k := copy(buf[h.n:], payload)
		h.n += uint8(k)
		b = buf[:h.n]
	}
	ts := dir == flow.ToServer
	var (
		pr = Unknown
		v  = NoMatch
	)
	if o := s.d[(dir^1)&1].proto; o != Unknown {
		// The other direction named the protocol: see whether this one
		// goes along before looking for another.
		if v = Confirm(o, m.Proto, ts, b); v == Match {
			pr = o
		}
	}
	if v == NoMatch {
		pr, v = Probe(m.Proto, ts, m.SrcPort, m.DstPort, b)
	}
	switch {
	case v == Match:
		a.decide(f, s, dir, pr)
	case !tcp: // each datagram stands alone
		if h.tries >= maxTries {
			a.decide(f, s, dir, Unknown)
		}
	case v == NoMatch || h.tries >= maxTries || int(h.n) == bufSize:
		a.decide(f, s, dir, Unknown)
	case h.n == 0:
		if h.buf = a.getBuf(); h.buf == 0 {
			a.decide(f, s, dir, Unknown)
			return
		}
		h.n = uint8(copy(a.slab[h.buf-1][:], payload))
	}
}

// getBuf takes a slab buffer (its index+1; 0 when the slab is full).
func (a *Analyzer) getBuf() uint16 {
	if n := len(a.freeBufs); n > 0 {
		i := a.freeBufs[n-1]
		a.freeBufs = a.freeBufs[:n-1]
		return i
	}
	if len(a.slab) == 1<<16-1 {
		return 0
	}
	a.slab = append(a.slab, [bufSize]byte{})
	return uint16(len(a.slab))
}

// putBuf gives h's buffer back.
func (a *Analyzer) putBuf(h *half) {
	if h.buf != 0 {
		a.freeBufs = append(a.freeBufs, h.buf)
		h.buf, h.n = 0, 0
	}
}

// decide ends a direction's probing; when nothing is left to probe, the
// flow's packets are no longer wanted.
func (a *Analyzer) decide(f *flow.Flow, s *state, dir flow.Dir, p Proto) {
	h := &s.d[dir&1]
	h.done, h.proto = true, p
	a.putBuf(h)
	if p != Unknown && !s.matched {
		s.matched, s.first = true, dir
	}
	// Suricata decides a UDP flow once: the other direction is not
	// looked at for a mismatch.
	udp := f.Proto() == packet.ProtoUDP
	if (s.d[0].done && s.d[1].done) || (p != Unknown && udp) {
		f.SkipPackets(a.slot)
		// Most flows end here with one name: the slot keeps it (a
		// one-byte value, not allocated) and the state goes back to the
		// pool now rather than at the flow's end, while it is in cache.
		if app, other, _ := s.result(udp); other == Unknown {
			a.release(s)
			f.SetState(a.slot, ended(app))
		}
	}
}

// release returns a state and its buffers to the pools.
func (a *Analyzer) release(s *state) {
	a.putBuf(&s.d[0])
	a.putBuf(&s.d[1])
	*s = state{}
	if len(a.free) < maxFree {
		a.free = append(a.free, s)
	}
}

// result is the flow's app_proto and, when the directions disagree, the
// other direction (dir) and its protocol; Unknown when there is nothing
// to write.
func (s *state) result(udp bool) (app Proto, other Proto, dir flow.Dir) {
	if s.matched {
		o := s.first ^ 1
		app, other = s.d[s.first&1].proto, s.d[o&1].proto
		if other == app {
			other = Unknown
		}
		return app, other, o
	}
	if (udp && (s.d[0].payload || s.d[1].payload)) || (s.d[0].payload && s.d[1].payload) {
		return Failed, Unknown, 0
	}
	return Unknown, Unknown, 0
}

// ICMPError implements flow.Analyzer.
func (a *Analyzer) ICMPError(*flow.Flow, *packet.Packet, *pipeline.Emitter) {}

// End implements flow.Analyzer: app_proto (and app_proto_tc) go on the
// record.
func (a *Analyzer) End(f *flow.Flow, rec *event.Flow, _ *pipeline.Emitter) {
	var app, other Proto
	var dir flow.Dir
	switch s := f.State(a.slot).(type) {
	case ended:
		app = Proto(s)
	case *state:
		app, other, dir = s.result(f.Proto() == packet.ProtoUDP)
		a.release(s)
	}
	a.flows[app].Inc()
	if app != Unknown {
		rec.Extra = append(rec.Extra, &appExt[app])
	}
	if other != Unknown {
		if dir == flow.ToServer {
			rec.Extra = append(rec.Extra, &tsExt[other])
		} else {
			rec.Extra = append(rec.Extra, &tcExt[other])
		}
	}
	// The result stays in the slot until the flow table clears it after
	// every analyzer's End: the records those write at the flow's end
	// carry it (Finder). A one-byte value in an interface is not
	// allocated. A flow that kept no state has nothing to tell (Finder
	// says "" either way): its slot is left empty, so that a flood's
	// flows do not make the table's rows for it as they end.
	if app != Unknown || f.State(a.slot) != nil {
		f.SetState(a.slot, ended(app))
	}
}

// ended is a flow's app_proto once the detector's End has run.
type ended Proto

// Finder gives another analyzer the flow's app_proto for the events it
// writes about the flow: what the detector has named so far ("" when it
// has named nothing yet, or does not run). The detector runs before the
// other analyzers on each packet (its Order is the lowest) and ends
// first, so an event sees the packet that produced it. Each analyzer
// instance keeps its own Finder: the detector's state slot is the same
// for every flow of a worker, so it is looked for until found once.
type Finder struct{ slot int } // the slot + 1; 0 until found

// Of returns f's app_proto as the detector knows it now.
func (l *Finder) Of(f *flow.Flow) string {
	if l.slot > 0 {
		return known(f.State(l.slot - 1))
	}
	for i := range 32 { // SkipPackets' slot limit: the detector is among the first
		switch f.State(i).(type) {
		case *state, ended:
			l.slot = i + 1
			return known(f.State(i))
		}
	}
	return ""
}

// known reads a detector slot's value.
func known(v any) string {
	switch s := v.(type) {
	case *state:
		if s.matched {
			return s.d[s.first&1].proto.String()
		}
	case ended:
		return Proto(s).String()
	}
	return ""
}

// ext is a string-valued top-level key of the flow record; the values are
// preallocated so ending a flow allocates nothing.
type ext struct{ key, val string }

func (e *ext) Key() string           { return e.key }
func (e *ext) Encode(w event.Writer) { w.String(e.val) }
func (e *ext) String() string        { return e.key + "=" + e.val }
func mkExt(key string) (t [numProtos]ext) {
	for p := range t {
		t[p] = ext{key, Proto(p).String()}
	}
	return
}

var (
	appExt = mkExt("app_proto")
	tsExt  = mkExt("app_proto_ts")
	tcExt  = mkExt("app_proto_tc")
)
