package quic

import (
	"encoding/binary"
	"unsafe"

	"github.com/pktpipe/pktpipe/stages/reassembly"
)

// Frame types that may appear in Initial packets (RFC 9000 12.4, 19).
const (
	framePadding  = 0x00
	framePing     = 0x01
	frameAck      = 0x02
	frameAckECN   = 0x03
	frameCrypto   = 0x06
	frameClose    = 0x1c
	frameCloseApp = 0x1d
)

// frames walks the frames of a decrypted Initial payload and hands every
// CRYPTO frame's offset and data to fn. It stops at the first frame it
// cannot delimit (an unknown type, or one cut short); what came before is
// kept. It reports whether the whole payload was read.
func frames(p []byte, fn func(off uint64, data []byte)) bool {
	for len(p) > 0 {
		t, n := readVarint(p)
		if n == 0 {
			return false
		}
		p = p[n:]
		switch t {
		case framePadding:
			for len(p) > 0 && p[0] == 0 {
				p = p[1:]
			}
		case framePing:
		case frameAck, frameAckECN:
			// Largest, delay, range count, first range, ranges, [ECN].
			var cnt uint64
			for i := range 4 {
				v, n := readVarint(p)
				if n == 0 {
					return false
				}
				p = p[n:]
				if i == 2 {
					cnt = v
				}
			}
			if cnt > uint64(len(p)) { // each range takes at least 2 bytes
				return false
			}
			vals := 2 * int(cnt)
			if t == frameAckECN {
				vals += 3
			}
			for range vals {
				_, n := readVarint(p)
				if n == 0 {
					return false
				}
				p = p[n:]
			}
		case frameCrypto:
			off, n := readVarint(p)
			if n == 0 {
				return false
			}
			p = p[n:]
			l, n := readVarint(p)
			if n == 0 || l > uint64(len(p)-n) {
				return false
			}
			p = p[n:]
			fn(off, p[:l])
			p = p[l:]
		case frameClose, frameCloseApp:
			vals := 2 // error code, frame type
			if t == frameCloseApp {
				vals = 1
			}
			for range vals {
				_, n := readVarint(p)
				if n == 0 {
					return false
				}
				p = p[n:]
			}
			l, n := readVarint(p)
			if n == 0 || l > uint64(len(p)-n) {
				return false
			}
			p = p[n+int(l):]
		default:
			return false
		}
	}
	return true
}

// MaxCryptoBytes caps the CRYPTO stream bytes buffered per direction.
const MaxCryptoBytes = 64 << 10

// maxSpans caps the disjoint ranges a stream may hold: pathological
// fragmentation gives up instead of costing quadratic time.
const maxSpans = 256

// span is a received byte range [start, end) of a CRYPTO stream.
type span struct{ start, end int }

// stream reassembles the start of one direction's CRYPTO stream (the
// Initial packet number space) until its first handshake message is
// complete. Frames may arrive in any order and overlap or repeat; the
// first copy of a byte wins.
type stream struct {
	buf   []byte // buf[i] is stream offset i where covered by spans
	spans []span // sorted, disjoint, not adjacent
	over  bool   // data beyond the cap, too many fragments, or given up
	// held accounts cap(buf) and the spans in the worker's reassembly
	// budget while the stream is in use.
	held reassembly.Holder
}

// spanBytes is the memory of one span.
const spanBytes = int(unsafe.Sizeof(span{}))

// poolBufSize is the size of the buffers a worker keeps for reuse: the
// first allocation of every stream, enough for nearly every hello (a
// post-quantum ClientHello is about 1.8 KB).
const poolBufSize = 4096

// maxPooledBufs caps the buffers a worker keeps (256 KiB).
const maxPooledBufs = 64

// maxKeptSpans is the largest spans array a reset stream keeps (128 B,
// outside the budget); a larger one goes.
const maxKeptSpans = 8

// reset empties the stream for another hello: its buffer goes back to
// the worker's pool, so a live flow whose hellos are read holds none.
func (s *stream) reset(w *Worker) {
	w.putBuf(s.buf)
	w.budget().Release(&s.held)
	s.buf = nil
	if cap(s.spans) > maxKeptSpans {
		s.spans = nil
	}
	s.spans = s.spans[:0]
	s.over = false
}

// reserve charges the budget for the stream's buffer of bufCap bytes and
// spans of spanCap entries.
func (s *stream) reserve(w *Worker, bufCap, spanCap int) bool {
	if !w.budget().Resize(&s.held, w.owner, int64(bufCap+spanCap*spanBytes)) {
		s.over = true
		return false
	}
	return true
}

// add records data at stream offset off (w: the worker, for the buffer
// pool and the budget).
func (s *stream) add(w *Worker, off uint64, data []byte) {
	if len(data) == 0 || s.over {
		return
	}
	if off >= MaxCryptoBytes || uint64(len(data)) > MaxCryptoBytes-off {
		s.over = true
		return
	}
	start := int(off)
	end := start + len(data)
	// Limit to what the first message needs once its length is known.
	if need := s.need(); need > 0 && end > need {
		end = need
		if start >= end {
			return
		}
	}
	if end > len(s.buf) {
		if end > cap(s.buf) {
			size := min(MaxCryptoBytes, max(2*cap(s.buf), end, poolBufSize))
			if !s.reserve(w, size, cap(s.spans)) {
				return
			}
			nb := w.getBuf(size)[:end]
			copy(nb, s.buf)
			w.putBuf(s.buf)
			s.buf = nb
		} else {
			s.buf = s.buf[:end]
		}
	}
	w.budget().Touch(&s.held)
	// Copy only the parts not received yet, then merge the spans.
	pos := start
	i := 0
	for i < len(s.spans) && s.spans[i].end < start {
		i++
	}
	j := i
	for j < len(s.spans) && s.spans[j].start <= end {
		sp := s.spans[j]
		if sp.start > pos {
			copy(s.buf[pos:sp.start], data[pos-start:])
		}
		pos = max(pos, sp.end)
		j++
	}
	if pos < end {
		copy(s.buf[pos:end], data[pos-start:])
	}
	merged := span{start, end}
	if i < j {
		merged.start = min(merged.start, s.spans[i].start)
		merged.end = max(merged.end, s.spans[j-1].end)
	}
	if i == j {
		if len(s.spans) >= maxSpans {
			s.over = true
			return
		}
		if len(s.spans) == cap(s.spans) {
			n := min(maxSpans, max(4, 2*cap(s.spans)))
			if !s.reserve(w, cap(s.buf), n) {
				return
			}
			s.spans = append(make([]span, 0, n), s.spans...)
		}
		s.spans = append(s.spans, span{})
		copy(s.spans[i+1:], s.spans[i:])
		s.spans[i] = merged
		return
	}
	s.spans[i] = merged
	s.spans = append(s.spans[:i+1], s.spans[j:]...)
}

// need is the total length of the first handshake message (its 4-byte
// header included) once the header has been received, else 0.
func (s *stream) need() int {
	if len(s.spans) == 0 || s.spans[0].start != 0 || s.spans[0].end < 4 {
		return 0
	}
	return 4 + int(binary.BigEndian.Uint32(s.buf[0:4])&0xffffff)
}

// message returns the first handshake message's type and body once it is
// complete.
func (s *stream) message() (typ uint8, body []byte, ok bool) {
	need := s.need()
	if need == 0 || s.spans[0].end < need {
		return 0, nil, false
	}
	return s.buf[0], s.buf[4:need], true
}

// tooBig reports whether the first message cannot fit under the cap.
func (s *stream) tooBig() bool { return s.over || s.need() > MaxCryptoBytes }
