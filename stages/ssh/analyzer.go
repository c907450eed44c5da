// Package ssh reads the start of SSH connections on any TCP port: each
// side's identification banner (proto_version, software_version) and its
// KEXINIT, from which it computes HASSH (client) and HASSHServer
// (salesforce's HASSH, BSD-3: the MD5 of the key exchange, encryption,
// MAC and compression algorithms the side offers, ";"-joined). It writes
// one event_type "ssh" record per connection, Suricata's ssh object.
//
// # Cost and bounds
//
// A direction is looked at from its first payload byte: unless it starts
// with "SSH-" it is not SSH and nothing is kept (a sentinel in the flow's
// state slot, no allocation). When both directions are decided the flow's
// skip bit is set, so a non-SSH flow costs two prefix checks. An SSH
// direction is reassembled in sequence order (at most maxPending
// out-of-order segments held) until its KEXINIT is complete, in a buffer
// of at most MaxBuffer bytes accounted in the worker's reassembly budget
// (env.Reassembly, as stages/tlsfp); a KEXINIT larger than that, or a
// buffer the budget takes back, ends that direction without a HASSH
// (pktpipe_ssh_truncated_total). After both KEXINITs (or at flow end, with
// what was read) the event is written and the buffers are released.
package ssh

import (
	"bytes"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/appproto"
	"github.com/pktpipe/pktpipe/stages/flow"
	"github.com/pktpipe/pktpipe/stages/reassembly"
)

const (
	// MaxBuffer caps the bytes held per direction: banner lines and the
	// KEXINIT packet (OpenSSH's are about 1.5 KiB).
	MaxBuffer  = 16 << 10
	maxPending = 4    // out-of-order segments held per direction
	maxLines   = 16   // text lines a server may send before its banner
	maxLine    = 1024 // longest banner line looked for (RFC 4253: 255)
	maxFree    = 64   // idle trackers kept for reuse
)

// Direction states.
const (
	stBanner = iota // waiting for the identification line
	stPacket        // waiting for the KEXINIT packet
	stDone
)

type pendSeg struct {
	seq  uint32
	data []byte
}

type half struct {
	held      reassembly.Holder
	st        uint8
	started   bool
	data      bool // payload was seen (SYNs no longer move the start)
	gaveUp    bool
	lines     int
	next      uint32
	buf       []byte
	pend      []pendSeg
	pendBytes int
	host      event.SSHHost
}

// tracker is one SSH flow's state.
type tracker struct {
	a *Analyzer
	d [2]half
	// The last packet seen: what a report at flow end carries.
	lastTS  int64
	lastIdx uint64
}

// Sentinels for flows found not to be SSH, by the directions decided.
var notTS, notTC = new(tracker), new(tracker)

// Analyzer is one worker's SSH analyzer (a flow.Analyzer).
type Analyzer struct {
	slot   int
	budget *reassembly.Budget
	free   []*tracker
	app    appproto.Finder

	events, truncated *stats.Counter
}

var _ flow.Analyzer = (*Analyzer)(nil)

// New returns an analyzer whose buffers are accounted in budget (nil:
// no shared bound beyond MaxBuffer) and whose counters go to reg.
func New(budget *reassembly.Budget, reg *stats.Registry) *Analyzer {
	if reg == nil {
		reg = stats.NewRegistry()
	}
	return &Analyzer{
		budget:    budget,
		events:    reg.Counter("pktpipe_ssh_events_total", "SSH connections reported (event_type ssh)."),
		truncated: reg.Counter("pktpipe_ssh_truncated_total", "SSH directions given up at a cap: a banner line over 1 KiB, a KEXINIT larger than the per-direction buffer, too many out-of-order segments, or the reassembly budget took the buffer back."),
	}
}

// SetSlot implements flow.SlotUser.
func (a *Analyzer) SetSlot(i int) { a.slot = i }

var sshPrefix = []byte("SSH-")

// Packet implements flow.Analyzer.
func (a *Analyzer) Packet(f *flow.Flow, p *packet.Packet, dir flow.Dir, em *pipeline.Emitter) {
	m := &p.Meta
	if m.Proto != packet.ProtoTCP {
		f.SkipPackets(a.slot)
		return
	}
	payload := p.Payload()
	cur := f.State(a.slot)
	tr, _ := cur.(*tracker)
	if tr == nil || tr == notTS || tr == notTC {
		if len(payload) == 0 {
			return
		}
		// The first payload of a direction: SSH starts with its banner
		// (a server may send other lines first: then it is missed).
		if (tr == notTS && dir == flow.ToServer) || (tr == notTC && dir == flow.ToClient) {
			return
		}
		if !bytes.HasPrefix(payload, sshPrefix[:min(len(payload), 4)]) {
			switch {
			case tr != nil: // the other direction was not SSH either
				f.SkipPackets(a.slot)
			case dir == flow.ToServer:
				f.SetState(a.slot, notTS)
			default:
				f.SetState(a.slot, notTC)
			}
			return
		}
		other := tr
		tr = a.get()
		if other != nil {
			od := flow.ToClient
			if other == notTS {
				od = flow.ToServer
			}
			tr.d[od].st = stDone
		}
		f.SetState(a.slot, tr)
	}
	tr.lastTS, tr.lastIdx = p.Timestamp, p.Index
	h := &tr.d[dir&1]
	if h.st == stDone {
		return
	}
	tr.segment(h, dir == flow.ToServer, m.Seq, m.TCPFlags, payload)
	if tr.d[0].st == stDone && tr.d[1].st == stDone {
		a.report(f, tr, p.Timestamp, p.Index, em)
		f.SetState(a.slot, notTS) // any non-tracker value: nothing left to do
		f.SkipPackets(a.slot)
	}
}

// ICMPError implements flow.Analyzer.
func (a *Analyzer) ICMPError(*flow.Flow, *packet.Packet, *pipeline.Emitter) {}

// End implements flow.Analyzer: a handshake not complete is reported with
// what was read, with the time and pcap_cnt of the flow's last packet
// (the tracker sees every packet until it reports).
func (a *Analyzer) End(f *flow.Flow, _ *event.Flow, em *pipeline.Emitter) {
	if tr, _ := f.State(a.slot).(*tracker); tr != nil && tr != notTS && tr != notTC {
		a.report(f, tr, tr.lastTS, tr.lastIdx, em)
	}
	f.SetState(a.slot, nil)
}

func (a *Analyzer) report(f *flow.Flow, tr *tracker, ts int64, idx uint64, em *pipeline.Emitter) {
	c, s := &tr.d[flow.ToServer], &tr.d[flow.ToClient]
	if c.host.ProtoVersion != "" || s.host.ProtoVersion != "" {
		ev := &event.SSH{Client: c.host, Server: s.host}
		f.FillHeader(&ev.Header, ts)
		ev.AppProto = a.app.Of(f)
		ev.PcapCnt = idx
		em.Emit(ev)
		a.events.Inc()
	}
	a.put(tr)
}

func (a *Analyzer) get() *tracker {
	if n := len(a.free); n > 0 {
		tr := a.free[n-1]
		a.free = a.free[:n-1]
		return tr
	}
	return &tracker{a: a}
}

func (a *Analyzer) put(tr *tracker) {
	for i := range tr.d {
		tr.release(&tr.d[i])
		buf := tr.d[i].buf[:0]
		if cap(buf) > 4<<10 {
			buf = nil // keep only small buffers for reuse
		}
		tr.d[i] = half{buf: buf}
	}
	if len(a.free) < maxFree {
		a.free = append(a.free, tr)
	}
}

// release returns a direction's bytes to the budget (the buffer's
// capacity stays for reuse, outside the budget, only on idle trackers).
func (t *tracker) release(h *half) {
	t.a.budget.Release(&h.held)
	h.pend, h.pendBytes = nil, 0
}

// GiveUp implements reassembly.Owner: the budget took a direction's
// buffer back; that direction ends without its KEXINIT.
func (t *tracker) GiveUp(hd *reassembly.Holder) {
	for i := range t.d {
		h := &t.d[i]
		if &h.held == hd && h.st != stDone {
			h.buf, h.pend, h.pendBytes = nil, nil, 0
			h.st, h.gaveUp = stDone, true
			t.a.truncated.Inc()
		}
	}
}

// account sets what h holds in the budget; false: refused, h is done.
func (t *tracker) account(h *half, n int) bool {
	if t.a.budget.Resize(&h.held, t, int64(n)) {
		return true
	}
	t.finish(h, true)
	return false
}

// finish ends a direction, dropping its buffers.
func (t *tracker) finish(h *half, truncated bool) {
	h.st = stDone
	if truncated {
		h.gaveUp = true
		t.a.truncated.Inc()
	}
	t.release(h)
	h.buf = h.buf[:0]
}

// segment takes one TCP segment of a direction.
func (t *tracker) segment(h *half, client bool, seq uint32, flags uint8, payload []byte) {
	if flags&packet.TCPSyn != 0 {
		// The latest SYN before any payload sets the start: a client may
		// retry with another initial sequence number.
		if !h.data {
			h.started, h.next = true, seq+1
		}
		seq++
	}
	if len(payload) == 0 {
		return
	}
	if !h.started {
		h.started, h.next = true, seq
	}
	h.data = true
	off := int32(seq - h.next)
	if off > 0 {
		t.hold(h, seq, payload)
		return
	}
	if int(-off) >= len(payload) {
		return // retransmitted bytes
	}
	t.take(h, client, payload[-off:])
	// Held segments that now join the in-order edge.
	for again := true; again && h.st != stDone; {
		again = false
		for i := 0; i < len(h.pend); i++ {
			ps := h.pend[i]
			d := int32(ps.seq - h.next)
			if d > 0 {
				continue
			}
			h.pend = append(h.pend[:i], h.pend[i+1:]...)
			h.pendBytes -= len(ps.data)
			i--
			if int(-d) < len(ps.data) {
				t.take(h, client, ps.data[-d:])
				again = true
				if h.st == stDone {
					break
				}
			}
		}
	}
	if h.st != stDone {
		t.account(h, cap(h.buf)+h.pendBytes)
	}
}

// hold keeps a copy of a segment that arrived ahead of a gap.
func (t *tracker) hold(h *half, seq uint32, payload []byte) {
	if len(h.pend) >= maxPending || len(h.buf)+h.pendBytes+len(payload) > MaxBuffer {
		t.finish(h, true)
		return
	}
	if !t.account(h, cap(h.buf)+h.pendBytes+len(payload)) {
		return
	}
	h.pend = append(h.pend, pendSeg{seq, append([]byte(nil), payload...)})
	h.pendBytes += len(payload)
}

// take appends in-order bytes and parses what is complete.
func (t *tracker) take(h *half, client bool, b []byte) {
	h.next += uint32(len(b))
	if len(h.buf)+len(b) > MaxBuffer {
		b = b[:MaxBuffer-len(h.buf)]
	}
	if len(h.buf)+len(b) > cap(h.buf) {
		want := max(2*cap(h.buf), len(h.buf)+len(b), 512)
		want = min(want, MaxBuffer)
		if !t.account(h, want+h.pendBytes) {
			return
		}
		nb := make([]byte, len(h.buf), want)
		copy(nb, h.buf)
		h.buf = nb
	}
	h.buf = append(h.buf, b...)
	used := t.parse(h, client, h.buf)
	if h.st == stDone {
		return
	}
	n := copy(h.buf, h.buf[used:])
	h.buf = h.buf[:n]
	if n == MaxBuffer {
		t.finish(h, true) // a KEXINIT or a line larger than the buffer
	}
}

// parse consumes banner lines and the KEXINIT packet from b, returning the
// bytes used.
func (t *tracker) parse(h *half, client bool, b []byte) int {
	used := 0
	for h.st != stDone {
		r := b[used:]
		switch h.st {
		case stBanner:
			i := bytes.IndexByte(r, '\n')
			if i < 0 {
				if len(r) > maxLine {
					t.finish(h, true) // a line longer than a banner can be: counted
				}
				return used
			}
			line := bytes.TrimRight(r[:i], "\r")
			used += i + 1
			if proto, sw, ok := parseBanner(line); ok {
				h.host.ProtoVersion, h.host.SoftwareVersion = proto, sw
				h.st = stPacket
				if proto != "2.0" && proto != "1.99" {
					t.finish(h, false) // SSH-1: no KEXINIT
				}
				continue
			}
			// Only a server may send lines before its banner.
			if h.lines++; client || h.lines > maxLines {
				t.finish(h, false)
			}
		case stPacket:
			if len(r) < 6 {
				return used
			}
			plen := int(r[0])<<24 | int(r[1])<<16 | int(r[2])<<8 | int(r[3])
			pad := int(r[4])
			if plen < 2 || plen+4 > MaxBuffer || pad >= plen {
				t.finish(h, plen+4 > MaxBuffer)
				return used
			}
			if len(r) < plen+4 {
				return used
			}
			if k, ok := parseKexInit(r[5 : 4+plen-pad]); ok {
				h.host.HASSH, h.host.HASSHString = k.hassh(client)
			}
			used += plen + 4
			t.finish(h, false)
		}
	}
	return used
}
