package pipeline

import (
	"net/netip"
	"sync"
	"time"

	"github.com/pktpipe/pktpipe/pipeline/stats"
)

// Keyed is the engine's second stage: per-key aggregation after the
// workers. Workers own flows, but some analyses are per host (a scanner
// is one source across many flows, and so many workers), so workers send
// compact records, keyed by an address, to shards that each own the state
// of the keys that hash to them: no lock on the state, as in the workers.
//
//   - Each worker has a KeyedSender: Send appends to a per-shard batch
//     (pooled, KeyedConfig.BatchRecords records) and hands a full batch to
//     the shard over a bounded channel (KeyedConfig.QueueBatches), blocking
//     when the shard is behind: backpressure, as everywhere else.
//   - A shard holds at most KeyedConfig.MaxKeys keys in a slab allocated
//     once, indexed by a map sized up front (no rehash), on one LRU list.
//     A new key in a full shard ends the least recently seen one (reason
//     evicted, counted in pktpipe_keyed_evicted_total{stage}).
//   - State expires by packet time only: the shard's clock is the latest
//     record time it has seen; after each batch, keys idle for longer than
//     KeyedConfig.Idle end (reason idle), at most SweepLimit per batch,
//     from the list's tail. At Close the rest end (reason shutdown).
//
// The handler (KeyedHandler) folds records into per-key state and writes
// events when a key's state says so; it runs on the shard's goroutine.
//
// Records from one worker reach a shard in order; records from different
// workers interleave by batch, so the clock a shard expires by may run a
// batch's worth of packet time ahead of a slower worker. Handlers whose
// idle windows are long next to that lag (seconds against minutes) give
// the same results whatever the number of workers.
type Keyed[R, S any] struct {
	cfg    KeyedConfig
	shards []*keyedShard[R, S]
	pool   sync.Pool
	wg     sync.WaitGroup
	closed bool
}

// KeyedConfig sizes a Keyed stage. Zero values take the defaults.
type KeyedConfig struct {
	Name         string        // metric label stage=NAME
	Shards       int           // default 1
	MaxKeys      int           // per shard; default 65536
	Idle         time.Duration // default 5 min of packet time
	BatchRecords int           // default 256
	QueueBatches int           // per shard; default 16
	SweepLimit   int           // idle keys ended per batch; default 1024
	Stats        *stats.Registry
}

func (c *KeyedConfig) defaults() {
	if c.Shards <= 0 {
		c.Shards = 1
	}
	if c.MaxKeys <= 0 {
		c.MaxKeys = 65536
	}
	if c.Idle <= 0 {
		c.Idle = 5 * time.Minute
	}
	if c.BatchRecords <= 0 {
		c.BatchRecords = 256
	}
	if c.QueueBatches <= 0 {
		c.QueueBatches = 16
	}
	if c.SweepLimit <= 0 {
		c.SweepLimit = 1024
	}
	if c.Stats == nil {
		c.Stats = stats.NewRegistry()
	}
	if c.Name == "" {
		c.Name = "keyed"
	}
}

// KeyedEnd says why a key's state ended.
type KeyedEnd uint8

const (
	KeyedIdle     KeyedEnd = iota // no record for KeyedConfig.Idle
	KeyedEvicted                  // the shard was full
	KeyedShutdown                 // Close
)

func (r KeyedEnd) String() string {
	switch r {
	case KeyedIdle:
		return "idle"
	case KeyedEvicted:
		return "evicted"
	}
	return "shutdown"
}

// KeyedHandler is one shard's logic.
type KeyedHandler[R, S any] interface {
	// Time is the record's packet time (ns); it drives expiry.
	Time(r *R) int64
	// Add folds r into the key's state; fresh says s was just zeroed for
	// a key not held before.
	Add(key netip.Addr, s *S, fresh bool, r *R, em *Emitter)
	// End is called once when the key's state ends; s is zeroed after.
	End(key netip.Addr, s *S, why KeyedEnd, em *Emitter)
}

type keyedRec[R any] struct {
	key netip.Addr
	r   R
}

type keyedBatch[R any] struct{ recs []keyedRec[R] }

type keyedEntry[S any] struct {
	key        netip.Addr
	last       int64
	prev, next int32
	state      S
}

type keyedShard[R, S any] struct {
	k       *Keyed[R, S]
	h       KeyedHandler[R, S]
	in      chan *keyedBatch[R]
	em      *Emitter
	slab    []keyedEntry[S]
	index   map[netip.Addr]int32
	free    []int32
	head    int32 // most recently seen
	tail    int32
	clock   int64
	max     int
	records *stats.Counter
	evicted *stats.Counter
	expired *stats.Counter
	keys    *stats.Gauge
}

const keyedNil = -1

// Stage is what the engine needs of a second stage, whatever its record
// and state types: Start before the workers (newEmitter gives each shard
// an emitter into the sinks), Close once every worker is done and has
// flushed its senders, before the sinks' channel closes.
type Stage interface {
	Start(newEmitter func() *Emitter)
	Close()
}

var _ Stage = (*Keyed[int, int])(nil)

// NewKeyed builds the stage: one handler per shard (newHandler(i)). Start
// it before the first Send.
func NewKeyed[R, S any](cfg KeyedConfig, newHandler func(shard int) KeyedHandler[R, S]) *Keyed[R, S] {
	cfg.defaults()
	k := &Keyed[R, S]{cfg: cfg}
	k.pool.New = func() any { return &keyedBatch[R]{recs: make([]keyedRec[R], 0, cfg.BatchRecords)} }
	r := cfg.Stats
	lbl := []string{"stage", cfg.Name}
	records := r.Counter("pktpipe_keyed_records_total", "Records received by a keyed aggregation stage.", lbl...)
	evicted := r.Counter("pktpipe_keyed_evicted_total", "Keys ended because their shard was full (least recently seen first).", lbl...)
	expired := r.Counter("pktpipe_keyed_expired_total", "Keys ended after their idle time, in packet time.", lbl...)
	keys := r.Gauge("pktpipe_keyed_keys", "Keys held by a keyed aggregation stage.", lbl...)
	for i := 0; i < cfg.Shards; i++ {
		s := &keyedShard[R, S]{
			k: k, h: newHandler(i), in: make(chan *keyedBatch[R], cfg.QueueBatches),
			slab:  make([]keyedEntry[S], 0, min(cfg.MaxKeys, 4096)),
			index: make(map[netip.Addr]int32, cfg.MaxKeys),
			head:  keyedNil, tail: keyedNil, max: cfg.MaxKeys,
			records: records, evicted: evicted, expired: expired, keys: keys,
		}
		k.shards = append(k.shards, s)
	}
	return k
}

// Start runs the shards' goroutines, each writing its events through an
// emitter from newEmitter.
func (k *Keyed[R, S]) Start(newEmitter func() *Emitter) {
	for _, s := range k.shards {
		s.em = newEmitter()
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			s.run()
		}()
	}
}

// Close ends every key still held (reason shutdown) and waits for the
// shards. Every sender must have been flushed first, and none used after.
func (k *Keyed[R, S]) Close() {
	if k.closed {
		return
	}
	k.closed = true
	for _, s := range k.shards {
		close(s.in)
	}
	k.wg.Wait()
}

// Len is the number of keys held (for tests; racy while running).
func (k *Keyed[R, S]) Len() int {
	n := 0
	for _, s := range k.shards {
		n += len(s.index)
	}
	return n
}

// KeyedSender is one worker's way into a Keyed stage. Not safe for
// concurrent use: one per worker.
type KeyedSender[R, S any] struct {
	k   *Keyed[R, S]
	cur []*keyedBatch[R] // by shard
}

// NewSender returns a sender for one worker.
func (k *Keyed[R, S]) NewSender() *KeyedSender[R, S] {
	return &KeyedSender[R, S]{k: k, cur: make([]*keyedBatch[R], len(k.shards))}
}

// Send queues r for key's shard; a full batch is handed over (blocking
// while the shard's queue is full).
func (s *KeyedSender[R, S]) Send(key netip.Addr, r *R) {
	i := 0
	if n := len(s.cur); n > 1 {
		i = int(addrHash(key) % uint64(n))
	}
	b := s.cur[i]
	if b == nil {
		b = s.k.pool.Get().(*keyedBatch[R])
		s.cur[i] = b
	}
	b.recs = append(b.recs, keyedRec[R]{key, *r})
	if len(b.recs) >= s.k.cfg.BatchRecords {
		s.k.shards[i].in <- b
		s.cur[i] = nil
	}
}

// Flush hands over the partial batches (at the end of a worker's input).
func (s *KeyedSender[R, S]) Flush() {
	for i, b := range s.cur {
		if b != nil && len(b.recs) > 0 {
			s.k.shards[i].in <- b
			s.cur[i] = nil
		}
	}
}

// addrHash spreads addresses over shards (murmur3's finaliser over both
// halves).
func addrHash(a netip.Addr) uint64 {
	b := a.As16()
	var hi, lo uint64
	for i := 0; i < 8; i++ {
		hi = hi<<8 | uint64(b[i])
		lo = lo<<8 | uint64(b[8+i])
	}
	h := hi*0x9e3779b97f4a7c15 ^ lo
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

func (s *keyedShard[R, S]) run() {
	for b := range s.in {
		for i := range b.recs {
			s.add(b.recs[i].key, &b.recs[i].r)
		}
		s.records.Add(uint64(len(b.recs)))
		clear(b.recs)
		b.recs = b.recs[:0]
		s.k.pool.Put(b)
		s.sweep()
		s.em.Flush()
	}
	for s.tail != keyedNil {
		s.end(s.tail, KeyedShutdown)
	}
	s.em.Flush()
}

func (s *keyedShard[R, S]) add(key netip.Addr, r *R) {
	ts := s.h.Time(r)
	s.clock = max(s.clock, ts)
	i, ok := s.index[key]
	fresh := !ok
	if ok {
		e := &s.slab[i]
		if s.clock-e.last > int64(s.k.cfg.Idle) {
			// Idle already (the sweep has not reached it): end it first,
			// as the sweep would have.
			s.end(i, KeyedIdle)
			s.expired.Inc()
			ok = false
		}
	}
	if !ok {
		if len(s.index) >= s.max {
			s.end(s.tail, KeyedEvicted)
			s.evicted.Inc()
		}
		i = s.alloc()
		e := &s.slab[i]
		e.key = key
		s.index[key] = i
		s.keys.Add(1)
		fresh = true
	} else {
		s.unlink(i)
	}
	e := &s.slab[i]
	e.last = max(e.last, ts)
	s.pushFront(i)
	s.h.Add(key, &e.state, fresh, r, s.em)
}

func (s *keyedShard[R, S]) sweep() {
	for n := 0; n < s.k.cfg.SweepLimit && s.tail != keyedNil; n++ {
		e := &s.slab[s.tail]
		if s.clock-e.last <= int64(s.k.cfg.Idle) {
			return
		}
		s.end(s.tail, KeyedIdle)
		s.expired.Inc()
	}
}

func (s *keyedShard[R, S]) alloc() int32 {
	if n := len(s.free); n > 0 {
		i := s.free[n-1]
		s.free = s.free[:n-1]
		return i
	}
	s.slab = append(s.slab, keyedEntry[S]{})
	return int32(len(s.slab) - 1)
}

func (s *keyedShard[R, S]) end(i int32, why KeyedEnd) {
	e := &s.slab[i]
	s.h.End(e.key, &e.state, why, s.em)
	s.unlink(i)
	delete(s.index, e.key)
	*e = keyedEntry[S]{}
	s.free = append(s.free, i)
	s.keys.Add(-1)
}

func (s *keyedShard[R, S]) unlink(i int32) {
	e := &s.slab[i]
	if e.prev != keyedNil {
		s.slab[e.prev].next = e.next
	} else {
		s.head = e.next
	}
	if e.next != keyedNil {
		s.slab[e.next].prev = e.prev
	} else {
		s.tail = e.prev
	}
	e.prev, e.next = keyedNil, keyedNil
}

func (s *keyedShard[R, S]) pushFront(i int32) {
	e := &s.slab[i]
	e.prev, e.next = keyedNil, s.head
	if s.head != keyedNil {
		s.slab[s.head].prev = i
	}
	s.head = i
	if s.tail == keyedNil {
		s.tail = i
	}
}
