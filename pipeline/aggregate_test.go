package pipeline

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

type keyedCountRec struct {
	ts int64
	n  int
}

type keyedCountState struct {
	n           int
	first, last int64
}

// keyedEvent is what the test handler writes when a key ends.
type keyedEvent struct {
	event.Header
	key netip.Addr
	n   int
	why KeyedEnd
}

func (*keyedEvent) Type() event.Type        { return "count" }
func (*keyedEvent) EncodeBody(event.Writer) {}

type keyedCountHandler struct{}

func (keyedCountHandler) Time(r *keyedCountRec) int64 { return r.ts }
func (keyedCountHandler) Add(_ netip.Addr, s *keyedCountState, fresh bool, r *keyedCountRec, _ *Emitter) {
	if fresh {
		s.first = r.ts
	}
	s.n += r.n
	s.last = r.ts
}
func (keyedCountHandler) End(key netip.Addr, s *keyedCountState, why KeyedEnd, em *Emitter) {
	em.Emit(&keyedEvent{key: key, n: s.n, why: why})
}

// drain collects events until close.
func keyedDrain(ch chan *event.Batch) (get func() []*keyedEvent) {
	var evs []*keyedEvent
	done := make(chan struct{})
	go func() {
		for b := range ch {
			for _, e := range b.Events {
				evs = append(evs, e.(*keyedEvent))
			}
			b.Release()
		}
		close(done)
	}()
	return func() []*keyedEvent { close(ch); <-done; return evs }
}

func keyedAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

func TestKeyedSumsAcrossSendersAndShards(t *testing.T) {
	reg := stats.NewRegistry()
	ch := make(chan *event.Batch, 4)
	get := keyedDrain(ch)
	k := NewKeyed(KeyedConfig{Name: "t", Shards: 4, BatchRecords: 7, Stats: reg},
		func(int) KeyedHandler[keyedCountRec, keyedCountState] { return keyedCountHandler{} })
	k.Start(func() *Emitter { return NewEmitter(ch) })
	const senders, keys, per = 3, 100, 50
	var wg sync.WaitGroup
	for w := 0; w < senders; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := k.NewSender()
			for i := 0; i < keys*per; i++ {
				s.Send(keyedAddr(i%keys), &keyedCountRec{ts: int64(i), n: 1})
			}
			s.Flush()
		}()
	}
	wg.Wait()
	k.Close()
	evs := get()
	if len(evs) != keys {
		t.Fatalf("%d keys ended, want %d", len(evs), keys)
	}
	for _, e := range evs {
		if e.n != senders*per || e.why != KeyedShutdown {
			t.Errorf("%v: n=%d why=%v, want %d shutdown", e.key, e.n, e.why, senders*per)
		}
	}
	if v, _ := reg.Value(`pktpipe_keyed_records_total{stage="t"}`); v != senders*keys*per {
		t.Errorf("records_total %v", v)
	}
	if v, _ := reg.Value(`pktpipe_keyed_keys{stage="t"}`); v != 0 {
		t.Errorf("keys gauge %v after Close", v)
	}
}

func TestKeyedIdleByPacketTime(t *testing.T) {
	reg := stats.NewRegistry()
	ch := make(chan *event.Batch, 4)
	get := keyedDrain(ch)
	k := NewKeyed(KeyedConfig{Name: "t", Idle: time.Second, BatchRecords: 1, Stats: reg},
		func(int) KeyedHandler[keyedCountRec, keyedCountState] { return keyedCountHandler{} })
	k.Start(func() *Emitter { return NewEmitter(ch) })
	s := k.NewSender()
	a, b := keyedAddr(1), keyedAddr(2)
	s.Send(a, &keyedCountRec{ts: 0, n: 1})
	s.Send(a, &keyedCountRec{ts: int64(time.Second), n: 1}) // exactly Idle later: still the same
	s.Send(b, &keyedCountRec{ts: int64(2*time.Second) + 1, n: 1})
	s.Send(a, &keyedCountRec{ts: int64(2*time.Second) + 2, n: 5}) // a had expired: a new state
	s.Flush()
	k.Close()
	evs := get()
	want := []keyedEvent{{key: a, n: 2, why: KeyedIdle}, {key: b, n: 1, why: KeyedShutdown}, {key: a, n: 5, why: KeyedShutdown}}
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %d", len(evs), len(want))
	}
	for i, w := range want {
		if e := evs[i]; e.key != w.key || e.n != w.n || e.why != w.why {
			t.Errorf("event %d: %v n=%d %v, want %v n=%d %v", i, e.key, e.n, e.why, w.key, w.n, w.why)
		}
	}
	if v, _ := reg.Value(`pktpipe_keyed_expired_total{stage="t"}`); v != 1 {
		t.Errorf("expired_total %v", v)
	}
}

// TestKeyedFloodBounded: 2M random sources (a spoofed SYN flood) through a
// stage capped at 16384 keys: the keys stay at the cap, every other key is
// evicted and counted, and the heap stays bounded.
func TestKeyedFloodBounded(t *testing.T) {
	const capKeys, n = 16384, 2_000_000
	reg := stats.NewRegistry()
	ch := make(chan *event.Batch, 16)
	var ended int
	done := make(chan struct{})
	go func() {
		for b := range ch {
			ended += len(b.Events)
			b.Release()
		}
		close(done)
	}()
	k := NewKeyed(KeyedConfig{Name: "flood", Shards: 2, MaxKeys: capKeys / 2, Stats: reg},
		func(int) KeyedHandler[keyedCountRec, keyedCountState] { return keyedCountHandler{} })
	k.Start(func() *Emitter { return NewEmitter(ch) })
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak uint64 // live heap after a GC, sampled during the flood
	r := rand.New(rand.NewPCG(1, 2))
	s := k.NewSender()
	for i := 0; i < n; i++ {
		s.Send(netip.AddrFrom4([4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}), &keyedCountRec{ts: int64(i) * 1000, n: 1})
		if i%250_000 == 249_999 {
			runtime.GC()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapAlloc)
		}
	}
	s.Flush()
	// Before Close: the shards hold their cap at most.
	keyedPoll(t, func() bool {
		v, _ := reg.Value(`pktpipe_keyed_records_total{stage="flood"}`)
		return v == n
	})
	held, _ := reg.Value(`pktpipe_keyed_keys{stage="flood"}`)
	evicted, _ := reg.Value(`pktpipe_keyed_evicted_total{stage="flood"}`)
	k.Close()
	close(ch)
	<-done
	grown := int64(peak) - int64(before.HeapAlloc)
	t.Logf("held %v keys, evicted %v; live heap %.1f MiB with the stage built, %.1f MiB at most during the flood", held, evicted, float64(before.HeapAlloc)/(1<<20), float64(peak)/(1<<20))
	if held > capKeys || held < capKeys*9/10 {
		t.Errorf("held %v keys, cap %d", held, capKeys)
	}
	if int(evicted)+int(held) < n-1000 { // a few random addresses repeat
		t.Errorf("evicted %v + held %v, want about %d", evicted, held, n)
	}
	if ended < n-1000 {
		t.Errorf("%d keys ended", ended)
	}
	// 16384 entries of a few dozen bytes, the index and the batches:
	// a few MiB; the flood's 2M sources must not show.
	if grown > 32<<20 {
		t.Errorf("heap grew by %d bytes", grown)
	}
}

func keyedPoll(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}
