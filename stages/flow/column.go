package flow

// Column is per-flow analyzer state of type T kept beside a table: one T
// for each row, found by the flow's row (so a flow costs no pointer, no
// interface value and no allocation of its own), in chunks of rows
// allocated as rows are taken. A flow has a row only once something
// beyond its entry is kept for it (an element of any Column, a state
// slot's value, its Community ID), so a flow no analyzer engaged in costs
// no element, wherever its entry lies among those of engaged flows. An
// element is the zero T when its flow takes the row provided the
// analyzer zeroes it in End. T should hold no pointers (the garbage
// collector then never scans the column) and be small: every flow with a
// row pays for it, whether this analyzer engages or not, so what only
// some flows need goes in a side table the element indexes.
//
// A Column serves the flows of one Processor (one worker); its analyzer is
// per worker too.
type Column[T any] struct {
	chunks [][]T
}

// Of returns f's element, giving f a row and allocating the column's
// chunk of rows if needed.
func (c *Column[T]) Of(f *Flow) *T {
	r := f.row
	if r == nilIdx {
		r = f.table().rowOf(f)
	}
	if n := int(uint32(r) >> chunkShift); n < len(c.chunks) && c.chunks[n] != nil {
		return &c.chunks[n][r&chunkMask]
	}
	return c.grow(f, r)
}

// Get returns f's element, or nil if f has no row or no flow of its chunk
// of rows ever asked for one (it is then zero): for paths that only read.
func (c *Column[T]) Get(f *Flow) *T {
	r := f.row
	if n := int(uint32(r) >> chunkShift); r != nilIdx && n < len(c.chunks) && c.chunks[n] != nil {
		return &c.chunks[n][r&chunkMask]
	}
	return nil
}

func (c *Column[T]) grow(f *Flow, r int32) *T {
	n := int(r >> chunkShift)
	for len(c.chunks) <= n {
		c.chunks = append(c.chunks, nil)
	}
	c.chunks[n] = make([]T, f.table().rowChunk(r).size)
	return &c.chunks[n][r&chunkMask]
}

// rowOf returns f's row, taking a free one if it has none.
func (p *Processor) rowOf(f *Flow) int32 {
	if f.row != nilIdx {
		return f.row
	}
	var r int32
	if n := len(p.rowFree); n > 0 {
		r = p.rowFree[n-1]
		p.rowFree = p.rowFree[:n-1]
	} else {
		// A row per live flow at most: the cap bounds them as it
		// bounds the entries.
		r = p.rowN
		if int(r)>>chunkShift == len(p.rows) {
			size := min(chunkSize, p.cfg.MaxFlows-int(r))
			p.rows = append(p.rows, newChunk(size, len(p.analyzers)))
		}
		p.rowN++
	}
	f.row = r
	return r
}

func (p *Processor) rowChunk(r int32) *chunk { return p.rows[r>>chunkShift] }

// freeRow empties f's row (the Columns' elements are their analyzers' to
// zero, in End) and gives it back.
func (p *Processor) freeRow(f *Flow) {
	r := f.row
	if r == nilIdx {
		return
	}
	c, j := p.rowChunk(r), r&chunkMask
	c.clear(j)
	if f.bits&bitCID != 0 {
		c.cids[j] = ""
		f.bits &^= bitCID
	}
	p.rowFree = append(p.rowFree, r)
	f.row = nilIdx
}

// chunk is a chunk of rows: beside them the values that not every flow
// with a row needs, allocated for the whole chunk when one of its flows
// first needs one. State slots are the rows' interface values, holding
// only the slots that some flow of the chunk used: an analyzer that keeps
// nothing in its slot (it uses a Column, or the traffic never engages it)
// costs nothing, and the slots of one flow share a cache line or two.
type chunk struct {
	size  int      // rows
	pos   []int16  // by analyzer slot: its place in a row, -1 = none yet
	width int      // values in a row
	vals  []any    // size rows of width values
	cids  []string // Community IDs kept (Flow.bitCID), by row
}

func newChunk(size, slots int) *chunk {
	c := &chunk{size: size, pos: make([]int16, slots)}
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

// clear empties row j's slots.
func (c *chunk) clear(j int32) {
	clear(c.vals[int(j)*c.width : int(j+1)*c.width])
}
