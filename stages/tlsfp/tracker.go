package tlsfp

import (
	"crypto/tls"
	"strconv"

	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/stages/reassembly"
)

// Dir is a segment's direction relative to the flow's client (the side
// that opened it). The Tracker also tells the roles apart by content (the
// side that sends the ClientHello is the client), so a flow picked up the
// wrong way round still works.
type Dir uint8

const (
	ToServer Dir = iota
	ToClient
)

type dirState uint8

const (
	stActive dirState = iota
	stDone
)

type role uint8

const (
	roleUnknown role = iota
	roleClient
	roleServer
)

// ClientInfo is what the tracker keeps of a ClientHello.
type ClientInfo struct {
	Version          uint16 // legacy_version
	SupportedVersion uint16 // first valid supported_versions entry (as Suricata), 0 if none
	SNI              string
	ALPNs            []string
	Ciphers          []uint16 // GREASE removed, wire order
	Exts             []uint16 // GREASE removed, wire order
	SigAlgs          []uint16 // as sent
	ClientFingerprints
}

// OfferedVersion is the client's version as Suricata reports it: the first
// valid supported_versions entry, else legacy_version.
func (c *ClientInfo) OfferedVersion() uint16 {
	if c.SupportedVersion != 0 {
		return c.SupportedVersion
	}
	return c.Version
}

// ServerInfo is what the tracker keeps of a ServerHello.
type ServerInfo struct {
	Version    uint16 // legacy_version
	Negotiated uint16 // supported_versions if present, else Version
	Cipher     uint16
	Exts       []uint16 // GREASE removed, wire order
	ALPN       string
	HRR        bool
	ServerFingerprints
}

// Result is everything a Tracker learned.
type Result struct {
	Client     *ClientInfo // first ClientHello, nil if none seen
	Retry      *ClientInfo // ClientHello sent after a HelloRetryRequest
	Server     *ServerInfo // first ServerHello (the HRR if there was one)
	Cert       *CertInfo   // server's leaf certificate (TLS ≤ 1.2)
	ClientTime int64       // timestamp of the packet completing the first ClientHello
	ServerTime int64       // timestamp of the packet completing the first ServerHello
	Truncated  bool        // a direction reached MaxBuffer before its messages were read
	NotTLS     bool        // the flow does not carry TLS
	// Proxy is set when TLS began after a proxy handshake (ProxyHTTPConnect,
	// ProxySOCKS4, ...), with the target the client asked the proxy for.
	Proxy     string
	ProxyHost string
	ProxyPort uint16
}

// Tracker follows one TCP flow's TLS handshake. The zero value is ready;
// set Scratch to share fingerprint buffers between the trackers of one
// worker.
type Tracker struct {
	Scratch *Scratch

	half      [2]half
	state     [2]dirState
	role      [2]role
	retry     bool // a HelloRetryRequest was seen: read the second ClientHello
	clientCCS bool // the client sent ChangeCipherSpec after its first hello
	server2   bool // the ServerHello after the HRR was seen
	wantCert  bool
	// preDone says a direction's proxy preamble, if any, was skipped;
	// proxyClient is the direction that sent the proxy request.
	preDone     [2]bool
	proxyClient Dir
	res         Result
}

// Segment feeds one TCP segment (flags as in the TCP header, payload the
// TCP payload, ts its capture time in ns). It returns true once the
// tracker has learned all it will; further segments are ignored.
func (t *Tracker) Segment(d Dir, seq uint32, flags uint8, payload []byte, ts int64) (done bool) {
	d &= 1
	if t.state[d] != stActive || t.res.NotTLS {
		return t.Done()
	}
	h := &t.half[d]
	if h.pool == nil {
		h.pool, h.owner = &t.scratch().bufs, (*budgetOwner)(t)
	}
	if h.segment(seq, flags&0x02 != 0, payload) {
		t.process(d, ts)
	}
	return t.Done()
}

// Done reports whether the tracker has learned all it will.
func (t *Tracker) Done() bool {
	if t.res.NotTLS {
		return true
	}
	c, s := t.clientDir()
	if t.role[c] != roleClient {
		return false
	}
	return t.state[c] == stDone && t.state[s] == stDone
}

// HasHandshake reports whether a ClientHello or ServerHello was seen (an
// event is worth writing).
func (t *Tracker) HasHandshake() bool {
	return !t.res.NotTLS && (t.res.Client != nil || t.res.Server != nil)
}

// Result returns what was learned so far.
func (t *Tracker) Result() *Result { return &t.res }

// Release frees the buffers early (at flow end, for example).
func (t *Tracker) Release() {
	for d := range t.half {
		t.half[d].release()
		t.state[d] = stDone
	}
}

// budgetOwner is the Tracker as the reassembly budget sees it (kept off
// Tracker's own methods).
type budgetOwner Tracker

// GiveUp implements reassembly.Owner: the budget took a direction's
// buffer back for a more recently used one. The direction ends as if it
// had reached MaxBuffer (the event says truncated).
func (o *budgetOwner) GiveUp(h *reassembly.Holder) {
	t := (*Tracker)(o)
	for d := range t.half {
		if &t.half[d].held == h && t.state[d] == stActive {
			t.half[d].overflow = true
			t.finish(Dir(d))
		}
	}
}

func (t *Tracker) clientDir() (c, s Dir) {
	if t.role[ToClient] == roleClient {
		return ToClient, ToServer
	}
	return ToServer, ToClient
}

func (t *Tracker) scratch() *Scratch {
	if t.Scratch == nil {
		t.Scratch = new(Scratch)
	}
	return t.Scratch
}

func (t *Tracker) finish(d Dir) {
	t.state[d] = stDone
	if t.half[d].overflow {
		t.res.Truncated = true
	}
	t.half[d].release()
}

// notTLS ends the tracker when no ClientHello has been seen; otherwise only
// direction d ends.
func (t *Tracker) notTLS(d Dir) {
	t.finish(d)
	if t.res.Client == nil {
		t.res.NotTLS = true
		t.finish(d ^ 1)
	}
}

func (t *Tracker) process(d Dir, ts int64) {
	h := &t.half[d]
	if !t.preDone[d] {
		switch t.preamble(d) {
		case preWait:
			if h.overflow {
				t.notTLS(d)
			}
			return
		case preBad:
			t.notTLS(d)
			return
		}
		t.preDone[d] = true
	}
	for t.state[d] == stActive && !t.res.NotTLS {
		ev, typ, body := h.nextEvent()
		switch ev {
		case evNeedMore:
			if h.overflow {
				t.finish(d) // nothing more can arrive
			}
			return
		case evNotTLS, evBad:
			t.notTLS(d)
		case evRecord:
			t.onRecord(d, typ)
		case evMessage:
			t.onMessage(d, typ, body, ts)
		case evPartial:
			if typ == typeCertificate && t.wantCert && t.role[d] == roleServer {
				if der, ok := leafFromCertificateMsg(body); ok {
					t.onLeaf(d, der)
				}
			}
		}
	}
}

func (t *Tracker) onRecord(d Dir, ctype uint8) {
	const changeCipherSpec = 20
	if ctype == changeCipherSpec {
		// Middlebox-compatibility CCS around a HelloRetryRequest: the
		// second hellos follow in clear. A client's CCS right after its
		// first hello means the same even when the server's side is not
		// in the capture.
		if t.role[d] == roleServer && t.retry && !t.server2 {
			return
		}
		if t.role[d] == roleClient && t.res.Client != nil && t.res.Retry == nil {
			t.clientCCS = true
			return
		}
	}
	if t.role[d] == roleUnknown {
		t.notTLS(d)
		return
	}
	t.finish(d)
}

func (t *Tracker) onMessage(d Dir, typ uint8, body []byte, ts int64) {
	if t.role[d] == roleUnknown {
		switch typ {
		case typeClientHello:
			t.role[d], t.role[d^1] = roleClient, roleServer
		case typeServerHello:
			t.role[d], t.role[d^1] = roleServer, roleClient
		default:
			t.notTLS(d)
			return
		}
	}
	if t.role[d] == roleClient {
		t.onClientMessage(d, typ, body, ts)
	} else {
		t.onServerMessage(d, typ, body, ts)
	}
}

func (t *Tracker) onClientMessage(d Dir, typ uint8, body []byte, ts int64) {
	if typ != typeClientHello {
		t.finish(d)
		return
	}
	sc := t.scratch()
	if err := sc.ch.Parse(body); err != nil {
		if t.res.Client == nil {
			t.notTLS(d)
		} else {
			t.finish(d)
		}
		return
	}
	if t.res.Client == nil {
		t.res.Client, t.res.ClientTime = newClientInfo(sc, &sc.ch), ts
		// Keep reading (with an empty buffer, usually freed) until the
		// server has answered: after a HelloRetryRequest a second hello
		// follows.
		if s := t.res.Server; s != nil && !s.HRR || t.state[d^1] == stDone {
			t.finish(d)
		} else {
			t.half[d].shrink()
		}
		return
	}
	// A second hello counts after an HRR (or the client's compatibility
	// CCS); a client merely repeating itself is fingerprinted once.
	if t.retry || t.clientCCS {
		t.res.Retry = newClientInfo(sc, &sc.ch)
	}
	t.finish(d)
}

func (t *Tracker) onServerMessage(d Dir, typ uint8, body []byte, ts int64) {
	sc := t.scratch()
	switch {
	case typ == typeServerHello && t.res.Server == nil:
		if err := sc.sh.Parse(body); err != nil {
			t.finish(d)
			return
		}
		t.res.Server, t.res.ServerTime = newServerInfo(sc, &sc.sh), ts
		if sc.sh.HRR {
			t.retry = true
			return
		}
		t.serverChose(d, sc.sh.Negotiated())
	case typ == typeServerHello && t.retry && !t.server2:
		t.server2 = true
		if err := sc.sh.Parse(body); err != nil {
			t.finish(d)
			return
		}
		t.serverChose(d, sc.sh.Negotiated())
	case typ == typeCertificate && t.wantCert:
		if der, ok := leafFromCertificateMsg(body); ok {
			t.onLeaf(d, der)
		} else {
			t.finish(d)
		}
	default:
		// Anything else where a Certificate was due (PSK, anonymous,
		// resumption): no certificate to read.
		t.finish(d)
	}
}

// serverChose handles a (non-HRR) ServerHello: TLS 1.3 encrypts the rest,
// earlier versions send the certificate next.
func (t *Tracker) serverChose(d Dir, v uint16) {
	if c := d ^ 1; !t.retry && t.res.Client != nil {
		t.finish(c) // the first hello was the only one
	}
	if isTLS13(v) {
		t.finish(d)
		return
	}
	t.wantCert = true
}

func (t *Tracker) onLeaf(d Dir, der []byte) {
	if c, ok := parseCert(der); ok {
		t.res.Cert = c
	}
	t.finish(d)
}

func newClientInfo(sc *Scratch, h *ClientHello) *ClientInfo {
	c := &ClientInfo{
		Version:            h.Version,
		ClientFingerprints: sc.Client(h),
	}
	if h.SNI != nil {
		c.SNI = string(h.SNI)
	}
	c.ALPNs = h.ALPNs(nil)
	for _, v := range h.SupportedVersions {
		if validVersion(v) {
			c.SupportedVersion = v
			break
		}
	}
	// One array for the three lists (each capped at its own length, so
	// none can grow into the next), instead of growing each from nothing.
	nc, ne := len(h.Ciphers), len(h.Extensions)
	all := make([]uint16, 0, nc+ne+len(h.SigAlgs))
	c.Ciphers = appendNonGREASE(all[:0:nc], h.Ciphers)
	c.Exts = all[nc : nc : nc+ne]
	for _, e := range h.Extensions {
		if !isGREASE(e.Type) {
			c.Exts = append(c.Exts, e.Type)
		}
	}
	if len(h.SigAlgs) > 0 {
		c.SigAlgs = append(all[nc+ne:nc+ne], h.SigAlgs...)
	}
	return c
}

func newServerInfo(sc *Scratch, h *ServerHello) *ServerInfo {
	s := &ServerInfo{
		Version:            h.Version,
		Negotiated:         h.Negotiated(),
		Cipher:             h.Cipher,
		HRR:                h.HRR,
		ServerFingerprints: sc.Server(h),
	}
	if h.ALPN != nil {
		s.ALPN = string(h.ALPN)
	}
	s.Exts = make([]uint16, 0, len(h.Extensions))
	for _, e := range h.Extensions {
		if !isGREASE(e.Type) {
			s.Exts = append(s.Exts, e.Type)
		}
	}
	return s
}

func appendNonGREASE(dst, vs []uint16) []uint16 {
	for _, v := range vs {
		if !isGREASE(v) {
			dst = append(dst, v)
		}
	}
	return dst
}

// validVersion reports whether Suricata takes v as a client version.
func validVersion(v uint16) bool {
	return v == 0x0002 || v >= 0x0300 && v <= 0x0304 || v>>8 == 0x7f || v >= 0xfb14 && v <= 0xfb1a
}

// VersionName names a TLS version as Suricata's EVE does.
func VersionName(v uint16) string {
	switch {
	case v == 0:
		return "UNDETERMINED"
	case v == 0x0002:
		return "SSLv2"
	case v == 0x0300:
		return "SSLv3"
	case v == 0x0301:
		return "TLSv1"
	case v == 0x0302:
		return "TLS 1.1"
	case v == 0x0303:
		return "TLS 1.2"
	case v == 0x0304:
		return "TLS 1.3"
	case v >= 0x7f10 && v <= 0x7f1c:
		return "TLS 1.3 draft-" + strconv.Itoa(int(v&0xff))
	case v >= 0x7f01 && v < 0x7f10:
		return "TLS 1.3 draft-<16"
	}
	switch v {
	case 0xfb14:
		return "TLS 1.3 draft-20-fb"
	case 0xfb15:
		return "TLS 1.3 draft-21-fb"
	case 0xfb16:
		return "TLS 1.3 draft-22-fb"
	case 0xfb17:
		return "TLS 1.3 draft-23-fb"
	case 0xfb1a:
		return "TLS 1.3 draft-26-fb"
	}
	const hexd = "0123456789abcdef"
	return string([]byte{'0', 'x', hexd[v>>12], hexd[v>>8&15], hexd[v>>4&15], hexd[v&15]})
}

// serverVersion is the server's version as Suricata reports it: a legacy
// 0x0304 in the ServerHello marks a TLS 1.3 draft before 16.
func serverVersion(s *ServerInfo) uint16 {
	if s.Negotiated == s.Version && s.Version == 0x0304 {
		return 0x7f0f
	}
	return s.Negotiated
}

// CipherName returns the IANA name of a cipher suite as Go spells it, or
// "0xC0AB" for one Go does not know.
func CipherName(id uint16) string {
	if n, ok := cipherNames[id]; ok {
		return n
	}
	return tls.CipherSuiteName(id) // "0xC0AB" for suites Go does not know
}

// cipherNames is built once: tls.CipherSuiteName builds Go's whole suite
// list on every call, which showed up as the TLS stage's top allocation.
var cipherNames = func() map[uint16]string {
	m := map[uint16]string{}
	for _, list := range [][]*tls.CipherSuite{tls.CipherSuites(), tls.InsecureCipherSuites()} {
		for _, c := range list {
			m[c.ID] = c.Name
		}
	}
	return m
}()

// Event builds the tls event from what was learned, with h as its header
// (the caller fills in the flow's tuple and the timestamp). It returns nil
// when no hello was seen.
func (t *Tracker) Event(h event.Header) *event.TLS {
	r := &t.res
	if !t.HasHandshake() {
		return nil
	}
	sc := t.scratch()
	e := sc.events.New()
	*e = event.TLS{Header: h, Truncated: r.Truncated}
	if r.Proxy != "" {
		e.Proxy = &event.TLSProxy{Type: r.Proxy, DestHost: r.ProxyHost, DestPort: r.ProxyPort}
	}
	if c := r.Client; c != nil {
		e.SNI = c.SNI
		e.ClientALPNs = c.ALPNs
		e.JA3, e.JA3Hash = c.JA3, c.JA3Hash
		e.JA4, e.JA4R, e.JA4O, e.JA4RO = c.JA4, c.JA4R, c.JA4O, c.JA4RO
		e.Client = sc.handshakes.New()
		*e.Client = event.TLSHandshake{
			Version: VersionName(c.OfferedVersion()),
			Ciphers: c.Ciphers, Exts: c.Exts, SigAlgs: c.SigAlgs,
		}
		e.Version = VersionName(c.OfferedVersion())
	}
	if s := r.Server; s != nil {
		e.Version = VersionName(serverVersion(s))
		e.JA3S, e.JA3SHash = s.JA3S, s.JA3SHash
		if s.ALPN != "" {
			e.ServerALPNs = sc.strs.Take(1)
			e.ServerALPNs[0] = s.ALPN
		}
		cipher := sc.u16s.Take(1)
		cipher[0] = s.Cipher
		e.Server = sc.handshakes.New()
		*e.Server = event.TLSHandshake{
			Version: VersionName(serverVersion(s)),
			Ciphers: cipher, Exts: s.Exts,
		}
		e.Cipher = CipherName(s.Cipher)
		e.HelloRetry = s.HRR
	}
	if r.Client != nil && r.Server != nil {
		e.HasHelloRTT = true
		e.HelloRTTms = float64(r.ServerTime-r.ClientTime) / 1e6
	}
	if c := r.Retry; c != nil {
		e.Retry = &event.TLSRetry{
			JA3: c.JA3, JA3Hash: c.JA3Hash,
			JA4: c.JA4, JA4R: c.JA4R, JA4O: c.JA4O, JA4RO: c.JA4RO,
		}
	}
	if c := r.Cert; c != nil {
		e.Subject, e.IssuerDN = c.Subject, c.Issuer
		e.Serial, e.Fingerprint = c.Serial, c.Fingerprint
		e.NotBefore, e.NotAfter = c.NotBefore, c.NotAfter
		e.SubjectAltName = c.SANs
	}
	return e
}
