package tlsfp

import "github.com/pktpipe/pktpipe/stages/reassembly"

// MaxBuffer caps the bytes buffered per direction. A handshake that needs
// more (a very long certificate chain) is cut there; the leaf certificate
// is still read if it fits.
const MaxBuffer = 16 << 10

// maxPending caps the out-of-order segments held per direction.
const maxPending = 8

// maxRecord is the largest TLS record body allowed (2^14 + 2048).
const maxRecord = 1<<14 + 2048

type pendingSeg struct {
	seq  uint32
	data []byte // owned copy
}

// half reassembles one direction: in-order bytes from the first payload
// byte on, cut into TLS records whose handshake bodies are joined into
// handshake messages.
//
// buf holds, in order: handshake bytes already taken out of records
// ([hsStart:hsLen]) and raw stream bytes not yet cut into records
// ([recOff:]), with hsLen <= recOff. Record headers are squeezed out in
// place, so one buffer serves both layers.
type half struct {
	pool *bufPool // where buf comes from and goes back to (nil: the heap)
	// held accounts cap(buf) and the pending copies in the worker's
	// reassembly budget, on behalf of owner (the Tracker).
	held      reassembly.Holder
	owner     reassembly.Owner
	pendBytes int // bytes of the pending copies

	started  bool
	next     uint32 // sequence number of the next in-order byte
	accepted int    // stream bytes taken into buf so far (the cap)
	buf      []byte
	hsStart  int
	hsLen    int
	recOff   int
	records  int // records cut so far
	partial  int // handshake bytes last offered as a partial message
	pending  []pendingSeg
	overflow bool // the cap was reached
}

// segment takes one TCP segment. It reports whether new in-order bytes
// arrived.
func (h *half) segment(seq uint32, syn bool, payload []byte) bool {
	if syn {
		if !h.started {
			h.started, h.next = true, seq+1
		}
		seq++ // SYN data (TCP Fast Open) starts after the SYN
	}
	if len(payload) == 0 {
		return false
	}
	if !h.started {
		h.started, h.next = true, seq
	}
	off := int32(seq - h.next)
	if off > 0 {
		h.hold(seq, payload, off)
		return false
	}
	if int(-off) >= len(payload) {
		return false // retransmission of bytes already taken
	}
	h.take(payload[-off:])
	// Pending segments that now touch the in-order edge.
	for again := true; again; {
		again = false
		for i := 0; i < len(h.pending); i++ {
			p := h.pending[i]
			d := int32(p.seq - h.next)
			if d > 0 {
				continue
			}
			if int(-d) < len(p.data) {
				h.take(p.data[-d:])
			}
			h.pendBytes -= len(p.data)
			h.pending = append(h.pending[:i], h.pending[i+1:]...)
			i--
			again = true
		}
	}
	if len(h.pending) == 0 {
		h.pending = nil
	}
	if h.held.Bytes() != int64(cap(h.buf)+h.pendBytes) {
		h.account(0) // copies were taken
	}
	return true
}

// take appends in-order bytes, up to the cap.
func (h *half) take(p []byte) {
	h.next += uint32(len(p))
	room := MaxBuffer - h.accepted
	if len(p) > room {
		p = p[:room]
		h.overflow = true
	}
	if len(p) == 0 {
		return
	}
	if need := len(h.buf) + len(p); need > cap(h.buf) && !h.grow(need) {
		h.overflow = true // the budget refused: give the direction up
		return
	}
	h.buf = append(h.buf, p...)
	h.accepted += len(p)
	h.pool.budget().Touch(&h.held)
}

// grow replaces buf by one of the next size class that holds need bytes
// (need <= MaxBuffer), once the budget has made room for it.
func (h *half) grow(need int) bool {
	size := bufSize(need)
	if !h.pool.budget().Resize(&h.held, h.owner, int64(size+h.pendBytes)) {
		return false
	}
	nb := append(h.pool.get(size), h.buf...)
	h.pool.put(h.buf)
	h.buf = nb
	return true
}

// account sets the budget's count to what the half holds plus extra.
func (h *half) account(extra int) bool {
	return h.pool.budget().Resize(&h.held, h.owner, int64(cap(h.buf)+h.pendBytes+extra))
}

// hold keeps a copy of an out-of-order segment, if it could still fit
// under the cap, there is room in the list and the budget allows it. The
// copy stops at the cap: bytes beyond it would never be taken.
func (h *half) hold(seq uint32, p []byte, off int32) {
	room := MaxBuffer - h.accepted - int(off)
	if room <= 0 || len(h.pending) >= maxPending {
		return
	}
	p = p[:min(len(p), room)]
	for i := range h.pending {
		if h.pending[i].seq == seq {
			if old := len(h.pending[i].data); len(p) > old && h.account(len(p)-old) {
				h.pending[i].data = append(make([]byte, 0, len(p)), p...)
				h.pendBytes += len(p) - old
			}
			return
		}
	}
	if !h.account(len(p)) {
		return
	}
	h.pending = append(h.pending, pendingSeg{seq, append(make([]byte, 0, len(p)), p...)})
	h.pendBytes += len(p)
}

// release frees the buffers; the half takes nothing more until reopened.
func (h *half) release() {
	h.pool.put(h.buf)
	h.pool.budget().Release(&h.held)
	h.buf, h.pending, h.pendBytes = nil, nil, 0
	h.hsStart, h.hsLen, h.recOff, h.partial = 0, 0, 0, 0
}

// shrink frees the buffer if nothing in it is left unread (a later
// segment allocates a new one).
func (h *half) shrink() {
	h.compact()
	if len(h.buf) == 0 && h.partial == 0 {
		h.pool.put(h.buf)
		h.buf = nil
		h.account(0)
	}
}

// Reassembly buffers come in size classes doubling from minBuf up to
// MaxBuffer: a direction never holds more than the cap, the budget is
// charged what is really allocated, and the pool hands out exact sizes.
const (
	minBuf   = 2 << 10
	nClasses = 4 // 2, 4, 8 and 16 KiB
)

// bufClass is the smallest class that holds n bytes (n <= MaxBuffer).
func bufClass(n int) int {
	c := 0
	for c < nClasses-1 && minBuf<<c < n {
		c++
	}
	return c
}

func bufSize(n int) int { return minBuf << bufClass(n) }

// maxPooledBufs caps the reassembly buffers a worker keeps for reuse, per
// class (16 of each class is 480 KiB, outside the budget).
const maxPooledBufs = 16

// bufPool recycles reassembly buffers between the trackers of one worker
// (it lives in their shared Scratch): nothing a tracker keeps aliases a
// buffer once released (results are copied out of the messages), so a
// handshake costs no buffer allocation once the pool is warm. It also
// holds the worker's reassembly budget. A nil pool allocates and lets go.
type bufPool struct {
	free [nClasses][][]byte
	bud  *reassembly.Budget // nil: unlimited
}

func (p *bufPool) budget() *reassembly.Budget {
	if p == nil {
		return nil
	}
	return p.bud
}

// get returns an empty buffer of exactly size bytes (a class size).
func (p *bufPool) get(size int) []byte {
	if p != nil {
		c := bufClass(size)
		if k := len(p.free[c]); k > 0 {
			b := p.free[c][k-1]
			p.free[c] = p.free[c][:k-1]
			return b
		}
	}
	return make([]byte, 0, size)
}

func (p *bufPool) put(b []byte) {
	if p == nil || cap(b) < minBuf || cap(b) > MaxBuffer {
		return
	}
	if c := bufClass(cap(b)); minBuf<<c == cap(b) && len(p.free[c]) < maxPooledBufs {
		p.free[c] = append(p.free[c], b[:0])
	}
}

type streamEvent uint8

const (
	evNeedMore streamEvent = iota
	evMessage              // a whole handshake message: typ, body
	evPartial              // the start of a handshake message grew: typ, body so far
	evRecord               // a non-handshake record: typ is its content type
	evNotTLS               // the first record is not a TLS handshake record
	evBad                  // malformed record or message
)

// nextEvent returns the next thing found in the buffered bytes. Bodies
// alias the buffer and are valid until the next call.
func (h *half) nextEvent() (ev streamEvent, typ uint8, body []byte) {
	for {
		if n := h.hsLen - h.hsStart; n >= 4 {
			b := h.buf[h.hsStart:h.hsLen]
			l := int(b[1])<<16 | int(b[2])<<8 | int(b[3])
			if n >= 4+l {
				h.hsStart += 4 + l
				h.partial = 0
				return evMessage, b[0], b[4 : 4+l]
			}
			if n > h.partial && n > 4 {
				h.partial = n
				return evPartial, b[0], b[4:]
			}
		}
		r := h.buf[h.recOff:]
		if len(r) < 5 {
			break
		}
		ctype, l := r[0], int(r[3])<<8|int(r[4])
		if h.records == 0 && (ctype != 22 || r[1] != 3 || r[2] > 4) {
			return evNotTLS, 0, nil
		}
		if ctype < 20 || ctype > 24 || r[1] != 3 || l > maxRecord {
			return evBad, 0, nil
		}
		if len(r) < 5+l {
			break
		}
		h.records++
		if ctype != 22 {
			h.recOff += 5 + l
			return evRecord, ctype, nil
		}
		copy(h.buf[h.hsLen:], r[5:5+l])
		h.hsLen += l
		h.recOff += 5 + l
	}
	h.compact()
	return evNeedMore, 0, nil
}

// compact moves unread bytes to the front of buf.
func (h *half) compact() {
	if h.hsStart == 0 && h.hsLen == h.recOff {
		return
	}
	n := copy(h.buf, h.buf[h.hsStart:h.hsLen])
	m := copy(h.buf[n:], h.buf[h.recOff:])
	h.buf = h.buf[:n+m]
	h.hsStart, h.hsLen, h.recOff = 0, n, n
}
