package gen

import (
	"math/rand/v2"
	"sort"
)

// A stream is one direction's TCP byte stream, described as chunks so that
// a multi-megabyte transfer costs a few words: explicit bytes (TLS
// handshake messages, HTTP headers) or noise (bodies, encrypted records)
// that is read from a fixed pseudo-random table when a segment is written.
type stream struct {
	chunks []chunk
	size   int64
}

type chunk struct {
	off  int64
	n    int64
	b    []byte // nil: noise starting at table offset seed
	seed uint32
}

const noiseMask = 1<<16 - 1

// noise is fixed, so a stream's bytes depend only on the generator's seed
// (through the chunk seeds).
var noise = func() []byte {
	r := rand.New(rand.NewPCG(0x706b7470, 0x69706521))
	return randBytes(r, noiseMask+1)
}()

func (s *stream) write(b []byte) int {
	s.chunks = append(s.chunks, chunk{off: s.size, n: int64(len(b)), b: b})
	s.size += int64(len(b))
	return len(b)
}

func (s *stream) fill(r *rand.Rand, n int64) int64 {
	s.chunks = append(s.chunks, chunk{off: s.size, n: n, seed: r.Uint32()})
	s.size += n
	return n
}

// read copies the stream's bytes at off into dst.
func (s *stream) read(dst []byte, off int64) {
	i := sort.Search(len(s.chunks), func(i int) bool { return s.chunks[i].off+s.chunks[i].n > off })
	for len(dst) > 0 {
		c := &s.chunks[i]
		in := off - c.off
		k := min(int64(len(dst)), c.n-in)
		if c.b != nil {
			copy(dst[:k], c.b[in:in+k])
		} else {
			d := dst[:k]
			p := (uint64(c.seed) + uint64(in)) & noiseMask
			for len(d) > 0 {
				m := copy(d, noise[p:])
				d = d[m:]
				p = 0
			}
		}
		dst = dst[k:]
		off += k
		i++
	}
}
