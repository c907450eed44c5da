package gen

import (
	"math"
	"math/rand/v2"
	"net/netip"
)

// The simulation: every flow is a script that, when its phase time comes,
// schedules its next packets into its own small min-heap. The generator
// keeps all live flows in a heap keyed by the earliest of their next
// packet and their next phase, and repeatedly takes the earliest. A phase
// running at time T only ever schedules packets at T or later, so the
// merged output is in non-decreasing time order, and memory is bounded by
// the live flows (a bulk transfer schedules one window at a time).

type dir uint8

const (
	c2s dir = iota // client to server
	s2c            // server to client
	r2c            // a router (or the server's ICMP) to the client
)

func (d dir) other() dir { return d ^ 1 }

type pktKind uint8

const (
	pTCP pktKind = iota
	pUDP
	pEcho    // ICMP/ICMPv6 echo request (c2s) or reply (s2c)
	pICMPErr // ICMP error quoting the flow's saved packet
)

// tag says what ground truth a packet completes when it is written.
type tag uint8

const (
	tagNone tag = iota
	tagHandshake
	tagHello
	tagServerHello
	tagDNSQuery
	tagDNSResponse
	tagEchoReq
	tagEchoRep
	tagICMPErr
	tagRefused
	tagSYNRetx
)

// pkt is a scheduled packet, kept compact: bytes are made only when it is
// written.
type pkt struct {
	t     int64
	ord   uint32 // per-flow schedule order: ties keep it
	kind  pktKind
	d     dir
	flags uint8
	ttl   uint8 // 0: the flow's default for d
	tag   tag
	quote bool  // save this packet's IP bytes as the flow's quote
	typ   uint8 // ICMP type/code
	code  uint8
	rest  uint32 // ICMP rest-of-header (echo id/seq, MTU)
	seq   uint32
	ack   uint32
	off   int64 // TCP: offset of the payload in d's stream
	n     int   // TCP payload length
	opts  []byte
	data  []byte // UDP payload or ICMP echo body
	aux   int    // index of the DNS query this packet carries
}

type kind uint8

const (
	kindTLS kind = iota
	kindTCP
	kindDNS
	kindEcho
	kindRefused
	kindUnanswered
	kindUDPClosed
	kindTTLExceeded
	kindFragNeeded
	numKinds
)

var kindNames = [numKinds]string{"tls", "tcp", "dns", "icmp-echo", "tcp-refused", "tcp-unanswered", "udp-closed-port", "ttl-exceeded", "frag-needed"}

// kindWeights is the flow mix, in percent.
var kindWeights = [numKinds]int{34, 14, 30, 5, 3, 2, 5, 3, 4}

type flow struct {
	id    int
	kind  kind
	r     *rand.Rand
	v6    bool
	cli   netip.Addr
	srv   netip.Addr
	rtr   netip.Addr
	cport uint16
	sport uint16
	links [2]link // c2s, s2c (r2c uses s2c)
	ttl   [3]uint8
	ipid  [3]uint16
	label [3]uint32
	crtt  int64 // tap to client and back, ns
	srtt  int64 // tap to server and back, ns
	rate  float64
	mss   int

	isn [2]uint32
	nxt [2]int64 // next stream offset to send, per direction
	fin [2]bool
	st  [2]stream

	pend    []pkt // min-heap on (t, ord)
	ord     uint32
	phaseAt int64 // -1: no phase pending
	phase   func(*flow)

	emitted int
	truth   *Conn
	quote   []byte
	spec    *helloSpec
	split   bool
	odd     bool
}

// nextT is the flow's key in the generator's heap.
func (f *flow) nextT() int64 {
	t := int64(math.MaxInt64)
	if len(f.pend) > 0 {
		t = f.pend[0].t
	}
	if f.phaseAt >= 0 && f.phaseAt < t {
		t = f.phaseAt
	}
	return t
}

func (f *flow) done() bool { return len(f.pend) == 0 && f.phaseAt < 0 }

func pktLess(a, b *pkt) bool { return a.t < b.t || (a.t == b.t && a.ord < b.ord) }

func (f *flow) push(p pkt) {
	p.ord = f.ord
	f.ord++
	h := append(f.pend, p)
	i := len(h) - 1
	for i > 0 {
		j := (i - 1) / 2
		if !pktLess(&h[i], &h[j]) {
			break
		}
		h[i], h[j] = h[j], h[i]
		i = j
	}
	f.pend = h
}

func (f *flow) pop() pkt {
	h := f.pend
	p := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h[n] = pkt{}
	h = h[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && pktLess(&h[r], &h[l]) {
			m = r
		}
		if !pktLess(&h[m], &h[i]) {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	f.pend = h
	return p
}

// at schedules the flow's next phase.
func (f *flow) at(t int64, fn func(*flow)) { f.phaseAt, f.phase = t, fn }

// rtt is the tap-to-endpoint round trip of the side that receives d.
func (f *flow) rttTo(d dir) int64 {
	if d == c2s {
		return f.srtt
	}
	return f.crtt
}

// seqAt is the sequence number of stream offset off in direction d.
func (f *flow) seqAt(d dir, off int64) uint32 { return f.isn[d] + 1 + uint32(off) }

// ackFor is what the side sending in direction d acknowledges now.
func (f *flow) ackFor(d dir) uint32 {
	o := d.other()
	a := f.seqAt(o, f.nxt[o])
	if f.fin[o] {
		a++
	}
	return a
}

// tcp schedules a segment with no payload.
func (f *flow) tcp(t int64, d dir, flags uint8) {
	p := pkt{t: t, kind: pTCP, d: d, flags: flags, seq: f.seqAt(d, f.nxt[d]), off: f.nxt[d]}
	if f.fin[d] {
		p.seq++ // the FIN took one sequence number
	}
	if flags&fACK != 0 {
		p.ack = f.ackFor(d)
	}
	f.push(p)
}

// segGap is how long a segment of n payload bytes takes on the flow's link.
func (f *flow) segGap(n int) int64 {
	return int64(float64((n+78)*8) / f.rate * 1e9)
}

// sendSizes sends the next bytes of d's stream as segments of the given
// sizes starting at t. With acks, the receiver acknowledges every second
// segment and the last one. It returns the time of the last segment.
func (f *flow) sendSizes(t int64, d dir, sizes []int, acks bool, lastTag tag) int64 {
	rt := f.rttTo(d)
	for i, n := range sizes {
		if i > 0 {
			t += f.segGap(n)
		}
		flags := uint8(fACK)
		last := i == len(sizes)-1
		if last {
			flags |= fPSH
		}
		p := pkt{t: t, kind: pTCP, d: d, flags: flags, seq: f.seqAt(d, f.nxt[d]), ack: f.ackFor(d), off: f.nxt[d], n: n}
		if last {
			p.tag = lastTag
		}
		f.push(p)
		f.nxt[d] += int64(n)
		if acks && (i%2 == 1 || last) {
			o := d.other()
			f.push(pkt{t: t + rt + f.r.Int64N(50_000), kind: pTCP, d: o, flags: fACK,
				seq: f.seqAt(o, f.nxt[o]), ack: f.seqAt(d, f.nxt[d]), off: f.nxt[o]})
		}
	}
	return t
}

// mssSizes splits n bytes into MSS-sized segments.
func (f *flow) mssSizes(n int, mss int) []int {
	var s []int
	for n > 0 {
		k := min(n, mss)
		s = append(s, k)
		n -= k
	}
	return s
}

// send sends n bytes of d's stream in MSS-sized segments.
func (f *flow) send(t int64, d dir, n int, acks bool) int64 {
	return f.sendSizes(t, d, f.mssSizes(n, f.mss), acks, tagNone)
}

// bulk sends n bytes of d's stream window by window (slow start from 10
// segments, one window per round trip or per link time, whichever is
// longer), then calls then with the time of the last segment.
func (f *flow) bulk(t int64, d dir, n int64, then func(t int64)) {
	win := 10
	var round func(t int64)
	round = func(t int64) {
		k := int64(win) * int64(f.mss)
		if k > n {
			k = n
		}
		n -= k
		last := f.send(t, d, int(k), true)
		if n == 0 {
			then(last)
			return
		}
		win = min(win*2, 128)
		next := max(t+f.crtt+f.srtt, last+f.segGap(f.mss))
		f.at(next, func(*flow) { round(next) })
	}
	round(t)
}

// handshake schedules SYN, SYN/ACK and ACK from t (SYN/ACK one server RTT
// later, ACK one client RTT after that) and returns the ACK's time.
func (f *flow) handshake(t int64) int64 {
	opt := synOpts(uint16(f.mss))
	f.push(pkt{t: t, kind: pTCP, d: c2s, flags: fSYN, seq: f.isn[c2s], opts: opt})
	t += f.srtt
	f.push(pkt{t: t, kind: pTCP, d: s2c, flags: fSYN | fACK, seq: f.isn[s2c], ack: f.isn[c2s] + 1, opts: opt})
	t += f.crtt
	f.push(pkt{t: t, kind: pTCP, d: c2s, flags: fACK, seq: f.isn[c2s] + 1, ack: f.isn[s2c] + 1, tag: tagHandshake})
	return t
}

// closeConn ends the connection at t: by FIN from one side (answered by
// FIN/ACK one RTT later, then the last ACK) or by a client RST.
func (f *flow) closeConn(t int64) {
	switch v := f.r.IntN(100); {
	case v < 15:
		f.truth.Close = "rst"
		f.tcp(t, c2s, fRST|fACK)
	default:
		f.truth.Close = "fin"
		a := dir(c2s)
		if v < 40 {
			a = s2c
		}
		b := a.other()
		f.tcp(t, a, fFIN|fACK)
		f.fin[a] = true
		t += f.rttTo(a)
		f.tcp(t, b, fFIN|fACK)
		f.fin[b] = true
		t += f.rttTo(b)
		f.tcp(t, a, fACK)
	}
}

// logUniform draws from [lo, hi) with a log-uniform density.
func logUniform(r *rand.Rand, lo, hi float64) float64 {
	return math.Exp(math.Log(lo) + r.Float64()*(math.Log(hi)-math.Log(lo)))
}

func logNs(r *rand.Rand, lo, hi float64) int64 { return int64(logUniform(r, lo, hi)) }
