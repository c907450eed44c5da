package quic

import (
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/appproto"
	"github.com/pktpipe/pktpipe/stages/flow"
	"github.com/pktpipe/pktpipe/stages/reassembly"
)

// Analyzer runs a Tracker on every UDP flow whose first datagram looks
// like a QUIC Initial, inside a stages/flow Processor. It emits a quic
// event when the client's hello is read and another when the server's is,
// and adds a quic summary to the flow record. One per worker.
type Analyzer struct {
	slot int
	w    Worker
	free []*Tracker // trackers to reuse, so a connection costs no buffers
	app  appproto.Finder

	hellos, gaveUp, undecryptable *stats.Counter
}

// maxFree caps the trackers kept for reuse.
const maxFree = 256

// notQUIC marks a UDP flow whose first datagram was not a QUIC Initial:
// a pointer in the state slot does not allocate, and later packets cost
// one type assertion.
var notQUIC = new(Tracker)

// Config configures an Analyzer.
type Config struct {
	Stats *stats.Registry // optional
	// Budget bounds this worker's CRYPTO reassembly buffers, shared with
	// its other analyzers (nil: unlimited).
	Budget *reassembly.Budget
}

// New returns an analyzer for one worker's flow.Processor.
func New(cfg Config) *Analyzer {
	a := &Analyzer{w: Worker{Budget: cfg.Budget}}
	if r := cfg.Stats; r != nil {
		a.hellos = r.Counter("pktpipe_quic_client_hellos_total", "QUIC ClientHellos decrypted and reassembled from Initial packets.")
		a.gaveUp = r.Counter("pktpipe_quic_gave_up_total", "QUIC connections abandoned: reassembly cap, too many fragments or packets without a complete hello, or undecryptable Initials.")
		a.undecryptable = r.Counter("pktpipe_quic_undecryptable_total", "QUIC Initial packets that did not authenticate with the derived Initial keys.")
	}
	return a
}

// SetSlot implements flow.SlotUser.
func (a *Analyzer) SetSlot(slot int) { a.slot = slot }

// Packet implements flow.Analyzer.
func (a *Analyzer) Packet(f *flow.Flow, p *packet.Packet, dir flow.Dir, em *pipeline.Emitter) {
	if f.Proto() != packet.ProtoUDP {
		f.SkipPackets(a.slot) // a flow keeps its protocol
		return
	}
	tr, _ := f.State(a.slot).(*Tracker)
	if tr == notQUIC {
		return
	}
	payload := p.Payload()
	if tr == nil {
		if dir != flow.ToServer || !Plausible(payload) {
			// Not QUIC: no more of its packets, and no state where
			// skipping does it (slots past 32 are not skipped).
			if a.slot < 32 {
				f.SkipPackets(a.slot)
			} else {
				f.SetState(a.slot, notQUIC)
			}
			return
		}
		tr = a.get()
		f.SetState(a.slot, tr)
	}
	if tr.Done() || len(payload) == 0 {
		return
	}
	client, server := tr.Datagram(Dir(dir), payload)
	if client || server {
		var h event.Header
		f.FillHeader(&h, p.Timestamp)
		h.PcapCnt = p.Index
		app := a.app.Of(f)
		if client {
			if a.hellos != nil {
				a.hellos.Inc()
			}
			e := tr.ClientEvent(h)
			e.AppProto = app
			em.Emit(e)
		}
		if server {
			e := tr.ServerEvent(h)
			e.AppProto = app
			em.Emit(e)
		}
	}
}

// ICMPError implements flow.Analyzer (nothing to do).
func (a *Analyzer) ICMPError(*flow.Flow, *packet.Packet, *pipeline.Emitter) {}

// End implements flow.Analyzer: the flow record gets the quic summary.
func (a *Analyzer) End(f *flow.Flow, rec *event.Flow, _ *pipeline.Emitter) {
	if tr, _ := f.State(a.slot).(*Tracker); tr != nil && tr != notQUIC {
		rec.Extra = append(rec.Extra, tr.Summary())
		if a.gaveUp != nil && tr.GaveUp && tr.Client == nil {
			a.gaveUp.Inc()
		}
		if a.undecryptable != nil && tr.Undecryptable > 0 {
			a.undecryptable.Add(tr.Undecryptable)
		}
		a.put(tr)
	}
	f.SetState(a.slot, nil)
}

func (a *Analyzer) get() *Tracker {
	if n := len(a.free); n > 0 {
		tr := a.free[n-1]
		a.free = a.free[:n-1]
		return tr
	}
	return &Tracker{Worker: &a.w}
}

func (a *Analyzer) put(tr *Tracker) {
	tr.Reset()
	if len(a.free) < maxFree {
		a.free = append(a.free, tr)
	}
}
