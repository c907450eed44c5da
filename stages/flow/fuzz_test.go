package flow

import (
	"net/netip"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline/packet"
)

// FuzzPackets drives a small table with metadata built from arbitrary
// bytes (inconsistent fields, time going back and forth, errors with odd
// quotes): it must never panic, never exceed its cap, and end every flow.
func FuzzPackets(f *testing.F) {
	f.Add([]byte("\x06\x01\x02\x00\x50\x00\x02\x00\x00\x11\x02\x01\x00\x35\x01\x12\x00\x01"))
	f.Add([]byte("\x01\x01\x02\x03\x03\x00\x00\x00\x00\x3a\x02\x01\x81\x00\x00\x00\x00\x00\x06\x02\x01\x04\x04\x04"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := NewProcessor(Config{MaxFlows: 4, SweepLimit: 2}, &recorder{}, errEmitter{})
		c := newCollector(false)
		var pkts []packet.Packet
		ts := t0
		for len(data) >= 6 {
			b := data[:6]
			data = data[6:]
			addr := func(x byte) netip.Addr {
				if b[0]&0x80 != 0 {
					return netip.AddrFrom16([16]byte{0xfd, 15: x & 7})
				}
				return netip.AddrFrom4([4]byte{10, 0, 0, x & 7})
			}
			ts += int64(int8(b[5])) * sec // may go backwards
			pk := packet.Packet{OrigLen: uint32(b[4]), Timestamp: ts, IfIndex: -1, Meta: packet.Meta{
				IPVersion: 4 + 2*(b[0]>>7), Src: addr(b[1]), Dst: addr(b[1] >> 3), Proto: b[0] & 0x7f,
				SrcPort: uint16(b[2] & 3), DstPort: uint16(b[2] >> 6), TCPFlags: b[3],
				ICMPType: b[2], ICMPCode: b[3] & 3, ICMPID: uint16(b[4] & 1),
			}}
			if b[3]&0x40 != 0 {
				pk.Meta.X = &packet.Extra{Quote: packet.Quote{Present: true, IPVersion: pk.Meta.IPVersion, Src: pk.Meta.Dst, Dst: pk.Meta.Src,
					Proto: b[1] & 0x11, SrcPort: pk.Meta.DstPort, DstPort: pk.Meta.SrcPort, HasPorts: b[4]&2 != 0, HasEcho: b[4]&4 != 0}}
			}
			if b[3]&0x20 != 0 {
				pk.Meta.Frag = packet.Fragment{Is: true, First: b[4]&8 != 0}
			}
			pkts = append(pkts, pk)
		}
		now := feed(p, c.em, pkts, 1+len(pkts)%5)
		if p.Len() > 4 {
			t.Fatalf("%d flows > cap", p.Len())
		}
		p.Flush(now, c.em)
		c.close()
		if p.Len() != 0 {
			t.Fatalf("%d flows after flush", p.Len())
		}
	})
}
