package packet

import (
	"sync"
	"sync/atomic"
)

// Default batch dimensions: 256 packets or 512 KiB of bytes, whichever
// fills first. One channel hop then costs about 1/256 of a send per packet.
const (
	DefaultBatchPackets = 256
	DefaultBatchBytes   = 512 << 10
)

// Batch is a bounded group of packets that share one byte arena. It comes
// from a Pool and goes back to it with Release.
type Batch struct {
	Packets []Packet
	buf     []byte
	pool    *Pool
	// extras[i] is Packets[i]'s room for its Meta.X (Room).
	extras []Extra

	// Now is the latest packet timestamp the sender has seen up to and
	// including this batch (nanoseconds). Workers use it as their clock so
	// that idle expiry follows packet time, not wall-clock time.
	Now int64

	// Split's state. A view shares its parent's arena: parent is set, and
	// the parent counts in refs the views not yet released. sorted and
	// views stay with the batch through the pool, so splitting a warm
	// batch allocates nothing.
	parent *Batch
	refs   atomic.Int32
	sorted []Packet
	views  []Batch

	// chunks are the shared read buffers that packets appended with
	// AppendShared point into; the batch holds a reference on each.
	// shared is the bytes of those packets.
	chunks []*Chunk
	shared int
}

// Chunk is a reference-counted read buffer. A source that can read
// straight into it (a capture file) hands its packets on as slices of the
// chunk, so a packet's bytes are never copied after the read: every batch
// holding one of them keeps the chunk alive, and the chunk goes back to
// its pool when the reader and the last such batch have let it go.
type Chunk struct {
	Buf  []byte
	refs atomic.Int32
	pool *ChunkPool
}

// NewChunk makes a chunk outside any pool, for a buffer larger than the
// pool's (the garbage collector frees it). It holds one reference, the
// caller's.
func NewChunk(size int) *Chunk {
	c := &Chunk{Buf: make([]byte, size)}
	c.refs.Store(1)
	return c
}

// ChunkPool recycles chunks of one size.
type ChunkPool struct {
	p    sync.Pool
	size int
}

// NewChunkPool makes a pool of chunks of size bytes.
func NewChunkPool(size int) *ChunkPool {
	cp := &ChunkPool{size: size}
	cp.p.New = func() any { return &Chunk{Buf: make([]byte, size), pool: cp} }
	return cp
}

// Get returns a chunk holding one reference, the caller's.
func (cp *ChunkPool) Get() *Chunk {
	c := cp.p.Get().(*Chunk)
	c.refs.Store(1)
	return c
}

// Release drops one reference; the last returns the chunk to its pool.
func (c *Chunk) Release() {
	switch n := c.refs.Add(-1); {
	case n == 0 && c.pool != nil:
		c.pool.p.Put(c)
	case n < 0:
		panic("packet: Chunk released more often than referenced")
	}
}

// FullShared reports whether the batch cannot take one more packet of n
// bytes by AppendShared. Such packets use no arena space, but their bytes
// count against it all the same, so that a batch holds on to no more
// packet memory than its arena could.
func (b *Batch) FullShared(n int) bool {
	return len(b.Packets) == cap(b.Packets) || b.shared+n > cap(b.buf)
}

// AppendShared adds a packet whose bytes, data, lie in c and stay there:
// nothing is copied, and the batch holds a reference on c until it is
// released. The caller checks FullShared first and fills in the metadata.
func (b *Batch) AppendShared(data []byte, c *Chunk) *Packet {
	if b.FullShared(len(data)) {
		panic("packet: AppendShared on a full batch")
	}
	b.shared += len(data)
	if n := len(b.chunks); n == 0 || b.chunks[n-1] != c {
		c.refs.Add(1)
		b.chunks = append(b.chunks, c)
	}
	b.Packets = b.Packets[:len(b.Packets)+1]
	p := &b.Packets[len(b.Packets)-1]
	*p = Packet{Data: data[:len(data):len(data)], IfIndex: -1}
	return p
}

// Room returns where the decoder may put Packets[i]'s Meta.X: a place
// that lives as long as the batch (nil for a batch not made by a Pool;
// the decoder then allocates one).
func (b *Batch) Room(i int) *Extra {
	if i < len(b.extras) {
		return &b.extras[i]
	}
	return nil
}

// Skip marks, in Split's destinations, a packet no view takes.
const Skip = ^uint16(0)

// Split hands the batch's packets on in n views without copying their
// bytes: view w holds, in their order here, the packets i with dest[i] ==
// w (Skip, or any value >= n, drops the packet). Each view's Data slices
// point into this batch's arena, which goes back to the pool when the
// last non-empty view is released; if every view is empty, Split releases
// the batch at once. Send only the views with packets; the caller must not
// use the batch itself after Split. This is how the dispatcher gives each
// worker its packets: moving a packet's metadata (about 200 bytes) instead
// of copying its bytes and metadata into a batch per worker.
func (b *Batch) Split(dest []uint16, n int) []Batch {
	if cap(b.views) < n {
		b.views = make([]Batch, n)
	}
	views := b.views[:n]
	var counts [64]int // no allocation for up to 64 workers
	var cnt []int
	if n <= len(counts) {
		cnt = counts[:n]
	} else {
		cnt = make([]int, n)
	}
	for _, w := range dest[:len(b.Packets)] {
		if int(w) < n {
			cnt[w]++
		}
	}
	if cap(b.sorted) < len(b.Packets) {
		b.sorted = make([]Packet, cap(b.Packets))
	}
	sorted := b.sorted[:cap(b.sorted)]
	nonEmpty, off := int32(0), 0
	for w := range views {
		views[w] = Batch{Packets: sorted[off : off : off+cnt[w]], parent: b}
		off += cnt[w]
		if cnt[w] > 0 {
			nonEmpty++
		}
	}
	for i, w := range dest[:len(b.Packets)] {
		if int(w) < n {
			v := &views[w]
			v.Packets = append(v.Packets, b.Packets[i])
		}
	}
	if nonEmpty == 0 {
		b.Release()
		return views
	}
	b.refs.Store(nonEmpty)
	return views
}

// Len is the number of packets in the batch.
func (b *Batch) Len() int { return len(b.Packets) }

// Full reports whether the batch cannot take one more packet of n bytes.
func (b *Batch) Full(n int) bool {
	return len(b.Packets) == cap(b.Packets) || len(b.buf)+n > cap(b.buf)
}

// Append copies data into the arena and returns the new packet, whose
// metadata the caller fills in. The caller checks Full first; if data is
// larger than the whole arena, Append panics (a source must cap its
// snaplen below the batch's byte size).
func (b *Batch) Append(data []byte) *Packet {
	if b.Full(len(data)) {
		panic("packet: Append on a full batch")
	}
	off := len(b.buf)
	b.buf = append(b.buf, data...)
	b.Packets = b.Packets[:len(b.Packets)+1]
	p := &b.Packets[len(b.Packets)-1]
	*p = Packet{Data: b.buf[off:len(b.buf):len(b.buf)], IfIndex: -1}
	return p
}

// AppendPacket copies p (bytes and metadata) into the batch. The caller
// checks Full first, as for Append.
func (b *Batch) AppendPacket(p *Packet) *Packet {
	if b.Full(len(p.Data)) {
		panic("packet: AppendPacket on a full batch")
	}
	off := len(b.buf)
	b.buf = append(b.buf, p.Data...)
	b.Packets = append(b.Packets, *p)
	q := &b.Packets[len(b.Packets)-1]
	q.Data = b.buf[off:len(b.buf):len(b.buf)]
	// The copy gets its own Extra: p's lies in p's batch, which may be
	// reused before this one.
	if p.Meta.X != nil {
		x := b.Room(len(b.Packets) - 1)
		if x == nil {
			x = new(Extra)
		}
		*x = *p.Meta.X
		q.Meta.X = x
	}
	return q
}

// Reset empties the batch for reuse.
func (b *Batch) Reset() {
	// Drop the Data slices so that stale arenas are not kept alive; the
	// rest of each entry is overwritten whole by the next Append.
	for i := range b.Packets {
		b.Packets[i].Data = nil
	}
	b.Packets = b.Packets[:0]
	b.buf = b.buf[:0]
	b.Now = 0
	for i, c := range b.chunks {
		c.Release()
		b.chunks[i] = nil
	}
	b.chunks = b.chunks[:0]
	b.shared = 0
}

// Release returns the batch to its pool (a view: its share of its parent's
// arena). The batch must not be used after.
func (b *Batch) Release() {
	if p := b.parent; p != nil {
		if p.refs.Add(-1) == 0 {
			p.Release()
		}
		return
	}
	if b.pool == nil {
		return
	}
	b.Reset()
	b.pool.p.Put(b)
}

// MaxPacketBytes is the largest packet a batch of this pool can hold.
func (p *Pool) MaxPacketBytes() int { return p.bytes }

// Pool recycles batches of one size.
type Pool struct {
	p       sync.Pool
	packets int
	bytes   int
}

// NewPool makes a pool of batches of up to packets packets and bytes bytes.
func NewPool(packets, bytes int) *Pool {
	if packets <= 0 {
		packets = DefaultBatchPackets
	}
	if bytes <= 0 {
		bytes = DefaultBatchBytes
	}
	pl := &Pool{packets: packets, bytes: bytes}
	pl.p.New = func() any {
		return &Batch{
			Packets: make([]Packet, 0, pl.packets),
			buf:     make([]byte, 0, pl.bytes),
			extras:  make([]Extra, pl.packets),
			pool:    pl,
		}
	}
	return pl
}

// Get returns an empty batch.
func (p *Pool) Get() *Batch { return p.p.Get().(*Batch) }
