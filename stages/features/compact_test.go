package features

import (
	"encoding/binary"
	"fmt"
	"math"
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

// TestHugeCountsCompact: past 2^32 packets (the flow table's counters,
// which the compact state goes by) every value stays finite and
// non-negative; ack_packets saturates at 2^32-1 per direction as in the
// wide state.
func TestHugeCountsCompact(t *testing.T) {
	c := &compact{}
	k := counts{first: 1e9}
	add := func(d flow.Dir, ts int64, size uint64, fl uint8) {
		t.Helper()
		k.pkts[d]++
		k.bytes[d] += size
		if !c.add(&k, d, ts, size, true, fl) {
			t.Fatalf("packet at %d did not fit", ts)
		}
	}
	add(flow.ToServer, 1e9, 1500, packet.TCPSyn)
	add(flow.ToClient, 1e9, 60, packet.TCPSyn|packet.TCPAck)
	// As if 2^33 more packets of 1500 bytes had been seen each way.
	k.pkts[0] += 1 << 33
	k.bytes[0] += 1500 << 33
	k.pkts[1] += 1 << 33
	k.bytes[1] += 60 << 33
	add(flow.ToServer, 3e9, 1500, packet.TCPAck|packet.TCPPsh)
	add(flow.ToClient, 2e9, 60, packet.TCPAck) // backwards: taken at 3 s
	x := &Features{}
	c.widen(&x.st, &k, true, false, 0, 0)
	v := x.st.values(0)
	sane(t, v)
	for name, want := range map[string]float64{
		"src2dst_packets": 1<<33 + 2, "dst2src_packets": 1<<33 + 2,
		"src2dst_ack_packets": math.MaxUint32, "bidirectional_ack_packets": 2 * math.MaxUint32,
		"src2dst_syn_packets": 1, "src2dst_psh_packets": 1, "bidirectional_duration_ms": 2000,
		"src2dst_mean_ps": 1500, "dst2src_mean_ps": 60,
	} {
		if got := v[name].(float64); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// TestBadTimesThroughTable: zero and negative time steps inside a flow,
// through the flow table, compact and wide alike: no NaN, Inf or negative
// duration or gap (featureRecords checks every record with sane).
func TestBadTimesThroughTable(t *testing.T) {
	data := []byte{0}
	for _, step := range []int16{0, 0, -1000, 5, -32768, 0, 100, -20000, 30000, 0} {
		for d := range byte(2) {
			data = append(data, d, byte(uint16(step)>>8), byte(uint16(step)), 0x05, 0xdc, 0x10)
		}
	}
	pkts := fuzzPackets(data)
	got := featureRecords(t, New(0), pkts, 0)
	want := featureRecords(t, &Analyzer{wideOnly: true}, pkts, 0)
	if len(got) != 1 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("compact\n%v\nwide\n%v", got, want)
	}
}
