package dns

import (
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/stages/flow"
	"github.com/pktpipe/pktpipe/stages/reassembly"
)

// tcpDir reassembles one direction of a DNS-over-TCP stream: the
// length-prefixed messages of RFC 1035 4.2.2, in sequence order. Whole
// messages inside a segment are decoded in place; only a message that
// continues in later segments is copied, into a buffer of its announced
// size accounted to the worker's reassembly budget. Retransmitted bytes
// are skipped. A segment ahead of the sequence waits (copied, accounted
// to the budget too; at most maxOOO of them, 64 KiB) for the ones before
// it. A hole that does not fill, or capture that started mid-stream,
// loses the message in progress: framing then resumes at the first later
// segment that starts with a plausible message (plausible).
type tcpDir struct {
	next   uint32 // next expected sequence number
	synced bool   // next is known
	skip   int    // bytes of a given-up message still to come
	resync bool   // after a gap: the next message start is a guess
	buf    []byte // the message in progress, with its 2-byte length
	ooo    []oooSeg
	oooN   int // bytes in ooo
	held   reassembly.Holder
}

// oooSeg is a segment that arrived ahead of the sequence.
type oooSeg struct {
	seq  uint32
	data []byte
	ts   int64  // its packet's time and index, for the messages it
	idx  uint64 // holds whole if its hole is given up
}

// maxOOO bounds the segments held ahead of a hole; when one more comes,
// the hole is given up.
const maxOOO = 8

func (t *tcpDir) syn(seq uint32) { t.next, t.synced, t.resync = seq+1, true, false }

// GiveUp implements reassembly.Owner: the budget took the buffers back
// for more recently used ones. The rest of the message in progress is
// skipped; the segments held ahead of a hole are dropped (the hole
// becomes a gap when later data arrives).
func (t *tcpDir) GiveUp(*reassembly.Holder) {
	t.abandon()
	t.ooo, t.oooN = nil, 0
}

// abandon drops the message in progress and skips what is left of it.
func (t *tcpDir) abandon() {
	if len(t.buf) >= 2 {
		t.skip = 2 + int(be16(t.buf)) - len(t.buf)
	}
	t.buf = nil
}

// reset releases the buffer and forgets the stream (flow end).
func (t *tcpDir) reset(b *reassembly.Budget) {
	b.Release(&t.held)
	*t = tcpDir{}
}

// drop forgets the message in progress (complete or lost) and accounts
// what t still holds.
func (t *tcpDir) drop(b *reassembly.Budget) {
	t.buf, t.skip = nil, 0
	t.account(b)
}

// segment takes one segment of direction t, in whatever order it came,
// and decodes the messages it completes.
func (a *Analyzer) segment(f *flow.Flow, s *state, t *tcpDir, seq uint32, pl []byte, p *packet.Packet, em *pipeline.Emitter) {
	if t.synced && int32(seq-t.next) > 0 {
		if a.hold(t, seq, pl, p) {
			return
		}
		// The hole is given up: resume with the segments held, in order
		// (feed counts the gap).
		for len(t.ooo) > 0 && int32(t.ooo[0].seq-seq) < 0 {
			a.pop(f, s, t, nil, em)
		}
	}
	a.feed(f, s, t, seq, pl, p, em)
	// This segment filled the hole: it completes what the held ones hold.
	for len(t.ooo) > 0 && int32(t.ooo[0].seq-t.next) <= 0 {
		a.pop(f, s, t, p, em)
	}
}

// hold keeps a segment that came ahead of the sequence, if there is room.
func (a *Analyzer) hold(t *tcpDir, seq uint32, pl []byte, p *packet.Packet) bool {
	if len(t.ooo) >= maxOOO || t.oooN+len(pl) > 1<<16 {
		return false
	}
	if !a.budget.Resize(&t.held, t, int64(cap(t.buf)+t.oooN+len(pl))) {
		a.cLost.Inc()
		return false
	}
	i := len(t.ooo)
	for i > 0 && int32(t.ooo[i-1].seq-seq) > 0 {
		i--
	}
	t.ooo = append(t.ooo, oooSeg{})
	copy(t.ooo[i+1:], t.ooo[i:])
	t.ooo[i] = oooSeg{seq, append([]byte(nil), pl...), p.Timestamp, p.Index}
	t.oooN += len(pl)
	a.cOOO.Inc()
	return true
}

// flush gives up the hole before the held segments and decodes them.
func (a *Analyzer) flush(f *flow.Flow, s *state, t *tcpDir, em *pipeline.Emitter) {
	for len(t.ooo) > 0 {
		a.pop(f, s, t, nil, em)
	}
}

// pop feeds the first held segment, as if carried by p (nil: by its own
// packet).
func (a *Analyzer) pop(f *flow.Flow, s *state, t *tcpDir, p *packet.Packet, em *pipeline.Emitter) {
	g := t.ooo[0]
	if p == nil {
		p = &packet.Packet{Timestamp: g.ts, Index: g.idx}
	}
	t.ooo = t.ooo[1:]
	if len(t.ooo) == 0 {
		t.ooo = nil
	}
	t.oooN -= len(g.data)
	a.feed(f, s, t, g.seq, g.data, p, em)
	t.account(a.budget)
}

// account tells the budget what t holds now that it holds less.
func (t *tcpDir) account(b *reassembly.Budget) {
	if n := cap(t.buf) + t.oooN; n == 0 {
		b.Release(&t.held)
	} else {
		b.Resize(&t.held, t, int64(n)) // shrinking always succeeds
	}
}

// feed processes one segment in sequence order: retransmitted bytes are
// skipped, a segment ahead of the sequence is a gap.
func (a *Analyzer) feed(f *flow.Flow, s *state, t *tcpDir, seq uint32, pl []byte, p *packet.Packet, em *pipeline.Emitter) {
	if t.synced {
		switch d := int32(seq - t.next); {
		case d < 0:
			if int32(seq+uint32(len(pl))-t.next) <= 0 {
				return // retransmission
			}
			pl = pl[-d:] // overlaps what was seen: keep the new part only
		case d > 0:
			a.cGap.Inc()
			t.drop(a.budget)
			t.resync = true
		}
	} else {
		t.resync = true // mid-stream: no SYN seen
	}
	t.next, t.synced = seq+uint32(len(pl)), true
	if t.resync {
		if !plausible(pl) {
			return
		}
		t.resync = false
	}
	for len(pl) > 0 {
		if t.skip > 0 {
			n := min(t.skip, len(pl))
			t.skip -= n
			pl = pl[n:]
			continue
		}
		if t.buf != nil {
			if len(t.buf) < 2 { // the length prefix itself was split
				t.buf = append(t.buf, pl[0])
				pl = pl[1:]
				a.grow(t)
				continue
			}
			want := 2 + int(be16(t.buf))
			n := min(want-len(t.buf), len(pl))
			t.buf = append(t.buf, pl[:n]...)
			pl = pl[n:]
			a.budget.Touch(&t.held)
			if len(t.buf) == want {
				a.cSpan.Inc()
				a.message(f, s, t.buf[2:], p, em)
				t.drop(a.budget)
			}
			continue
		}
		if len(pl) < 2 {
			t.buf = append(make([]byte, 0, 2), pl...)
			return
		}
		n := 2 + int(be16(pl))
		if n <= len(pl) {
			a.message(f, s, pl[2:n], p, em)
			pl = pl[n:]
			continue
		}
		// The message continues in later segments.
		t.buf = pl[:2:2]
		if !a.grow(t) {
			t.skip = n - len(pl)
			return
		}
		t.buf = append(t.buf[:0], pl...)
		return
	}
}

// grow gives t.buf the capacity of its whole message (its length prefix
// complete), within the budget; it reports false, having abandoned the
// message, when the budget refuses.
func (a *Analyzer) grow(t *tcpDir) bool {
	if len(t.buf) < 2 {
		return true
	}
	want := 2 + int(be16(t.buf))
	if cap(t.buf) >= want {
		return true
	}
	if !a.budget.Resize(&t.held, t, int64(want+t.oooN)) {
		a.cLost.Inc()
		t.abandon()
		return false
	}
	b := make([]byte, len(t.buf), want)
	copy(b, t.buf)
	t.buf = b
	return true
}

// plausible reports whether a segment after a gap starts with a DNS
// message: a length that holds a header, an opcode in use, the Z bit
// clear, one question in a standard query or response (at most one in a
// response: an error may carry none), and a standard query carrying no
// rcode nor records. The rest of a lost message (records, names) rarely
// passes.
func plausible(b []byte) bool {
	if len(b) < 14 || be16(b) < 12 {
		return false
	}
	var h Header
	h.Flags = be16(b[4:])
	qd, an, ns := be16(b[6:]), be16(b[8:]), be16(b[10:])
	if h.Opcode() > 6 || h.Flags&0x0040 != 0 {
		return false
	}
	if h.Opcode() != 0 {
		return true
	}
	if !h.QR() {
		return qd == 1 && h.RCode() == 0 && an == 0 && ns == 0
	}
	return qd <= 1
}
