package appproto

import (
	"net/netip"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/flow"
)

// FuzzAnalyzer drives the detector through the flow table with segments
// cut from the input: each starts with a control byte (bit 0: direction,
// bit 1: SYN, bits 2-3: a sequence jump, bits 4-7: length), in one TCP or
// UDP flow. Nothing panics, every slab buffer is back when the flow ends,
// and the record's app_proto is a name the detector has.
func FuzzAnalyzer(f *testing.F) {
	for _, s := range [][]byte{
		append([]byte{0xf2}, clientHello...),
		append(append([]byte{0x31}, sshBanner[:3]...), append([]byte{0xf0}, sshBanner...)...),
		append([]byte{0x20, 'G', 'E'}, append([]byte{0xf0}, httpReq...)...),
		append([]byte{0x50, 0, 0, 0, 0xa8, 0x6a}, krbASReq...),
		append([]byte{0x40}, h2Pre...),
		append([]byte{0x00, 'G'}, append([]byte{0xf0}, httpReq[1:]...)...), // the buffer
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, in []byte, isTCP bool) {
		reg := stats.NewRegistry()
		a := New(reg)
		p := flow.NewProcessor(flow.Config{Workers: 1, MaxFlows: 16, Stats: reg}, a)
		ch := make(chan *event.Batch, 1024)
		em := pipeline.NewEmitter(ch)
		cli := netip.AddrPortFrom(netip.MustParseAddr("10.3.0.1"), 40000)
		srv := netip.AddrPortFrom(netip.MustParseAddr("10.3.0.2"), 53)
		seq := [2]uint32{1000, 9000}
		ts := int64(1e18)
		for len(in) > 0 {
			c := in[0]
			in = in[1:]
			n := min(int(c>>4)*8+1, len(in))
			dir := c & 1
			m := packet.Meta{IPVersion: 4, Proto: packet.ProtoUDP, HasL4: true, PayloadLen: uint16(n)}
			if isTCP {
				m.Proto, m.TCPFlags = packet.ProtoTCP, packet.TCPAck
				if c&2 != 0 {
					m.TCPFlags = packet.TCPSyn
				}
				seq[dir] += uint32(c>>2&3) * 7
				m.Seq = seq[dir]
				seq[dir] += uint32(n)
			}
			m.Src, m.SrcPort, m.Dst, m.DstPort = cli.Addr(), cli.Port(), srv.Addr(), srv.Port()
			if dir == 1 {
				m.Src, m.SrcPort, m.Dst, m.DstPort = srv.Addr(), srv.Port(), cli.Addr(), cli.Port()
			}
			ts += 1e6
			pk := &packet.Packet{Data: in[:n:n], Timestamp: ts, Meta: m}
			in = in[n:]
			p.Packet(pk, em)
			if len(a.freeBufs) > len(a.slab) {
				t.Fatalf("%d free buffers of %d", len(a.freeBufs), len(a.slab))
			}
		}
		p.Flush(ts+1e15, em)
		em.Flush()
		close(ch)
		if len(a.freeBufs) != len(a.slab) {
			t.Fatalf("%d of %d slab buffers back after the flow ended", len(a.freeBufs), len(a.slab))
		}
		for b := range ch {
			for _, ev := range b.Events {
				if r, ok := ev.(*event.Flow); ok {
					for _, x := range r.Extra {
						if e, ok := x.(*ext); !ok || !inScope(e.val) {
							t.Fatalf("record extension %v", x)
						}
					}
				}
			}
		}
	})
}
