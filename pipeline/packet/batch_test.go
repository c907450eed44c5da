package packet

import (
	"fmt"
	"testing"
)

// TestAppendPacketKeepsIndex: a packet copied into another batch (as the
// dispatcher does) keeps its source Index and metadata; Append starts a
// fresh packet with none.
func TestAppendPacketKeepsIndex(t *testing.T) {
	pool := NewPool(4, 1024)
	src := pool.Get()
	p := src.Append([]byte{1, 2, 3})
	if p.Index != 0 || p.IfIndex != -1 {
		t.Fatalf("Append: Index %d IfIndex %d, want 0 and -1", p.Index, p.IfIndex)
	}
	p.Index, p.Timestamp, p.OrigLen, p.Meta.Proto = 42, 7, 60, ProtoUDP
	dst := pool.Get()
	q := dst.AppendPacket(p)
	if q.Index != 42 || q.Timestamp != 7 || q.OrigLen != 60 || q.Meta.Proto != ProtoUDP {
		t.Errorf("AppendPacket lost fields: %+v", *q)
	}
	if &q.Data[0] == &p.Data[0] || string(q.Data) != string(p.Data) {
		t.Error("AppendPacket did not copy the bytes into its own arena")
	}
	src.Release()
	dst.Release()
	if r := pool.Get().Append(nil); r.Index != 0 {
		t.Errorf("reused batch: Append gives Index %d", r.Index)
	}
}

// TestSplit: each view holds its packets in order with their bytes still
// in the parent's arena, skipped packets go nowhere, and the parent goes
// back to the pool only when its last view is released.
func TestSplit(t *testing.T) {
	pool := NewPool(8, 1024)
	b := pool.Get()
	for i := range 6 {
		p := b.Append([]byte{byte(i)})
		p.Index = uint64(i)
	}
	dest := []uint16{1, 0, Skip, 1, 7, 1} // 7 >= n: dropped too
	views := b.Split(dest, 3)
	var got [3][]uint64
	for w := range views {
		for _, p := range views[w].Packets {
			if p.Data[0] != byte(p.Index) || &p.Data[0] != &b.buf[p.Index] {
				t.Fatalf("packet %d: bytes not shared with the parent's arena", p.Index)
			}
			got[w] = append(got[w], p.Index)
		}
	}
	want := [3][]uint64{{1}, {0, 3, 5}, nil}
	for w := range want {
		if fmt.Sprint(got[w]) != fmt.Sprint(want[w]) {
			t.Errorf("view %d holds %v, want %v", w, got[w], want[w])
		}
	}
	if r := b.refs.Load(); r != 2 {
		t.Fatalf("refs %d, want 2 (non-empty views)", r)
	}
	views[1].Release()
	if b.Len() != 6 {
		t.Fatal("parent reset while a view is still out")
	}
	views[0].Release()
	if b.Len() != 0 || b.refs.Load() != 0 {
		t.Fatalf("parent not released after its last view: len %d refs %d", b.Len(), b.refs.Load())
	}

	c := pool.Get()
	c.Append([]byte{9})
	c.Split([]uint16{Skip}, 2)
	if c.Len() != 0 {
		t.Error("a batch split into empty views was not released")
	}
}

// TestAppendShared: packets appended from a chunk keep it alive until the
// batch is released, and count against the arena's bytes.
func TestAppendShared(t *testing.T) {
	cp := NewChunkPool(100)
	c := cp.Get()
	b := NewPool(8, 64).Get()
	b.AppendShared(c.Buf[:40], c)
	b.AppendShared(c.Buf[40:60], c)
	if !b.FullShared(5) || b.FullShared(4) {
		t.Errorf("FullShared with 60 of 64 bytes held: want full for 5 more bytes, not for 4")
	}
	c.Release() // the reader lets go; the batch still holds it
	if c.refs.Load() != 1 {
		t.Fatalf("refs %d after the reader's release, want the batch's 1", c.refs.Load())
	}
	b.Release()
	if c.refs.Load() != 0 {
		t.Errorf("refs %d after the batch's release, want 0", c.refs.Load())
	}
}

// TestExtraStaysWithItsBatch: Room gives each packet of a pooled batch its
// own place, and a packet copied into another batch carries a copy of its
// Extra, not a pointer into the batch it came from (which may be reused).
func TestExtraStaysWithItsBatch(t *testing.T) {
	pool := NewPool(4, 1024)
	src, dst := pool.Get(), pool.Get()
	for range 2 {
		src.Append([]byte{1})
	}
	if r0, r1 := src.Room(0), src.Room(1); r0 == nil || r1 == nil || r0 == r1 {
		t.Fatalf("rooms %p %p", r0, r1)
	}
	if (&Batch{}).Room(0) != nil {
		t.Fatal("a batch without rooms gave one")
	}
	p := &src.Packets[1]
	p.Meta.X = src.Room(1)
	p.Meta.X.Quote = Quote{Present: true, SrcPort: 53}
	q := dst.AppendPacket(p)
	p.Meta.X.Quote.SrcPort = 99 // the source batch's room is reused
	if q.Meta.X == nil || q.Meta.X == p.Meta.X || !q.Meta.Quoted().Present || q.Meta.Quoted().SrcPort != 53 {
		t.Fatalf("copy's Extra %+v (source's at %p)", q.Meta.X, p.Meta.X)
	}
	if got := (&Meta{}).Quoted(); got != (Quote{}) {
		t.Fatalf("Quoted without Extra: %+v", got)
	}
}
