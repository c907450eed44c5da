package icmpfb

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sinks/encode"
	"github.com/pktpipe/pktpipe/stages/flow"
)

// FuzzSameAsBefore: any sequence of TCP segments (sequence numbers near
// the wrap, SYN and FIN counting one) and UDP datagrams over a few flows,
// and ICMP errors quoting either direction of them (or no flow), with
// sequence numbers inside, at the edges of and outside what was sent,
// through a table from too small to large enough, gives the same events,
// records and counters with the analyzer as it is and as it was before its
// state moved into a Column (ref_test.go).
func FuzzSameAsBefore(f *testing.F) {
	f.Add([]byte{0, 2, 0, 0, 0, 0, 16, 5, 0, 0, 3, 3, 1, 0, 0, 2, 3, 3, 0, 0})
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
		data := make([]byte, 5*(1+r.IntN(60)))
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		sameAsBefore(t, data)
	}
}

// diffPackets reads data 5 bytes per packet: kind, flow and direction;
// TCP flags or ICMP type; sequence step or quoted sequence; ICMP code and
// quote's direction; time step.
func diffPackets(data []byte) []packet.Packet {
	var pkts []packet.Packet
	ts := t0
	next := map[[2]uint16]uint32{} // by client port, direction
	for ; len(data) >= 5; data = data[5:] {
		b := data[:5]
		ts += int64(b[4]) * 1e7
		cp := 40000 + uint16(b[0]>>3&3)
		d := uint16(b[0] >> 2 & 1)
		src, dst, sp, dp := cli, srv, cp, uint16(443)
		if d == 1 {
			src, dst, sp, dp = dst, src, dp, sp
		}
		side := [2]uint16{cp, d}
		if _, ok := next[side]; !ok {
			next[side] = 0xffff_ff00 + uint32(b[2])
		}
		switch b[0] & 3 {
		case 0, 1:
			flags := []uint8{packet.TCPSyn, packet.TCPAck, packet.TCPAck, packet.TCPFin | packet.TCPAck, packet.TCPSyn | packet.TCPAck, b[1]}[b[1]%6]
			seq := next[side] + uint32(int8(b[2])) // back or ahead a little
			n := int(b[3]) * 4
			p := tcp(ts, src, sp, dst, dp, flags, seq, n)
			if b[3]&1 != 0 {
				p.Meta.HasL4 = false
			}
			pkts = append(pkts, p)
			next[side] = seq + uint32(n)
		case 2:
			pkts = append(pkts, udp(ts, src, sp+1000, dst, dp))
		case 3:
			// An error quoting this side (or, by b[3], the other) of a
			// TCP or UDP flow, with a sequence number near what it sent.
			q := tcpQuote(src, sp, dst, dp, next[side]+uint32(int8(b[2])))
			if b[3]&0x40 != 0 {
				q = tcpQuote(dst, dp, src, sp, next[[2]uint16{cp, d ^ 1}]+uint32(int8(b[2])))
			}
			if b[3]&0x80 != 0 {
				q.Proto, q.SrcPort, q.HasSeq = packet.ProtoUDP, q.SrcPort+1000, false
			}
			if b[3]&0x20 != 0 {
				q.HasSeq = false
			}
			typ := []uint8{3, 11, 12, 5, 3, 3}[b[1]%6]
			pkts = append(pkts, icmpErr(ts, rtr, typ, b[3]&15, uint32(b[1])<<8, q))
		}
	}
	return pkts
}

func sameAsBefore(t *testing.T, data []byte) {
	pkts := diffPackets(data)
	got := feedbacks(t, func(reg *stats.Registry) flow.Analyzer { return New(Config{MaxItems: 2, Stats: reg}) }, pkts)
	want := feedbacks(t, func(reg *stats.Registry) flow.Analyzer { return newRef(Config{MaxItems: 2, Stats: reg}) }, pkts)
	if !bytes.Equal(got, want) {
		t.Fatalf("outputs differ:\n got %s\nwant %s", got, want)
	}
}

func feedbacks(t *testing.T, mk func(*stats.Registry) flow.Analyzer, pkts []packet.Packet) []byte {
	t.Helper()
	reg := stats.NewRegistry()
	p := flow.NewProcessor(flow.Config{Workers: 1, Stats: reg, MaxFlows: 2 + len(pkts)%12}, mk(reg))
	ch := make(chan *event.Batch, 4*len(pkts)+8)
	em := pipeline.NewEmitter(ch)
	ts := t0
	for i := range pkts {
		pk := pkts[i]
		ts = pk.Timestamp
		p.Packet(&pk, em)
	}
	p.Flush(ts, em)
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
	for _, v := range []string{"true", "false", "unknown"} {
		id := `pktpipe_icmp_feedback_total{verified="` + v + `"}`
		n, ok := reg.Value(id)
		if !ok {
			t.Fatalf("no counter %s", id)
		}
		out = fmt.Appendf(out, "%s %v\n", id, n)
	}
	return out
}
