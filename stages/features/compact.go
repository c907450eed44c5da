package features

import (
	"math"
	"math/bits"

	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/stages/flow"
)

// compact is a flow's features while every value fits a narrow field,
// which is most flows: 96 bytes (Go's size class; the state is 208). It
// keeps no packet or byte counts and no start time: those are the flow
// table's (Flow.Packets, Flow.Bytes, Flow.First), which count the same
// packets while the flow is in its first interval and not tunnelled. A
// flow starts compact only then, and without SPLT; a packet that does not
// fit (a size or gap past 65535, a PSH count past 65535, another flag's
// past 255) moves it to the wide state first (widen), where the same
// arithmetic carries on, so the output is the same either way.
type compact struct {
	biM2             float64
	psM2, piatM2     [2]float64
	first, last      [2]uint32 // ms after the flow's first packet (floor)
	minPS, maxPS     [2]uint16
	minPIAT, maxPIAT [2]uint16
	biMin, biMax     uint16
	psh              [2]uint16
	// rare counts the other flags by direction, at rareSlot of their
	// bit, and in slot noACK the TCP packets without ACK: ack_packets is
	// the packets less those.
	rare [2][7]uint8
}

const noACK = 6

// counts are the flow table's counters a compact state goes by, with
// the packet being added counted.
type counts struct {
	pkts, bytes [2]uint64
	first       int64 // the flow's first packet, ns
}

func countsOf(f *flow.Flow) counts {
	return counts{
		pkts:  [2]uint64{f.Packets(flow.ToServer), f.Packets(flow.ToClient)},
		bytes: [2]uint64{f.Bytes(flow.ToServer), f.Bytes(flow.ToClient)},
		first: f.First(),
	}
}

// rareSlot maps a flag bit (FIN 0 ... CWR 7) to its slot in rare; PSH
// and ACK have none.
var rareSlot = [8]uint8{0, 1, 2, 0xff, 0xff, 3, 4, 5}

// add counts a packet (the flow table has counted it already) and
// reports whether it fitted; if not, c is unchanged and the flow must be
// widened (with the counts before this packet) and the packet added there.
func (c *compact) add(k *counts, d flow.Dir, ts int64, size uint64, tcp bool, fl uint8) bool {
	d &= 1
	pkts := k.pkts[d] - 1 // before this packet
	total := k.pkts[0] + k.pkts[1] - 1
	if size > math.MaxUint16 {
		return false
	}
	var off, biGap, gap uint32
	if total > 0 {
		prev := max(c.last[0], c.last[1])
		off = max(sat32(floorMS(ts)-floorMS(k.first)), prev)
		biGap = off - prev
		if pkts > 0 {
			gap = off - c.last[d]
		}
		if max(biGap, gap) > math.MaxUint16 {
			return false
		}
	}
	r := &c.rare[d]
	if tcp {
		if fl&packet.TCPPsh != 0 && c.psh[d] == math.MaxUint16 {
			return false
		}
		if fl&packet.TCPAck == 0 && r[noACK] == math.MaxUint8 {
			return false
		}
		for x := fl &^ (packet.TCPPsh | packet.TCPAck); x != 0; x &= x - 1 {
			if r[rareSlot[bits.TrailingZeros8(x)]] == math.MaxUint8 {
				return false
			}
		}
	}
	// It fits: the same updates as state.add, in narrow fields.
	if total > 0 {
		if total == 1 || uint16(biGap) < c.biMin {
			c.biMin = uint16(biGap)
		}
		c.biMax = max(c.biMax, uint16(biGap))
		prev := off - biGap
		m2add(&c.biM2, float64(biGap), float64(prev), float64(off), total)
	}
	ps := uint16(size)
	if pkts == 0 {
		c.first[d], c.minPS[d], c.maxPS[d] = off, ps, ps
	} else {
		if pkts == 1 || uint16(gap) < c.minPIAT[d] {
			c.minPIAT[d] = uint16(gap)
		}
		c.maxPIAT[d] = max(c.maxPIAT[d], uint16(gap))
		m2add(&c.piatM2[d], float64(gap), float64(c.last[d]-c.first[d]), float64(off-c.first[d]), pkts)
		c.minPS[d] = min(c.minPS[d], ps)
		c.maxPS[d] = max(c.maxPS[d], ps)
	}
	c.last[d] = off
	b := k.bytes[d]
	m2add(&c.psM2[d], float64(size), float64(b-size), float64(b), pkts+1)
	if tcp {
		if fl&packet.TCPPsh != 0 {
			c.psh[d]++
		}
		if fl&packet.TCPAck == 0 {
			r[noACK]++
		}
		for x := fl &^ (packet.TCPPsh | packet.TCPAck); x != 0; x &= x - 1 {
			r[rareSlot[bits.TrailingZeros8(x)]]++
		}
	}
	return true
}

// replayFirst makes c, empty, what f's first packet (of size bytes)
// would have made it, from the flow table: a flow keeps no state for its
// first packet (Analyzer.Packet).
func (c *compact) replayFirst(f *flow.Flow, size uint64) bool {
	fd := f.FirstDir()
	k := counts{first: f.First()}
	k.pkts[fd], k.bytes[fd] = 1, size
	fl, _, _ := f.FirstTCP()
	return c.add(&k, fd, f.First(), size, f.Proto() == packet.ProtoTCP, fl)
}

// replay makes c, empty, what f's packets would have made it when they
// are its first and, in a handshake, the reply (from the flow table), and
// reports whether they fitted.
func (c *compact) replay(f *flow.Flow) bool {
	fd := f.FirstDir()
	if !c.replayFirst(f, f.Bytes(fd)) {
		return false
	}
	fl, _, _, ok := f.Reply()
	if !ok {
		return true
	}
	k := countsOf(f)
	return c.add(&k, fd^1, f.Last(), f.Bytes(fd^1), true, fl)
}

// widen writes c into s as the wide state would hold it after the
// packets c has counted: with remove set, the flow's latest packet (of
// size in direction d) is not among them.
func (c *compact) widen(s *state, k *counts, tcp, remove bool, d flow.Dir, size uint64) {
	*s = state{
		base: floorMS(k.first), biM2: c.biM2, first: c.first, last: c.last,
		biMin: uint32(c.biMin), biMax: uint32(c.biMax),
	}
	for i := range s.d {
		ds := &s.d[i]
		ds.pkts, ds.bytes = k.pkts[i], k.bytes[i]
		if remove && flow.Dir(i) == d&1 {
			ds.pkts--
			ds.bytes -= size
		}
		ds.minPS, ds.maxPS = uint32(c.minPS[i]), uint32(c.maxPS[i])
		ds.minPIAT, ds.maxPIAT = uint32(c.minPIAT[i]), uint32(c.maxPIAT[i])
		ds.psM2, ds.piatM2 = c.psM2[i], c.piatM2[i]
		if !tcp {
			continue
		}
		for b, slot := range rareSlot {
			if slot != 0xff {
				ds.flags[b] = uint32(c.rare[i][slot])
			}
		}
		ds.flags[3] = uint32(c.psh[i])
		ds.flags[4] = uint32(min(ds.pkts-uint64(c.rare[i][noACK]), math.MaxUint32))
	}
}
