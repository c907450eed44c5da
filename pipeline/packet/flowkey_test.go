package packet

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestShardHash: ShardHash is ShardKey's hash, and own says when that key
// is the packet's own (KeyOf), for TCP/UDP/SCTP, echo and other ICMP,
// other protocols, errors with and without a usable quote, no IP layer.
func TestShardHash(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	addr := func(v6 bool) netip.Addr {
		if v6 {
			return netip.AddrFrom16([16]byte{0: 0xfd, 15: byte(r.IntN(4))})
		}
		return netip.AddrFrom4([4]byte{10, 0, 0, byte(r.IntN(4))})
	}
	for range 100000 {
		v6 := r.IntN(2) == 0
		m := Meta{
			IPVersion: []uint8{0, 4, 4, 4}[r.IntN(4)], Src: addr(v6), Dst: addr(v6),
			Proto:   []uint8{ProtoTCP, ProtoUDP, ProtoSCTP, ProtoICMP, ProtoICMPv6, 47}[r.IntN(6)],
			SrcPort: uint16(r.IntN(3)), DstPort: uint16(r.IntN(3)), VLAN: [2]uint16{uint16(r.IntN(2)), 7},
			ICMPType: []uint8{0, 8, 3, 11, 128, 135}[r.IntN(6)], ICMPCode: uint8(r.IntN(2)), ICMPID: uint16(r.IntN(3)),
		}
		if r.IntN(3) == 0 {
			m.X = &Extra{Quote: Quote{Present: true, IPVersion: []uint8{0, 4}[r.IntN(2)], Src: addr(v6), Dst: addr(v6),
				Proto: ProtoTCP, SrcPort: 9, DstPort: 80, HasPorts: r.IntN(2) == 0}}
		}
		k, kok := ShardKey(&m)
		h, own, ok := ShardHash(&m)
		if ok != kok || (ok && h != k.Hash()) {
			t.Fatalf("%+v: ShardHash %x %v, ShardKey %v %v", m, h, ok, k, kok)
		}
		_, quoted := QuoteKey(&m)
		if ok && own == (m.Quoted().Present && quoted) {
			t.Fatalf("%+v: own %v", m, own)
		}
		if own2, _ := KeyOf(&m); own && own2 != k {
			t.Fatalf("%+v: own, but KeyOf %v and ShardKey %v differ", m, own2, k)
		}
	}
}
