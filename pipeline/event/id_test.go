package event_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/sinks/encode"
)

var idSensor = &event.Sensor{Host: "s1"}

func dnsAt(flow, cnt uint64, ts int64) *event.DNS {
	return &event.DNS{Header: event.Header{
		Timestamp: ts, FlowID: flow, PcapCnt: cnt, Sensor: idSensor,
		SrcIP: netip.MustParseAddr("10.0.0.1"), DestIP: netip.MustParseAddr("10.0.0.2"),
		SrcPort: 40000, DestPort: 53, Proto: 6,
	}}
}

func rttOf(d *event.DNS) *event.RTT {
	r := &event.RTT{Kind: event.RTTDNS}
	r.Header = d.Header // as stages/dns copies it, id included
	return r
}

// stamp stamps evs in order with one stamper, as one emitter does.
func stamp(evs ...event.Event) []uint64 {
	var st event.IDStamper
	ids := make([]uint64, len(evs))
	for i, e := range evs {
		st.Stamp(e)
		ids[i] = e.Head().EventID
	}
	return ids
}

// Three DNS messages in one TCP segment, each followed by its rtt event:
// six events alike but for their type and their order. The ordinal gives
// each its own id, the same on every run.
func TestEventIDOrdinal(t *testing.T) {
	mk := func() []event.Event {
		var evs []event.Event
		for range 3 {
			d := dnsAt(7, 42, 1e18)
			evs = append(evs, d, rttOf(d))
		}
		return evs
	}
	a, b := stamp(mk()...), stamp(mk()...)
	seen := map[uint64]int{}
	for i, id := range a {
		if id == 0 || id != b[i] {
			t.Fatalf("event %d: id %x, again %x", i, id, b[i])
		}
		if j, dup := seen[id]; dup {
			t.Fatalf("events %d and %d share id %x", j, i, id)
		}
		seen[id] = i
	}
	// Other flows' events in between (up to the stamper's memory) do not
	// change the ordinals.
	evs := mk()
	var mixed []event.Event
	for i, e := range evs {
		mixed = append(mixed, e, dnsAt(uint64(100+i), 1, 1))
	}
	got := stamp(mixed...)
	for i := range evs {
		if got[2*i] != a[i] {
			t.Fatalf("event %d: id %x with other flows' events between, %x without", i, got[2*i], a[i])
		}
	}
	// The ordinal-0 id is what ID gives an event nobody stamped.
	if id := event.ID(dnsAt(7, 42, 1e18)); id != a[0] {
		t.Fatalf("ID of an unstamped event %x, stamped first %x", id, a[0])
	}
}

// Each hashed field changes the id; the body does not.
func TestEventIDFields(t *testing.T) {
	base := stamp(dnsAt(7, 42, 1e18))[0]
	other := &event.Sensor{Host: "s2"}
	for name, e := range map[string]event.Event{
		"flow_id":   dnsAt(8, 42, 1e18),
		"pcap_cnt":  dnsAt(7, 43, 1e18),
		"timestamp": dnsAt(7, 42, 1e18+1),
		"type":      rttOf(dnsAt(7, 42, 1e18)),
		"host":      func() event.Event { d := dnsAt(7, 42, 1e18); d.Sensor = other; return d }(),
	} {
		if stamp(e)[0] == base {
			t.Errorf("%s changed, the id did not", name)
		}
	}
	d := dnsAt(7, 42, 1e18)
	d.ID, d.Response = 1234, true
	if stamp(d)[0] != base {
		t.Error("the id depends on the body")
	}
	// Without a flow, the addresses and ports name the event.
	a, b := dnsAt(0, 0, 5), dnsAt(0, 0, 5)
	b.SrcIP = netip.MustParseAddr("10.0.0.9")
	c := dnsAt(0, 0, 5)
	c.SrcPort++
	if ids := stamp(a, b, c); ids[0] == ids[1] || ids[0] == ids[2] || stamp(b)[0] != ids[1] || stamp(c)[0] != ids[2] {
		t.Errorf("flowless events: ids %x (alone: %x, %x)", ids, stamp(b)[0], stamp(c)[0])
	}
	// A scan report's source is in its body, not its header.
	s1 := &event.Scan{Src: netip.MustParseAddr("10.0.0.1")}
	s2 := &event.Scan{Src: netip.MustParseAddr("10.0.0.2")}
	s1.Timestamp, s2.Timestamp = 9, 9
	if stamp(s1)[0] == stamp(s2)[0] {
		t.Error("two sources' scans share an id")
	}
}

// Encode writes event_id as 16 hex digits after event_type; an event
// nobody stamped has none. Stamping allocates nothing.
func TestEventIDEncoded(t *testing.T) {
	d := dnsAt(7, 42, 1e18)
	var m map[string]any
	if err := json.Unmarshal(encode.NewJSON().Append(nil, d), &m); err != nil {
		t.Fatal(err)
	}
	if _, has := m["event_id"]; has {
		t.Fatalf("unstamped event with an event_id: %v", m)
	}
	id := stamp(d)[0]
	out := encode.NewJSON().Append(nil, d)
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%016x", id); m["event_id"] != want {
		t.Fatalf("event_id %v, want %s: %s", m["event_id"], want, out)
	}
	var st event.IDStamper
	if n := testing.AllocsPerRun(1000, func() { st.Stamp(d) }); n != 0 {
		t.Fatalf("Stamp allocates %v times", n)
	}
}

func BenchmarkStamp(b *testing.B) {
	d := dnsAt(7, 42, 1e18)
	var st event.IDStamper
	for i := 0; b.Loop(); i++ {
		d.PcapCnt = uint64(i)
		st.Stamp(d)
	}
}
