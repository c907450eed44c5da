// Package flow is pktpipe's per-worker flow table and the pipeline.Processor
// that hosts per-flow analyzers (TLS fingerprints, RTT, ICMP feedback, TCP
// state...).
//
// # Table
//
// Each worker owns one Processor, so the table needs no lock. Flows live in
// a slab of Flow entries that grows in fixed chunks up to Config.MaxFlows
// and is never shrunk: ended entries go on a free list and new flows reuse
// them, so the steady state allocates nothing per packet and the memory is
// bounded by the cap. Chunks never move, so a *Flow stays valid for the
// whole life of its flow. An entry is 144 bytes with the key packed (no
// netip.Addr) and holds no pointer (its table is at the head of its slab),
// so the garbage collector never reads the slabs: the Community ID, once
// computed, is kept beside the table, and what only some flows need
// (a tunnel's outer addresses, fragments, counters past 2^32, the active
// timeout's interval) in a side table the entry indexes.
//
// Lookup goes by the symmetric packet.FlowKey.Hash of the key, which the
// engine's dispatcher has already computed to pick the worker
// (packet.Meta.FlowHash), through an index of open addressing over
// cache-line buckets with a tag byte per slot (index.go), sized to the cap
// and allocated once: a lookup reads one bucket line and, almost always,
// only the entry it finds. Nothing in the table is a Go map, so there is
// no rehash pause.
//
// Every entry is also on one intrusive, doubly linked LRU list (int32
// indices) per timeout class: new (one direction seen), established TCP,
// UDP, ICMP, other protocols, and closing (both FINs or an RST seen). A
// packet moves its flow to the front of its class's list. Within one class
// every flow has the same timeout, so each list is ordered by deadline as
// well as by last-seen time, and expiry only ever looks at list tails.
//
// # Ending a flow
//
// A flow ends with one of these reasons (EVE flow.reason):
//   - fin / rst: both sides sent a FIN, or one sent an RST. The flow then
//     lingers (Timeouts.Linger, 2 s of packet time by default) so trailing
//     ACKs and retransmitted FINs are still counted; a new SYN during the
//     linger is a new connection (port reuse) and ends the old flow at once.
//     A closed flow keeps its fin/rst reason however it is finally removed.
//   - timeout: idle for longer than its class's timeout.
//   - shutdown: still open at Flush.
//   - evicted: the table was full and this was the least recently seen
//     flow (and no flow had already expired). Counted in
//     pktpipe_flow_evicted_total; the flow is still emitted.
//
// Default timeouts (Timeouts): new 30 s (Suricata's default.new), TCP
// established 600 s (Suricata's tcp.established: idle SSH or database
// connections often stay quiet for minutes), UDP 60 s and ICMP 30 s (shorter
// than Suricata's 300 s, close to Zeek's 1 min; UDP "sessions" are mostly
// DNS/NTP-like exchanges), other protocols 60 s, linger 2 s.
//
// Expiry follows packet time only, and a flow's record depends only on its
// own packets and the final clock, never on batch boundaries or on how
// many workers share the traffic (for a source whose timestamps do not go
// backwards): a flow expires when now - last > timeout, whether now is the
// time of its own next packet (the old flow ends, a new one starts with
// that packet), the batch clock of the sweep that runs after each batch
// (bounded work: at most Config.SweepLimit flows per class per batch, from
// the list tails), the time of a packet that needs a slot in a full table,
// or the final clock at Flush. In every case the record is the same: end =
// the flow's last packet. Only eviction depends on other flows.
//
// # Roles
//
// The client (EVE src) is the sender of the flow's first packet, except that
// a TCP SYN-ACK seen first was sent by the server, a TCP flow picked up
// midstream (first packet without SYN) takes the side with the lower port
// as the server, an ICMP echo reply seen first was sent by the server, and
// a UDP datagram from port 53 or 5353 to another port is a DNS answer, sent
// by the server (as Suricata reverses such a flow).
//
// # ICMP errors
//
// ICMP/ICMPv6 errors (unreachable, time exceeded, ...) never make a flow of
// their own. The engine routes an error to the worker owning the flow it
// quotes (packet.ShardKey); the Processor looks that flow up by the quoted
// key (either direction) and hands the packet to every analyzer's ICMPError
// with that flow, or nil if none matched. The error is not counted in the
// flow's packets or bytes. pktpipe_flow_icmp_errors_total{result} counts
// matched and unmatched errors. Echo request/reply are flows keyed by the
// echo id; other ICMP messages (ND, RS/RA, ...) are flows with ports 0.
//
// # Active timeout
//
// With Timeouts.Active = D (0, the default, is off), a long flow is also
// written while it lives: when a packet comes D or more after the first
// packet of the flow's current interval, the interval's record is written
// first, with reason active_timeout, and that packet opens the next
// interval. As the idle timeouts, this follows packet time only and
// depends on the flow's own packets, so replays and any number of workers
// give the same records. A flow that goes quiet writes no interval record
// until its next packet: its last interval is written when it ends, with
// its real end reason, so no record is empty. This is NFStream's rule,
// except that it compares whole milliseconds and the packet then starts a
// new flow of its own (other flow_id, its sender as src).
//
// Every record of the flow has the same flow_id, community_id, src/dest
// (the client stays src) and interfaces. Its counters cover its interval
// only: pkts_*, bytes_*, fragments and TCP flags; start and end are the
// interval's first and last packets, and the event's timestamp is start.
// Summing by flow_id gives the totals of a record written without the
// active timeout, and OR-ing tcp_flags gives its flags. flow.state is the
// flow's state at that time; ether and icmp_type/code are the flow's
// first packets', as on every record.
//
// Analyzers: those implementing IntervalWriter (features) write their
// part of each interval record and start afresh; the others write nothing
// on interval records and carry on, so the last record has their whole
// story: conn (state, history, missed bytes), rtt, app_proto, quic, icmp
// feedback and the probe's outcome cover the whole flow there, and the
// events (tls, dns, http, ssh) are written once, when they happen.
// pktpipe_flow_active_timeout_records_total counts interval records.
//
// # Identifiers
//
// flow_id is FlowKey.Hash (symmetric, stable across runs) mixed with the
// first packet's timestamp and masked to 53 bits, so JSON readers that use
// doubles keep it exact. The Community ID (on by default) is computed when
// first asked for (the first event about the flow, or its record, so a
// quiet flow holds no string while it lives) and then kept beside the
// table: from the canonical key for
// TCP/UDP/SCTP and other protocols, and from the first packet's direction,
// type and code for ICMP (so a ping session gets the ID of its
// request/reply pair).
//
// # Analyzers
//
// An Analyzer is registered with NewProcessor; its position in the list is
// its slot, where it may keep per-flow state (Flow.State, Flow.SetState;
// storing a pointer in the interface slot does not allocate). Analyzers
// implementing SlotUser are told their slot at construction. For each
// packet of a flow, after the table has counted it, Packet is called in
// registration order; ICMPError for ICMP errors; End exactly once when the
// flow ends, before its record is emitted: it may add an event.Extension
// to rec.Extra, emit events of its own, and must drop its per-flow state
// (the slot is cleared after End returns). An analyzer that needs no more
// of a flow's packets (its handshake is read, or the flow is not its
// protocol) calls Flow.SkipPackets: from then on the Processor does not
// call its Packet for that flow (a bit test on the entry), while
// ICMPError and End are still called. Analyzers run on the worker's
// goroutine and may keep their own scratch state without locks.
//
// What a flow keeps beyond its entry is in its row (column.go), taken
// from a table of rows beside the entries when something is first kept
// for the flow and given back when it ends: a slot's interface value
// (rows hold the slots some flow of their chunk used), an element of each
// Column, the Community ID. A flow no analyzer engaged in has no row, so
// it costs the analyzers nothing even when its entry lies among those of
// flows they did engage in (a flood amid real traffic). Small fixed-size
// state is better kept in a Column: one typed, pointer-free element per
// row, with no allocation or interface value per flow; tcpstate, rtt,
// probe and icmp_feedback keep theirs so, with what only some flows need
// in a side table of their own.
//
// Most flows of a flood or a scan have one packet, or a handshake and no
// payload. The entry keeps what such a flow's first packet tells an
// analyzer (First, FirstDir, the counters, FirstTCP: its TCP flags,
// sequence number and whether it carried payload) and, while the flow is
// a handshake (Handshake: a bare first TCP segment and at most a bare
// reply), what the reply tells (Reply: its flags, sequence number and
// whether it acknowledged the first; its time is Last). The analyzers
// keep nothing for those packets: a flow costs them state only when a
// later packet (or an ICMP error about it) engages them, and they rebuild
// then, from the entry, what those packets would have left (Engager's
// Engage is called before the packet that ends a handshake is counted);
// End writes such a flow's part of the record from the entry alone. A
// million SYNs, answered or not, cost the entries and nothing else.
package flow

import (
	"encoding/binary"
	"net/netip"
	"time"
	"unsafe"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
)

// Dir is a packet's direction within its flow.
type Dir uint8

const (
	ToServer Dir = 0 // client → server
	ToClient Dir = 1 // server → client
)

func (d Dir) String() string {
	if d == ToServer {
		return "toserver"
	}
	return "toclient"
}

// Analyzer is a per-flow plug-in run by the Processor. See the package doc.
type Analyzer interface {
	// Packet is called for every packet of f after the table has counted
	// it; dir says whether the packet went client→server or the reverse.
	Packet(f *Flow, p *packet.Packet, dir Dir, em *pipeline.Emitter)
	// ICMPError is called for an ICMP/ICMPv6 error that quotes a packet of
	// f, or with f == nil when no live flow matched the quote.
	ICMPError(f *Flow, p *packet.Packet, em *pipeline.Emitter)
	// End is called once when f ends, before rec is emitted. It may append
	// to rec.Extra and emit events (they precede rec), and must release
	// its per-flow state.
	End(f *Flow, rec *event.Flow, em *pipeline.Emitter)
}

// Engager is an Analyzer that keeps no state for a flow's handshake
// (Flow.Handshake): Engage is called when the handshake ends, before the
// flow table counts the packet that ends it, while the entry still holds
// what the handshake said, so that the analyzer makes then the state its
// packets would have left (End and ICMPError find a flow still in its
// handshake and make what they need from the entry). Engage is called for
// every Engager, whether it still wants the flow's packets or not.
type Engager interface {
	Engage(f *Flow)
}

// IntervalWriter is an Analyzer whose part of the flow record covers each
// interval of the active timeout, as the record's counters do. Interval is
// called when the flow has been open for Timeouts.Active, before that
// interval's record (reason active_timeout) is emitted: it may append to
// rec.Extra and emit events, and starts the analyzer's next interval (its
// state slot is kept, unlike at End). Analyzers without it write nothing
// on interval records: their state carries on, and End writes the flow's
// whole story on its last record.
type IntervalWriter interface {
	Interval(f *Flow, rec *event.Flow, em *pipeline.Emitter)
}

// SlotUser is implemented by analyzers that want to know their state slot.
type SlotUser interface {
	SetSlot(slot int)
}

// Timeouts are idle timeouts by class, in packet time. Zero values take
// the defaults (see the package doc), except Active, where zero is off.
type Timeouts struct {
	New    time.Duration // one direction seen so far, any protocol
	TCP    time.Duration // TCP, both directions seen
	UDP    time.Duration
	ICMP   time.Duration // ICMP and ICMPv6
	Other  time.Duration // SCTP, GRE, ESP, ...
	Linger time.Duration // after both FINs or an RST
	// Active writes a record each time a flow has been open this long
	// (see "Active timeout" in the package doc); 0 = never.
	Active time.Duration
}

// DefaultTimeouts are the timeouts used for zero fields of Timeouts.
var DefaultTimeouts = Timeouts{
	New:    30 * time.Second,
	TCP:    600 * time.Second,
	UDP:    60 * time.Second,
	ICMP:   30 * time.Second,
	Other:  60 * time.Second,
	Linger: 2 * time.Second,
}

// Flow is one live bidirectional flow. It is owned by the worker's
// Processor: analyzers may read it and use their state slot while it is
// passed to them, and must not keep the pointer after End.
//
// An entry is 144 bytes and holds no pointer, so a million flows cost
// the garbage collector nothing to scan: analyzer state and the
// Community ID, once computed, live in the flow's row beside the table
// (slots and Columns), and what few flows need (a tunnel's outer
// addresses, fragments, counters past 2^32, the active timeout's
// interval) in a side table (ext). The fields a packet touches come
// first.
type Flow struct {
	key         key // canonical
	last, first int64
	// Packets and bytes by Dir: the low 32 bits (the high ones, which
	// few flows need, are in ext).
	pkts, bytes [2]uint32
	prev, next  int32  // LRU list of its class (next: free list when unused)
	skip        uint32 // analyzers (bit per slot) that want no more packets
	row         int32  // its row beside the table (state slots, Columns, Community ID), or nilIdx
	ext         int32  // index in the table's exts, or nilIdx
	ifIndex     int32
	pos         uint16 // its place in its slab (table)
	vlan1       uint16 // inner VLAN of the first packet (key.vlan is the outer)
	class       uint8
	seen        uint8    // bit per Dir
	fins        uint8    // FIN seen, bit per Dir
	closed      uint8    // 0, reasonFin or reasonRst
	bits        uint8    // bitClientSrc, bitFirstSwapped, bitCID, bitFirstBare, bitLive
	flags       [2]uint8 // TCP flags by Dir
	firstFlags  uint8    // TCP flags of the first packet
	// TCP: the sequence number of the handshake's reply (Reply); ICMP
	// echo: the first packet's sequence number (FirstICMP).
	seq2 uint32
	// By protocol: for ICMP/ICMPv6, the first type and code seen each way
	// (icmpType, icmpCode: EVE's icmp_type and response_icmp_type on the
	// record; the first packet's are those of its direction); for TCP, the
	// first packet's sequence number (FirstTCP).
	l4    [4]uint8
	ether [2]event.Ether // first packet each way (Ethernet links)
}

const (
	bitClientSrc    = 1 << iota // the client is key.a
	bitFirstSwapped             // the first packet was sent by key.b
	bitCID                      // the Community ID is in ch.cids
	bitFirstBare                // the first packet was a whole TCP header without payload
	bitLive                     // the entry is a table's (in a slab)
	bitHandshake                // Handshake
	bitReplyAcks                // the reply acknowledged the first packet
)

// table is the Processor whose slab holds f (nil for a Flow that is not
// a table's entry). The entry holds no pointer, so that the garbage
// collector never reads the slabs (a million flows are 150 MB it would
// scan at every cycle): its table is at the head of the slab it lies in,
// pos entries before it.
func (f *Flow) table() *Processor {
	if f.bits&bitLive == 0 {
		return nil
	}
	head := unsafe.Add(unsafe.Pointer(f), -(int(f.pos)*int(unsafe.Sizeof(*f)) + int(unsafe.Offsetof(slab{}.flows))))
	return (*slabHead)(head).tbl
}

func (f *Flow) icmpType(d Dir) uint8 { return f.l4[d&1] }
func (f *Flow) icmpCode(d Dir) uint8 { return f.l4[2+d&1] }

// ext is what only some flows need, kept beside the table.
type ext struct {
	tunnel             packet.Tunnel
	outerSrc, outerDst netip.Addr
	frags              uint64    // fragments counted
	pktsHi, bytesHi    [2]uint32 // the high 32 bits of Flow.pkts and bytes
	// The flow's accounting once it has written a record at its active
	// timeout (hasIvl).
	hasIvl bool
	ivl    interval
}

func (f *Flow) clientSrc() bool { return f.bits&bitClientSrc != 0 }

// FirstDir is the direction of the flow's first packet.
func (f *Flow) FirstDir() Dir {
	if (f.bits&bitFirstSwapped != 0) == f.clientSrc() {
		return ToClient
	}
	return ToServer
}

// FirstTCP returns the TCP flags and sequence number of a TCP flow's
// first packet (zero for other protocols), and whether that packet was
// bare: its whole TCP header and no payload, by its captured bytes and by
// its IP length alike. With First, FirstDir and the counters, that is
// everything a flow's first packet tells its analyzers when it carries no
// payload, so an analyzer may keep nothing for a flow until its second
// packet and rebuild then what the first would have left (see "Analyzers"
// in the package doc).
func (f *Flow) FirstTCP() (flags uint8, seq uint32, bare bool) {
	if f.key.proto != packet.ProtoTCP {
		return 0, 0, false
	}
	return f.firstFlags, binary.LittleEndian.Uint32(f.l4[:]), f.bits&bitFirstBare != 0
}

// Handshake reports whether the packets of f so far are a bare TCP
// segment (FirstTCP) and at most one reply: the first packet the other
// way, bare too and not older. Analyzers that implement Engager may keep
// nothing for such a flow: what its packets said is in the entry
// (FirstTCP, Reply, First, Last, the counters), and Engage is called
// before the flow table counts the packet that ends the handshake.
func (f *Flow) Handshake() bool { return f.bits&bitHandshake != 0 }

// Reply returns, while f is a handshake with a reply (ok), the reply's
// TCP flags and sequence number and whether it acknowledged the first
// packet (ACK set, acknowledgment number its sequence number + 1). Its
// direction is the other than FirstDir, its time Last.
func (f *Flow) Reply() (flags uint8, seq uint32, acksFirst, ok bool) {
	other := f.FirstDir() ^ 1
	if f.bits&bitHandshake == 0 || f.pkts[other] == 0 {
		return 0, 0, false, false
	}
	return f.flags[other], f.seq2, f.bits&bitReplyAcks != 0, true
}

// FirstInterval reports whether f has written no record at the active
// timeout yet: its counters are then its current interval's.
func (f *Flow) FirstInterval() bool {
	x := f.extOf()
	return x == nil || !x.hasIvl
}

// Tunneled reports whether the flow's first packet came through a tunnel
// (its counters then count the inner packets).
func (f *Flow) Tunneled() bool {
	x := f.extOf()
	return x != nil && x.tunnel != packet.TunnelNone
}

// Key is the flow's canonical key (lower address/port first).
func (f *Flow) Key() packet.FlowKey { return f.key.flowKey() }

// Proto is the IP protocol number.
func (f *Flow) Proto() uint8 { return f.key.proto }

// Client returns the client's address and port (echo id for ICMP echo).
func (f *Flow) Client() (netip.Addr, uint16) {
	if f.clientSrc() {
		return f.key.addrA(), f.key.ap
	}
	return f.key.addrB(), f.key.bp
}

// Server returns the server's address and port.
func (f *Flow) Server() (netip.Addr, uint16) {
	if f.clientSrc() {
		return f.key.addrB(), f.key.bp
	}
	return f.key.addrA(), f.key.ap
}

// DirOf returns the direction of a directed key of this flow (for example
// the key an ICMP error quotes), and false if k is not this flow's.
func (f *Flow) DirOf(k packet.FlowKey) (Dir, bool) {
	c, swapped := packFlowKey(k)
	if c != f.key {
		return 0, false
	}
	// The key's sender is key.a unless packing swapped it.
	if swapped != f.clientSrc() {
		return ToServer, true
	}
	return ToClient, true
}

// ID is the flow_id.
func (f *Flow) ID() uint64 {
	if f.bits&bitLive == 0 { // not a table's entry
		return 0
	}
	return flowID(f.key.hash(), f.first)
}

// CommunityID is the flow's Community ID ("" when disabled). It is
// computed when first asked for (by an event about the flow, or its
// record) and kept beside the table, so a flow that lives quietly holds
// no string.
func (f *Flow) CommunityID() string {
	p := f.table()
	if p == nil || p.cid == nil {
		return ""
	}
	if f.bits&bitCID != 0 {
		return p.rowChunk(f.row).cids[f.row&chunkMask]
	}
	id := p.communityID(f)
	c := p.rowChunk(p.rowOf(f))
	if c.cids == nil {
		c.cids = make([]string, c.size)
	}
	c.cids[f.row&chunkMask] = id
	f.bits |= bitCID
	return id
}

// First and Last are the timestamps (ns) of the flow's first and latest
// packets.
func (f *Flow) First() int64 { return f.first }
func (f *Flow) Last() int64  { return f.last }

// Packets, Bytes and TCPFlags are the counters of one direction so far,
// including the packet being handled.
// (Analyzers ask for them several times a packet: the common case, no
// side entry, is kept small enough to be inlined.)
func (f *Flow) Packets(d Dir) uint64 {
	if f.ext == nilIdx {
		return uint64(f.pkts[d&1])
	}
	return f.packetsExt(d)
}

func (f *Flow) packetsExt(d Dir) uint64 {
	n := uint64(f.pkts[d&1])
	if x := f.extOf(); x != nil {
		n |= uint64(x.pktsHi[d&1]) << 32
	}
	return n
}

func (f *Flow) Bytes(d Dir) uint64 {
	if f.ext == nilIdx {
		return uint64(f.bytes[d&1])
	}
	return f.bytesExt(d)
}

func (f *Flow) bytesExt(d Dir) uint64 {
	n := uint64(f.bytes[d&1])
	if x := f.extOf(); x != nil {
		n |= uint64(x.bytesHi[d&1]) << 32
	}
	return n
}

// counts are the packet and byte counters by Dir.
func (f *Flow) counts() (pkts, bytes [2]uint64) {
	for d := range pkts {
		pkts[d], bytes[d] = f.Packets(Dir(d)), f.Bytes(Dir(d))
	}
	return pkts, bytes
}

// extOf is f's side entry, or nil.
func (f *Flow) extOf() *ext {
	if f.ext == nilIdx {
		return nil
	}
	if p := f.table(); p != nil {
		return &p.exts[f.ext]
	}
	return nil
}
func (f *Flow) TCPFlags(d Dir) uint8 { return f.flags[d&1] }

// Established reports whether both directions have been seen.
func (f *Flow) Established() bool { return f.seen == 3 }

// Closed reports whether both FINs or an RST have been seen.
func (f *Flow) Closed() bool { return f.closed != 0 }

// VLAN and IfIndex are those of the flow's first packet.
func (f *Flow) VLAN() [2]uint16 { return [2]uint16{f.key.vlan, f.vlan1} }
func (f *Flow) IfIndex() int32  { return f.ifIndex }

// FirstICMP returns the ICMP type and code of the flow's first packet
// (meaningful for ICMP/ICMPv6 flows only).
func (f *Flow) FirstICMP() (typ, code uint8) {
	d := f.FirstDir()
	return f.icmpType(d), f.icmpCode(d)
}

// FirstEchoSeq is the sequence number of an ICMP echo flow's first
// packet (0 for other flows).
func (f *Flow) FirstEchoSeq() uint16 {
	if p := f.key.proto; p != packet.ProtoICMP && p != packet.ProtoICMPv6 {
		return 0
	}
	return uint16(f.seq2)
}

// State returns the analyzer state in slot i (nil if none or out of range).
func (f *Flow) State(i int) any {
	if f.row == nilIdx {
		return nil
	}
	if p := f.table(); p != nil {
		return p.rowChunk(f.row).state(i, f.row&chunkMask)
	}
	return nil
}

// SetState stores analyzer state in slot i (ignored if out of range).
func (f *Flow) SetState(i int, v any) {
	p := f.table()
	if p == nil || uint(i) >= uint(len(p.analyzers)) || (v == nil && f.row == nilIdx) {
		return
	}
	p.rowChunk(p.rowOf(f)).setState(i, f.row&chunkMask, v)
}

// SkipPackets tells the Processor that the analyzer in slot needs no more
// of f's packets: its Packet is no longer called for f (ICMPError and End
// still are). It holds until f ends. Slots from 32 on are not tracked:
// their Packet is always called.
func (f *Flow) SkipPackets(slot int) {
	if uint(slot) < 32 {
		f.skip |= 1 << slot
	}
}

// FillHeader fills h as the flow record's header is filled (flow_id,
// client as src, ports, proto, community_id, VLAN, interface), with
// timestamp ts, for events an analyzer emits about this flow.
func (f *Flow) FillHeader(h *event.Header, ts int64) { f.fillHeader(h, ts, f.CommunityID()) }

func (f *Flow) fillHeader(h *event.Header, ts int64, cid string) {
	ca, cp := f.Client()
	sa, sp := f.Server()
	*h = event.Header{
		Timestamp: ts, FlowID: f.ID(),
		SrcIP: ca, DestIP: sa, SrcPort: cp, DestPort: sp,
		Proto: f.key.proto, CommunityID: cid, VLAN: f.VLAN(), IfIndex: f.ifIndex,
	}
}

// recordCommunityID is the Community ID for the flow's last record: the
// one kept, or computed, and kept only where there is room already (the
// analyzers' End may still ask for it): a flow nothing asked about before
// it ends costs no memory for it.
func (f *Flow) recordCommunityID() string {
	p := f.table()
	if p == nil || p.cid == nil || f.bits&bitCID != 0 {
		return f.CommunityID()
	}
	id := p.communityID(f)
	if f.row != nilIdx {
		if c := p.rowChunk(f.row); c.cids != nil {
			c.cids[f.row&chunkMask] = id
			f.bits |= bitCID
		}
	}
	return id
}
