package tlsfp

import (
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/stages/appproto"
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
	synFree []*synOnly
	app     appproto.Finder
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
	st := f.State(a.slot)
	tr, _ := st.(*Tracker)
	if tr == finished {
		return
	}
	m := &p.Meta
	if tr == nil {
		// No tracker before the first payload: a flow that never carries
		// any (a SYN flood, a scan) costs a synOnly, not a Tracker, and
		// nothing while its only SYN is its first packet (the flow table
		// holds that one's sequence number: firstSyn).
		syn, _ := st.(*synOnly)
		if len(p.Payload()) == 0 {
			if m.TCPFlags&tcpSYN != 0 {
				if _, _, bare := f.FirstTCP(); (bare && f.Packets(0)+f.Packets(1) == 1) || f.Handshake() {
					return // the first packet, or a handshake's reply: Engage
				}
				if syn == nil {
					syn = a.getSyn()
					syn.firstSyn(f)
					f.SetState(a.slot, syn)
				}
				syn.see(Dir(dir), m.Seq)
			}
			return
		}
		tr = a.get()
		if syn == nil {
			var first synOnly
			first.firstSyn(f)
			first.replay(tr)
		} else {
			syn.replay(tr)
			a.putSyn(syn)
		}
		f.SetState(a.slot, tr)
	}
	if tr.Segment(Dir(dir), m.Seq, m.TCPFlags, p.Payload(), p.Timestamp) {
		a.report(f, tr, p.Timestamp, p.Index, em)
		f.SetState(a.slot, finished)
		f.SkipPackets(a.slot)
	}
}

// Engage implements flow.Engager: the SYNs of a handshake, which kept no
// state.
func (a *Analyzer) Engage(f *flow.Flow) {
	rfl, seq, _, ok := f.Reply()
	if !ok || rfl&tcpSYN == 0 || f.State(a.slot) != nil {
		return // the first packet's alone stays in the flow table (firstSyn)
	}
	syn := a.getSyn()
	syn.firstSyn(f)
	syn.see(Dir(f.FirstDir()^1), seq)
	f.SetState(a.slot, syn)
}

// ICMPError implements flow.Analyzer (nothing to do).
func (a *Analyzer) ICMPError(*flow.Flow, *packet.Packet, *pipeline.Emitter) {}

// End implements flow.Analyzer: a handshake still open (one direction
// missing, or the flow cut short) is reported with what was seen, without
// pcap_cnt (no packet completed it; Suricata's flow-end records have none).
func (a *Analyzer) End(f *flow.Flow, _ *event.Flow, em *pipeline.Emitter) {
	switch st := f.State(a.slot).(type) {
	case *Tracker:
		if st != finished {
			a.report(f, st, f.Last(), 0, em)
		}
	case *synOnly:
		a.putSyn(st)
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
		e := tr.Event(h)
		e.AppProto = a.app.Of(f)
		em.Emit(e)
	}
	a.put(tr)
}

// tcpSYN is the SYN bit of the TCP flags.
const tcpSYN = 0x02

// synOnly is what a Tracker would learn from a flow's packets before its
// first payload: the first SYN's sequence number each way (stream.go's
// half.segment uses nothing else from a payloadless segment).
type synOnly struct {
	seq  [2]uint32
	seen [2]bool
}

// firstSyn sees f's first packet when it was a SYN without payload (the
// analyzer kept nothing for it).
func (s *synOnly) firstSyn(f *flow.Flow) {
	if fl, seq, bare := f.FirstTCP(); bare && fl&tcpSYN != 0 {
		s.see(Dir(f.FirstDir()), seq)
	}
}

func (s *synOnly) see(d Dir, seq uint32) {
	if d &= 1; !s.seen[d] {
		s.seen[d], s.seq[d] = true, seq
	}
}

// replay hands the remembered SYNs to a new tracker, in place of the
// segments themselves.
func (s *synOnly) replay(tr *Tracker) {
	for d := range Dir(2) {
		if s.seen[d] {
			tr.Segment(d, s.seq[d], tcpSYN, nil, 0)
		}
	}
}

func (a *Analyzer) getSyn() *synOnly {
	if n := len(a.synFree); n > 0 {
		s := a.synFree[n-1]
		a.synFree = a.synFree[:n-1]
		return s
	}
	return new(synOnly)
}

func (a *Analyzer) putSyn(s *synOnly) {
	*s = synOnly{}
	if len(a.synFree) < maxFree {
		a.synFree = append(a.synFree, s)
	}
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
