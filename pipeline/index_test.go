package pipeline

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

// indexSource numbers its packets from 1 as the real sources do.
type indexSource struct{ frames [][]byte }

func (s *indexSource) Name() string { return "index" }
func (s *indexSource) Close() error { return nil }

func (s *indexSource) Run(ctx context.Context, pool *packet.Pool, out chan<- *packet.Batch) error {
	b := pool.Get()
	for i, f := range s.frames {
		if b.Full(len(f)) {
			out <- b
			b = pool.Get()
		}
		p := b.Append(f)
		p.Timestamp = int64(i+1) * 1000
		p.Index = uint64(i + 1)
	}
	out <- b
	return nil
}

// indexProc records which bytes each Index arrived with.
type indexProc struct {
	mu   *sync.Mutex
	seen map[uint64][]byte
	dups *int
}

func (p indexProc) Process(b *packet.Batch, _ *Emitter) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range b.Packets {
		pk := &b.Packets[i]
		if _, ok := p.seen[pk.Index]; ok {
			*p.dups++
		}
		p.seen[pk.Index] = bytes.Clone(pk.Data)
	}
}

func (indexProc) Flush(int64, *Emitter) {}

// TestIndexTravelsWithItsPacket: the dispatcher's copy into a worker's
// batch keeps each packet's source Index, whatever the worker count and
// however batches are cut; packets the dispatcher drops (malformed here)
// leave a gap rather than renumbering the rest.
func TestIndexTravelsWithItsPacket(t *testing.T) {
	frames := traffic(50, 6)
	frames = append(frames[:7], append([][]byte{{1, 2}}, frames[7:]...)...) // packet 8 is malformed
	for _, workers := range []int{1, 3} {
		var (
			mu   sync.Mutex
			seen = map[uint64][]byte{}
			dups int
		)
		e, err := New(Config{Workers: workers, BatchPackets: 16, Stats: stats.NewRegistry()}, Parts{
			Sources:      []Source{&indexSource{frames: frames}},
			NewDecoder:   func() Decoder { return testDecoder{} },
			NewProcessor: func(int) Processor { return indexProc{mu: &mu, seen: seen, dups: &dups} },
			Sink:         &memSink{},
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if dups != 0 || len(seen) != len(frames)-1 {
			t.Fatalf("workers %d: %d indexes seen (%d twice), want %d", workers, len(seen), dups, len(frames)-1)
		}
		if _, ok := seen[8]; ok {
			t.Errorf("workers %d: the malformed packet's index reached a worker", workers)
		}
		for idx, data := range seen {
			if idx == 0 || idx > uint64(len(frames)) || !bytes.Equal(data, frames[idx-1]) {
				t.Fatalf("workers %d: Index %d arrived with the wrong packet", workers, idx)
			}
		}
	}
}
