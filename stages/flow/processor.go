package flow

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"runtime"
	"time"

	recslab "github.com/pktpipe/pktpipe/internal/slab" // flow has its own slab type
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/communityid"
)

// DefaultProcessFlows is the flow cap of a whole process; a worker's
// default cap is this divided by Config.Workers.
const DefaultProcessFlows = 1 << 20

// Config sizes one worker's table. Zero values take the defaults.
type Config struct {
	// MaxFlows caps this worker's table. Default DefaultProcessFlows /
	// Workers.
	MaxFlows int
	// Workers is the number of workers (only used for the default cap;
	// default runtime.NumCPU()).
	Workers  int
	Timeouts Timeouts
	// CommunityIDSeed is the Community ID seed; NoCommunityID turns the
	// Community ID off.
	CommunityIDSeed uint16
	NoCommunityID   bool
	// SweepLimit bounds the flows the after-batch sweep ends per class
	// (default 1024); the rest wait for the next batch.
	SweepLimit int
	// AnalyzerNames label the analyzers' metrics, in the order given to
	// NewProcessor (missing names are "analyzerN").
	AnalyzerNames []string
	Stats         *stats.Registry
}

func (c *Config) defaults() {
	if c.Workers <= 0 {
		c.Workers = runtime.NumCPU()
	}
	if c.MaxFlows <= 0 {
		c.MaxFlows = max(1, DefaultProcessFlows/c.Workers)
	}
	// Indices are int32.
	c.MaxFlows = min(c.MaxFlows, 1<<30)
	d := DefaultTimeouts
	t := &c.Timeouts
	for _, p := range []struct {
		v   *int64
		def int64
	}{
		{(*int64)(&t.New), int64(d.New)}, {(*int64)(&t.TCP), int64(d.TCP)},
		{(*int64)(&t.UDP), int64(d.UDP)}, {(*int64)(&t.ICMP), int64(d.ICMP)},
		{(*int64)(&t.Other), int64(d.Other)}, {(*int64)(&t.Linger), int64(d.Linger)},
	} {
		if *p.v <= 0 {
			*p.v = p.def
		}
	}
	if c.SweepLimit <= 0 {
		c.SweepLimit = 1024
	}
	if c.Stats == nil {
		c.Stats = stats.NewRegistry()
	}
}

// Timeout classes: one LRU list each.
const (
	clsNew = iota
	clsTCP
	clsUDP
	clsICMP
	clsOther
	clsClosing
	nClasses
)

// End reasons.
const (
	reasonNone = iota
	reasonFin
	reasonRst
	reasonTimeout
	reasonShutdown
	reasonEvicted
	nReasons
)

var reasonNames = [nReasons]string{"", "fin", "rst", "timeout", "shutdown", "evicted"}

// reasonActive is the reason of a record written at the active timeout
// (the flow carries on: not an end, so not in the ended counters).
const reasonActive = "active_timeout"

// interval is a flow's accounting once it has written a record at its
// active timeout: its counters at the start of the current interval.
type interval struct {
	first       int64     // the interval's first packet, ns
	pkts, bytes [2]uint64 // the flow's counters before the interval, by Dir
	frags       uint64
	flags       [2]uint8 // TCP flags seen in the interval, by Dir
}

const (
	chunkShift = 12
	chunkSize  = 1 << chunkShift
	chunkMask  = chunkSize - 1
	nilIdx     = -1
)

// slab is a chunk of entries with their table in front (Flow.table).
type slab struct {
	slabHead
	flows [chunkSize]Flow
}

type slabHead struct{ tbl *Processor }

// smallSlab is a slab for a last chunk of a few entries (the same
// layout).
type smallSlab struct {
	slabHead
	flows [smallSlabSize]Flow
}

const smallSlabSize = 64

// newSlab returns a slab of at least size entries of table p.
func newSlab(p *Processor, size int) []Flow {
	if size <= smallSlabSize {
		s := &smallSlab{slabHead: slabHead{p}}
		return s.flows[:size]
	}
	s := &slab{slabHead: slabHead{p}}
	return s.flows[:size]
}

// Processor is one worker's flow table; it implements pipeline.Processor.
type Processor struct {
	cfg       Config
	analyzers []Analyzer
	records   recslab.Slab[event.Flow]
	cid       *communityid.Hasher
	timeout   [nClasses]int64
	active    int64            // Timeouts.Active, 0 = off
	iw        []IntervalWriter // by slot, nil where the analyzer is not one
	engagers  []Engager

	// What only some flows need (Flow.ext), and the free entries.
	exts    []ext
	extFree []int32

	chunks [][]Flow
	n      int32 // entries ever used (high-water mark)

	// Rows beside the table (column.go): one for each flow that needs
	// more than its entry, and the free ones.
	rows    []*chunk
	rowN    int32 // rows ever used
	rowFree []int32

	free    int32 // free list head, linked by next
	size    int   // live flows
	ix      index
	touched uint32 // what Process's early reads read (so that they stay)
	head    [nClasses]int32
	tail    [nClasses]int32

	// Counts since the last publish (counters are added once per batch).
	created, evicted, matched, unmatched, skipped, actives uint64
	ended                                                  [nReasons]uint64
	published                                              int // size last added to the gauge

	cCreated, cEvicted, cMatched, cUnmatched, cSkipped, cActive *stats.Counter
	cEnded                                                      [nReasons]*stats.Counter
	gSize                                                       *stats.Gauge

	// Per-analyzer accounting: packets handed to each, and the time spent
	// in it measured on one packet in timeSample (scaled up when published).
	tick    uint32
	low     uint32 // a bit for each analyzer slot below 32 (Flow.skip's)
	aPkts   []uint64
	aNanos  []int64
	cAPkts  []*stats.Counter
	cANanos []*stats.Counter
}

// timeSample: one packet in this many is timed through every analyzer;
// two clock reads per analyzer on 1/64 of the packets cost about 1 ns per
// packet, against 30-50 ns per clock pair if every packet were timed.
const timeSample = 64

var _ pipeline.Processor = (*Processor)(nil)

// NewProcessor returns a worker's flow table running analyzers, in order.
func NewProcessor(cfg Config, analyzers ...Analyzer) *Processor {
	cfg.defaults()
	p := &Processor{cfg: cfg, analyzers: analyzers, free: nilIdx}
	if !cfg.NoCommunityID {
		p.cid = communityid.New(cfg.CommunityIDSeed, true)
	}
	t := cfg.Timeouts
	p.timeout = [nClasses]int64{
		clsNew: int64(t.New), clsTCP: int64(t.TCP), clsUDP: int64(t.UDP),
		clsICMP: int64(t.ICMP), clsOther: int64(t.Other), clsClosing: int64(t.Linger),
	}
	p.active = max(0, int64(t.Active))
	p.iw = make([]IntervalWriter, len(analyzers))
	for i, a := range analyzers {
		p.iw[i], _ = a.(IntervalWriter)
		if e, ok := a.(Engager); ok {
			p.engagers = append(p.engagers, e)
		}
	}
	p.ix = newIndex(cfg.MaxFlows)
	for c := range nClasses {
		p.head[c], p.tail[c] = nilIdx, nilIdx
	}
	for i, a := range analyzers {
		if s, ok := a.(SlotUser); ok {
			s.SetSlot(i)
		}
	}
	r := cfg.Stats
	p.aPkts, p.aNanos = make([]uint64, len(analyzers)), make([]int64, len(analyzers))
	p.low = uint32(1<<min(len(analyzers), 32) - 1)
	for i := range analyzers {
		name := fmt.Sprintf("analyzer%d", i)
		if i < len(cfg.AnalyzerNames) {
			name = cfg.AnalyzerNames[i]
		}
		p.cAPkts = append(p.cAPkts, r.Counter("pktpipe_analyzer_packets_total", "Packets the flow table handed to an analyzer.", "analyzer", name))
		p.cANanos = append(p.cANanos, r.Counter("pktpipe_analyzer_nanoseconds_total",
			"Time spent in an analyzer's per-packet work, estimated from one packet in 64 timed.", "analyzer", name))
	}
	p.cCreated = r.Counter("pktpipe_flow_created_total", "Flows created.")
	p.cEvicted = r.Counter("pktpipe_flow_evicted_total", "Flows ended early because the flow table was full (they are still emitted).")
	for i := reasonFin; i < nReasons; i++ {
		p.cEnded[i] = r.Counter("pktpipe_flow_ended_total", "Flows ended, by reason.", "reason", reasonNames[i])
	}
	p.cMatched = r.Counter("pktpipe_flow_icmp_errors_total", "ICMP errors, by whether the flow they quote was found.", "result", "matched")
	p.cUnmatched = r.Counter("pktpipe_flow_icmp_errors_total", "ICMP errors, by whether the flow they quote was found.", "result", "unmatched")
	p.cActive = r.Counter("pktpipe_flow_active_timeout_records_total", "Flow records written at the active timeout (the flow carries on).")
	p.cSkipped = r.Counter("pktpipe_flow_skipped_total", "Packets the flow table could not key (no IP layer, malformed, later fragment).")
	p.gSize = r.Gauge("pktpipe_flow_table_flows", "Live flows in all workers' tables.")
	return p
}

// Len is the number of live flows.
func (p *Processor) Len() int { return p.size }

// Cap is the table's flow cap.
func (p *Processor) Cap() int { return p.cfg.MaxFlows }

// Lookup returns the live flow of a directed or canonical key, or nil.
func (p *Processor) Lookup(k packet.FlowKey) *Flow {
	c, _ := packFlowKey(k)
	if i := p.lookup(&c, c.hash()); i != nilIdx {
		return p.at(i)
	}
	return nil
}

// Process handles a batch, then ends the flows idle past their timeout at
// the batch clock.
func (p *Processor) Process(b *packet.Batch, em *pipeline.Emitter) {
	pkts := b.Packets
	for i := range pkts {
		if j := i + bucketAhead; j < len(pkts) {
			p.touchBucket(pkts[j].Meta.FlowHash)
		}
		p.Packet(&pkts[i], em)
	}
	p.Sweep(b.Now, em)
	p.publish()
}

// With many flows a packet's index bucket is rarely in cache. Process
// reads it a few packets ahead (by the dispatcher's hash), with a load
// nothing waits for, so that its cache miss overlaps with the work on the
// packets before (about a third less time per packet with 1M flows).
const bucketAhead = 8

func (p *Processor) touchBucket(h uint64) {
	if h != 0 {
		p.touched += p.ix.b[p.ix.home(h)].over
	}
}

// Flush ends every flow: closed flows with fin/rst, flows idle past their
// timeout at now with timeout, the others with shutdown.
func (p *Processor) Flush(now int64, em *pipeline.Emitter) {
	for c := range nClasses {
		for p.tail[c] != nilIdx {
			i := p.tail[c]
			f := p.at(i)
			r := p.naturalReason(f)
			if f.closed == 0 && !p.expired(f, now) {
				r = reasonShutdown
			}
			p.end(i, r, em)
		}
	}
	for _, a := range p.analyzers {
		if w, ok := a.(WorkerFlusher); ok {
			w.FlushWorker()
		}
	}
	p.publish()
}

// WorkerFlusher is an analyzer that batches something of its own (records
// for a keyed stage): FlushWorker hands the rest on once the worker's
// flows have all ended.
type WorkerFlusher interface {
	FlushWorker()
}

// Sweep ends flows idle past their timeout at now, at most
// Config.SweepLimit per class.
func (p *Processor) Sweep(now int64, em *pipeline.Emitter) {
	for c := range nClasses {
		for n := 0; n < p.cfg.SweepLimit && p.tail[c] != nilIdx; n++ {
			i := p.tail[c]
			f := p.at(i)
			if !p.expired(f, now) {
				break
			}
			p.end(i, p.naturalReason(f), em)
		}
	}
}

// Packet handles one packet: find or create its flow, count it, run the
// analyzers. Process calls it for each packet of a batch.
func (p *Processor) Packet(pk *packet.Packet, em *pipeline.Emitter) {
	m := &pk.Meta
	if m.Err != packet.MalformedNone || m.IPVersion == 0 {
		p.skipped++
		return
	}
	if (m.Proto == packet.ProtoICMP || m.Proto == packet.ProtoICMPv6) && packet.IsICMPError(m.Proto, m.ICMPType) {
		p.icmpError(pk, em)
		return
	}
	if m.Frag.Is && !m.Frag.First {
		p.skipped++ // no ports: cannot be tied to a flow
		return
	}
	ck, swapped := packetKey(m)
	h := m.FlowHash // the dispatcher's, when it came through one
	if h == 0 {
		h = ck.hash()
	}
	ts := pk.Timestamp
	var f *Flow
	i := p.lookup(&ck, h)
	if i != nilIdx {
		f = p.at(i)
		if p.expired(f, ts) {
			p.end(i, p.naturalReason(f), em)
			f = nil
		} else if f.closed != 0 && m.Proto == packet.ProtoTCP && m.TCPFlags&(packet.TCPSyn|packet.TCPAck) == packet.TCPSyn {
			// A new SYN on a closed connection: port reuse.
			p.end(i, p.naturalReason(f), em)
			f = nil
		} else if p.active > 0 && ts-p.intervalStart(f) >= p.active {
			p.interval(f, ts, em)
		}
	}
	if f == nil {
		i = p.alloc(ts, em)
		f = p.at(i)
		p.start(i, f, &ck, swapped, pk)
		p.ix.insert(i, h)
		p.pushFront(f.class, i)
		p.size++
		p.created++
	}
	dir := ToServer
	if swapped == f.clientSrc() { // the sender is not the client
		dir = ToClient
	}
	if f.bits&bitHandshake != 0 && f.seen != 0 && !p.reply(f, m, dir, ts) {
		// The handshake is over: the analyzers that kept nothing for it
		// make its state while the entry still tells it.
		for _, e := range p.engagers {
			e.Engage(f)
		}
		f.bits &^= bitHandshake
	}
	if ts > f.last {
		f.last = ts
	}
	if f.pkts[dir]++; f.pkts[dir] == 0 {
		p.newExt(f).pktsHi[dir]++
	}
	n := pk.OrigLen
	if n == 0 {
		n = uint32(len(pk.Data)) // at most a batch's arena
	}
	if m.Tunnel != packet.TunnelNone {
		n = uint32(m.InnerLen)
	}
	if f.bytes[dir] += n; f.bytes[dir] < n {
		p.newExt(f).bytesHi[dir]++
	}
	if f.seen&(1<<dir) == 0 {
		if m.Proto == packet.ProtoICMP || m.Proto == packet.ProtoICMPv6 {
			f.l4[dir], f.l4[2+dir] = m.ICMPType, m.ICMPCode
		}
		if pk.LinkType == packet.LinkEthernet && len(pk.Data) >= 14 {
			e := &f.ether[dir] // EVE's ether: the first packet each way
			e.Dst, e.Src, e.Valid = [6]byte(pk.Data[0:6]), [6]byte(pk.Data[6:12]), true
		}
	}
	f.seen |= 1 << dir
	if m.Frag.Is {
		p.newExt(f).frags++
	}
	if m.Proto == packet.ProtoTCP {
		fl := m.TCPFlags
		f.flags[dir] |= fl
		if f.ext != nilIdx {
			p.exts[f.ext].ivl.flags[dir] |= fl
		}
		if f.closed == 0 {
			if fl&packet.TCPRst != 0 {
				f.closed = reasonRst
			} else if fl&packet.TCPFin != 0 {
				f.fins |= 1 << dir
				if f.fins == 3 {
					f.closed = reasonFin
				}
			}
		}
	}
	if c := p.classOf(f); c != f.class {
		p.unlink(i)
		f.class = c
		p.pushFront(c, i)
	} else if f.prev != nilIdx { // not already at the front
		p.unlink(i)
		p.pushFront(c, i)
	}
	p.tick++
	timed := p.tick%timeSample == 0
	// Only the analyzers still engaged with the flow, in slot order: most
	// packets belong to flows that a few analyzers follow, and walking
	// every slot to test its bit cost more than the calls. The mask is
	// read again after each call, which may have told the flow table to
	// skip a later slot, so each analyzer sees exactly the packets it
	// would in a plain loop over the slots.
	for live := p.low &^ f.skip; live != 0; live &^= f.skip {
		j := bits.TrailingZeros32(live)
		live &= live - 1
		p.aPkts[j]++
		if timed {
			p.timedPacket(j, f, pk, dir, em)
		} else {
			p.analyzers[j].Packet(f, pk, dir, em)
		}
	}
	for j := 32; j < len(p.analyzers); j++ { // not tracked by skip: always called
		p.aPkts[j]++
		if timed {
			p.timedPacket(j, f, pk, dir, em)
		} else {
			p.analyzers[j].Packet(f, pk, dir, em)
		}
	}
}

// timedPacket hands pk to analyzer j and adds the time it took to the
// analyzer's (one packet in timeSample is timed).
func (p *Processor) timedPacket(j int, f *Flow, pk *packet.Packet, dir Dir, em *pipeline.Emitter) {
	t := time.Now()
	p.analyzers[j].Packet(f, pk, dir, em)
	p.aNanos[j] += int64(time.Since(t))
}

func (p *Processor) icmpError(pk *packet.Packet, em *pipeline.Emitter) {
	var f *Flow
	if qk, ok := packet.QuoteKey(&pk.Meta); ok {
		ck, _ := packFlowKey(qk)
		if i := p.lookup(&ck, ck.hash()); i != nilIdx {
			g := p.at(i)
			if p.expired(g, pk.Timestamp) {
				// It is over; end it as a sweep would have.
				p.end(i, p.naturalReason(g), em)
			} else {
				f = g
			}
		}
	}
	if f != nil {
		p.matched++
	} else {
		p.unmatched++
	}
	for _, a := range p.analyzers {
		a.ICMPError(f, pk, em)
	}
}

// start initialises entry i, f, for the first packet pk of a flow.
func (p *Processor) start(i int32, f *Flow, ck *key, swapped bool, pk *packet.Packet) {
	m := &pk.Meta
	*f = Flow{
		pos: uint16(i & chunkMask), bits: bitLive, row: nilIdx, key: *ck,
		first: pk.Timestamp, last: pk.Timestamp,
		prev: nilIdx, next: nilIdx, ext: nilIdx,
		ifIndex: pk.IfIndex, vlan1: m.VLAN[1], class: clsNew,
	}
	if m.Tunnel != packet.TunnelNone {
		x := p.newExt(f)
		x.tunnel = m.Tunnel
		if m.X != nil { // the decoder sets it with Tunnel
			x.outerSrc, x.outerDst = m.X.OuterSrc, m.X.OuterDst
		}
	}
	// The sender of the first packet is the client unless it looks like the
	// server's answer.
	senderIsServer := false
	switch m.Proto {
	case packet.ProtoTCP:
		switch {
		case m.TCPFlags&(packet.TCPSyn|packet.TCPAck) == packet.TCPSyn|packet.TCPAck:
			senderIsServer = true
		case m.TCPFlags&packet.TCPSyn == 0: // midstream: lower port serves
			senderIsServer = m.SrcPort < m.DstPort
		}
	case packet.ProtoUDP:
		// A datagram from a DNS port to another port is an answer: its
		// receiver asked (Suricata reverses such a flow once its DNS
		// parser sees the response).
		senderIsServer = isDNSPort(m.SrcPort) && !isDNSPort(m.DstPort)
	case packet.ProtoICMP:
		senderIsServer = m.ICMPType == 0
	case packet.ProtoICMPv6:
		senderIsServer = m.ICMPType == 129
	}
	if !swapped != senderIsServer {
		f.bits |= bitClientSrc
	}
	if swapped {
		f.bits |= bitFirstSwapped
	}
	if packet.IsEcho(m.Proto, m.ICMPType) {
		f.seq2 = uint32(m.ICMPSeq)
	}
	if m.Proto == packet.ProtoTCP {
		f.firstFlags = m.TCPFlags
		binary.LittleEndian.PutUint32(f.l4[:], m.Seq)
		if bareSegment(m) {
			f.bits |= bitFirstBare | bitHandshake
		}
	}
}

// reply reports whether the packet of a flow still in its handshake
// (Flow.Handshake) keeps it there, as the first reply, which it then
// notes: the flow's second packet, the first the other way, without
// payload and not older than the first.
func (p *Processor) reply(f *Flow, m *packet.Meta, dir Dir, ts int64) bool {
	if f.seen != 1<<f.FirstDir() || dir == f.FirstDir() || f.Packets(f.FirstDir()) != 1 || ts < f.first || !bareSegment(m) {
		return false
	}
	f.seq2 = m.Seq
	if _, seq, _ := f.FirstTCP(); m.TCPFlags&packet.TCPAck != 0 && m.Ack == seq+1 {
		f.bits |= bitReplyAcks
	}
	return true
}

// bareSegment reports whether a TCP packet has its whole header and no
// payload, neither captured nor by its IP length (which a short snaplen
// does not cut).
func bareSegment(m *packet.Meta) bool {
	if !m.HasL4 || m.PayloadLen != 0 {
		return false
	}
	hdrs := int(m.PayloadOff) - int(m.L3Off)
	return !(hdrs > 0 && m.IPLen != 0 && int(m.IPLen) > hdrs)
}

// communityID computes f's Community ID: from the canonical key, or for
// ICMP from the first packet's direction, type and code (so a ping
// session gets the ID of its request/reply pair).
func (p *Processor) communityID(f *Flow) string {
	k := f.key.flowKey()
	if k.Proto != packet.ProtoICMP && k.Proto != packet.ProtoICMPv6 {
		return p.cid.ID(k)
	}
	if f.bits&bitFirstSwapped != 0 {
		k = k.Reverse()
	}
	typ, code := f.FirstICMP()
	return p.cid.IDICMP(k, typ, code)
}

// newExt gives f a side entry.
func (p *Processor) newExt(f *Flow) *ext {
	if f.ext == nilIdx {
		if n := len(p.extFree); n > 0 {
			f.ext = p.extFree[n-1]
			p.extFree = p.extFree[:n-1]
		} else {
			p.exts = append(p.exts, ext{})
			f.ext = int32(len(p.exts) - 1)
		}
	}
	return &p.exts[f.ext]
}

func isDNSPort(p uint16) bool { return p == 53 || p == 5353 }

// flowID mixes the key's symmetric hash with the first packet's time and
// keeps 53 bits (exact in a float64); never 0, which means "absent".
func flowID(h uint64, first int64) uint64 {
	x := h ^ uint64(first)*0x9e3779b97f4a7c15
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x &= 1<<53 - 1
	if x == 0 {
		x = 1
	}
	return x
}

func (p *Processor) classOf(f *Flow) uint8 {
	switch {
	case f.closed != 0:
		return clsClosing
	case f.seen != 3:
		return clsNew
	}
	switch f.key.proto {
	case packet.ProtoTCP:
		return clsTCP
	case packet.ProtoUDP:
		return clsUDP
	case packet.ProtoICMP, packet.ProtoICMPv6:
		return clsICMP
	}
	return clsOther
}

func (p *Processor) expired(f *Flow, now int64) bool {
	return now-f.last > p.timeout[f.class]
}

// naturalReason is why f ends when it is not cut short: its close, or
// its idle timeout.
func (p *Processor) naturalReason(f *Flow) uint8 {
	if f.closed != 0 {
		return f.closed
	}
	return reasonTimeout
}

// alloc returns a free entry, making room when the table is full: a flow
// already past its timeout at ts goes first, else the least recently seen
// flow is evicted.
func (p *Processor) alloc(ts int64, em *pipeline.Emitter) int32 {
	if p.free == nilIdx && int(p.n) >= p.cfg.MaxFlows {
		victim, oldest := int32(nilIdx), int64(0)
		for c := range nClasses {
			i := p.tail[c]
			if i == nilIdx {
				continue
			}
			f := p.at(i)
			if p.expired(f, ts) {
				victim = nilIdx
				p.end(i, p.naturalReason(f), em)
				break
			}
			if victim == nilIdx || f.last < oldest {
				victim, oldest = i, f.last
			}
		}
		if victim != nilIdx {
			f := p.at(victim)
			r := uint8(reasonEvicted)
			if f.closed != 0 {
				r = f.closed // it was over anyway; only its linger is cut
			}
			p.end(victim, r, em)
		}
	}
	if i := p.free; i != nilIdx {
		p.free = p.at(i).next
		return i
	}
	i := p.n
	if int(i)>>chunkShift == len(p.chunks) {
		size := min(chunkSize, p.cfg.MaxFlows-int(i))
		p.chunks = append(p.chunks, newSlab(p, size))
	}
	p.n++
	return i
}

// intervalStart is the time of the first packet of f's current interval.
func (p *Processor) intervalStart(f *Flow) int64 {
	if f.ext != nilIdx && p.exts[f.ext].hasIvl {
		return p.exts[f.ext].ivl.first
	}
	return f.first
}

// interval writes the record of f's current interval (reason
// active_timeout) before the packet at ts, which opens the next one.
func (p *Processor) interval(f *Flow, ts int64, em *pipeline.Emitter) {
	rec := p.record(f, reasonActive)
	for _, w := range p.iw {
		if w != nil {
			w.Interval(f, rec, em)
		}
	}
	em.Emit(rec)
	pkts, bytes := f.counts()
	x := p.newExt(f)
	x.hasIvl, x.ivl = true, interval{first: ts, pkts: pkts, bytes: bytes, frags: x.frags}
	p.actives++
}

// record is f's flow record so far: the whole flow, or its current
// interval once it has written one at the active timeout.
func (p *Processor) record(f *Flow, reason string) *event.Flow {
	start, flags := f.first, f.flags
	pkts, bytes := f.counts()
	var x *ext
	var frags uint64
	if f.ext != nilIdx {
		x = &p.exts[f.ext]
		frags = x.frags
	}
	if x != nil && x.hasIvl {
		iv := &x.ivl
		start, frags, flags = iv.first, frags-iv.frags, iv.flags
		for d := range pkts {
			pkts[d] -= iv.pkts[d]
			bytes[d] -= iv.bytes[d]
		}
	}
	// Records go to the sinks and are dropped there: a slab serves them.
	rec := p.records.New()
	*rec = event.Flow{
		PktsToServer: pkts[ToServer], PktsToClient: pkts[ToClient],
		BytesToServer: bytes[ToServer], BytesToClient: bytes[ToClient],
		Start: start, End: f.last,
		State: "new", Reason: reason,
		TCPFlags:   flags[0] | flags[1],
		TCPFlagsTS: flags[ToServer], TCPFlagsTC: flags[ToClient],
		Fragments: frags,
	}
	rec.RoomForExtra()
	if reason == reasonActive {
		f.FillHeader(&rec.Header, start) // more records follow
	} else {
		f.fillHeader(&rec.Header, start, f.recordCommunityID())
	}
	rec.Ether = f.ether
	switch {
	case f.closed != 0:
		rec.State = "closed"
	case f.seen == 3:
		rec.State = "established"
	}
	if k := f.key.proto; k == packet.ProtoICMP || k == packet.ProtoICMPv6 {
		rec.ICMP = f.seen&(1<<ToServer) != 0
		rec.ICMPType, rec.ICMPCode = f.icmpType(ToServer), f.icmpCode(ToServer)
		rec.RespICMP = f.seen&(1<<ToClient) != 0
		rec.RespICMPType, rec.RespICMPCode = f.icmpType(ToClient), f.icmpCode(ToClient)
	}
	if x != nil && x.tunnel != packet.TunnelNone {
		rec.Tunnel, rec.OuterSrc, rec.OuterDst = x.tunnel.String(), x.outerSrc, x.outerDst
	}
	return rec
}

// end emits f's record (after the analyzers' End) and frees its entry.
func (p *Processor) end(i int32, reason uint8, em *pipeline.Emitter) {
	f := p.at(i)
	rec := p.record(f, reasonNames[reason])
	for _, a := range p.analyzers {
		a.End(f, rec, em)
	}
	em.Emit(rec)
	p.freeRow(f)
	if f.ext != nilIdx {
		p.exts[f.ext] = ext{}
		p.extFree = append(p.extFree, f.ext)
		f.ext = nilIdx
	}

	p.unlink(i)
	p.ix.remove(i, f.key.hash())
	f.next = p.free
	p.free = i
	p.size--
	p.ended[reason]++
	if reason == reasonEvicted {
		p.evicted++
	}
}

func (p *Processor) publish() {
	p.cCreated.Add(p.created)
	p.cEvicted.Add(p.evicted)
	p.cMatched.Add(p.matched)
	p.cUnmatched.Add(p.unmatched)
	p.cSkipped.Add(p.skipped)
	p.cActive.Add(p.actives)
	p.created, p.evicted, p.matched, p.unmatched, p.skipped, p.actives = 0, 0, 0, 0, 0, 0
	for r := reasonFin; r < nReasons; r++ {
		if n := p.ended[r]; n != 0 {
			p.cEnded[r].Add(n)
			p.ended[r] = 0
		}
	}
	p.gSize.Add(int64(p.size - p.published))
	p.published = p.size
	for j := range p.aPkts {
		p.cAPkts[j].Add(p.aPkts[j])
		p.cANanos[j].Add(uint64(max(0, p.aNanos[j])) * timeSample)
		p.aPkts[j], p.aNanos[j] = 0, 0
	}
}

// --- slab, hash chains and LRU lists ---

func (p *Processor) at(i int32) *Flow { return &p.chunks[i>>chunkShift][i&chunkMask] }

// lookup returns the entry of key k with hash h, or nilIdx.
func (p *Processor) lookup(k *key, h uint64) int32 {
	x := &p.ix
	tag := tagOf(h)
	for pos := x.home(h); ; pos = x.next(pos) {
		b := &x.b[pos]
		for m := b.match(tag); m != 0; m &= m - 1 {
			i := b.idx[bits.TrailingZeros32(m)]
			if p.at(i).key == *k {
				return i
			}
		}
		if b.over == 0 {
			return nilIdx
		}
	}
}

func (p *Processor) pushFront(c uint8, i int32) {
	f := p.at(i)
	f.prev, f.next = nilIdx, p.head[c]
	if h := p.head[c]; h != nilIdx {
		p.at(h).prev = i
	} else {
		p.tail[c] = i
	}
	p.head[c] = i
}

func (p *Processor) unlink(i int32) {
	f := p.at(i)
	c := f.class
	if f.prev != nilIdx {
		p.at(f.prev).next = f.next
	} else {
		p.head[c] = f.next
	}
	if f.next != nilIdx {
		p.at(f.next).prev = f.prev
	} else {
		p.tail[c] = f.prev
	}
	f.prev, f.next = nilIdx, nilIdx
}
