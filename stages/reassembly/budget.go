// Package reassembly bounds the memory of the reassembly buffers of one
// worker: TLS handshakes (stages/tlsfp), QUIC CRYPTO streams (stages/quic),
// DNS over TCP, SSH and HTTP headers. Each of them is held per flow
// and per direction while a message is incomplete, so without a shared
// bound their total grows with the flow count: 100k flows with stalled
// 16 KiB TLS handshakes in both directions held 3.2 GB of buffers.
//
// A Budget is one worker's allowance of buffer bytes, shared by all its
// flows and analyzers, as Suricata's stream.reassembly.memcap is. Every
// buffer is accounted through a Holder (embedded in its owner) on an
// intrusive LRU list. When a buffer must grow and the budget is full, the
// buffers that have gone longest without new data are given up first:
// their Owner drops them and stops reassembling that direction, and the
// budget counts them. The buffer that asked is never the one given up; a
// single request larger than the whole budget is refused (and counted).
//
// Giving up loses analysis, not events: the flow and its record go on,
// the analyzer reports what it read (a tls event marked truncated, a quic
// summary in state gave_up). So the counter is not a stats loss counter and
// does not change the exit code, as pktpipe_flow_evicted_total does not.
//
// The Budget is not safe for concurrent use: each worker has its own. Its
// metrics are shared by all workers (the registry sums them), updated when
// a buffer's size changes, not per packet.
package reassembly

import "github.com/pktpipe/pktpipe/pipeline/stats"

// DefaultProcessBytes is the reassembly budget of a whole process (as
// Suricata's stream.reassembly.memcap default); a worker's budget is this
// divided by the worker count (PerWorker).
const DefaultProcessBytes = 256 << 20

// PerWorker splits a process-wide budget between workers.
func PerWorker(processBytes int64, workers int) int64 {
	return processBytes / int64(max(workers, 1))
}

// An Owner holds buffers accounted by Holders.
type Owner interface {
	// GiveUp is called when the budget takes back h's bytes to make room
	// for a more recently used buffer: by then h holds nothing. The owner
	// must drop the buffers h accounted for and stop reassembling that
	// direction. It must not grow any buffer of the same budget (Release
	// is allowed and is a no-op for h).
	GiveUp(h *Holder)
}

// Holder accounts the buffers of one reassembly direction; embed it in
// their owner. Its zero value holds nothing. A linked Holder must not be
// copied or overwritten: Release it first.
type Holder struct {
	prev, next *Holder // LRU list: prev is more recent
	owner      Owner
	bytes      int64
	linked     bool
}

// Bytes is what h holds.
func (h *Holder) Bytes() int64 { return h.bytes }

// Budget is one worker's byte allowance for reassembly buffers.
type Budget struct {
	limit      int64
	used       int64
	head, tail *Holder // head: most recently used
	gaveUp     uint64

	gUsed   *stats.Gauge
	cGaveUp *stats.Counter
}

// NewBudget returns a budget of limit bytes (<= 0: no limit, use is still
// counted) whose metrics go to reg (nil: none).
func NewBudget(limit int64, reg *stats.Registry) *Budget {
	b := &Budget{limit: limit}
	if reg != nil {
		b.gUsed = reg.Gauge("pktpipe_reassembly_bytes", "Bytes held by reassembly buffers (TLS, QUIC CRYPTO, DNS over TCP, SSH, HTTP headers) of live flows, all workers.")
		b.cGaveUp = reg.Counter("pktpipe_reassembly_given_up_total", "Reassembly buffers given up because the reassembly budget was full (the oldest go first); those directions are analyzed no further.")
		if limit > 0 {
			reg.Gauge("pktpipe_reassembly_budget_bytes", "Reassembly budget, all workers.").Add(limit)
		}
	}
	return b
}

// Limit is the budget in bytes (<= 0: none).
func (b *Budget) Limit() int64 { return b.limit }

// Used is the bytes held by all Holders.
func (b *Budget) Used() int64 { return b.used }

// GivenUp counts the buffers given up or refused so far.
func (b *Budget) GivenUp() uint64 { return b.gaveUp }

// Resize sets what h holds to n bytes, on behalf of o, and makes h the
// most recently used. Growing past the limit first gives up the least
// recently used other Holders. It reports false, changing nothing, when
// n alone exceeds the limit: the caller must then give the buffer up
// itself (the refusal is counted). On a nil Budget it only records n.
func (b *Budget) Resize(h *Holder, o Owner, n int64) bool {
	if b == nil {
		h.bytes = max(n, 0)
		return true
	}
	if n <= 0 {
		b.Release(h)
		return true
	}
	if n > h.bytes && b.limit > 0 {
		if n > b.limit {
			b.count()
			return false
		}
		b.front(h)
		// The tail is never h, which is at the front and fits alone.
		for b.used-h.bytes+n > b.limit && b.tail != nil && b.tail != h {
			b.evict(b.tail)
		}
	}
	b.front(h)
	b.add(n - h.bytes)
	h.owner, h.bytes = o, n
	return true
}

// Touch makes h the most recently used (new data arrived for it).
func (b *Budget) Touch(h *Holder) {
	if b != nil && h.linked && b.head != h {
		b.unlink(h)
		b.pushFront(h)
	}
}

// Release returns all h holds.
func (b *Budget) Release(h *Holder) {
	if b == nil {
		h.bytes = 0
		return
	}
	if h.linked {
		b.unlink(h)
	}
	b.add(-h.bytes)
	h.bytes, h.owner = 0, nil
}

// evict takes v's bytes back and tells its owner.
func (b *Budget) evict(v *Holder) {
	o := v.owner
	b.Release(v)
	b.count()
	if o != nil {
		o.GiveUp(v)
	}
}

func (b *Budget) count() {
	b.gaveUp++
	if b.cGaveUp != nil {
		b.cGaveUp.Inc()
	}
}

func (b *Budget) add(d int64) {
	if d == 0 {
		return
	}
	b.used += d
	if b.gUsed != nil {
		b.gUsed.Add(d)
	}
}

func (b *Budget) front(h *Holder) {
	if !h.linked {
		b.pushFront(h)
	} else {
		b.Touch(h)
	}
}

func (b *Budget) pushFront(h *Holder) {
	h.prev, h.next, h.linked = nil, b.head, true
	if b.head != nil {
		b.head.prev = h
	} else {
		b.tail = h
	}
	b.head = h
}

func (b *Budget) unlink(h *Holder) {
	if h.prev != nil {
		h.prev.next = h.next
	} else {
		b.head = h.next
	}
	if h.next != nil {
		h.next.prev = h.prev
	} else {
		b.tail = h.prev
	}
	h.prev, h.next, h.linked = nil, nil, false
}
