// Package event defines pktpipe's typed output records and the Writer
// interface that encoders implement.
//
// Each event type writes its own fields through a Writer, once; the JSON
// and msgpack encoders (sinks/encode) are both Writers. There is no
// reflection and no intermediate map, so the schema lives in exactly one
// place per type (its Encode method) and docs/schema.md describes it.
// Field names follow Suricata EVE wherever EVE has the concept.
package event

import (
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
)

// Type is the event_type of a record.
type Type string

const (
	TypeFlow         Type = "flow"
	TypeTLS          Type = "tls"
	TypeRTT          Type = "rtt"
	TypeDNS          Type = "dns"
	TypeICMPFeedback Type = "icmp_feedback"
	TypeQUIC         Type = "quic"
)

// Event is one output record.
type Event interface {
	// Head returns the fields every event shares.
	Head() *Header
	// Type is the record's event_type.
	Type() Type
	// EncodeBody writes the type-specific fields (after the header's) into
	// the already-open top-level object.
	EncodeBody(w Writer)
}

// Writer receives a record's structure. Encoders implement it; an event
// describes itself by calling it. Keys are written with Key before each
// value inside an object.
type Writer interface {
	BeginObject()
	EndObject()
	BeginArray()
	EndArray()
	Key(k string)
	String(s string)
	Uint(v uint64)
	Int(v int64)
	Float(v float64)
	Bool(v bool)
	Null()
	// Time writes a timestamp in nanoseconds since the epoch the way EVE
	// does: "2006-01-02T15:04:05.000000+0000" (UTC, microseconds).
	Time(ns int64)
	// IP writes an address as text ("10.0.0.1", "fd00::1").
	IP(a netip.Addr)
}

// MACWriter is a Writer that writes a MAC address as EVE's text
// ("00:11:22:aa:bb:cc") straight into its output, with no string
// allocated for it.
type MACWriter interface {
	MAC(m [6]byte)
}

// writeMAC writes m through w, as text.
func writeMAC(w Writer, m [6]byte) {
	if mw, ok := w.(MACWriter); ok {
		mw.MAC(m)
		return
	}
	w.String(string(AppendMAC(nil, m)))
}

// AppendMAC appends m as EVE writes a MAC address: "00:11:22:aa:bb:cc".
func AppendMAC(b []byte, m [6]byte) []byte {
	const digits = "0123456789abcdef"
	for i, x := range m {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, digits[x>>4], digits[x&15])
	}
	return b
}

// Header holds the fields every event carries. Src is the flow's client
// (the side that opened it) for flow-bound events.
type Header struct {
	Timestamp   int64 // nanoseconds since the epoch
	FlowID      uint64
	SrcIP       netip.Addr
	DestIP      netip.Addr
	SrcPort     uint16
	DestPort    uint16
	Proto       uint8
	CommunityID string
	VLAN        [2]uint16 // 0 = absent
	// IfIndex is the capture interface as the source numbers it (-1 =
	// unknown); in_iface is its name, which the Sensor resolves when the
	// event is encoded, so that no name is copied per flow or packet.
	IfIndex int32
	// PcapCnt is the 1-based index of the packet that produced the event
	// in its source, as Suricata's pcap_cnt (0 = not applicable).
	PcapCnt uint64
	// Sensor, when set, names the host and interfaces for this event;
	// nil uses the process's (SetSensor).
	Sensor *Sensor
	// EventID is the event_id (id.go), set by the emitter the event
	// leaves its worker through (0 = not stamped: no event_id field).
	EventID uint64
	idText  [16]byte // EventID in hex, written by Encode
}

// Sensor is what events say about where they were seen: Suricata's host
// (the sensor name) and in_iface (the capture interface's name).
type Sensor struct {
	Host string // "" = no host field
	// IfName names an interface index of the source (nil or "" = unknown:
	// no in_iface). It is called from the encoders' goroutines.
	IfName func(ifIndex int32) string
}

var sensor atomic.Pointer[Sensor]

// SetSensor sets the process's sensor, for events whose Header.Sensor is
// nil (the app sets it once the capture is open; nil clears it).
func SetSensor(s *Sensor) { sensor.Store(s) }

// ifName returns in_iface for h ("" = none).
func (s *Sensor) ifName(i int32) string {
	if s == nil || s.IfName == nil || i < 0 {
		return ""
	}
	return s.IfName(i)
}

// Head lets a type that embeds Header satisfy part of Event.
func (h *Header) Head() *Header { return h }

// ProtoName returns the name EVE gives a protocol number ("TCP", "UDP",
// "ICMP", "IPv6-ICMP", "SCTP"), or its decimal number.
func ProtoName(p uint8) string {
	switch p {
	case 1:
		return "ICMP"
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	case 58:
		return "IPv6-ICMP"
	case 132:
		return "SCTP"
	case 47:
		return "GRE"
	}
	return protoNums[p]
}

var protoNums = func() (t [256]string) {
	for i := range t {
		t[i] = strconv.Itoa(i)
	}
	return
}()

// Encode writes a whole event as one top-level object: the common header
// in EVE's order, then the type's own fields.
func Encode(w Writer, e Event) {
	h := e.Head()
	s := h.Sensor
	if s == nil {
		s = sensor.Load()
	}
	w.BeginObject()
	w.Key("timestamp")
	w.Time(h.Timestamp)
	if h.FlowID != 0 {
		w.Key("flow_id")
		w.Uint(h.FlowID)
	}
	if h.PcapCnt != 0 {
		w.Key("pcap_cnt")
		w.Uint(h.PcapCnt)
	}
	if name := s.ifName(h.IfIndex); name != "" {
		w.Key("in_iface")
		w.String(name)
	}
	if h.VLAN[0] != 0 {
		w.Key("vlan")
		w.BeginArray()
		w.Uint(uint64(h.VLAN[0]))
		if h.VLAN[1] != 0 {
			w.Uint(uint64(h.VLAN[1]))
		}
		w.EndArray()
	}
	w.Key("event_type")
	w.String(string(e.Type()))
	if h.EventID != 0 {
		w.Key("event_id")
		w.String(h.idString())
	}
	if h.SrcIP.IsValid() {
		w.Key("src_ip")
		w.IP(h.SrcIP)
		if hasPorts(h.Proto) {
			w.Key("src_port")
			w.Uint(uint64(h.SrcPort))
		}
		w.Key("dest_ip")
		w.IP(h.DestIP)
		if hasPorts(h.Proto) {
			w.Key("dest_port")
			w.Uint(uint64(h.DestPort))
		}
		w.Key("ip_v")
		if h.SrcIP.Is4() {
			w.Uint(4)
		} else {
			w.Uint(6)
		}
		w.Key("proto")
		w.String(ProtoName(h.Proto))
	}
	if h.CommunityID != "" {
		w.Key("community_id")
		w.String(h.CommunityID)
	}
	e.EncodeBody(w)
	// Last, where Suricata writes it.
	if s != nil && s.Host != "" {
		w.Key("host")
		w.String(s.Host)
	}
	w.EndObject()
}

func hasPorts(p uint8) bool { return p == 6 || p == 17 || p == 132 }

// Batch is a pooled group of events on their way to the sink.
type Batch struct {
	Events []Event
	refs   atomic.Int32 // Releases still due when shared between sinks
}

// MaxBatchEvents is how many events a batch holds before it is sent on.
const MaxBatchEvents = 256

var batchPool = sync.Pool{New: func() any { return &Batch{Events: make([]Event, 0, MaxBatchEvents)} }}

// GetBatch returns an empty batch from the pool.
func GetBatch() *Batch { return batchPool.Get().(*Batch) }

// Share makes the batch wait for n Releases (one per sink that reads it)
// before it goes back to the pool.
func (b *Batch) Share(n int) { b.refs.Store(int32(n)) }

// Release empties the batch and returns it to the pool, once every sharer
// has released it.
func (b *Batch) Release() {
	if b.refs.Load() > 1 && b.refs.Add(-1) > 0 {
		return
	}
	b.refs.Store(0)
	clear(b.Events)
	b.Events = b.Events[:0]
	batchPool.Put(b)
}

// optString writes k: v unless v is empty.
func optString(w Writer, k, v string) {
	if v != "" {
		w.Key(k)
		w.String(v)
	}
}

// optStrings writes k: [vs...] unless vs is empty.
func optStrings(w Writer, k string, vs []string) {
	if len(vs) > 0 {
		w.Key(k)
		w.BeginArray()
		for _, v := range vs {
			w.String(v)
		}
		w.EndArray()
	}
}

// hashObject writes EVE's k: {hash, string} (ja3, ja3s) unless hash is
// empty.
func hashObject(w Writer, k, hash, s string) {
	if hash == "" {
		return
	}
	w.Key(k)
	w.BeginObject()
	optString(w, "hash", hash)
	optString(w, "string", s)
	w.EndObject()
}
