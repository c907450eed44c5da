// Package slab hands out values, slices and strings from arrays allocated
// a few kilobytes at a time, for records that are made at a high rate,
// live briefly and are never given back explicitly (events and flow
// records, which go to the sinks and are dropped there). One allocation
// then serves tens of records, at the price of an array staying alive
// while anything handed out from it is. Keep long-lived state out of
// slabs: one such value would hold its whole array.
package slab

import "unsafe"

// chunkBytes is about how much memory one allocation serves: small
// enough that a record kept for long (by a test, say) pins little,
// large enough to make the allocation's cost per record small.
const chunkBytes = 8 << 10

// maxChunk caps the values per array for small types.
const maxChunk = 64

// Slab hands out zeroed *T and []T. The zero value is ready; it is not
// safe for concurrent use (keep one per worker).
type Slab[T any] struct {
	free []T
}

func (s *Slab[T]) chunkLen() int {
	n := chunkBytes / max(int(unsafe.Sizeof(*new(T))), 1)
	return min(max(n, 1), maxChunk)
}

// New returns a pointer to a zero T that no other call returns.
func (s *Slab[T]) New() *T {
	if len(s.free) == 0 {
		s.free = make([]T, s.chunkLen())
	}
	p := &s.free[0]
	s.free = s.free[1:]
	return p
}

// Take returns n zero Ts (length and capacity n) that no other call
// returns; nil for n <= 0. Runs longer than a quarter of an array get an
// allocation of their own.
func (s *Slab[T]) Take(n int) []T {
	if n <= 0 {
		return nil
	}
	if len(s.free) < n {
		c := s.chunkLen()
		if n > c/4 {
			return make([]T, n)
		}
		s.free = make([]T, c)
	}
	v := s.free[:n:n]
	s.free = s.free[n:]
	return v
}

// Strings copies byte strings into shared arrays and hands them out as
// strings. The zero value is ready; not safe for concurrent use.
type Strings struct {
	free []byte
}

// maxString is the longest string Strings copies into an array; longer
// ones get an allocation of their own.
const maxString = 512

// String returns b as a string. Bytes in an array are written once,
// before they are handed out, and never again, so the string is as
// immutable as any other.
func (s *Strings) String(b []byte) string {
	n := len(b)
	switch {
	case n == 0:
		return ""
	case n > maxString:
		return string(b)
	case len(s.free) < n:
		s.free = make([]byte, chunkBytes)
	}
	d := s.free[:n:n]
	copy(d, b)
	s.free = s.free[n:]
	return unsafe.String(&d[0], n)
}
