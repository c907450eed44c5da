package pcapfile

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"

	"github.com/pktpipe/pktpipe/pipeline/packet"
)

// TestChunkReaderLikeBufio: random Peeks and Discards over streams that
// return short reads give the bytes and errors bufio.Reader gives, and
// every slice handed out keeps its bytes while later reads go on (the
// packets of a batch in flight must not be overwritten).
func TestChunkReaderLikeBufio(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 300_000)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	wraps := map[string]func(io.Reader) io.Reader{
		"plain":   func(r io.Reader) io.Reader { return r },
		"onebyte": iotest.OneByteReader,
		"half":    iotest.HalfReader,
		"dataerr": iotest.DataErrReader,
	}
	for name, wrap := range wraps {
		for round := range 20 {
			const size = 4096
			// Chunks smaller than the largest Peek in odd rounds: records
			// that do not fit get a chunk of their own.
			cr := newChunkReader(size/(1+3*(round%2)), size)
			cr.Reset(wrap(bytes.NewReader(data)))
			br := bufio.NewReaderSize(wrap(bytes.NewReader(data)), size)
			type held struct {
				b    []byte
				want string
			}
			var kept []held
			b := packet.NewPool(1<<16, 64<<20).Get() // room to hold every slice
			for step := 0; ; step++ {
				n := rng.IntN(size + 1)
				if rng.IntN(3) == 0 {
					n = rng.IntN(3 * size) // also larger than a chunk
					got, gerr := cr.Discard(n)
					want, werr := br.Discard(n)
					if got != want || (gerr == nil) != (werr == nil) {
						t.Fatalf("%s/%d step %d: Discard(%d) = %d, %v; bufio %d, %v", name, round, step, n, got, gerr, want, werr)
					}
					if werr != nil {
						break
					}
					continue
				}
				got, gerr := cr.Peek(n)
				want, werr := br.Peek(n)
				if !bytes.Equal(got, want) || (gerr == nil) != (werr == nil) {
					t.Fatalf("%s/%d step %d: Peek(%d) = %d bytes, %v; bufio %d bytes, %v", name, round, step, n, len(got), gerr, len(want), werr)
				}
				if len(got) > 0 { // held as a batch holds a packet
					b.AppendShared(got, cr.chunk())
					kept = append(kept, held{got, string(got)})
				}
				if werr != nil {
					break
				}
			}
			for i, h := range kept {
				if string(h.b) != h.want {
					t.Fatalf("%s/%d: slice %d was overwritten by a later read", name, round, i)
				}
			}
			cr.release()
			b.Release()
		}
	}
}
