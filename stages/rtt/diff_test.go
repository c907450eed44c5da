package rtt

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sinks/encode"
	"github.com/pktpipe/pktpipe/stages/flow"
)

// FuzzSameAsBefore: any sequence of TCP segments with sequence numbers
// from a small range (so that SYN/ACKs, RSTs and ACKs often answer),
// echo requests and replies, and DNS outcomes reported as stages/dns does,
// over a few flows in a table small enough to evict and reuse entries,
// gives the same events and records with the analyzer as it is and as it
// was before its state moved into a Column (ref_test.go).
func FuzzSameAsBefore(f *testing.F) {
	f.Add([]byte{0, 2, 0, 0, 1, 0, 18, 1, 1, 1, 0, 16, 2, 2, 1})
	f.Add([]byte{1, 0, 3, 0, 1, 9, 0, 3, 0, 1, 2, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 5*256 {
			data = data[:5*256]
		}
		sameAsBefore(t, data)
	})
}

// TestSameAsBefore runs the comparison on random sequences.
func TestSameAsBefore(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 3000 {
		data := make([]byte, 5*(1+r.IntN(80)))
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		sameAsBefore(t, data)
	}
}

var (
	hostA = netip.MustParseAddr("10.0.0.1")
	hostB = netip.MustParseAddr("10.0.0.2")
)

func sameAsBefore(t *testing.T, data []byte) {
	pkts := gen(data)
	got := events(t, func(reg *stats.Registry) (timings, flow.Analyzer) {
		a := New(Config{Stats: reg, MaxPending: 3})
		return a, a
	}, pkts)
	want := events(t, func(reg *stats.Registry) (timings, flow.Analyzer) {
		a := newRef(Config{Stats: reg, MaxPending: 3})
		return a, a
	}, pkts)
	if !bytes.Equal(got, want) {
		t.Fatalf("events differ:\n got %s\nwant %s", got, want)
	}
}

// gen reads data 5 bytes per packet: kind, flow and direction; TCP flags,
// echo type or DNS outcome; seq; ack; time step.
func gen(data []byte) []packet.Packet {
	var pkts []packet.Packet
	lastSeq := map[[2]uint16]uint32{} // by client port, direction
	ts := int64(1_700_000_000e9)
	for ; len(data) >= 5; data = data[5:] {
		b := data[:5]
		src, dst := hostA, hostB
		if b[0]&4 != 0 {
			src, dst = dst, src
		}
		cp := 40000 + uint16(b[0]>>3&1)
		sp, dp := cp, uint16(443)
		if b[0]&4 != 0 {
			sp, dp = dp, sp
		}
		m := packet.Meta{IPVersion: 4, Src: src, Dst: dst, HasL4: true}
		switch b[0] & 3 {
		case 0, 1:
			m.Proto, m.SrcPort, m.DstPort = packet.ProtoTCP, sp, dp
			const syn, ack, rst, fin = packet.TCPSyn, packet.TCPAck, packet.TCPRst, packet.TCPFin
			m.TCPFlags = []uint8{syn, syn | ack, syn | ack, ack, ack, ack, rst, rst | ack, fin | ack, syn | fin, b[1]}[b[1]%11]
			m.Seq = uint32(b[2]&3) * 1000
			// Mostly acknowledging the other side's latest seq (+1, +2).
			other := [2]uint16{cp, uint16(b[0]>>2&1 ^ 1)}
			m.Ack = lastSeq[other] + uint32(b[3]&3)
			if b[3]&12 == 12 {
				m.Ack = uint32(b[3]>>4) * 1000
			}
			lastSeq[[2]uint16{cp, uint16(b[0] >> 2 & 1)}] = m.Seq
		case 2:
			m.Proto = packet.ProtoICMP
			m.ICMPType = []uint8{8, 0, 8, 0, 13}[b[1]%5]
			m.ICMPID, m.ICMPSeq = uint16(b[0]>>3&1), uint16(b[2]&7)
		case 3:
			// A DNS outcome (dnsLike reads it from the payload length).
			m.Proto, m.SrcPort, m.DstPort = packet.ProtoUDP, sp, 53
			m.PayloadLen = uint16(b[1])<<8 | uint16(b[2])
		}
		pkts = append(pkts, packet.Packet{OrigLen: 60, Timestamp: ts, IfIndex: -1, Meta: m})
		ts += int64(b[4]) * 1e8 // up to 25 s: echo requests expire
	}
	return pkts
}

type timings interface {
	ObserveDNS(f *flow.Flow, answered bool, ns int64, n int)
}

// dnsLike reports DNS outcomes to the analyzer as stages/dns does: on a
// UDP packet with a payload, answered or not by its low bit, and
// unanswered queries at the flow's end, before the analyzer's End.
type dnsLike struct{ t timings }

func (d dnsLike) Packet(f *flow.Flow, p *packet.Packet, _ flow.Dir, _ *pipeline.Emitter) {
	if n := p.Meta.PayloadLen; p.Meta.Proto == packet.ProtoUDP && n != 0 {
		d.t.ObserveDNS(f, n&1 != 0, int64(n)*1000, int(n>>1&3))
	}
}
func (d dnsLike) ICMPError(*flow.Flow, *packet.Packet, *pipeline.Emitter) {}
func (d dnsLike) End(f *flow.Flow, _ *event.Flow, _ *pipeline.Emitter) {
	if f.Proto() == packet.ProtoUDP && f.Packets(flow.ToServer)%3 == 0 {
		d.t.ObserveDNS(f, false, 0, int(f.Packets(flow.ToServer)%4))
	}
}

func events(t *testing.T, mk func(*stats.Registry) (timings, flow.Analyzer), pkts []packet.Packet) []byte {
	t.Helper()
	reg := stats.NewRegistry()
	tm, a := mk(reg)
	// A table from too small to large enough for the flows of gen.
	p := flow.NewProcessor(flow.Config{Workers: 1, MaxFlows: 2 + len(pkts)%8, Stats: reg}, dnsLike{tm}, a)
	ch := make(chan *event.Batch, 4*len(pkts)+8)
	em := pipeline.NewEmitter(ch)
	for i := range pkts {
		pk := pkts[i]
		p.Packet(&pk, em)
	}
	p.Flush(int64(2_000_000_000e9), em)
	em.Flush()
	close(ch)
	enc, err := encode.New("json")
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for b := range ch {
		for _, e := range b.Events {
			out = enc.Append(out, e)
			out = append(out, '\n')
		}
		b.Release()
	}
	for _, k := range []string{"measured", "unanswered", "unmatched"} {
		for _, kind := range kindNames {
			id := `pktpipe_rtt_` + k + `_total{kind="` + kind + `"}`
			v, ok := reg.Value(id)
			if !ok {
				t.Fatalf("no counter %s", id)
			}
			out = fmt.Appendf(out, "%s %v\n", id, v)
		}
	}
	return out
}

// TestSameAsBeforeRetransmissions: retransmitted SYNs and SYN/ACKs, a few
// and more than a byte counts, then the ACK or a refusing RST, compared
// with the reference.
func TestSameAsBeforeRetransmissions(t *testing.T) {
	for _, n := range []int{1, 2, 3, 300} {
		for _, end := range []uint8{packet.TCPAck, packet.TCPRst | packet.TCPAck} {
			ts := int64(1_700_000_000e9)
			seg := func(toServer bool, flags uint8, seq, ack uint32) packet.Packet {
				ts += 1e6
				src, dst, sp, dp := hostA, hostB, uint16(40000), uint16(443)
				if !toServer {
					src, dst, sp, dp = dst, src, dp, sp
				}
				return packet.Packet{OrigLen: 60, Timestamp: ts, IfIndex: -1, Meta: packet.Meta{
					IPVersion: 4, Src: src, Dst: dst, SrcPort: sp, DstPort: dp, Proto: packet.ProtoTCP, HasL4: true,
					TCPFlags: flags, Seq: seq, Ack: ack,
				}}
			}
			var pkts []packet.Packet
			for range n {
				pkts = append(pkts, seg(true, packet.TCPSyn, 100, 0))
			}
			if end == packet.TCPAck {
				for range n {
					pkts = append(pkts, seg(false, packet.TCPSyn|packet.TCPAck, 900, 101))
				}
				pkts = append(pkts, seg(true, end, 101, 901))
			} else {
				pkts = append(pkts, seg(false, end, 0, 101))
			}
			got := events(t, func(reg *stats.Registry) (timings, flow.Analyzer) {
				a := New(Config{Stats: reg})
				return a, a
			}, pkts)
			want := events(t, func(reg *stats.Registry) (timings, flow.Analyzer) {
				a := newRef(Config{Stats: reg})
				return a, a
			}, pkts)
			if !bytes.Equal(got, want) {
				t.Fatalf("%d, flags %#x: events differ:\n got %s\nwant %s", n, end, got, want)
			}
			if !bytes.Contains(got, []byte(`"event_type":"rtt"`)) {
				t.Fatalf("%d, flags %#x: no rtt event: %s", n, end, got)
			}
		}
	}
}
