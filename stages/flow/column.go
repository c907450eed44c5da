package flow

// Column is per-flow analyzer state of type T kept beside a table: one T
// for each of its entries, found by the entry's position (so a flow costs
// no pointer, no interface value and no allocation of its own), in chunks
// allocated as the table grows. An element is the zero T when its flow
// starts provided the analyzer zeroes it in End. T should hold no pointers
// (the garbage collector then never scans the column) and be small: every
// entry of the table pays for it, whether the analyzer engages or not, so
// what only some flows need goes in a side table the element indexes.
//
// A Column serves the flows of one Processor (one worker); its analyzer is
// per worker too.
type Column[T any] struct {
	chunks [][]T
}

// Of returns f's element, allocating its chunk if needed.
func (c *Column[T]) Of(f *Flow) *T {
	i := uint32(f.idx)
	if n := int(i >> chunkShift); n < len(c.chunks) && c.chunks[n] != nil {
		return &c.chunks[n][i&chunkMask]
	}
	return c.grow(f)
}

// Get returns f's element, or nil if no flow of its chunk ever asked for
// one (it is then zero): for paths that only read.
func (c *Column[T]) Get(f *Flow) *T {
	i := uint32(f.idx)
	if n := int(i >> chunkShift); n < len(c.chunks) && c.chunks[n] != nil {
		return &c.chunks[n][i&chunkMask]
	}
	return nil
}

func (c *Column[T]) grow(f *Flow) *T {
	i := int(uint32(f.idx))
	n := i >> chunkShift
	for len(c.chunks) <= n {
		c.chunks = append(c.chunks, nil)
	}
	size := chunkSize
	if f.tbl != nil { // the table's last chunk may be short
		size = min(size, f.tbl.cfg.MaxFlows-n<<chunkShift)
	}
	c.chunks[n] = make([]T, max(size, i&chunkMask+1))
	return &c.chunks[n][i&chunkMask]
}

// lazyCol is one value of T per entry of a table of maxFlows, in chunks
// allocated when a flow of the chunk first stores something other than
// the zero T.
type lazyCol[T comparable] struct {
	chunks [][]T
}

func (c *lazyCol[T]) get(i int32) T {
	if n := int(uint32(i) >> chunkShift); n < len(c.chunks) && c.chunks[n] != nil {
		return c.chunks[n][i&chunkMask]
	}
	var zero T
	return zero
}

func (c *lazyCol[T]) set(i int32, v T, maxFlows int) {
	n := int(uint32(i) >> chunkShift)
	if n >= len(c.chunks) || c.chunks[n] == nil {
		var zero T
		if v == zero {
			return
		}
		for len(c.chunks) <= n {
			c.chunks = append(c.chunks, nil)
		}
		c.chunks[n] = make([]T, max(int(i&chunkMask)+1, min(chunkSize, maxFlows-n<<chunkShift)))
	}
	c.chunks[n][i&chunkMask] = v
}

// setIfAllocated sets i's value if its chunk exists, and reports whether
// it did.
func (c *lazyCol[T]) setIfAllocated(i int32, v T) bool {
	if n := int(uint32(i) >> chunkShift); n < len(c.chunks) && c.chunks[n] != nil {
		c.chunks[n][i&chunkMask] = v
		return true
	}
	return false
}

// slots are the Processor's State slots: for each analyzer, a lazyCol of
// interface values, so an analyzer that keeps nothing in its slot (it uses
// a Column, or the traffic never engages it) costs nothing.
type slots struct {
	s []lazyCol[any] // by slot
}

func (s *slots) get(slot int, i int32) any {
	if uint(slot) >= uint(len(s.s)) {
		return nil
	}
	return s.s[slot].get(i)
}

func (s *slots) set(slot int, i int32, v any, maxFlows int) {
	if uint(slot) < uint(len(s.s)) {
		s.s[slot].set(i, v, maxFlows)
	}
}

// clear empties entry i's slots.
func (s *slots) clear(i int32) {
	for j := range s.s {
		if s.s[j].get(i) != nil {
			s.s[j].chunks[uint32(i)>>chunkShift][i&chunkMask] = nil
		}
	}
}
