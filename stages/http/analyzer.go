// Package http reads HTTP/1.x on any TCP port and writes one event_type
// "http" record per transaction (Suricata's http object: hostname, url,
// http_user_agent, http_method, protocol, status, length, ...).
//
// # Parsing
//
// A direction is parsed when its first payload looks like HTTP (a request
// method to the server, "HTTP/" to the client: appproto.IsHTTP); a flow
// whose directions both do not costs two prefix checks and then has its
// skip bit set. Each direction is reassembled in sequence order (at most
// maxPending out-of-order segments held, copies accounted in the worker's
// reassembly budget) and fed to a message parser: start line and headers
// are buffered only while incomplete (at most MaxHeaderBytes; the common
// case of a header block within one segment is parsed in place), bodies
// are skipped by Content-Length or chunked framing and counted, never
// buffered. A response without either runs to the end of the connection.
//
// Requests are queued (pipelining, at most maxQueue unanswered) and each
// response is paired with the oldest; interim 1xx responses are skipped.
// The transaction's event is written when its response is complete (its
// body skipped: "length" is the body's size), or at the flow's end for an
// unanswered request or a response cut short. A 101 (protocol switch) or
// a 2xx to CONNECT ends parsing of the flow: what follows is not HTTP/1.
//
// # Caps (pktpipe_http_caps_total{cap})
//
//   - header_bytes: a start line plus headers (or a chunk-size or trailer
//     line) over MaxHeaderBytes: the direction is given up.
//   - header_count: more than MaxHeaders header lines: the rest are
//     ignored.
//   - pipeline: more than maxQueue unanswered requests: the flow is given
//     up (its queued requests are still reported).
//   - reassembly: more than maxPending out-of-order segments, or the
//     budget took the buffer back: the direction is given up.
package http

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
	maxPending = 8  // out-of-order segments held per direction
	maxQueue   = 32 // unanswered requests per flow
	maxFree    = 64 // idle trackers kept for reuse
	maxLine    = 1024
)

// Caps, for the counter's label.
const (
	capHeaderBytes = iota
	capHeaderCount
	capPipeline
	capReassembly
	nCaps
)

var capNames = [nCaps]string{"header_bytes", "header_count", "pipeline", "reassembly"}

type pendSeg struct {
	seq  uint32
	data []byte
}

// half is one direction: reassembly and message parser.
type half struct {
	held      reassembly.Holder
	started   bool
	data      bool // payload was seen (SYNs no longer move the start)
	fin       bool // a FIN was seen: its sequence number is acknowledged too
	next      uint32
	pend      []pendSeg
	pendBytes int

	st      uint8
	rem     int64  // body or chunk bytes left
	buf     []byte // an incomplete header block or line
	scanned int    // bytes of buf already searched for the block's end
}

// tx is one transaction being built.
// tx is one transaction being built; its event is emitted as &x.ev (one
// allocation for both).
type tx struct {
	ev     event.HTTP
	method string
}

type tracker struct {
	a      *Analyzer
	d      [2]half
	queue  []*tx // requests not yet answered, oldest first
	resp   *tx   // the transaction whose response body is being read
	nextID uint64
	// The last packet seen: what the events written at flow end carry.
	lastTS  int64
	lastIdx uint64
	f       *flow.Flow
	em      *pipeline.Emitter
	ts      int64
	idx     uint64
	scr     head
}

var notTS, notTC = new(tracker), new(tracker)

// Analyzer is one worker's HTTP/1.x analyzer (a flow.Analyzer).
type Analyzer struct {
	slot   int
	budget *reassembly.Budget
	free   []*tracker
	app    appproto.Finder

	txs  *stats.Counter
	caps [nCaps]*stats.Counter
	out  []*event.HTTP // events of trackers driven without a flow (tests)
}

var _ flow.Analyzer = (*Analyzer)(nil)

// New returns an analyzer whose buffers are accounted in budget (nil: no
// shared bound) and whose counters go to reg.
func New(budget *reassembly.Budget, reg *stats.Registry) *Analyzer {
	if reg == nil {
		reg = stats.NewRegistry()
	}
	a := &Analyzer{budget: budget,
		txs: reg.Counter("pktpipe_http_transactions_total", "HTTP/1.x transactions reported (event_type http)."),
	}
	for i := range a.caps {
		a.caps[i] = reg.Counter("pktpipe_http_caps_total", "HTTP/1.x parsing stopped or trimmed at a cap, by cap.", "cap", capNames[i])
	}
	return a
}

// SetSlot implements flow.SlotUser.
func (a *Analyzer) SetSlot(i int) { a.slot = i }

// Packet implements flow.Analyzer.
func (a *Analyzer) Packet(f *flow.Flow, p *packet.Packet, dir flow.Dir, em *pipeline.Emitter) {
	m := &p.Meta
	if m.Proto != packet.ProtoTCP {
		f.SkipPackets(a.slot)
		return
	}
	payload := p.Payload()
	tr, _ := f.State(a.slot).(*tracker)
	if tr == nil || tr == notTS || tr == notTC {
		if len(payload) == 0 {
			return
		}
		if (tr == notTS && dir == flow.ToServer) || (tr == notTC && dir == flow.ToClient) {
			return
		}
		if appproto.IsHTTP(payload, dir == flow.ToServer) == appproto.NoMatch {
			switch {
			case tr != nil:
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
			tr.d[od].st = stDead
		}
		f.SetState(a.slot, tr)
	}
	tr.lastTS, tr.lastIdx = p.Timestamp, p.Index
	h := &tr.d[dir&1]
	if h.st == stDead {
		return
	}
	tr.f, tr.em, tr.ts, tr.idx = f, em, p.Timestamp, p.Index
	if m.TCPFlags&packet.TCPAck != 0 {
		tr.acked(&tr.d[(dir^1)&1], dir^1, m.Ack)
	}
	tr.segment(h, dir, m.Seq, m.TCPFlags, payload)
	tr.em = nil
	if tr.d[0].st == stDead && tr.d[1].st == stDead {
		tr.flush(f, em)
		a.put(tr)
		f.SetState(a.slot, notTS)
		f.SkipPackets(a.slot)
	}
}

// ICMPError implements flow.Analyzer.
func (a *Analyzer) ICMPError(*flow.Flow, *packet.Packet, *pipeline.Emitter) {}

// End implements flow.Analyzer: a response read to the connection's end,
// a response cut short and unanswered requests are reported.
func (a *Analyzer) End(f *flow.Flow, _ *event.Flow, em *pipeline.Emitter) {
	if tr, _ := f.State(a.slot).(*tracker); tr != nil && tr != notTS && tr != notTC {
		tr.flush(f, em)
		a.put(tr)
	}
	f.SetState(a.slot, nil)
}

// flush emits what is left: the response being read, then the queue.
//
// They carry the time and pcap_cnt of the last packet the tracker saw,
// the flow's last (it sees every packet until both directions are given
// up): as Suricata, which writes them when it handles the stream's end.
func (t *tracker) flush(f *flow.Flow, em *pipeline.Emitter) {
	t.f, t.em, t.ts, t.idx = f, em, t.lastTS, t.lastIdx
	// A request line never ended (HTTP/0.9 "GET /" with no line end, or
	// headers cut short): reported if its start line reads.
	if h := &t.d[0]; h.st == stHeaders && len(h.buf) > 0 && len(t.queue) < maxQueue {
		if parseHead(h.buf, true, &t.scr) {
			x := t.newTx()
			t.fillRequest(x, &t.scr)
			t.queue = append(t.queue, x)
		}
	}
	if t.resp != nil {
		t.emit(t.resp)
		t.resp = nil
	}
	for _, x := range t.queue {
		t.emit(x)
	}
	t.queue = t.queue[:0]
	t.em = nil
}

func (t *tracker) emit(x *tx) {
	t.a.txs.Inc()
	if t.em == nil { // a tracker driven without a flow (tests)
		t.a.out = append(t.a.out, &x.ev)
		return
	}
	t.f.FillHeader(&x.ev.Header, t.ts)
	x.ev.PcapCnt = t.idx
	x.ev.AppProto = t.a.app.Of(t.f)
	t.em.Emit(&x.ev)
}

func (a *Analyzer) get() *tracker {
	if n := len(a.free); n > 0 {
		tr := a.free[n-1]
		a.free = a.free[:n-1]
		return tr
	}
	return &tracker{a: a}
}

func (a *Analyzer) put(t *tracker) {
	for i := range t.d {
		h := &t.d[i]
		a.budget.Release(&h.held)
		buf := h.buf[:0]
		if cap(buf) > 4<<10 {
			buf = nil
		}
		t.d[i] = half{buf: buf}
	}
	q := t.queue[:0]
	*t = tracker{a: a, queue: q}
	if len(a.free) < maxFree {
		a.free = append(a.free, t)
	}
}

// GiveUp implements reassembly.Owner.
func (t *tracker) GiveUp(hd *reassembly.Holder) {
	for i := range t.d {
		h := &t.d[i]
		if &h.held == hd && h.st != stDead {
			h.buf, h.pend, h.pendBytes = nil, nil, 0
			h.st = stDead
			t.a.caps[capReassembly].Inc()
		}
	}
}

func (t *tracker) account(h *half) bool {
	if t.a.budget.Resize(&h.held, t, int64(cap(h.buf)+h.pendBytes)) {
		return true
	}
	t.dead(h, capReassembly)
	return false
}

// dead stops parsing a direction (counting the cap, if one).
func (t *tracker) dead(h *half, c int) {
	if h.st == stDead {
		return
	}
	h.st = stDead
	if c >= 0 {
		t.a.caps[c].Inc()
	}
	h.buf, h.pend, h.pendBytes = h.buf[:0], nil, 0
	t.a.budget.Release(&h.held)
}

// segment takes one TCP segment of a direction, in sequence order.
func (t *tracker) segment(h *half, dir flow.Dir, seq uint32, flags uint8, payload []byte) {
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
		if len(h.pend) >= maxPending {
			t.dead(h, capReassembly)
			return
		}
		h.pendBytes += len(payload)
		h.pend = append(h.pend, pendSeg{seq, append([]byte(nil), payload...)})
		t.account(h)
		return
	}
	if int(-off) >= len(payload) {
		return
	}
	if flags&packet.TCPFin != 0 {
		h.fin = true
	}
	t.take(h, dir, payload[-off:])
	t.drain(h, dir)
}

// acked handles the peer's acknowledgment of a direction: bytes it
// acknowledges that were never seen (lost by the capture) are a gap, as
// Suricata reads them: the parser skips them (a body goes on, anything
// else waits for the next message) and held segments after it are read.
func (t *tracker) acked(h *half, dir flow.Dir, ack uint32) {
	if h.st == stDead || !h.started {
		return
	}
	d := int32(ack - h.next)
	if d <= 0 || (d == 1 && h.fin) || d > 1<<30 {
		return // nothing missing (a FIN takes one number)
	}
	target := ack
	for _, ps := range h.pend {
		if int32(ps.seq-h.next) > 0 && int32(target-ps.seq) > 0 {
			target = ps.seq
		}
	}
	gap := int64(target - h.next)
	h.next = target
	request := dir == flow.ToServer
	switch h.st {
	case stBody, stChunkData:
		if gap < h.rem {
			h.rem -= gap
			break
		}
		t.messageEnd(h, request)
		h.buf = h.buf[:0]
	case stUntilClose:
	default:
		if !request && t.resp != nil {
			t.messageEnd(h, request)
		}
		h.st, h.buf, h.scanned = stHeaders, h.buf[:0], 0
	}
	t.drain(h, dir)
}

// drain reads held segments that now join the in-order edge.
func (t *tracker) drain(h *half, dir flow.Dir) {
	for again := true; again && h.st != stDead && len(h.pend) > 0; {
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
				t.take(h, dir, ps.data[-d:])
				again = true
				if h.st == stDead {
					break
				}
			}
		}
		if len(h.pend) == 0 {
			h.pend = nil
		}
		t.account(h)
	}
}

func (t *tracker) take(h *half, dir flow.Dir, b []byte) {
	h.next += uint32(len(b))
	t.feed(h, dir, b)
}

// feed runs a direction's message parser over in-order bytes.
func (t *tracker) feed(h *half, dir flow.Dir, data []byte) {
	request := dir == flow.ToServer
	for len(data) > 0 {
		switch h.st {
		case stDead:
			return
		case stHeaders:
			var (
				b       []byte
				oldLen  = len(h.buf)
				fromBuf = oldLen > 0
				app     int
			)
			if fromBuf {
				app = min(len(data), MaxHeaderBytes+4-oldLen)
				if !t.grow(h, oldLen+app) {
					return
				}
				h.buf = append(h.buf, data[:app]...)
				b = h.buf
			} else {
				b = data
			}
			block, consumed, skip := headerEnd(b, max(h.scanned-3, 0))
			if block < 0 {
				if len(b)-skip > MaxHeaderBytes {
					t.dead(h, capHeaderBytes)
					return
				}
				if !fromBuf {
					if skip == len(b) {
						return // only line ends between messages
					}
					if !t.grow(h, len(b)-skip) {
						return
					}
					h.buf = append(h.buf[:0], b[skip:]...)
				}
				h.scanned = len(h.buf)
				return
			}
			if block > MaxHeaderBytes {
				t.dead(h, capHeaderBytes)
				return
			}
			t.message(h, request, b[skip:skip+block])
			if fromBuf {
				data = data[consumed-oldLen:]
				// Give the buffer back: a keep-alive flow may idle for
				// minutes, and its next headers likely fit one segment.
				h.buf = nil
				t.account(h)
			} else {
				data = data[consumed:]
			}
			h.scanned = 0
		case stBody, stChunkData:
			n := int64(len(data))
			if n > h.rem {
				n = h.rem
			}
			h.rem -= n
			data = data[n:]
			t.body(request, n)
			if h.rem == 0 {
				if h.st == stBody {
					t.messageEnd(h, request)
				} else {
					h.st = stChunkCRLF
				}
			}
		case stChunkCRLF:
			// The CRLF after a chunk's data (a bare LF accepted).
			if data[0] == '\r' {
				data = data[1:]
				continue
			}
			if data[0] == '\n' {
				data = data[1:]
			}
			h.st = stChunkSize
		case stChunkSize, stTrailers:
			line, rest, ok := t.line(h, data)
			if !ok {
				return
			}
			data = rest
			if h.st == stTrailers {
				if len(bytes.TrimRight(line, "\r")) == 0 {
					t.messageEnd(h, request)
				}
				continue
			}
			n, valid := parseChunkSize(bytes.TrimRight(line, "\r"))
			if !valid {
				t.dead(h, -1)
				return
			}
			if n == 0 {
				h.st = stTrailers
			} else {
				h.st, h.rem = stChunkData, n
			}
		case stUntilClose:
			t.body(request, int64(len(data)))
			return
		}
	}
}

// line returns the next line of data (with what was buffered before it)
// and the bytes after it; false: incomplete, data kept (at most maxLine).
func (t *tracker) line(h *half, data []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		if len(h.buf)+len(data) > maxLine {
			t.dead(h, capHeaderBytes)
			return nil, nil, false
		}
		if t.grow(h, len(h.buf)+len(data)) {
			h.buf = append(h.buf, data...)
		}
		return nil, nil, false
	}
	if len(h.buf) == 0 {
		return data[:i], data[i+1:], true
	}
	if len(h.buf)+i > maxLine {
		t.dead(h, capHeaderBytes)
		return nil, nil, false
	}
	// The buffered start and this end: the line is used before buf is
	// written again.
	h.buf = append(h.buf, data[:i]...)
	line = h.buf
	h.buf = h.buf[:0]
	return line, data[i+1:], true
}

// grow makes room for n bytes in h.buf, within the budget.
func (t *tracker) grow(h *half, n int) bool {
	if n <= cap(h.buf) {
		return true
	}
	c := min(max(2*cap(h.buf), n, 512), MaxHeaderBytes+8)
	if n > c {
		c = n
	}
	nb := make([]byte, len(h.buf), c)
	copy(nb, h.buf)
	h.buf = nb
	return t.account(h)
}

// message handles a complete header block.
func (t *tracker) message(h *half, request bool, block []byte) {
	m := &t.scr
	if !parseHead(block, request, m) {
		t.dead(h, -1)
		return
	}
	if m.tooMany {
		t.a.caps[capHeaderCount].Inc()
	}
	if request {
		if len(t.queue) >= maxQueue {
			t.a.caps[capPipeline].Inc()
			t.dead(&t.d[0], -1)
			t.dead(&t.d[1], -1)
			return
		}
		x := t.newTx()
		t.fillRequest(x, m)
		t.queue = append(t.queue, x)
		switch {
		case m.chunked:
			h.st = stChunkSize
		case m.contentLen > 0:
			h.st, h.rem = stBody, m.contentLen
		default:
			h.st = stHeaders
		}
		return
	}
	if m.interimResp && m.status != 101 {
		h.st = stHeaders // 100 Continue and friends: the final response follows
		return
	}
	var x *tx
	if n := len(t.queue); n > 0 {
		// Shifted down rather than resliced, so that the queue keeps its
		// array (the tracker is recycled with it) and the next request
		// does not allocate one.
		x = t.queue[0]
		copy(t.queue, t.queue[1:])
		t.queue[n-1] = nil
		t.queue = t.queue[:n-1]
	} else {
		x = t.newTx() // a response without its request (picked up midstream)
		x.ev.Protocol = m.version
	}
	x.ev.Status, x.ev.StatusString, x.ev.ContentType, x.ev.Redirect = m.status, m.statusText, m.ctype, m.loc
	t.resp = x
	switch {
	case m.status == 101 || (x.method == "CONNECT" && m.status/100 == 2):
		// What follows is another protocol.
		t.emit(x)
		t.resp = nil
		t.dead(&t.d[0], -1)
		t.dead(&t.d[1], -1)
	case x.method == "HEAD" || m.status == 204 || m.status == 304:
		t.messageEnd(h, false)
	case m.chunked:
		h.st = stChunkSize
	case m.contentLen > 0:
		h.st, h.rem = stBody, m.contentLen
	case m.contentLen == 0:
		t.messageEnd(h, false)
	default:
		h.st = stUntilClose
	}
}

func (t *tracker) fillRequest(x *tx, m *head) {
	x.method = m.method
	ev := &x.ev
	ev.Method, ev.URL, ev.Protocol = m.method, m.uri, m.version
	ev.UserAgent, ev.Referer, ev.XFF = m.ua, m.referer, m.xff
	host := m.host
	// As libhtp: the host of an absolute URI (a proxy request) or of
	// CONNECT's authority comes before the Host header.
	if a := uriAuthority(m.uri, m.method == "CONNECT"); a != "" {
		host = a
	}
	ev.Hostname, ev.Port = hostPort(host)
}

func (t *tracker) newTx() *tx {
	x := &tx{ev: event.HTTP{TxID: t.nextID}}
	t.nextID++
	return x
}

func (t *tracker) body(request bool, n int64) {
	if !request && t.resp != nil {
		t.resp.ev.Length += uint64(n)
	}
}

// messageEnd: a message and its body are complete; a response's
// transaction is written.
func (t *tracker) messageEnd(h *half, request bool) {
	h.st = stHeaders
	if !request && t.resp != nil {
		t.emit(t.resp)
		t.resp = nil
	}
}
