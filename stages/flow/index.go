package flow

import (
	"encoding/binary"
	"math/bits"
)

// The table's index: open addressing over cache-line buckets, each holding
// the entry indices of up to bucketSlots flows and one tag byte per slot
// (7 bits of the flow's hash, top bit set; 0 = empty). A lookup reads its
// home bucket's line, compares the tags eight at a time (SWAR), and reads
// only the entries whose tag matches: a miss almost never touches an
// entry, and a hit touches one. A bucket that was full when an insertion
// passed it counts that in over; a lookup goes on to the next bucket only
// while over is not zero, and a removal gives back the counts its
// insertion took, so there are no tombstones and probes stay short however
// long the table churns.
//
// Buckets are picked by the hash's middle bits: the engine gives a worker
// the flows with hash % workers == i (low bits) and a --shard process the
// flows of one range of hash (top bits), so those bits are the same for
// all the flows of one table.

const bucketSlots = 12

type bucket struct {
	tags [bucketSlots]uint8
	over uint32 // entries stored beyond this bucket whose probe passed it
	idx  [bucketSlots]int32
}

type index struct {
	b     []bucket
	shift uint // the bucket number is (h << 16) >> shift
}

// newIndex sizes the index for maxFlows entries: at most 2/3 of the slots are
// ever used.
func newIndex(maxFlows int) index {
	n := 1 << bits.Len(uint(max(1, (maxFlows+7)/8)-1))
	return index{b: make([]bucket, n), shift: uint(64 - bits.Len(uint(n-1)))}
}

func (x *index) home(h uint64) uint64 { return (h << 16) >> x.shift }

func (x *index) next(pos uint64) uint64 { return (pos + 1) & uint64(len(x.b)-1) }

func tagOf(h uint64) uint8 { return uint8(h>>8) | 0x80 }

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
	low = 0x7f7f7f7f7f7f7f7f
)

// zeroBytes has the top bit of each byte of w that is zero set (exactly:
// no borrow crosses bytes).
func zeroBytes(w uint64) uint64 { return ^(((w & low) + low) | w) & msb }

// gather moves the top bit of each byte of w (other bits clear) to bit i
// of the result for byte i.
func gather(w uint64) uint32 { return uint32(((w >> 7) * 0x0102040810204080) >> 56) }

// match returns a bit per slot of b whose tag is tag.
func (b *bucket) match(tag uint8) uint32 {
	t := lsb * uint64(tag)
	lo := binary.LittleEndian.Uint64(b.tags[0:8]) ^ t
	hi := uint64(binary.LittleEndian.Uint32(b.tags[8:12])) ^ t&0xffffffff
	return gather(zeroBytes(lo)) | gather(zeroBytes(hi)&0x80808080)<<8
}

// empty returns a bit per empty slot of b.
func (b *bucket) empty() uint32 {
	lo := binary.LittleEndian.Uint64(b.tags[0:8])
	hi := uint64(binary.LittleEndian.Uint32(b.tags[8:12]))
	return gather(^lo&msb) | gather(^hi&0x80808080)<<8
}

// insert adds entry i with hash h. The index always has a free slot.
func (x *index) insert(i int32, h uint64) {
	tag := tagOf(h)
	for pos := x.home(h); ; pos = x.next(pos) {
		b := &x.b[pos]
		if e := b.empty(); e != 0 {
			s := bits.TrailingZeros32(e)
			b.tags[s], b.idx[s] = tag, i
			return
		}
		b.over++
	}
}

// remove takes entry i with hash h out of the index.
func (x *index) remove(i int32, h uint64) {
	tag := tagOf(h)
	for pos := x.home(h); ; pos = x.next(pos) {
		b := &x.b[pos]
		for m := b.match(tag); m != 0; m &= m - 1 {
			if s := bits.TrailingZeros32(m); b.idx[s] == i {
				b.tags[s] = 0
				return
			}
		}
		b.over--
	}
}
