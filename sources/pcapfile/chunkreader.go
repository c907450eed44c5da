package pcapfile

import (
	"bufio"
	"io"

	"github.com/pktpipe/pktpipe/pipeline/packet"
)

// chunkReader is a buffered reader, like bufio.Reader's Peek and Discard,
// that reads into reference-counted chunks and never writes over bytes it
// has handed out: when the current chunk has no room for what Peek needs,
// the unread tail (at most one partial record) moves to a fresh chunk and
// the old one stays with the batches whose packets point into it. So the
// source's packets are slices of the read buffer itself, copied nowhere.
type chunkReader struct {
	size  int // of the pool's chunks
	max   int // the largest Peek
	src   io.Reader
	pool  *packet.ChunkPool
	c     *packet.Chunk // current chunk; the reader holds one reference
	r, w  int           // unread bytes: c.Buf[r:w]
	err   error         // from src, returned once the buffered bytes are used
	empty int           // consecutive reads that returned nothing
}

// newChunkReader reads into chunks of size bytes (larger ones for a
// record that does not fit) and peeks up to max bytes.
func newChunkReader(size, max int) *chunkReader {
	return &chunkReader{pool: packet.NewChunkPool(size), size: size, max: max}
}

// Reset drops what is buffered and reads from src next. The chunk stays:
// its unused room is used for the new stream.
func (cr *chunkReader) Reset(src io.Reader) {
	cr.src, cr.err, cr.r = src, nil, cr.w
}

// chunk is the chunk that the bytes of the last Peek lie in.
func (cr *chunkReader) chunk() *packet.Chunk { return cr.c }

// release lets go of the current chunk (when the source closes).
func (cr *chunkReader) release() {
	if cr.c != nil {
		cr.c.Release()
		cr.c, cr.r, cr.w = nil, 0, 0
	}
}

// fresh moves the unread bytes to a new chunk with room for need bytes.
func (cr *chunkReader) fresh(need int) {
	var nc *packet.Chunk
	if need <= cr.size {
		nc = cr.pool.Get()
	} else {
		nc = packet.NewChunk(need)
	}
	n := 0
	if cr.c != nil {
		n = copy(nc.Buf, cr.c.Buf[cr.r:cr.w])
		cr.c.Release()
	}
	cr.c, cr.r, cr.w = nc, 0, n
}

// Peek returns the next n bytes without consuming them, as
// bufio.Reader.Peek: fewer than n only with an error saying why (io.EOF at
// the end). They stay valid until the chunk is released by every holder.
func (cr *chunkReader) Peek(n int) ([]byte, error) {
	if cr.c == nil {
		cr.fresh(n)
	}
	if n > cr.max {
		return cr.c.Buf[cr.r:cr.w], bufio.ErrBufferFull
	}
	if cr.w-cr.r >= n {
		return cr.c.Buf[cr.r : cr.r+n], nil
	}
	if cr.r+n > len(cr.c.Buf) {
		cr.fresh(n)
	}
	for cr.w-cr.r < n && cr.err == nil {
		cr.fill()
	}
	if cr.w-cr.r >= n {
		return cr.c.Buf[cr.r : cr.r+n], nil
	}
	err := cr.err
	cr.err = nil
	return cr.c.Buf[cr.r:cr.w], err
}

// fill reads once into the chunk's free room.
func (cr *chunkReader) fill() {
	m, err := cr.src.Read(cr.c.Buf[cr.w:])
	if m < 0 || m > len(cr.c.Buf)-cr.w {
		cr.err = io.ErrShortBuffer // a broken reader; do not trust it
		return
	}
	cr.w += m
	switch {
	case err != nil:
		cr.err = err
	case m > 0:
		cr.empty = 0
	default:
		if cr.empty++; cr.empty >= 100 {
			cr.err = io.ErrNoProgress
		}
	}
}

// Discard skips the next n bytes, as bufio.Reader.Discard: it returns how
// many it skipped, fewer than n only with an error.
func (cr *chunkReader) Discard(n int) (int, error) {
	if cr.w-cr.r >= n {
		cr.r += n
		return n, nil
	}
	done := cr.w - cr.r
	cr.r = cr.w
	for done < n {
		if cr.err != nil {
			err := cr.err
			cr.err = nil
			return done, err
		}
		// A fresh chunk: the one in hand may hold packets still in use.
		cr.fresh(0)
		cr.fill()
		k := min(cr.w-cr.r, n-done)
		cr.r += k
		done += k
	}
	return done, nil
}
