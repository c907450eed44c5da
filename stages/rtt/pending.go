package rtt

// DefaultMaxPending is the default cap on outstanding requests per flow.
const DefaultMaxPending = 64

// DefaultTimeout is how long (packet time) a request waits for its answer.
const DefaultTimeout = int64(10e9)

// Pending is a small table of one flow's outstanding requests (echo
// sequences, DNS ids, ...) keyed by a uint32, for request→response timing.
// It is the reusable piece of this package: stages/dns uses it for DNS,
// and any analyzer that times a request/response pair can.
//
// Entries are kept in request order. A request whose key is already
// outstanding is reported as a duplicate and, by default, replaces it: the
// time then counts from the latest copy, as Wireshark's icmp.resptime does.
// With KeepFirst the first copy stays and the time counts from it, as
// Wireshark's dns.time does (it marks the later copy a retransmission). When Max entries are outstanding, the oldest is dropped to
// make room. The zero value is ready (Max 0 means DefaultMaxPending). The
// backing array is kept across Reset, so a pooled Pending allocates only
// while it first grows.
type Pending struct {
	Max       int
	KeepFirst bool
	ents      []pendingEntry
}

type pendingEntry struct {
	key  uint32
	dup  bool
	when int64
}

// Len is the number of outstanding requests.
func (p *Pending) Len() int { return len(p.ents) }

// Reset forgets every request.
func (p *Pending) Reset() { p.ents = p.ents[:0] }

// Request records a request with key at ts. dup says a request with the
// same key was outstanding; dropped says the table was full and its oldest
// request was dropped (the caller counts it as unanswered).
func (p *Pending) Request(key uint32, ts int64) (dup, dropped bool) {
	if i := p.find(key); i >= 0 {
		if p.KeepFirst {
			p.ents[i].dup = true
			return true, false
		}
		p.remove(i)
		dup = true
	}
	max := p.Max
	if max <= 0 {
		max = DefaultMaxPending
	}
	if len(p.ents) >= max {
		p.remove(0)
		dropped = true
	}
	p.ents = append(p.ents, pendingEntry{key: key, when: ts, dup: dup})
	return dup, dropped
}

// Answer matches a response with key at ts. It returns the time since the
// (latest) request, whether that request had been sent more than once, and
// false if no request with key was outstanding. The request is forgotten.
func (p *Pending) Answer(key uint32, ts int64) (rtt int64, dup, ok bool) {
	i := p.find(key)
	if i < 0 {
		return 0, false, false
	}
	e := p.ents[i]
	p.remove(i)
	return ts - e.when, e.dup, true
}

// Expire forgets the requests older than timeout at now (now - ts >
// timeout) and returns how many it forgot.
func (p *Pending) Expire(now, timeout int64) int {
	n := 0
	for n < len(p.ents) && now-p.ents[n].when > timeout {
		n++
	}
	if n > 0 {
		m := copy(p.ents, p.ents[n:])
		p.ents = p.ents[:m]
	}
	return n
}

func (p *Pending) find(key uint32) int {
	for i := range p.ents {
		if p.ents[i].key == key {
			return i
		}
	}
	return -1
}

func (p *Pending) remove(i int) {
	copy(p.ents[i:], p.ents[i+1:])
	p.ents = p.ents[:len(p.ents)-1]
}
