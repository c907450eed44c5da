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

// TestTakeHandsOutDisjointZeroSlices: slices never overlap, are zero, and
// cannot grow into each other (capacity = length).
func TestTakeHandsOutDisjointZeroSlices(t *testing.T) {
	var s Slab[uint64]
	var kept [][]uint64
	for i := range 500 {
		n := i%7 + 1
		if i%50 == 0 {
			n = 300 // longer than a quarter of an array: its own allocation
		}
		v := s.Take(n)
		if len(v) != n || cap(v) != n {
			t.Fatalf("take %d: len %d cap %d", n, len(v), cap(v))
		}
		for j := range v {
			if v[j] != 0 {
				t.Fatalf("take %d: not zero", i)
			}
			v[j] = uint64(i)
		}
		kept = append(kept, v)
	}
	for i, v := range kept {
		for _, x := range v {
			if x != uint64(i) {
				t.Fatalf("slice %d was overwritten", i)
			}
		}
	}
	if s.Take(0) != nil {
		t.Fatal("Take(0) not nil")
	}
}

// TestStringsCopies: the strings equal their bytes, stay so when the
// bytes change after, and long ones take their own allocation.
func TestStringsCopies(t *testing.T) {
	var s Strings
	buf := []byte("example.com")
	var kept []string
	for i := range 2000 {
		buf[0] = byte('a' + i%26)
		str := s.String(buf)
		if str != string(buf) {
			t.Fatalf("%q != %q", str, buf)
		}
		kept = append(kept, str)
	}
	buf[0] = '!'
	for i, str := range kept {
		if str[0] != byte('a'+i%26) || str[1:] != "xample.com" {
			t.Fatalf("string %d changed to %q", i, str)
		}
	}
	if s.String(nil) != "" {
		t.Fatal("empty")
	}
	long := make([]byte, maxString+1)
	if per := testing.AllocsPerRun(10, func() { s.String(long) }); per != 1 {
		t.Fatalf("%.1f allocations per long string", per)
	}
	if per := testing.AllocsPerRun(1000, func() { s.String(buf) }); per > 1.0/64 {
		t.Fatalf("%.3f allocations per short string", per)
	}
}
