package flow

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline/packet"
)

// TestIndexChurn: random inserts and removals against a map, with hashes
// drawn from a few values so that buckets overflow into their neighbours
// and probes cross many of them; every entry stays findable and every
// overflow count returns to zero once the index is empty.
func TestIndexChurn(t *testing.T) {
	for _, distinct := range []int{1, 3, 40, 1 << 20} {
		const max = 600
		x := newIndex(max)
		r := rand.New(rand.NewPCG(uint64(distinct), 9))
		hashOf := map[int32]uint64{}
		var live []int32
		find := func(i int32, h uint64) bool {
			for pos := x.home(h); ; pos = x.next(pos) {
				b := &x.b[pos]
				for m := b.match(tagOf(h)); m != 0; m &= m - 1 {
					for s := range bucketSlots {
						if m&(1<<s) != 0 && b.idx[s] == i {
							return true
						}
					}
				}
				if b.over == 0 {
					return false
				}
			}
		}
		next := int32(0)
		for step := range 20000 {
			if len(live) < max && (len(live) == 0 || r.IntN(2) == 0) {
				h := r.Uint64N(uint64(distinct)) * 0x9e3779b97f4a7c15
				x.insert(next, h)
				hashOf[next] = h
				live = append(live, next)
				next++
			} else {
				j := r.IntN(len(live))
				i := live[j]
				x.remove(i, hashOf[i])
				if find(i, hashOf[i]) {
					t.Fatalf("distinct %d step %d: %d still found after removal", distinct, step, i)
				}
				delete(hashOf, i)
				live[j] = live[len(live)-1]
				live = live[:len(live)-1]
			}
			if step%97 == 0 {
				for _, i := range live {
					if !find(i, hashOf[i]) {
						t.Fatalf("distinct %d step %d: %d lost", distinct, step, i)
					}
				}
			}
		}
		for _, i := range live {
			x.remove(i, hashOf[i])
		}
		for pos := range x.b {
			if b := &x.b[pos]; b.over != 0 || b.empty() != 1<<bucketSlots-1 {
				t.Fatalf("distinct %d: bucket %d not empty at the end: over %d tags %v", distinct, pos, b.over, b.tags)
			}
		}
	}
}

// TestBucketMatch: the SWAR tag search finds exactly the slots holding the
// tag, and the empty ones, whatever the other bytes.
func TestBucketMatch(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 100000 {
		var b bucket
		for s := range b.tags {
			if r.IntN(3) > 0 {
				b.tags[s] = uint8(r.IntN(4)) | 0x80 // few values: many equal
			}
		}
		tag := uint8(r.IntN(4)) | 0x80
		var wantM, wantE uint32
		for s, v := range b.tags {
			if v == tag {
				wantM |= 1 << s
			}
			if v == 0 {
				wantE |= 1 << s
			}
		}
		if m, e := b.match(tag), b.empty(); m != wantM || e != wantE {
			t.Fatalf("tags %v tag %#x: match %012b empty %012b, want %012b %012b", b.tags, tag, m, e, wantM, wantE)
		}
	}
}

// TestPackedKey: the packed key orders endpoints as FlowKey.Canonical,
// hashes as FlowKey.Hash and unpacks to the canonical key, for IPv4,
// IPv6 and IPv4-mapped IPv6 addresses, mixed families and zones (never in
// one decoded IP header, still ordered as Compare), equal addresses and
// equal ports.
func TestPackedKey(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	addr := func() netip.Addr {
		switch r.IntN(4) {
		case 0:
			return netip.AddrFrom4([4]byte{10, 0, 0, byte(r.IntN(3))})
		case 1:
			return netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: 10, 15: byte(r.IntN(3))})
		case 2:
			return netip.AddrFrom16([16]byte{0: 0xfd, 15: byte(r.IntN(3))})
		}
		var b [16]byte
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return netip.AddrFrom16(b)
	}
	for range 100000 {
		k := packet.FlowKey{Src: addr(), Dst: addr(), SrcPort: uint16(r.IntN(3)), DstPort: uint16(r.IntN(3)), Proto: uint8(r.IntN(3)), VLAN: uint16(r.IntN(2))}
		if r.IntN(8) == 0 { // a zone: never in a decoded packet, still ordered as Compare
			k.Src = k.Src.WithZone("eth0")
		}
		c, swapped := k.Canonical()
		c.Src, c.Dst = c.Src.WithZone(""), c.Dst.WithZone("") // the packed key keeps none
		pk, pswapped := packFlowKey(k)
		if pswapped != swapped || pk.flowKey() != c || pk.hash() != k.Hash() {
			t.Fatalf("%v: packed %v swapped %v hash %x, want %v %v %x", k, pk.flowKey(), pswapped, pk.hash(), c, swapped, k.Hash())
		}
		if back, _ := packFlowKey(k.Reverse()); back != pk {
			t.Fatalf("%v: reverse packs to another key", k)
		}
	}
}
