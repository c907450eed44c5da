package slab

import (
	"runtime"
	"testing"
	"unsafe"
)

type rec struct {
	a, b uint64
	s    string
}

// TestNewHandsOutDistinctZeroValues: every pointer is new, zeroed, and
// stays valid and unchanged while later ones are handed out.
func TestNewHandsOutDistinctZeroValues(t *testing.T) {
	var s Slab[rec]
	seen := map[*rec]int{}
	var kept []*rec
	for i := range 1000 {
		r := s.New()
		if *r != (rec{}) {
			t.Fatalf("value %d not zero: %+v", i, *r)
		}
		if j, dup := seen[r]; dup {
			t.Fatalf("value %d is value %d again", i, j)
		}
		seen[r] = i
		*r = rec{a: uint64(i), b: ^uint64(i), s: string(rune('a' + i%26))}
		kept = append(kept, r)
	}
	runtime.GC()
	for i, r := range kept {
		if r.a != uint64(i) || r.b != ^uint64(i) || r.s != string(rune('a'+i%26)) {
			t.Fatalf("value %d changed: %+v", i, *r)
		}
	}
}

// TestNewAllocatesPerChunk: one allocation serves many values, and a type
// larger than the chunk still gets one value per allocation.
func TestNewAllocatesPerChunk(t *testing.T) {
	var s Slab[rec]
	per := testing.AllocsPerRun(1000, func() { s.New() })
	if per > 1.0/32 {
		t.Fatalf("%.3f allocations per value, want at most 1/32", per)
	}
	var big Slab[[chunkBytes * 2]byte]
	if n := unsafe.Sizeof(*big.New()); n != chunkBytes*2 {
		t.Fatalf("size %d", n)
	}
	if per := testing.AllocsPerRun(10, func() { big.New() }); per != 1 {
		t.Fatalf("%.2f allocations per large value, want 1", per)
	}
}
