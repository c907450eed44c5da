package encode

import (
	"encoding/binary"
	"math"
	"net/netip"
	"unicode/utf8"

	"github.com/pktpipe/pktpipe/pipeline/event"
)

// Msgpack writes events as msgpack maps, in the smallest encoding of each
// value (fixint/fixstr/fixmap where they fit), which any msgpack decoder
// (vmihailenco/msgpack in the tests) reads back. Use Append, or drive it as
// an event.Writer between Reset and Bytes.
type Msgpack struct {
	out   []byte // depth 0: the caller's buffer
	depth int
	lv    [maxDepth + 1]level // lv[1..depth] are the open containers
}

// level is one open container: its body so far and its entry count.
type level struct {
	body  []byte
	n     int
	isMap bool
}

// maxScratch is the largest scratch buffer kept between events, so one huge
// event does not pin its memory for the life of the encoder.
const maxScratch = 1 << 20

// NewMsgpack returns a msgpack encoder.
func NewMsgpack() *Msgpack { return &Msgpack{} }

// Format returns "msgpack".
func (*Msgpack) Format() string { return FormatMsgpack }

// Append appends ev as one msgpack map to dst.
func (e *Msgpack) Append(dst []byte, ev event.Event) []byte {
	e.Reset(dst)
	event.Encode(e, ev)
	return e.Bytes()
}

// Reset starts a new document appended to dst.
func (e *Msgpack) Reset(dst []byte) {
	e.out = dst
	e.depth = 0
}

// Bytes returns the output so far and drops the encoder's reference to it.
func (e *Msgpack) Bytes() []byte {
	b := e.out
	e.out = nil
	return b
}

// cur returns the buffer values go to now, counting the value as an entry
// of its array (map entries are counted by Key).
func (e *Msgpack) cur() *[]byte {
	if e.depth == 0 {
		return &e.out
	}
	l := &e.lv[e.depth]
	if !l.isMap {
		l.n++
	}
	return &l.body
}

func (e *Msgpack) open(isMap bool) {
	e.cur() // counts the container as a value of its parent
	if e.depth == maxDepth {
		panic("encode: msgpack nesting deeper than 32")
	}
	e.depth++
	l := &e.lv[e.depth]
	l.body, l.n, l.isMap = l.body[:0], 0, isMap
}

func (e *Msgpack) close() {
	if e.depth == 0 {
		panic("encode: unbalanced End")
	}
	l := &e.lv[e.depth]
	e.depth--
	var p *[]byte
	if e.depth == 0 {
		p = &e.out
	} else {
		p = &e.lv[e.depth].body
	}
	if l.isMap {
		*p = appendMapLen(*p, l.n)
	} else {
		*p = appendArrayLen(*p, l.n)
	}
	*p = append(*p, l.body...)
	if cap(l.body) > maxScratch {
		l.body = nil
	}
}

func (e *Msgpack) BeginObject() { e.open(true) }
func (e *Msgpack) EndObject()   { e.close() }
func (e *Msgpack) BeginArray()  { e.open(false) }
func (e *Msgpack) EndArray()    { e.close() }

func (e *Msgpack) Key(k string) {
	if e.depth > 0 {
		e.lv[e.depth].n++
		l := &e.lv[e.depth].body
		*l = appendMsgpackString(*l, k)
		return
	}
	e.out = appendMsgpackString(e.out, k)
}

func (e *Msgpack) String(s string) { p := e.cur(); *p = appendMsgpackString(*p, s) }

// MAC writes a MAC address as a 17-byte string (event.MACWriter).
func (e *Msgpack) MAC(m [6]byte) {
	p := e.cur()
	*p = event.AppendMAC(append(*p, 0xa0|17), m)
}

func (e *Msgpack) Uint(v uint64) { p := e.cur(); *p = appendUint(*p, v) }
func (e *Msgpack) Int(v int64)   { p := e.cur(); *p = appendInt(*p, v) }
func (e *Msgpack) Null()         { p := e.cur(); *p = append(*p, 0xc0) }

func (e *Msgpack) Bool(v bool) {
	p := e.cur()
	if v {
		*p = append(*p, 0xc3)
	} else {
		*p = append(*p, 0xc2)
	}
}

// Float writes a float64; NaN and ±Inf become nil, as in JSON.
func (e *Msgpack) Float(v float64) {
	p := e.cur()
	if math.IsNaN(v) || math.IsInf(v, 0) {
		*p = append(*p, 0xc0)
		return
	}
	*p = binary.BigEndian.AppendUint64(append(*p, 0xcb), math.Float64bits(v))
}

// Time writes the EVE timestamp string (the same text JSON carries).
func (e *Msgpack) Time(ns int64) {
	p := e.cur()
	*p = appendEVETime(append(*p, byte(0xa0|eveTimeLen)), ns)
}

// IP writes a valid address as a string and the zero Addr as nil.
func (e *Msgpack) IP(a netip.Addr) {
	p := e.cur()
	if !a.IsValid() {
		*p = append(*p, 0xc0)
		return
	}
	// Reserve a one-byte fixstr header, write the text, then widen the
	// header in place if the text turned out longer than 31 bytes (IPv6).
	at := len(*p) + 1
	*p = a.AppendTo(append(*p, 0))
	n := len(*p) - at
	var hdr [5]byte
	h := appendStrLen(hdr[:0], n)
	if extra := len(h) - 1; extra > 0 {
		*p = append(*p, hdr[:extra]...) // grow
		copy((*p)[at+extra:], (*p)[at:at+n])
	}
	copy((*p)[at-1:], h)
}

func appendMapLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x80|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xde), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdf), uint32(n))
}

func appendArrayLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xdc), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
}

func appendUint(b []byte, v uint64) []byte {
	switch {
	case v < 128:
		return append(b, byte(v))
	case v <= math.MaxUint8:
		return append(b, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xcf), v)
}

func appendInt(b []byte, v int64) []byte {
	switch {
	case v >= 0:
		return appendUint(b, uint64(v))
	case v >= -32:
		return append(b, byte(v)) // negative fixint
	case v >= math.MinInt8:
		return append(b, 0xd0, byte(v))
	case v >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(v))
	case v >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(v))
}

func appendStrLen(b []byte, n int) []byte {
	switch {
	case n < 32:
		return append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		return append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
}

// appendMsgpackString writes s as a str, with each invalid UTF-8 byte
// replaced by U+FFFD as the JSON encoder does.
func appendMsgpackString(b []byte, s string) []byte {
	if utf8.ValidString(s) {
		return append(appendStrLen(b, len(s)), s...)
	}
	n := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			n += len(string(utf8.RuneError))
		} else {
			n += size
		}
		i += size
	}
	b = appendStrLen(b, n)
	start := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = utf8.AppendRune(b, utf8.RuneError)
			start = i + 1
		}
		i += size
	}
	return append(b, s[start:]...)
}
