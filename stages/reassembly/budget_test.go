package reassembly

import (
	"math/rand/v2"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline/stats"
)

// buf is an owner of one accounted buffer, as an analyzer's direction is.
type buf struct {
	h      Holder
	data   []byte
	gaveUp int
	b      *Budget
}

func (o *buf) GiveUp(h *Holder) {
	if h != &o.h {
		panic("GiveUp with another Holder")
	}
	if h.Bytes() != 0 {
		panic("GiveUp before the bytes were taken back")
	}
	o.b.Release(h) // allowed, and a no-op
	o.data = nil
	o.gaveUp++
}

func (o *buf) grow(n int) bool {
	if !o.b.Resize(&o.h, o, int64(n)) {
		return false
	}
	o.data = make([]byte, n)
	return true
}

// check verifies the list against the holders: used is their sum, within
// the limit, and the list links exactly the holders that hold bytes.
func check(t *testing.T, b *Budget, bufs []*buf) {
	t.Helper()
	var sum int64
	linked := map[*Holder]bool{}
	var prev *Holder
	for h := b.head; h != nil; h = h.next {
		if h.prev != prev || linked[h] {
			t.Fatal("list broken")
		}
		linked[h] = true
		prev = h
	}
	if b.tail != prev {
		t.Fatal("tail is not the last holder")
	}
	for _, o := range bufs {
		sum += o.h.Bytes()
		if linked[&o.h] != (o.h.Bytes() > 0) {
			t.Fatalf("holder of %d bytes linked=%v", o.h.Bytes(), linked[&o.h])
		}
		if int64(len(o.data)) != o.h.Bytes() {
			t.Fatalf("owner has %d bytes, holder %d", len(o.data), o.h.Bytes())
		}
	}
	if sum != b.Used() {
		t.Fatalf("used %d, holders hold %d", b.Used(), sum)
	}
	if b.Limit() > 0 && b.Used() > b.Limit() {
		t.Fatalf("used %d over the limit %d", b.Used(), b.Limit())
	}
}

func TestOldestGivenUpFirst(t *testing.T) {
	reg := stats.NewRegistry()
	b := NewBudget(100, reg)
	bufs := make([]*buf, 4)
	for i := range bufs {
		bufs[i] = &buf{b: b}
	}
	for _, o := range bufs[:3] {
		if !o.grow(30) {
			t.Fatal("refused within the limit")
		}
	}
	check(t, b, bufs)
	// New data for the oldest makes it the youngest: the next oldest goes.
	b.Touch(&bufs[0].h)
	if !bufs[3].grow(30) {
		t.Fatal("refused")
	}
	if bufs[1].gaveUp != 1 || bufs[0].gaveUp+bufs[2].gaveUp != 0 {
		t.Fatalf("gave up %d %d %d, want only the least recently used (1)", bufs[0].gaveUp, bufs[1].gaveUp, bufs[2].gaveUp)
	}
	check(t, b, bufs)
	// Growing an old buffer gives up others, never itself.
	if !bufs[2].grow(90) {
		t.Fatal("refused a buffer that fits alone")
	}
	if bufs[2].gaveUp != 0 || bufs[0].gaveUp != 1 || bufs[3].gaveUp != 1 {
		t.Fatalf("gave up %d %d %d", bufs[0].gaveUp, bufs[2].gaveUp, bufs[3].gaveUp)
	}
	check(t, b, bufs)
	// Larger than the whole budget: refused, nothing else given up.
	if bufs[0].grow(101) {
		t.Fatal("a buffer larger than the budget was granted")
	}
	if bufs[2].gaveUp != 0 || bufs[2].h.Bytes() != 90 {
		t.Fatal("a refusal gave up another buffer")
	}
	check(t, b, bufs)
	if b.GivenUp() != 4 {
		t.Fatalf("given up %d, want 3 evicted + 1 refused", b.GivenUp())
	}
	if v, _ := reg.Value("pktpipe_reassembly_given_up_total"); v != 4 {
		t.Fatalf("given up counter %v", v)
	}
	if v, _ := reg.Value("pktpipe_reassembly_bytes"); v != 90 {
		t.Fatalf("bytes gauge %v, want 90", v)
	}
	if v, _ := reg.Value("pktpipe_reassembly_budget_bytes"); v != 100 {
		t.Fatalf("budget gauge %v", v)
	}
	// Shrinking and releasing give bytes back.
	b.Resize(&bufs[2].h, bufs[2], 10)
	bufs[2].data = bufs[2].data[:10]
	check(t, b, bufs)
	b.Release(&bufs[2].h)
	bufs[2].data = nil
	check(t, b, bufs)
	if v, _ := reg.Value("pktpipe_reassembly_bytes"); v != 0 || b.Used() != 0 {
		t.Fatalf("bytes gauge %v, used %d after release", v, b.Used())
	}
}

// TestRandomOperations: any sequence of grows, shrinks, touches and
// releases keeps the accounting exact and under the limit.
func TestRandomOperations(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	b := NewBudget(64<<10, nil)
	bufs := make([]*buf, 50)
	for i := range bufs {
		bufs[i] = &buf{b: b}
	}
	for range 20000 {
		o := bufs[r.IntN(len(bufs))]
		switch r.IntN(4) {
		case 0, 1:
			n := r.IntN(20 << 10)
			if o.grow(n) != true {
				t.Fatalf("refused %d bytes", n)
			}
		case 2:
			b.Touch(&o.h)
		case 3:
			b.Release(&o.h)
			o.data = nil
		}
		check(t, b, bufs)
	}
	if b.GivenUp() == 0 {
		t.Fatal("the budget was never full")
	}
}

func TestUnlimited(t *testing.T) {
	for _, b := range []*Budget{nil, NewBudget(0, stats.NewRegistry())} {
		o := &buf{b: b}
		if !o.grow(1 << 30) {
			t.Fatal("an unlimited budget refused")
		}
		if o.h.Bytes() != 1<<30 {
			t.Fatalf("holder %d", o.h.Bytes())
		}
		b.Touch(&o.h)
		b.Release(&o.h)
		if o.h.Bytes() != 0 || b != nil && b.Used() != 0 {
			t.Fatal("not released")
		}
	}
}

func TestPerWorker(t *testing.T) {
	if PerWorker(DefaultProcessBytes, 4) != 64<<20 || PerWorker(100, 0) != 100 {
		t.Fatal("split")
	}
}

// TestNoAllocs: accounting costs no allocation (it runs on the hot path).
func TestNoAllocs(t *testing.T) {
	b := NewBudget(1<<20, stats.NewRegistry())
	bufs := make([]*buf, 64)
	for i := range bufs {
		bufs[i] = &buf{b: b}
		b.Resize(&bufs[i].h, bufs[i], 1<<14)
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		o := bufs[i%len(bufs)]
		b.Touch(&o.h)
		b.Resize(&o.h, o, 1<<15) // evicts
		b.Resize(&o.h, o, 1<<14)
		i++
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
