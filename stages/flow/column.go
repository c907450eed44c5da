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
	if f.ch != nil { // the table's last chunk may be short
		size = f.ch.size
	}
	c.chunks[n] = make([]T, max(size, i&chunkMask+1))
	return &c.chunks[n][i&chunkMask]
}

// chunk is what the flows of one slab chunk share: their table, and
// beside them the values that not every flow needs, allocated for the
// whole chunk when one of its flows first needs one. State slots are rows
// of interface values, one row per entry, holding only the slots that
// some flow of the chunk used: an analyzer that keeps nothing in its slot
// (it uses a Column, or the traffic never engages it) costs nothing, and
// the slots of one flow share a cache line or two.
type chunk struct {
	tbl   *Processor
	size  int      // entries
	pos   []int16  // by analyzer slot: its place in a row, -1 = none yet
	width int      // values in a row
	vals  []any    // size rows of width values
	cids  []string // Community IDs kept (Flow.bitCID), by entry
}

func newChunk(p *Processor, size, slots int) *chunk {
	c := &chunk{tbl: p, size: size, pos: make([]int16, slots)}
	for i := range c.pos {
		c.pos[i] = -1
	}
	return c
}

func (c *chunk) state(slot int, j int32) any {
	if uint(slot) < uint(len(c.pos)) {
		if at := c.pos[slot]; at >= 0 {
			return c.vals[int(j)*c.width+int(at)]
		}
	}
	return nil
}

func (c *chunk) setState(slot int, j int32, v any) {
	if uint(slot) >= uint(len(c.pos)) {
		return
	}
	at := c.pos[slot]
	if at < 0 {
		if v == nil {
			return
		}
		at = c.widen(slot)
	}
	c.vals[int(j)*c.width+int(at)] = v
}

// widen gives slot a place in every row.
func (c *chunk) widen(slot int) int16 {
	w := c.width + 1
	vals := make([]any, c.size*w)
	for r := range c.size {
		copy(vals[r*w:], c.vals[r*c.width:(r+1)*c.width])
	}
	c.vals, c.width = vals, w
	c.pos[slot] = int16(w - 1)
	return int16(w - 1)
}

// clear empties entry j's slots.
func (c *chunk) clear(j int32) {
	clear(c.vals[int(j)*c.width : int(j+1)*c.width])
}
