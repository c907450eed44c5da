// Package slab hands out values of one type from arrays allocated a few
// kilobytes at a time, for records that are made at a high rate, live
// briefly and are never given back explicitly (flow records and their
// extensions, which go to the sinks and are dropped there). One
// allocation then serves tens of records, at the price of an array
// staying alive while any of its records is.
package slab

import "unsafe"

// chunkBytes is about how much memory one allocation serves: small
// enough that a record kept for long (by a test, say) pins little,
// large enough to make the allocation's cost per record small.
const chunkBytes = 8 << 10

// maxChunk caps the records per array for small types.
const maxChunk = 64

// Slab hands out zeroed *T. The zero value is ready; it is not safe for
// concurrent use (keep one per worker).
type Slab[T any] struct {
	free []T
}

// New returns a pointer to a zero T that no other New returns.
func (s *Slab[T]) New() *T {
	if len(s.free) == 0 {
		n := chunkBytes / max(int(unsafe.Sizeof(*new(T))), 1)
		s.free = make([]T, min(max(n, 1), maxChunk))
	}
	p := &s.free[0]
	s.free = s.free[1:]
	return p
}
