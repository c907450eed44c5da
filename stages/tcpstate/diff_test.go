package tcpstate

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/sinks/encode"
	"github.com/pktpipe/pktpipe/stages/flow"
)

// FuzzSameAsBefore: any sequence of TCP segments (and a few UDP
// datagrams) over a few connections, through a table small enough to
// evict and reuse entries, gives the same records with the analyzer as it
// is and as it was before its state moved into a Column (ref_test.go):
// holes opened, filled, split and overflowing, retransmissions, sequence
// wraparound, resynchronisation, RSTs and FINs in any order.
func FuzzSameAsBefore(f *testing.F) {
	f.Add([]byte{0, 2, 0, 0, 0, 1, 18, 0, 0, 0, 0, 16, 1, 5, 0, 1, 24, 1, 3, 9})
	f.Add([]byte{0, 2, 0, 0, 0, 0, 24, 7, 40, 2, 0, 24, 2, 10, 3, 0, 24, 1, 20, 1, 0, 17, 30, 0, 0})
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
		data := make([]byte, 5*(1+r.IntN(100)))
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

// sameAsBefore reads data 5 bytes per packet: connection and direction,
// flags, sequence step, payload length, window and time step.
func sameAsBefore(t *testing.T, data []byte) {
	var pkts []packet.Packet
	seq := map[[2]uint16]uint32{}
	ts := int64(1_700_000_000e9)
	for ; len(data) >= 5; data = data[5:] {
		b := data[:5]
		cp := 40000 + uint16(b[0]&3)
		src, dst, sp, dp := hostA, hostB, cp, uint16(443)
		if b[0]&4 != 0 {
			src, dst, sp, dp = dst, src, dp, sp
		}
		side := [2]uint16{cp, uint16(b[0] >> 2 & 1)}
		if _, ok := seq[side]; !ok {
			seq[side] = 0xffff_f000 + uint32(b[0]>>4)*977 // near the wrap
		}
		// Steps forward and back, small and large (1 GiB: a resync).
		step := []int64{0, 1, 100, 1460, -1460, -100, 3000, 1 << 30, -3000, 500}[b[2]%10]
		seq[side] = uint32(int64(seq[side]) + step)
		plen := uint16(b[3]&15) * 100
		if b[3]&16 != 0 {
			plen = 0
		}
		p := packet.Packet{OrigLen: 60, Timestamp: ts, IfIndex: -1, Meta: packet.Meta{
			IPVersion: 4, Src: src, Dst: dst, SrcPort: sp, DstPort: dp, Proto: packet.ProtoTCP, HasL4: true,
			TCPFlags: b[1], Seq: seq[side], Window: uint16(b[4] & 3), PayloadLen: plen,
		}}
		if b[0]&0xc0 == 0xc0 {
			p.Meta.Proto = packet.ProtoUDP
		}
		pkts = append(pkts, p)
		seq[side] += uint32(plen)
		ts += int64(b[4]>>2) * 1e8
	}
	got, want := records(t, New(), pkts), records(t, newRef(), pkts)
	if !bytes.Equal(got, want) {
		t.Fatalf("records differ:\n got %s\nwant %s", got, want)
	}
}

func records(t *testing.T, a flow.Analyzer, pkts []packet.Packet) []byte {
	t.Helper()
	p := flow.NewProcessor(flow.Config{Workers: 1, MaxFlows: 2}, a)
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
	return out
}

// TestSameAsBeforeFullHoles: a fifth hole and a segment splitting a hole
// while four are open (rare in random sequences), then the same with the
// responder, compared with the reference.
func TestSameAsBeforeFullHoles(t *testing.T) {
	ts := int64(1_700_000_000e9)
	seg := func(toServer bool, flags uint8, seq uint32, n uint16) packet.Packet {
		ts += 1e6
		src, dst, sp, dp := hostA, hostB, uint16(40000), uint16(443)
		if !toServer {
			src, dst, sp, dp = dst, src, dp, sp
		}
		return packet.Packet{OrigLen: 60, Timestamp: ts, IfIndex: -1, Meta: packet.Meta{
			IPVersion: 4, Src: src, Dst: dst, SrcPort: sp, DstPort: dp, Proto: packet.ProtoTCP, HasL4: true,
			TCPFlags: flags, Seq: seq, Window: 100, PayloadLen: n,
		}}
	}
	const ack = packet.TCPAck
	for _, toServer := range []bool{true, false} {
		pkts := []packet.Packet{seg(true, packet.TCPSyn, 1000, 0), seg(false, packet.TCPSyn|ack, 5000, 0)}
		base := uint32(1001)
		if !toServer {
			base = 5001
		}
		for _, off := range []uint32{0, 1100, 3100, 5100, 7100, 9100, 200, 150, 3300, 20000, 20050} {
			pkts = append(pkts, seg(toServer, ack, base+off, 100))
		}
		got, want := records(t, New(), pkts), records(t, newRef(), pkts)
		if !bytes.Equal(got, want) {
			t.Fatalf("records differ:\n got %s\nwant %s", got, want)
		}
		if !bytes.Contains(got, []byte(`"missed_bytes_to`)) {
			t.Fatalf("no missed bytes: %s", got)
		}
	}
}
