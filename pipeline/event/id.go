package event

import (
	"encoding/binary"
	"encoding/hex"
	"unsafe"
)

// event_id: every event that leaves a worker (or a keyed stage's shard)
// carries an id that is the same on every replay of the same input with
// the same sensor name, whatever the number of workers, and the same on
// every copy a sink delivers (a Kafka retry, the spool), so consumers can
// drop the duplicates of at-least-once delivery by it.
//
// It is a 64-bit hash of
//
//	host (the sensor name), event_type, flow_id, pcap_cnt, timestamp,
//	for an event without a flow: its addresses, ports and protocol
//	(and a scan's source), and the ordinal
//
// where the ordinal tells apart events alike in all the rest: several DNS
// messages or HTTP requests in one TCP segment, a QUIC datagram that
// completes both hellos. It counts, per emitter, earlier events with the
// same hash among the last idRecent distinct ones. Such events come from
// one packet of one flow, which one worker processes in packet order, so
// the ordinal does not depend on how flows are spread over workers.
// The host is hashed in so that two sensors that see the same packet give
// different ids: de-duplicating by event_id alone never merges sensors.

// idRecent is how many distinct id hashes an IDStamper remembers for the
// ordinal; events alike in every hashed field are emitted together (one
// packet's events), far closer than this.
const idRecent = 8

// IDStamper gives events their event_id. One per emitter (a worker, a
// keyed stage's shard); not safe for concurrent use. The zero value is
// ready.
type IDStamper struct {
	sensor *Sensor
	seed   uint64 // idSeed(sensor)
	recent [idRecent]struct {
		base uint64 // 0 = unused
		n    uint32 // events seen with base, less one
	}
	next int
}

// Stamp sets e's event_id (Header.EventID). Call it once per event, in
// the order the emitter sends them, before another goroutine can see e.
func (st *IDStamper) Stamp(e Event) {
	h := e.Head()
	s := h.Sensor
	if s == nil {
		s = sensor.Load()
	}
	if s != st.sensor || st.seed == 0 {
		st.sensor, st.seed = s, idSeed(s)
	}
	base := idBase(st.seed, e)
	h.setID(idFinal(base, st.ordinal(base)))
}

// ordinal counts base among the recent hashes (0 the first time).
func (st *IDStamper) ordinal(base uint64) uint32 {
	for i := range st.recent {
		if r := &st.recent[i]; r.base == base {
			r.n++
			return r.n
		}
	}
	st.recent[st.next].base, st.recent[st.next].n = base, 0
	st.next = (st.next + 1) % idRecent
	return 0
}

// ID is e's event_id: the one stamped by its emitter, else (an event made
// outside the pipeline, e.g. by a library user) the hash with ordinal 0.
func ID(e Event) uint64 {
	h := e.Head()
	if h.EventID != 0 {
		return h.EventID
	}
	s := h.Sensor
	if s == nil {
		s = sensor.Load()
	}
	return idFinal(idBase(idSeed(s), e), 0)
}

// setID stores id and its text (what Encode writes, without allocating).
func (h *Header) setID(id uint64) {
	h.EventID = id
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], id)
	hex.Encode(h.idText[:], b[:])
}

// idString is the event_id as Encode writes it: 16 lowercase hex digits.
// It points into h, which is not written after Stamp.
func (h *Header) idString() string { return unsafe.String(&h.idText[0], len(h.idText)) }

// idSeed hashes the sensor's host (never 0).
func idSeed(s *Sensor) uint64 {
	x := uint64(0x6a09e667f3bcc909)
	if s != nil {
		x = fnv(x, s.Host)
	}
	return x | 1
}

func idBase(seed uint64, e Event) uint64 {
	h := e.Head()
	x := mix(seed ^ fnv(0xcbf29ce484222325, string(e.Type())))
	x = mix(x ^ h.FlowID)
	x = mix(x ^ h.PcapCnt)
	x = mix(x ^ uint64(h.Timestamp))
	if h.FlowID == 0 {
		// No flow names the event: its addresses do.
		x = mixAddr(x, h.SrcIP.As16())
		x = mixAddr(x, h.DestIP.As16())
		x = mix(x ^ (uint64(h.SrcPort) | uint64(h.DestPort)<<16 | uint64(h.Proto)<<32))
	}
	if sc, ok := e.(*Scan); ok {
		// A scan report keeps its source out of the header.
		x = mixAddr(x, sc.Src.As16())
	}
	if x == 0 {
		x = 1 // 0 marks an unused slot in IDStamper.recent
	}
	return x
}

func idFinal(base uint64, ordinal uint32) uint64 {
	id := mix(base + uint64(ordinal)*0x9e3779b97f4a7c15)
	if id == 0 {
		id = 1 // 0 = not stamped
	}
	return id
}

func mixAddr(x uint64, a [16]byte) uint64 {
	x = mix(x ^ binary.LittleEndian.Uint64(a[:8]))
	return mix(x ^ binary.LittleEndian.Uint64(a[8:]))
}

// mix is SplitMix64's finalizer: a bijection that spreads every input
// bit over the output.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// fnv is FNV-1a 64 over s, from x.
func fnv(x uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		x ^= uint64(s[i])
		x *= 1099511628211
	}
	return x
}
