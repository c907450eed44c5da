// Package encode turns pktpipe events into bytes: JSON (one object per
// event, for JSON lines) or msgpack (one map per event).
//
// Both encoders are event.Writer implementations driven by event.Encode, so
// there is no reflection and no intermediate map. Once warm they allocate
// nothing per event: output is appended to the caller's buffer, and the
// msgpack encoder keeps one reusable scratch buffer per nesting depth
// (a map's length must precede its body, so each object is built in scratch
// and copied into its parent when it ends).
//
// Both formats carry the same values: timestamps are EVE strings
// ("2006-01-02T15:04:05.000000+0000", UTC, microseconds) in msgpack too,
// not msgpack's timestamp extension; NaN and ±Inf become null/nil in both;
// invalid UTF-8 becomes U+FFFD in both; an invalid netip.Addr is null/nil.
//
// An Encoder is not safe for concurrent use: give each goroutine its own.
package encode

import (
	"fmt"
	"time"

	"github.com/pktpipe/pktpipe/pipeline/event"
)

// Encoder appends encoded events to a byte slice.
type Encoder interface {
	// Append appends one encoded event to dst and returns it. JSON: one
	// object, no newline. msgpack: one map.
	Append(dst []byte, ev event.Event) []byte
	Format() string // "json" or "msgpack"
}

// Format names accepted by New.
const (
	FormatJSON    = "json"
	FormatMsgpack = "msgpack"
)

// New returns an encoder for format ("json" or "msgpack").
func New(format string) (Encoder, error) {
	switch format {
	case FormatJSON:
		return NewJSON(), nil
	case FormatMsgpack:
		return NewMsgpack(), nil
	}
	return nil, fmt.Errorf("encode: unknown format %q (choices: json, msgpack)", format)
}

// maxDepth bounds object/array nesting. Events nest a few levels; going
// deeper is a bug in an event's Encode method and panics.
const maxDepth = 32

// appendEVETime appends ns as EVE's "2006-01-02T15:04:05.000000+0000" (UTC),
// digit by digit so it never allocates.
func appendEVETime(b []byte, ns int64) []byte {
	t := time.Unix(0, ns).UTC()
	year, month, day := t.Date()
	hour, min, sec := t.Clock()
	// int64 nanoseconds span the years 1677..2262: always four digits.
	b = append(b, byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10))
	b = append(b, '-')
	b = append2(b, int(month))
	b = append(b, '-')
	b = append2(b, day)
	b = append(b, 'T')
	b = append2(b, hour)
	b = append(b, ':')
	b = append2(b, min)
	b = append(b, ':')
	b = append2(b, sec)
	us := t.Nanosecond() / 1000
	b = append(b, '.',
		byte('0'+us/100000), byte('0'+us/10000%10), byte('0'+us/1000%10),
		byte('0'+us/100%10), byte('0'+us/10%10), byte('0'+us%10))
	return append(b, "+0000"...)
}

// eveSeconds remembers the date and time of day of the last second
// formatted: an event's timestamps (and those of the next events) mostly
// fall in the same second, so only the microseconds need formatting.
type eveSeconds struct {
	sec    int64 // Unix seconds of text; valid when ok
	ok     bool
	prefix [len("2006-01-02T15:04:05")]byte
}

// append is appendEVETime, reusing the last second's text.
func (c *eveSeconds) append(b []byte, ns int64) []byte {
	if ns < 0 { // before 1970: rare enough to format whole
		return appendEVETime(b, ns)
	}
	sec, frac := ns/1e9, ns%1e9
	if !c.ok || sec != c.sec {
		var t [eveTimeLen]byte
		copy(c.prefix[:], appendEVETime(t[:0], sec*1e9))
		c.sec, c.ok = sec, true
	}
	us := frac / 1000
	b = append(b, c.prefix[:]...)
	b = append(b, '.',
		byte('0'+us/100000), byte('0'+us/10000%10), byte('0'+us/1000%10),
		byte('0'+us/100%10), byte('0'+us/10%10), byte('0'+us%10))
	return append(b, "+0000"...)
}

// eveTimeLen is the length of appendEVETime's output.
const eveTimeLen = len("2006-01-02T15:04:05.000000+0000")

func append2(b []byte, v int) []byte { return append(b, byte('0'+v/10), byte('0'+v%10)) }
