package quic

import (
	"bytes"
	"strconv"

	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/stages/reassembly"
	"github.com/pktpipe/pktpipe/stages/tlsfp"
)

// Dir is a datagram's direction: ToServer from the QUIC client (the flow's
// client), ToClient from the server. Same values as flow.Dir.
type Dir uint8

const (
	ToServer Dir = 0
	ToClient Dir = 1
)

// Limits on the work one connection may cost before the tracker gives up.
const (
	// maxDatagrams is how many datagrams a direction may send without
	// its hello completing.
	maxDatagrams = 16
	// maxDerivations caps key derivations per connection (each one
	// allocates ciphers): the first Initial, a Retry, a new version after
	// Version Negotiation, and a few retries with a packet's own DCID.
	maxDerivations = 4
	// maxUndecryptable ends the attempt after this many Initial packets
	// failed to authenticate.
	maxUndecryptable = 8
)

// Worker holds what the trackers of one worker share: the decryption
// buffer, the TLS parsers and the fingerprint scratch. Not safe for
// concurrent use; the zero value is ready.
type Worker struct {
	// Budget bounds the CRYPTO reassembly buffers, shared with the
	// worker's other analyzers (nil: unlimited).
	Budget *reassembly.Budget

	dec decryptor
	fp  tlsfp.Scratch
	ch  tlsfp.ClientHello
	sh  tlsfp.ServerHello
	// cur is the stream frames() feeds, owner its tracker (fields, so the
	// callback below is made once and passing it does not allocate).
	cur   *stream
	owner reassembly.Owner
	addFn func(off uint64, data []byte)
	bufs  [][]byte // free stream buffers of poolBufSize
}

func (w *Worker) add(off uint64, data []byte) { w.cur.add(w, off, data) }

func (w *Worker) budget() *reassembly.Budget {
	if w == nil {
		return nil
	}
	return w.Budget
}

// getBuf returns an empty buffer of size bytes.
func (w *Worker) getBuf(size int) []byte {
	if n := len(w.bufs); size == poolBufSize && n > 0 {
		b := w.bufs[n-1]
		w.bufs = w.bufs[:n-1]
		return b
	}
	return make([]byte, 0, size)
}

func (w *Worker) putBuf(b []byte) {
	if w != nil && cap(b) == poolBufSize && len(w.bufs) < maxPooledBufs {
		w.bufs = append(w.bufs, b[:0])
	}
}

// ClientHello is what a tracker keeps of the client's hello.
type ClientHello struct {
	Version      uint32 // QUIC version of the Initial that carried it
	SNI          string
	ALPNs        []string
	Extensions   []event.QUICExtension
	Initials     int // client Initials decrypted up to its completion
	Retry        bool
	JA3, JA3Hash string
	JA4, JA4R    string
}

// ServerHello is what a tracker keeps of the server's hello.
type ServerHello struct {
	Version        uint32 // QUIC version of the Initial that carried it
	TLSVersion     uint16 // negotiated (supported_versions)
	Cipher         uint16
	Extensions     []event.QUICExtension
	JA3S, JA3SHash string
}

// Tracker follows the Initial packets of one QUIC connection (one UDP
// flow). The zero value is ready; Worker must be set before use.
type Tracker struct {
	Worker *Worker

	p        *params
	version  uint32
	dcid     [maxCIDLen]byte // the DCID the keys come from
	dcidLen  int
	retry    [maxCIDLen]byte // SCID of a Retry: the client's next DCID
	retryLen int
	retried  bool
	keys     [2]keys // by Dir: client in, server in
	largest  [2]int64
	streams  [2]stream
	dgrams   [2]int
	derived  int

	Client *ClientHello // set when the client's hello has been read
	Server *ServerHello // set when the server's hello has been read
	// Decrypted counts Initial packets decrypted by Dir; Undecryptable
	// those that did not authenticate.
	Decrypted     [2]uint64
	Undecryptable uint64
	// VersionsOffered: a Version Negotiation packet's list.
	VersionsOffered []uint32
	GaveUp          bool // a limit was reached
}

// Reset empties t for another connection; its buffers go back to the
// Worker.
func (t *Tracker) Reset() {
	w := t.Worker
	t.streams[0].reset(w) // in place: the budget links their Holders
	t.streams[1].reset(w)
	s0, s1 := t.streams[0], t.streams[1]
	vo := t.VersionsOffered[:0]
	*t = Tracker{Worker: w, VersionsOffered: vo}
	t.streams[0], t.streams[1] = s0, s1
}

// Done reports whether nothing more will be learned.
func (t *Tracker) Done() bool {
	return t.GaveUp || (t.Client != nil && t.Server != nil)
}

// Plausible reports whether a flow whose first client datagram is b may
// be QUIC: a long header with a version this package decrypts or one
// reserved to force version negotiation.
func Plausible(b []byte) bool {
	h, ok := parseLong(b)
	return ok && (h.p != nil && h.typ == typeInitial || isReserved(h.version))
}

// Datagram handles one UDP payload of the connection. It reports whether
// it completed the client's hello (t.Client is then set) and the server's
// (t.Server).
func (t *Tracker) Datagram(d Dir, b []byte) (client, server bool) {
	if t.Done() {
		return false, false
	}
	d &= 1
	t.dgrams[d]++
	hadClient, hadServer := t.Client != nil, t.Server != nil
	for len(b) > 0 {
		h, ok := parseLong(b)
		if !ok {
			break // short header, padding or garbage: nothing more here
		}
		switch {
		case h.version == versionVN:
			if d == ToClient {
				t.versionNegotiation(b[h.pnOff:])
			}
		case h.p == nil:
		case h.typ == typeRetry:
			if d == ToClient && len(h.scid) > 0 {
				t.retryLen = copy(t.retry[:], h.scid)
				t.retried = true
			}
		case h.typ == typeInitial:
			t.initial(d, b[:h.end], &h)
		}
		b = b[h.end:]
		if t.GaveUp {
			break
		}
	}
	if t.dgrams[d] > maxDatagrams && (d == ToServer && t.Client == nil || d == ToClient && t.Server == nil) {
		t.GaveUp = true
	}
	return !hadClient && t.Client != nil, !hadServer && t.Server != nil
}

func (t *Tracker) versionNegotiation(list []byte) {
	for len(list) >= 4 && len(t.VersionsOffered) < 16 {
		t.VersionsOffered = append(t.VersionsOffered, uint32(list[0])<<24|uint32(list[1])<<16|uint32(list[2])<<8|uint32(list[3]))
		list = list[4:]
	}
}

// derive sets the keys from a client Initial's version and DCID.
func (t *Tracker) derive(h *longHeader) bool {
	if t.derived >= maxDerivations {
		t.GaveUp = true
		return false
	}
	t.derived++
	c, err1 := deriveKeys(h.p, h.dcid, "client in")
	s, err2 := deriveKeys(h.p, h.dcid, "server in")
	if err1 != nil || err2 != nil {
		return false
	}
	t.keys = [2]keys{c, s}
	t.p, t.version = h.p, h.version
	t.dcidLen = copy(t.dcid[:], h.dcid)
	t.largest = [2]int64{-1, -1}
	return true
}

func (t *Tracker) initial(d Dir, pkt []byte, h *longHeader) {
	if d == ToServer && t.Client != nil || d == ToClient && t.Server != nil {
		return // that side's hello is read: nothing more to decrypt
	}
	w := t.Worker
	if d == ToServer {
		dcid := h.dcid
		switch {
		case t.p == nil:
			// First client Initial: its DCID gives the keys.
			if !t.derive(h) {
				return
			}
		case h.version != t.version:
			// A new attempt after Version Negotiation.
			if !t.derive(h) {
				return
			}
			t.newAttempt()
		case t.retryLen > 0 && bytes.Equal(dcid, t.retry[:t.retryLen]) && !bytes.Equal(dcid, t.dcid[:t.dcidLen]):
			// After a Retry both sides derive from the Retry's SCID.
			if !t.derive(h) {
				return
			}
		}
	}
	if t.p == nil || h.version != t.version {
		return
	}
	plain, pn, ok := w.dec.open(&t.keys[d], pkt, h, t.largest[d])
	if !ok && d == ToServer && !bytes.Equal(h.dcid, t.dcid[:t.dcidLen]) && t.derived < maxDerivations && len(h.dcid) >= 8 {
		// The capture may have missed the first Initial, or a Retry:
		// try the packet's own DCID.
		old := t.keys
		oldDCID, oldLen, oldLargest := t.dcid, t.dcidLen, t.largest
		if t.derive(h) {
			if plain, pn, ok = w.dec.open(&t.keys[d], pkt, h, t.largest[d]); ok {
				t.newAttempt()
			} else {
				t.keys, t.dcid, t.dcidLen, t.largest = old, oldDCID, oldLen, oldLargest
			}
		}
	}
	if !ok {
		t.Undecryptable++
		if t.Undecryptable >= maxUndecryptable {
			t.GaveUp = true
		}
		return
	}
	t.Decrypted[d]++
	t.largest[d] = max(t.largest[d], int64(pn))
	t.crypto(d, plain)
}

// crypto takes the frames of a decrypted Initial of direction d.
func (t *Tracker) crypto(d Dir, plain []byte) {
	w := t.Worker
	s := &t.streams[d]
	w.cur, w.owner = s, (*budgetOwner)(t)
	if w.addFn == nil {
		w.addFn = w.add
	}
	frames(plain, w.addFn)
	w.cur, w.owner = nil, nil
	if s.tooBig() {
		t.GaveUp = true
		return
	}
	typ, body, ok := s.message()
	if !ok {
		return
	}
	if d == ToServer {
		t.clientHello(typ, body)
	} else {
		t.serverHello(typ, body)
	}
}

// newAttempt forgets the hello reassembly of a replaced key set.
func (t *Tracker) newAttempt() {
	if t.Client == nil {
		t.streams[ToServer].reset(t.Worker)
	}
	if t.Server == nil {
		t.streams[ToClient].reset(t.Worker)
	}
}

// budgetOwner is the Tracker as the reassembly budget sees it (kept off
// Tracker's own methods).
type budgetOwner Tracker

// GiveUp implements reassembly.Owner: the budget took a stream's buffer
// back for a more recently used one. The connection is abandoned as when
// its hello exceeds MaxCryptoBytes.
func (o *budgetOwner) GiveUp(h *reassembly.Holder) {
	t := (*Tracker)(o)
	for d := range t.streams {
		if s := &t.streams[d]; &s.held == h {
			s.reset(t.Worker)
			s.over = true
			t.GaveUp = true
		}
	}
}

func (t *Tracker) clientHello(typ uint8, body []byte) {
	w := t.Worker
	if typ != 1 || w.ch.Parse(body) != nil {
		t.GaveUp = true
		return
	}
	ch := &w.ch
	fp := w.fp.ClientQUIC(ch)
	c := &ClientHello{
		Version: t.version, Initials: int(t.Decrypted[ToServer]), Retry: t.retried,
		JA3: fp.JA3, JA3Hash: fp.JA3Hash, JA4: fp.JA4, JA4R: fp.JA4R,
	}
	if ch.SNI != nil {
		c.SNI = string(ch.SNI)
	}
	c.ALPNs = ch.ALPNs(nil)
	c.Extensions = make([]event.QUICExtension, 0, len(ch.Extensions))
	for _, e := range ch.Extensions {
		x := event.QUICExtension{Type: e.Type, Name: extName(e.Type)}
		switch e.Type {
		case 0:
			if c.SNI != "" {
				x.Values = []string{c.SNI}
			}
		case 16:
			x.Values = c.ALPNs
		}
		c.Extensions = append(c.Extensions, x)
	}
	t.Client = c
	t.streams[ToServer].reset(w)
}

func (t *Tracker) serverHello(typ uint8, body []byte) {
	w := t.Worker
	if typ != 2 || w.sh.Parse(body) != nil {
		t.GaveUp = true
		return
	}
	sh := &w.sh
	fp := w.fp.Server(sh)
	s := &ServerHello{
		Version: t.version, TLSVersion: sh.Negotiated(), Cipher: sh.Cipher,
		JA3S: fp.JA3S, JA3SHash: fp.JA3SHash,
		Extensions: make([]event.QUICExtension, 0, len(sh.Extensions)),
	}
	for _, e := range sh.Extensions {
		s.Extensions = append(s.Extensions, event.QUICExtension{Type: e.Type, Name: extName(e.Type)})
	}
	t.Server = s
	t.streams[ToClient].reset(w)
}

// VersionString writes a QUIC version as Suricata's EVE does: lowercase
// hex without leading zeros.
func VersionString(v uint32) string {
	switch v {
	case Version1:
		return "1"
	case Version2:
		return "6b3343cf"
	case Draft29:
		return "ff00001d"
	}
	return strconv.FormatUint(uint64(v), 16)
}

// ClientEvent builds the quic event of the client's hello with header h
// (nil if the hello has not been read).
func (t *Tracker) ClientEvent(h event.Header) *event.QUIC {
	c := t.Client
	if c == nil {
		return nil
	}
	return &event.QUIC{
		Header: h, Version: VersionString(c.Version), SNI: c.SNI,
		JA3: c.JA3, JA3Hash: c.JA3Hash, JA4: c.JA4, JA4R: c.JA4R,
		ClientALPNs: c.ALPNs, Extensions: c.Extensions,
		Retry: c.Retry, Initials: c.Initials,
	}
}

// ServerEvent builds the quic event of the server's hello with header h
// (nil if the hello has not been read).
func (t *Tracker) ServerEvent(h event.Header) *event.QUIC {
	s := t.Server
	if s == nil {
		return nil
	}
	return &event.QUIC{
		Header: h, Version: VersionString(s.Version),
		JA3S: s.JA3S, JA3SHash: s.JA3SHash, Extensions: s.Extensions,
		TLSVersion: tlsfp.VersionName(s.TLSVersion), Cipher: tlsfp.CipherName(s.Cipher),
		Retry: t.retried,
	}
}

// Summary builds the flow record's quic summary, or nil if the flow
// showed nothing of QUIC beyond a plausible first packet.
func (t *Tracker) Summary() *event.QUICSummary {
	s := &event.QUICSummary{
		Retry:          t.retried,
		ClientInitials: t.Decrypted[ToServer], ServerInitials: t.Decrypted[ToClient],
		Undecryptable: t.Undecryptable,
	}
	if t.p != nil {
		s.Version = VersionString(t.version)
	}
	for _, v := range t.VersionsOffered {
		s.VersionsOffered = append(s.VersionsOffered, VersionString(v))
	}
	if c := t.Client; c != nil {
		s.SNI, s.JA4, s.ClientALPNs = c.SNI, c.JA4, c.ALPNs
	}
	if sv := t.Server; sv != nil {
		s.TLSVersion = tlsfp.VersionName(sv.TLSVersion)
		s.Cipher = tlsfp.CipherName(sv.Cipher)
	}
	switch {
	case t.Client != nil && t.Server != nil:
		s.State = "complete"
	case t.Client != nil:
		s.State = "client_hello"
	case t.Server != nil:
		s.State = "server_hello"
	case t.GaveUp:
		s.State = "gave_up"
	case t.Decrypted[0]+t.Decrypted[1] > 0:
		s.State = "incomplete"
	default:
		s.State = "not_decrypted"
	}
	return s
}
