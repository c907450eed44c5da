package tlsfp

import (
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/stages/flow"
	"github.com/pktpipe/pktpipe/stages/reassembly"
)

// Analyzer runs a Tracker on every TCP flow of a stages/flow Processor
// and emits one tls event per flow that carried a hello: as soon as the
// handshake is read, or when the flow ends. One per worker.
type Analyzer struct {
	slot    int
	scratch Scratch
	free    []*Tracker // trackers to reuse, so a flow costs no allocation
}

// maxFree caps the trackers kept for reuse.
const maxFree = 1024

// finished marks a flow whose handshake has been reported (or that is not
// TLS): a pointer in the state slot does not allocate.
var finished = new(Tracker)

// Config configures an Analyzer.
type Config struct {
	// Budget bounds this worker's reassembly buffers, shared with its
	// other analyzers (nil: unlimited).
	Budget *reassembly.Budget
}

// New returns an analyzer for one worker's flow.Processor.
func New(cfg Config) *Analyzer {
	a := &Analyzer{}
	a.scratch.bufs.bud = cfg.Budget
	return a
}

// NewAnalyzer returns an analyzer without a reassembly budget.
func NewAnalyzer() *Analyzer { return New(Config{}) }

// SetSlot implements flow.SlotUser.
func (a *Analyzer) SetSlot(slot int) { a.slot = slot }

// Packet implements flow.Analyzer. A flow that is not TCP, or whose
// handshake has been reported, asks the flow table to skip this analyzer
// for its further packets.
func (a *Analyzer) Packet(f *flow.Flow, p *packet.Packet, dir flow.Dir, em *pipeline.Emitter) {
	if f.Proto() != packet.ProtoTCP {
		f.SkipPackets(a.slot)
		return
	}
	tr, _ := f.State(a.slot).(*Tracker)
	if tr == finished {
		return
	}
	if tr == nil {
		tr = a.get()
		f.SetState(a.slot, tr)
	}
	m := &p.Meta
	if tr.Segment(Dir(dir), m.Seq, m.TCPFlags, p.Payload(), p.Timestamp) {
		a.report(f, tr, p.Timestamp, p.Index, em)
		f.SetState(a.slot, finished)
		f.SkipPackets(a.slot)
	}
}

// ICMPError implements flow.Analyzer (nothing to do).
func (a *Analyzer) ICMPError(*flow.Flow, *packet.Packet, *pipeline.Emitter) {}

// End implements flow.Analyzer: a handshake still open (one direction
// missing, or the flow cut short) is reported with what was seen, without
// pcap_cnt (no packet completed it; Suricata's flow-end records have none).
func (a *Analyzer) End(f *flow.Flow, _ *event.Flow, em *pipeline.Emitter) {
	if tr, _ := f.State(a.slot).(*Tracker); tr != nil && tr != finished {
		a.report(f, tr, f.Last(), 0, em)
	}
	f.SetState(a.slot, nil)
}

// report emits the handshake's event, stamped with ts and the Index of the
// packet that completed it (0: none).
func (a *Analyzer) report(f *flow.Flow, tr *Tracker, ts int64, idx uint64, em *pipeline.Emitter) {
	if tr.HasHandshake() {
		var h event.Header
		f.FillHeader(&h, ts)
		h.PcapCnt = idx
		em.Emit(tr.Event(h))
	}
	a.put(tr)
}

func (a *Analyzer) get() *Tracker {
	if n := len(a.free); n > 0 {
		tr := a.free[n-1]
		a.free = a.free[:n-1]
		return tr
	}
	return &Tracker{Scratch: &a.scratch}
}

func (a *Analyzer) put(tr *Tracker) {
	tr.Release()
	*tr = Tracker{Scratch: &a.scratch}
	if len(a.free) < maxFree {
		a.free = append(a.free, tr)
	}
}
