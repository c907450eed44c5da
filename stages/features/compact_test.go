package features

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/flow"
)

// featureRecords runs pkts through a flow table with the analyzer a (and
// an active timeout when active > 0) and returns each flow record's
// features, encoded, in the order written.
func featureRecords(t *testing.T, a *Analyzer, pkts []packet.Packet, active time.Duration) []string {
	t.Helper()
	p := flow.NewProcessor(flow.Config{Workers: 1, MaxFlows: 64, Stats: stats.NewRegistry(),
		Timeouts: flow.Timeouts{Active: active}}, a)
	ch := make(chan *event.Batch, 1024)
	em := pipeline.NewEmitter(ch)
	var last int64
	for i := range pkts {
		p.Packet(&pkts[i], em)
		last = max(last, pkts[i].Timestamp)
	}
	p.Flush(last, em)
	em.Flush()
	var out []string
	for len(ch) > 0 {
		b := <-ch
		for _, e := range b.Events {
			r, ok := e.(*event.Flow)
			if !ok {
				continue
			}
			for _, x := range r.Extra {
				if f, ok := x.(*Features); ok {
					w := &mapWriter{m: map[string]any{}, ints: map[string]bool{}}
					f.Encode(w)
					sane(t, w.m)
					out = append(out, fmt.Sprint(w.m))
				}
			}
		}
		b.Release()
	}
	return out
}

// fuzzPackets turns bytes into packets of one TCP or UDP flow: direction,
// a signed time step (sometimes minutes), size (sometimes past 65535) and
// TCP flags, 6 bytes each.
func fuzzPackets(data []byte) []packet.Packet {
	if len(data) == 0 {
		return nil
	}
	proto := uint8(packet.ProtoTCP)
	if data[0]&1 != 0 {
		proto = packet.ProtoUDP
	}
	data = data[1:]
	cli, srv := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	ts := int64(1_700_000_000) * 1e9
	var out []packet.Packet
	for len(data) >= 6 {
		step := int64(int16(binary.BigEndian.Uint16(data[1:]))) * 37_000 // about ±1.2 s
		if data[0]&4 != 0 {
			step *= 100 // gaps of minutes
		}
		ts += step
		size := uint32(binary.BigEndian.Uint16(data[3:]))
		if data[0]&2 != 0 {
			size <<= 4 // past 65535
		}
		p := packet.Packet{OrigLen: size, Timestamp: ts, IfIndex: -1}
		m := &p.Meta
		m.IPVersion, m.Proto, m.HasL4 = 4, proto, true
		m.Src, m.Dst, m.SrcPort, m.DstPort = cli, srv, 40000, 443
		if data[0]&1 != 0 {
			m.Src, m.Dst, m.SrcPort, m.DstPort = srv, cli, 443, 40000
		}
		if proto == packet.ProtoTCP {
			m.TCPFlags = data[5] &^ (packet.TCPFin | packet.TCPRst) // the flow must not end
		}
		out = append(out, p)
		data = data[6:]
	}
	return out
}

// FuzzCompactEqualsWide: a flow's features are the same whether it starts
// compact (and widens when a value outgrows it) or is wide throughout,
// with and without an active timeout.
func FuzzCompactEqualsWide(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 60, 2, 1, 0, 5, 0, 60, 0x12})
	f.Add([]byte{1, 0, 0, 0, 0, 60, 0, 5, 0x7f, 0xff, 0xff, 0xff, 0})
	long := []byte{0}
	for i := range 400 { // PSH and SYN counts past their narrow fields
		long = append(long, byte(i&1), 0, 10, 5, 0xdc, 0x0a)
	}
	f.Add(long)
	f.Fuzz(func(t *testing.T, data []byte) {
		pkts := fuzzPackets(data)
		if len(pkts) == 0 {
			return
		}
		for _, active := range []time.Duration{0, 30 * time.Second} {
			wide := &Analyzer{wideOnly: true}
			got := featureRecords(t, New(0), pkts, active)
			want := featureRecords(t, wide, pkts, active)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("active %v: compact\n%v\nwide\n%v", active, got, want)
			}
		}
	})
}

// TestCompactWidens: each kind of value that outgrows the compact state
// moves the flow to the wide one, and a flow within bounds stays compact.
func TestCompactWidens(t *testing.T) {
	ms := int64(time.Millisecond)
	base := int64(1_700_000_000) * 1e9
	mk := func(ts int64, toServer bool, flags uint8, size uint32) packet.Packet {
		p := packet.Packet{OrigLen: size, Timestamp: ts, IfIndex: -1}
		m := &p.Meta
		m.IPVersion, m.Proto, m.HasL4, m.TCPFlags = 4, packet.ProtoTCP, true, flags
		m.Src, m.Dst = netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
		m.SrcPort, m.DstPort = 40000, 443
		if !toServer {
			m.Src, m.Dst, m.SrcPort, m.DstPort = m.Dst, m.Src, 443, 40000
		}
		return p
	}
	cases := map[string]struct {
		last packet.Packet
		n    int // copies of last
		wide bool
	}{
		"within bounds": {mk(base+5*ms, true, packet.TCPAck|packet.TCPPsh, 1500), 1, false},
		"size":          {mk(base+5*ms, true, packet.TCPAck, 70000), 1, true},
		"gap":           {mk(base+66*time.Second.Nanoseconds(), false, packet.TCPAck, 60), 1, true},
		"syn count":     {mk(base+5*ms, true, packet.TCPSyn, 60), 256, true},
		"no-ack count":  {mk(base+5*ms, true, 0, 60), 255, true},
		"psh count":     {mk(base+5*ms, true, packet.TCPPsh|packet.TCPAck, 60), 65536, true},
		"psh 65535":     {mk(base+5*ms, true, packet.TCPPsh|packet.TCPAck, 60), 65535, false},
		"syn 254":       {mk(base+5*ms, true, packet.TCPSyn|packet.TCPAck, 60), 254, false},
	}
	for name, c := range cases {
		a := New(0)
		p := flow.NewProcessor(flow.Config{Workers: 1, MaxFlows: 4, Stats: stats.NewRegistry(), Timeouts: flow.Timeouts{New: 120 * time.Second}}, a)
		ch := make(chan *event.Batch, 16)
		em := pipeline.NewEmitter(ch)
		first := mk(base, true, packet.TCPSyn, 74)
		p.Packet(&first, em)
		for range c.n {
			q := c.last
			p.Packet(&q, em)
		}
		fl := p.Lookup(packet.FlowKey{Src: first.Meta.Src, Dst: first.Meta.Dst, SrcPort: 40000, DstPort: 443, Proto: packet.ProtoTCP})
		if fl == nil {
			t.Fatalf("%s: no flow", name)
		}
		_, isWide := fl.State(0).(*Features)
		if isWide != c.wide {
			t.Errorf("%s: wide = %v, want %v", name, isWide, c.wide)
		}
	}
}

// TestStateSizes pins the per-flow cost: a compact state is 96 bytes (a
// size class of its own), the wide one 240 (with the record's fields).
func TestStateSizes(t *testing.T) {
	if n := unsafe.Sizeof(compact{}); n > 96 {
		t.Errorf("compact is %d bytes, want <= 96", n)
	}
	if n := unsafe.Sizeof(Features{}); n > 240 {
		t.Errorf("Features is %d bytes, want <= 240", n)
	}
}
