package dns

import (
	"testing"

	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/stages/flow"
)

// TestAllocs: a packet that is not DNS costs no allocation, and a DNS
// message's event costs a fixed few: the event, its text, its records
// (and, with OPT options or an alpn, their wire bytes; a type number
// above 255, its text).
func TestAllocs(t *testing.T) {
	a := New(nil, nil)
	var p packet.Packet
	p.Meta.Proto, p.Meta.SrcPort, p.Meta.DstPort = packet.ProtoTCP, 40000, 443
	var f flow.Flow
	if n := testing.AllocsPerRun(1000, func() { a.Packet(&f, &p, 0, nil) }); n != 0 {
		t.Errorf("non-DNS packet: %v allocs", n)
	}
	for _, c := range []struct {
		name string
		msg  string
		want float64
	}{
		{"query", wwwQuery, 2},
		// One A answer, an OPT without options.
		{"response", "abcd81800001000100000001 03777777076578616d706c6503636f6d00 0001 0001" +
			"c00c 0001 0001 0000003c 0004 c0000201 00 0029 04d0 00000000 0000", 3},
		// Also the wire bytes of the OPT options and alpn, and the
		// number of type 999 as text.
		{"rich response", richResponse, 5},
	} {
		b := mustHex(t, c.msg)
		m := &a.msg
		n := testing.AllocsPerRun(1000, func() {
			if err := m.Parse(b); err != nil {
				t.Fatal(err)
			}
			_ = a.event(m)
		})
		t.Logf("%s: %v allocations per event", c.name, n)
		if n > c.want {
			t.Errorf("%s: %v allocations per event, want <= %v", c.name, n, c.want)
		}
	}
}
