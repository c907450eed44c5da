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

// slots are the Processor's State slots: for each analyzer, a column of
// interface values whose chunks are allocated when a flow of the chunk
// first stores a state, so an analyzer that keeps nothing in its slot
// (it uses a Column, or the traffic never engages it) costs nothing.
type slots struct {
	s [][][]any // by slot, by chunk
}

func (s *slots) get(slot int, i int32) any {
	if uint(slot) >= uint(len(s.s)) {
		return nil
	}
	cs := s.s[slot]
	if n := int(uint32(i) >> chunkShift); n < len(cs) && cs[n] != nil {
		return cs[n][i&chunkMask]
	}
	return nil
}

func (s *slots) set(slot int, i int32, v any, maxFlows int) {
	if uint(slot) >= uint(len(s.s)) {
		return
	}
	cs := s.s[slot]
	n := int(uint32(i) >> chunkShift)
	if n >= len(cs) || cs[n] == nil {
		if v == nil {
			return
		}
		for len(cs) <= n {
			cs = append(cs, nil)
		}
		cs[n] = make([]any, max(1, min(chunkSize, maxFlows-n<<chunkShift)))
		s.s[slot] = cs
	}
	cs[n][i&chunkMask] = v
}

// clear empties entry i's slots.
func (s *slots) clear(i int32) {
	n := int(uint32(i) >> chunkShift)
	for _, cs := range s.s {
		if n < len(cs) && cs[n] != nil {
			cs[n][i&chunkMask] = nil
		}
	}
}
