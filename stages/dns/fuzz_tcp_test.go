package dns

import (
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/stages/flow"
	"github.com/pktpipe/pktpipe/stages/reassembly"
)

// FuzzTCP feeds a byte stream to one direction's reassembly, cut into
// segments and reordered, repeated or dropped as plan says, within a
// small budget: it must never panic, never hold more than the budget,
// and release everything at the end.
func FuzzTCP(f *testing.F) {
	q := mustHex(f, wwwQuery)
	r := mustHex(f, richResponse)
	stream := append(append([]byte{0, byte(len(q))}, q...), 0, byte(len(r)))
	stream = append(stream, r...)
	f.Add(stream, []byte{5, 30, 0x80 | 40, 200, 0x40 | 10, 3})
	f.Add(stream, []byte{1, 1, 1, 0x80 | 1, 255})
	f.Fuzz(func(t *testing.T, stream, plan []byte) {
		if len(plan) == 0 || len(plan) > 64 {
			return
		}
		a := New(nil, nil)
		budget := reassembly.NewBudget(int64(plan[0])*8+1, nil)
		a.SetBudget(budget)
		ch := make(chan *event.Batch, 1<<10)
		em := pipeline.NewEmitter(ch)
		var fl flow.Flow
		s := &state{}
		s.pend.Max = 8
		d := &s.tcp[0]
		d.syn(999)
		type sg struct {
			seq  uint32
			data []byte
		}
		var segs []sg
		off := 0
		for _, c := range plan[1:] {
			n := int(c&0x3f) + 1
			if off+n > len(stream) {
				n = len(stream) - off
			}
			segs = append(segs, sg{uint32(1000 + off), stream[off : off+n]})
			if c&0x40 != 0 { // retransmitted
				segs = append(segs, segs[len(segs)-1])
			}
			if c&0x80 != 0 && len(segs) > 1 { // swapped with the one before
				segs[len(segs)-1], segs[len(segs)-2] = segs[len(segs)-2], segs[len(segs)-1]
			}
			off += n
			if off == len(stream) {
				break
			}
		}
		p := &packet.Packet{}
		for i, g := range segs {
			if plan[0]&1 != 0 && i == 1 {
				continue // lost
			}
			a.segment(&fl, s, d, g.seq, g.data, p, em)
			if lim := budget.Limit(); budget.Used() > lim {
				t.Fatalf("budget %d used %d", lim, budget.Used())
			}
			for len(ch) > 0 {
				<-ch
			}
		}
		a.flush(&fl, s, d, em)
		d.reset(budget)
		if budget.Used() != 0 {
			t.Fatalf("%d bytes still held", budget.Used())
		}
	})
}
