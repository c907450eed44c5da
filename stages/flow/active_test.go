package flow

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
)

// longFlow is a TCP connection of 10 minutes of packet time: handshake,
// then a request and an answer about every half second (jittered, sizes
// varied), then FINs just before t0+600 s.
func longFlow() []packet.Packet {
	ms := sec / 1000
	rnd := rand.New(rand.NewPCG(13, 13))
	pkts := []packet.Packet{
		tcpPkt(t0, cli, 40000, srv, 443, syn, 74),
		tcpPkt(t0+ms, srv, 443, cli, 40000, synack, 74),
		tcpPkt(t0+2*ms, cli, 40000, srv, 443, ack, 66),
	}
	for ts := t0 + 10*ms; ts < t0+599*sec; {
		pkts = append(pkts, tcpPkt(ts, cli, 40000, srv, 443, pshack, 66+uint32(rnd.IntN(1400))))
		ts += int64(rnd.IntN(3000)) * sec / 1e4 // up to 0.3 s
		pkts = append(pkts, tcpPkt(ts, srv, 443, cli, 40000, pshack, 66+uint32(rnd.IntN(1448))))
		ts += int64(rnd.IntN(4000)) * sec / 1e4
	}
	last := pkts[len(pkts)-1].Timestamp
	return append(pkts,
		tcpPkt(last+ms, cli, 40000, srv, 443, finack, 66),
		tcpPkt(last+2*ms, srv, 443, cli, 40000, finack, 66),
		tcpPkt(last+3*ms, cli, 40000, srv, 443, ack, 66))
}

// spy is an analyzer that counts its calls; as an IntervalWriter it
// also writes an extension per interval with the packets it saw in it.
type spy struct {
	packets, ends, intervals int
	inInterval               uint64
}

func (s *spy) Packet(*Flow, *packet.Packet, Dir, *pipeline.Emitter) { s.packets++; s.inInterval++ }
func (s *spy) ICMPError(*Flow, *packet.Packet, *pipeline.Emitter)   {}
func (s *spy) End(_ *Flow, rec *event.Flow, _ *pipeline.Emitter) {
	s.ends++
	rec.Extra = append(rec.Extra, spyExt(s.inInterval))
	s.inInterval = 0
}

type intervalSpy struct{ spy }

func (s *intervalSpy) Interval(f *Flow, rec *event.Flow, em *pipeline.Emitter) {
	s.intervals++
	rec.Extra = append(rec.Extra, spyExt(s.inInterval))
	s.inInterval = 0
}

type spyExt uint64

func (spyExt) Key() string             { return "spy" }
func (x spyExt) Encode(w event.Writer) { w.Uint(uint64(x)) }

// TestActiveTimeoutSums: a 10-minute flow with a 60 s active timeout gives
// 10 records (9 active_timeout, then fin) whose counters add up to the one
// record written without it; each covers less than 60 s, the next starting
// with the first packet 60 s or more after the previous start. The output
// does not depend on batch boundaries.
func TestActiveTimeoutSums(t *testing.T) {
	pkts := longFlow()
	whole := flows(run(t, NewProcessor(Config{MaxFlows: 16}), pkts, 256))
	if len(whole) != 1 || whole[0].Reason != "fin" {
		t.Fatalf("without active timeout: %+v", whole)
	}
	w := whole[0]
	var first []string
	for _, batch := range []int{1, 7, 256} {
		iw, plain := &intervalSpy{}, &spy{}
		p := NewProcessor(Config{MaxFlows: 16, Timeouts: Timeouts{Active: 60 * time.Second}}, iw, plain)
		evs := run(t, p, pkts, batch)
		recs := flows(evs)
		if len(recs) != 10 {
			t.Fatalf("batch %d: %d records, want 10", batch, len(recs))
		}
		var sum event.Flow
		var flags, flagsTS, flagsTC uint8
		for i, r := range recs {
			wantReason := "active_timeout"
			if i == len(recs)-1 {
				wantReason = "fin"
			}
			if r.Reason != wantReason || r.FlowID != w.FlowID || r.CommunityID != w.CommunityID ||
				r.SrcIP != w.SrcIP || r.SrcPort != w.SrcPort || r.DestPort != w.DestPort {
				t.Fatalf("record %d: %+v\nwhole: %+v", i, r, w)
			}
			if r.Timestamp != r.Start || r.End-r.Start >= int64(60*time.Second) || r.End < r.Start {
				t.Errorf("record %d: timestamp %d, start %d, end %d", i, r.Timestamp, r.Start, r.End)
			}
			if i > 0 {
				prev := recs[i-1]
				if r.Start-prev.Start < int64(60*time.Second) || r.Start <= prev.End {
					t.Errorf("record %d starts at %d, previous %d..%d", i, r.Start, prev.Start, prev.End)
				}
				// The interval starts with the first packet 60 s or more
				// after the previous start.
				j := slices.IndexFunc(pkts, func(q packet.Packet) bool { return q.Timestamp-prev.Start >= int64(60*time.Second) })
				if pkts[j].Timestamp != r.Start {
					t.Errorf("record %d starts at %d, want %d", i, r.Start, pkts[j].Timestamp)
				}
			}
			if got := uint64(r.Extra[0].(spyExt)); got != r.PktsToServer+r.PktsToClient {
				t.Errorf("record %d: interval writer saw %d packets, record has %d", i, got, r.PktsToServer+r.PktsToClient)
			}
			if len(r.Extra) != 1 && i < len(recs)-1 {
				t.Errorf("record %d: %d extensions: the plain analyzer wrote on an interval record", i, len(r.Extra))
			}
			sum.PktsToServer += r.PktsToServer
			sum.PktsToClient += r.PktsToClient
			sum.BytesToServer += r.BytesToServer
			sum.BytesToClient += r.BytesToClient
			flags, flagsTS, flagsTC = flags|r.TCPFlags, flagsTS|r.TCPFlagsTS, flagsTC|r.TCPFlagsTC
		}
		if sum.PktsToServer != w.PktsToServer || sum.PktsToClient != w.PktsToClient ||
			sum.BytesToServer != w.BytesToServer || sum.BytesToClient != w.BytesToClient {
			t.Errorf("batch %d: sums %d/%d pkts %d/%d bytes, whole %d/%d %d/%d", batch,
				sum.PktsToServer, sum.PktsToClient, sum.BytesToServer, sum.BytesToClient,
				w.PktsToServer, w.PktsToClient, w.BytesToServer, w.BytesToClient)
		}
		if flags != w.TCPFlags || flagsTS != w.TCPFlagsTS || flagsTC != w.TCPFlagsTC {
			t.Errorf("flags OR %x/%x/%x, whole %x/%x/%x", flags, flagsTS, flagsTC, w.TCPFlags, w.TCPFlagsTS, w.TCPFlagsTC)
		}
		if f, l := recs[0], recs[len(recs)-1]; f.Start != w.Start || l.End != w.End {
			t.Errorf("records span %d..%d, whole %d..%d", f.Start, l.End, w.Start, w.End)
		}
		if recs[1].TCPFlags != pshack {
			t.Errorf("second interval's flags %x, want PA only", recs[1].TCPFlags)
		}
		// The plain analyzer carries on: one End, on the last record,
		// which has its whole count.
		if plain.ends != 1 || iw.ends != 1 || iw.intervals != 9 || plain.packets != len(pkts) {
			t.Errorf("plain: %d ends, %d packets; interval writer: %d ends, %d intervals", plain.ends, plain.packets, iw.ends, iw.intervals)
		}
		if got := recs[9].Extra[1].(spyExt); int(got) != len(pkts) {
			t.Errorf("plain analyzer's last record: %d packets, want %d", got, len(pkts))
		}
		if v := counter(t, p, "pktpipe_flow_active_timeout_records_total"); v != 9 {
			t.Errorf("active timeout records counter = %v", v)
		}
		lines := jsonLines(t, evs)
		if first == nil {
			first = lines
		} else if !slices.Equal(first, lines) {
			t.Errorf("batch %d: output differs from batch 1", batch)
		}
	}
}

// TestActiveTimeoutQuiet: a flow that goes quiet writes nothing until its
// next packet (no empty records), and an interval's last record ends with
// the real reason; flows reuse freed interval entries.
func TestActiveTimeoutQuiet(t *testing.T) {
	p := NewProcessor(Config{MaxFlows: 16, Timeouts: Timeouts{Active: 60 * time.Second, UDP: 300 * time.Second, New: 300 * time.Second}})
	c := newCollector(true)
	udp := func(ts int64, toServer bool, port uint16) packet.Packet {
		if toServer {
			return udpPkt(ts, cli, port, srv, 9999, 100)
		}
		return udpPkt(ts, srv, 9999, cli, port, 200)
	}
	feed(p, c.em, []packet.Packet{udp(t0, true, 5000), udp(t0+sec, false, 5000), udp(t0+10*sec, true, 5000)}, 256)
	// Quiet for 200 s: the sweeps write nothing.
	feed(p, c.em, []packet.Packet{udp(t0+100*sec, true, 6000)}, 256)
	if n := len(flows(c.events)); n != 0 {
		t.Fatalf("%d records while quiet", n)
	}
	feed(p, c.em, []packet.Packet{udp(t0+210*sec, false, 5000), udp(t0+211*sec, true, 5000)}, 256)
	// An idle timeout then ends it: the last record says timeout.
	feed(p, c.em, []packet.Packet{udp(t0+600*sec, true, 7000)}, 256)
	for i := range 3 { // a later flow reuses the freed interval entry
		ts := t0 + 700*sec + int64(i)*70*sec
		feed(p, c.em, []packet.Packet{udp(ts, true, 8000)}, 256)
	}
	p.Flush(t0+900*sec, c.em)
	evs := c.close()
	var got []*event.Flow
	for _, r := range flows(evs) {
		if r.SrcPort == 5000 || r.SrcPort == 8000 {
			got = append(got, r)
		}
	}
	type rec struct {
		port       uint16
		reason     string
		ts, tc     uint64
		start, end int64
	}
	want := []rec{
		{5000, "active_timeout", 2, 1, t0, t0 + 10*sec},
		{5000, "timeout", 1, 1, t0 + 210*sec, t0 + 211*sec},
		{8000, "active_timeout", 1, 0, t0 + 700*sec, t0 + 700*sec},
		{8000, "active_timeout", 1, 0, t0 + 770*sec, t0 + 770*sec},
		{8000, "shutdown", 1, 0, t0 + 840*sec, t0 + 840*sec},
	}
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d: %+v", len(got), len(want), got)
	}
	for i, r := range got {
		g := rec{r.SrcPort, r.Reason, r.PktsToServer, r.PktsToClient, r.Start, r.End}
		if g != want[i] {
			t.Errorf("record %d: %+v, want %+v", i, g, want[i])
		}
	}
	if len(p.exts) != 1 {
		t.Errorf("%d side entries for one long flow at a time, want 1", len(p.exts))
	}
}

// TestActiveTimeoutOffUnchanged: with the active timeout off the record
// is the one written before it existed (no interval accounting).
func TestActiveTimeoutOffUnchanged(t *testing.T) {
	p := NewProcessor(Config{MaxFlows: 16})
	recs := flows(run(t, p, longFlow(), 64))
	if len(recs) != 1 || len(p.exts) != 0 {
		t.Fatalf("%d records, %d side entries", len(recs), len(p.exts))
	}
}

// TestFlowEntrySize: a flow entry is 144 bytes on 64-bit (what some
// flows need is in the side table), with the active timeout on or off,
// and an index bucket is one cache line.
func TestFlowEntrySize(t *testing.T) {
	if n := unsafe.Sizeof(Flow{}); n > 144 {
		t.Errorf("Flow is %d bytes, want <= 144", n)
	}
	if n := unsafe.Sizeof(bucket{}); n != 64 {
		t.Errorf("bucket is %d bytes, want 64", n)
	}
}

// TestCountersPast32Bits: an entry holds the low 32 bits of its packet and
// byte counters; crossing 2^32 carries into the side table, and the
// records (an interval's, then the last) and the accessors have the whole
// counts.
func TestCountersPast32Bits(t *testing.T) {
	p := NewProcessor(Config{MaxFlows: 16, Timeouts: Timeouts{Active: 10 * time.Second}})
	c := newCollector(true)
	send := func(ts int64, n uint32) {
		pk := udpPkt(ts, cli, 1000, srv, 80, n)
		p.Packet(&pk, c.em)
	}
	send(t0, 100)
	f := p.Lookup(packet.FlowKey{Src: cli, Dst: srv, SrcPort: 1000, DstPort: 80, Proto: packet.ProtoUDP})
	// As if 2^32 - 1 packets and 2^32 - 60 bytes had been seen.
	f.pkts[ToServer], f.bytes[ToServer] = 1<<32-1, 1<<32-60
	send(t0+sec, 100) // both carry
	if got, want := f.Packets(ToServer), uint64(1<<32); got != want {
		t.Errorf("packets %d, want %d", got, want)
	}
	if got, want := f.Bytes(ToServer), uint64(1<<32+40); got != want {
		t.Errorf("bytes %d, want %d", got, want)
	}
	send(t0+11*sec, 500) // opens the second interval
	send(t0+12*sec, 7)
	p.Flush(t0+20*sec, c.em)
	recs := flows(c.close())
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2", len(recs))
	}
	if r := recs[0]; r.Reason != "active_timeout" || r.PktsToServer != 1<<32 || r.BytesToServer != 1<<32+40 {
		t.Errorf("interval record: %s, %d packets, %d bytes", r.Reason, r.PktsToServer, r.BytesToServer)
	}
	if r := recs[1]; r.PktsToServer != 2 || r.BytesToServer != 507 {
		t.Errorf("last record: %d packets, %d bytes, want 2, 507", r.PktsToServer, r.BytesToServer)
	}
}

// TestFlowHoldsNoPointer: an entry holds no pointer, so that the garbage
// collector never scans the slabs; its table is found at the head of its
// slab, at the same place in a small one.
func TestFlowHoldsNoPointer(t *testing.T) {
	var walk func(reflect.Type) bool
	walk = func(ty reflect.Type) bool {
		switch ty.Kind() {
		case reflect.Pointer, reflect.UnsafePointer, reflect.Slice, reflect.String, reflect.Map,
			reflect.Interface, reflect.Func, reflect.Chan:
			return true
		case reflect.Array:
			return walk(ty.Elem())
		case reflect.Struct:
			for i := range ty.NumField() {
				if walk(ty.Field(i).Type) {
					return true
				}
			}
		}
		return false
	}
	if walk(reflect.TypeFor[Flow]()) {
		t.Error("Flow holds a pointer")
	}
	if unsafe.Offsetof(slab{}.flows) != unsafe.Offsetof(smallSlab{}.flows) {
		t.Error("a small slab's entries are not where a slab's are")
	}
	for _, n := range []int{1, smallSlabSize, smallSlabSize + 1, chunkSize + 3} {
		p := NewProcessor(Config{Workers: 1, MaxFlows: n})
		c := newCollector(false)
		for i := range n {
			q := udpPkt(t0, cli, uint16(i), srv, 53, 60)
			p.Packet(&q, c.em)
			if f := p.Lookup(packet.FlowKey{Src: cli, Dst: srv, SrcPort: uint16(i), DstPort: 53, Proto: packet.ProtoUDP}); f == nil || f.table() != p {
				t.Fatalf("cap %d, flow %d: not found or its table is not the processor", n, i)
			}
		}
		c.close()
	}
	var f Flow
	f.SetState(0, 1)
	if f.table() != nil || f.State(0) != nil || f.ID() != 0 || f.Packets(0) != 0 || f.CommunityID() != "" {
		t.Error("a Flow outside a table finds a table")
	}
}
