package encode

import (
	"math"
	"net/netip"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/pktpipe/pktpipe/pipeline/event"
)

// JSON writes events as compact JSON objects (RFC 8259). Use Append, or
// drive it as an event.Writer between Reset and Bytes.
type JSON struct {
	buf   []byte
	depth int
	// comma: the next name or value follows a sibling, so a comma goes
	// first. One flag is enough: '{', '[' and a name clear it, a value and
	// a closing bracket set it.
	comma bool
	secs  eveSeconds         // the last second written by Time
	names [1 << 10]plainName // Key's memory of names found plain
	// quoted holds the written form of each plain name Key has met, so
	// that a name forgotten by names (another took its place) costs a
	// lookup, not an allocation. At most maxQuoted names.
	quoted map[string]string
}

// plainName is a name Key found plain, by its bytes' address and length,
// with its written form: ,"name": (the comma is left out when none is
// needed). Names are nearly all string constants met again and again, and
// a Go string's bytes never change, so a name seen at the same address
// with the same length needs no second look.
type plainName struct {
	p *byte
	n int
	q string
}

// maxQuoted bounds JSON.quoted: event schemas have a few hundred names;
// past that, plain names are still written, only not remembered.
const maxQuoted = 4096

// NewJSON returns a JSON encoder.
func NewJSON() *JSON { return &JSON{} }

// Format returns "json".
func (*JSON) Format() string { return FormatJSON }

// Append appends ev as one JSON object (no trailing newline) to dst.
func (e *JSON) Append(dst []byte, ev event.Event) []byte {
	e.Reset(dst)
	event.Encode(e, ev)
	return e.Bytes()
}

// Reset starts a new document appended to dst.
func (e *JSON) Reset(dst []byte) {
	e.buf, e.depth, e.comma = dst, 0, false
}

// Bytes returns the output so far and drops the encoder's reference to it.
func (e *JSON) Bytes() []byte {
	b := e.buf
	e.buf = nil
	return b
}

// sep writes the comma before a value when one is needed.
func (e *JSON) sep() {
	if e.comma {
		e.buf = append(e.buf, ',')
	}
	e.comma = true
}

func (e *JSON) open(c byte) {
	e.sep()
	if e.depth == maxDepth {
		panic("encode: JSON nesting deeper than 32")
	}
	e.depth++
	e.comma = false
	e.buf = append(e.buf, c)
}

func (e *JSON) close(c byte) {
	if e.depth == 0 {
		panic("encode: unbalanced End")
	}
	e.depth--
	e.comma = true
	e.buf = append(e.buf, c)
}

func (e *JSON) BeginObject() { e.open('{') }
func (e *JSON) EndObject()   { e.close('}') }
func (e *JSON) BeginArray()  { e.open('[') }
func (e *JSON) EndArray()    { e.close(']') }

// Key writes a member name. Names are nearly always plain constants, so
// they take a short path: one check, then the bytes.
func (e *JSON) Key(k string) {
	p := unsafe.StringData(k)
	h := (uint64(uintptr(unsafe.Pointer(p))) + uint64(len(k))) * 0x9e3779b97f4a7c15 // Fibonacci hashing
	// Two places per name (one cache line): with a few hundred names in
	// 1,024 places, one place each left one name in eight fighting another
	// for its place at every event.
	// An empty place (no written form yet) matches nothing, not even the
	// empty name, whose bytes may be at address nil too.
	set := h >> (64 - 10) &^ 1
	known := &e.names[set]
	if known.p != p || known.n != len(k) || known.q == "" {
		known = &e.names[set+1]
	}
	if known.p != p || known.n != len(k) || known.q == "" {
		// The new name takes the first place, its holder the second.
		e.names[set+1] = e.names[set]
		known = &e.names[set]
		if !e.remember(known, k) {
			e.sep()
			e.buf = append(appendJSONString(e.buf, k), ':')
			e.comma = false
			return
		}
	}
	q := known.q
	if !e.comma {
		q = q[1:]
	}
	e.buf = append(e.buf, q...)
	e.comma = false
}

// remember makes slot the memory of k and reports true if k is plain and
// its written form is known or may be added to quoted.
func (e *JSON) remember(slot *plainName, k string) bool {
	q, ok := e.quoted[k]
	if !ok {
		if len(e.quoted) >= maxQuoted || plainPrefix(k) != len(k) {
			return false
		}
		if e.quoted == nil {
			e.quoted = make(map[string]string)
		}
		q = `,"` + k + `":`
		e.quoted[k] = q
	}
	*slot = plainName{unsafe.StringData(k), len(k), q}
	return true
}

func (e *JSON) String(s string) { e.sep(); e.buf = appendJSONString(e.buf, s) }

// MAC writes a MAC address as a string (event.MACWriter).
func (e *JSON) MAC(m [6]byte) {
	e.sep()
	e.buf = append(event.AppendMAC(append(e.buf, '"'), m), '"')
}

func (e *JSON) Uint(v uint64) { e.sep(); e.buf = strconv.AppendUint(e.buf, v, 10) }
func (e *JSON) Int(v int64)   { e.sep(); e.buf = strconv.AppendInt(e.buf, v, 10) }
func (e *JSON) Null()         { e.sep(); e.buf = append(e.buf, "null"...) }

func (e *JSON) Bool(v bool) {
	e.sep()
	e.buf = strconv.AppendBool(e.buf, v)
}

// Float writes the shortest representation that round-trips; JSON has no
// NaN or infinity, so those become null.
func (e *JSON) Float(v float64) {
	e.sep()
	if math.IsNaN(v) || math.IsInf(v, 0) {
		e.buf = append(e.buf, "null"...)
		return
	}
	if b, ok := appendMicros(e.buf, v); ok {
		e.buf = b
		return
	}
	e.buf = strconv.AppendFloat(e.buf, v, 'g', -1, 64)
}

// appendMicros writes v as strconv's shortest 'g' format would when v is
// a whole number of millionths in 1e-4 <= |v| < 1e6, and reports whether
// it did. Most floats in events are such: milliseconds computed from
// nanoseconds (ns / 1e6), which strconv's general algorithm writes at
// several times the cost. Why the output is the same: k/1e6 rounds to v,
// so its decimal round-trips; every other decimal with at most six places
// is at least 1e-6 away, far outside v's rounding interval (an ulp below
// 1.2e-10 under 1e6), so none shorter exists; and 'g' uses %f in this
// range (exponent -4 to 5), printing the digits without trailing zeros.
func appendMicros(b []byte, v float64) ([]byte, bool) {
	a := math.Abs(v)
	if !(a >= 1e-4 && a < 1e6) {
		return b, false
	}
	m := a * 1e6
	k := uint64(m) // below 1e12: exact when m is whole
	if float64(k) != m || float64(k)/1e6 != a {
		return b, false
	}
	if v < 0 {
		b = append(b, '-')
	}
	b = strconv.AppendUint(b, k/1e6, 10)
	if f := k % 1e6; f != 0 {
		var d [7]byte
		d[0] = '.'
		for i := 6; i > 0; i-- {
			d[i] = '0' + byte(f%10)
			f /= 10
		}
		n := len(d)
		for d[n-1] == '0' {
			n--
		}
		b = append(b, d[:n]...)
	}
	return b, true
}

func (e *JSON) Time(ns int64) {
	e.sep()
	e.buf = append(e.buf, '"')
	e.buf = e.secs.append(e.buf, ns)
	e.buf = append(e.buf, '"')
}

// IP writes a valid address as a string and the zero Addr as null.
func (e *JSON) IP(a netip.Addr) {
	e.sep()
	if !a.IsValid() {
		e.buf = append(e.buf, "null"...)
		return
	}
	e.buf = append(e.buf, '"')
	e.buf = a.AppendTo(e.buf)
	e.buf = append(e.buf, '"')
}

// jsonSafe marks the ASCII bytes that go into a JSON string unescaped.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return
}()

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a quoted JSON string: '"' and '\\' and
// control characters are escaped, invalid UTF-8 bytes become \ufffd, and
// runs of plain bytes are copied in one go.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	// Field names and most values need no escaping: find the plain prefix
	// eight bytes at a time and copy it in one go.
	i := plainPrefix(s)
	if i == len(s) {
		b = append(b, s...)
		return append(b, '"')
	}
	start := 0
	for i < len(s) {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// plainPrefix returns the length of s's leading run of bytes that go into
// a JSON string as they are (printable ASCII other than '"' and '\\'),
// testing eight bytes per step (SWAR: a byte is flagged by its high bit).
func plainPrefix(s string) int {
	i := 0
	for ; i+8 <= len(s); i += 8 {
		if !plain8(load8(s[i:])) {
			goto bytewise
		}
	}
	// The last few bytes: again eight at a time, overlapping bytes already
	// checked (names are mostly shorter than 16, so this saves the byte
	// loop most of the time).
	if i == len(s) || (len(s) >= 8 && plain8(load8(s[len(s)-8:]))) {
		return len(s)
	}
bytewise:
	for ; i < len(s) && s[i] < utf8.RuneSelf && jsonSafe[s[i]]; i++ {
	}
	return i
}

// load8 reads the first eight bytes of s, little-endian.
func load8(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// plain8 reports whether all eight bytes of x are plain.
func plain8(x uint64) bool {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	q := x ^ (ones * '"')
	bs := x ^ (ones * '\\')
	// zero bytes of q or bs are quotes or backslashes; bytes below 0x20
	// borrow from x - 0x20; bytes >= 0x80 have their high bit.
	flag := (x - ones*0x20) | x | (q-ones) & ^q | (bs-ones) & ^bs
	return flag&highs == 0
}
