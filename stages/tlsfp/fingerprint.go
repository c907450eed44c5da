package tlsfp

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash/maphash"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/pktpipe/pktpipe/internal/slab"
	"github.com/pktpipe/pktpipe/pipeline/event"
)

// Scratch holds the buffers fingerprinting reuses, so that computing one
// costs only the allocations of its result strings. One per worker; not
// safe for concurrent use. The zero value is ready.
type Scratch struct {
	b   []byte
	u16 []uint16
	ch  ClientHello
	sh  ServerHello

	bufs bufPool // the trackers' reassembly buffers

	// marker, when not zero, replaces JA4's transport character (set by
	// ClientQUIC for hellos carried in QUIC CRYPTO frames).
	marker byte

	// clients and servers remember the fingerprints of recent distinct
	// hellos, by everything they are computed from (clientKey,
	// serverKey). Real traffic repeats a few TLS stacks over and over,
	// and a hit costs one hash and one compare instead of the JA3/JA4
	// strings, their SHA-256 and MD5 sums and their allocations.
	key     []byte
	clients memo[ClientFingerprints]
	servers memo[ServerFingerprints]

	// The tls events' memory (Tracker.Event): they go to the sinks and
	// are dropped there.
	events     slab.Slab[event.TLS]
	handshakes slab.Slab[event.TLSHandshake]
	u16s       slab.Slab[uint16]
	strs       slab.Slab[string]
}

// A memo has knownHellos places (direct-mapped) for hellos whose key is
// at most maxKnownKey bytes (a browser's ClientHello's is about 150). That
// bounds a Scratch's two memos at about 1 MiB per worker; typical hellos
// take under 100 KiB.
const (
	knownHellos = 128
	maxKnownKey = 512
)

type memo[T any] struct {
	places [knownHellos]struct {
		key []byte // nil = empty place
		v   T
	}
}

var knownSeed = maphash.MakeSeed()

// recall returns the value remembered for key, if any, and what computes
// it otherwise keeps it for the next time.
func (m *memo[T]) recall(key []byte, compute func() T) T {
	p := &m.places[maphash.Bytes(knownSeed, key)%knownHellos]
	if p.key != nil && bytes.Equal(p.key, key) {
		return p.v
	}
	v := compute()
	if len(key) <= maxKnownKey {
		p.key = append(p.key[:0], key...)
		p.v = v
	}
	return v
}

// ClientFingerprints are the fingerprints of one ClientHello.
type ClientFingerprints struct {
	JA3, JA3Hash string // JA3 string and its MD5 (hex)
	JA4          string // sorted, hashed
	JA4R         string // sorted, raw
	JA4O         string // original order, hashed
	JA4RO        string // original order, raw
}

// ServerFingerprints are the fingerprints of one ServerHello.
type ServerFingerprints struct {
	JA3S, JA3SHash string
}

// Client computes the fingerprints of h, or recalls them if a hello with
// the same inputs was seen recently.
func (s *Scratch) Client(h *ClientHello) ClientFingerprints {
	s.key = clientKey(s.key[:0], h, s.marker)
	return s.clients.recall(s.key, func() ClientFingerprints { return s.client(h) })
}

// clientKey appends everything JA3 and JA4 read from h (and the JA4
// transport marker) in an unambiguous form: each list after its length
// (32 bits: repeated extensions can make a list longer than its own
// length field allows). GREASE values are left out, as every fingerprint
// leaves them out: clients draw new ones for each connection.
func clientKey(b []byte, h *ClientHello, marker byte) []byte {
	list := func(b []byte, vs []uint16) []byte {
		at := len(b)
		b = append(b, 0, 0, 0, 0)
		n := 0
		for _, v := range vs {
			if !isGREASE(v) {
				b = binary.BigEndian.AppendUint16(b, v)
				n++
			}
		}
		binary.BigEndian.PutUint32(b[at:], uint32(n))
		return b
	}
	b = append(b, marker)
	b = binary.BigEndian.AppendUint16(b, h.Version)
	b = list(b, h.Ciphers)
	at := len(b)
	b = append(b, 0, 0, 0, 0)
	n := 0
	for _, e := range h.Extensions {
		if !isGREASE(e.Type) {
			b = binary.BigEndian.AppendUint16(b, e.Type)
			n++
		}
	}
	binary.BigEndian.PutUint32(b[at:], uint32(n))
	b = list(b, h.SupportedVersions)
	b = list(b, h.Groups)
	b = list(b, h.SigAlgs)
	b = binary.BigEndian.AppendUint32(b, uint32(len(h.PointFormats)))
	b = append(b, h.PointFormats...)
	alpn := h.FirstALPN()
	b = binary.BigEndian.AppendUint32(b, uint32(len(alpn)))
	return append(b, alpn...)
}

// client computes the fingerprints of h.
func (s *Scratch) client(h *ClientHello) ClientFingerprints {
	var f ClientFingerprints
	s.b = appendJA3(s.b[:0], h)
	f.JA3 = string(s.b)
	f.JA3Hash = md5Hex(s.b)
	f.JA4, f.JA4R = s.ja4(h, false)
	f.JA4O, f.JA4RO = s.ja4(h, true)
	return f
}

// ClientQUIC computes the fingerprints of a ClientHello that travelled in
// QUIC CRYPTO frames (stages/quic): as Client, but JA4's first character
// is 'q' whatever the extensions say, since the transport is known (a
// draft-29 client's transport parameters use the draft codepoint 0xffa5,
// which Client's extension test would not take for QUIC).
func (s *Scratch) ClientQUIC(h *ClientHello) ClientFingerprints {
	s.marker = 'q'
	f := s.Client(h)
	s.marker = 0
	return f
}

// Server computes the fingerprints of h, or recalls them as Client does.
func (s *Scratch) Server(h *ServerHello) ServerFingerprints {
	s.key = binary.BigEndian.AppendUint16(s.key[:0], h.Version)
	s.key = binary.BigEndian.AppendUint16(s.key, h.Cipher)
	for _, e := range h.Extensions {
		if !isGREASE(e.Type) { // JA3S leaves them out
			s.key = binary.BigEndian.AppendUint16(s.key, e.Type)
		}
	}
	return s.servers.recall(s.key, func() ServerFingerprints { return s.server(h) })
}

// server computes the fingerprints of h.
func (s *Scratch) server(h *ServerHello) ServerFingerprints {
	s.b = appendJA3S(s.b[:0], h)
	return ServerFingerprints{JA3S: string(s.b), JA3SHash: md5Hex(s.b)}
}

func md5Hex(b []byte) string {
	sum := md5.Sum(b)
	var out [32]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

// appendJA3 builds "version,ciphers,extensions,groups,pointformats" with
// dash-separated decimal values and GREASE removed (salesforce JA3; tshark
// tls.handshake.ja3_full).
func appendJA3(b []byte, h *ClientHello) []byte {
	b = strconv.AppendUint(b, uint64(h.Version), 10)
	b = append(b, ',')
	b = appendDecList(b, h.Ciphers)
	b = append(b, ',')
	first := true
	for _, e := range h.Extensions {
		if isGREASE(e.Type) {
			continue
		}
		if !first {
			b = append(b, '-')
		}
		first = false
		b = strconv.AppendUint(b, uint64(e.Type), 10)
	}
	b = append(b, ',')
	b = appendDecList(b, h.Groups)
	b = append(b, ',')
	for i, p := range h.PointFormats {
		if i > 0 {
			b = append(b, '-')
		}
		b = strconv.AppendUint(b, uint64(p), 10)
	}
	return b
}

// appendJA3S builds "version,cipher,extensions".
func appendJA3S(b []byte, h *ServerHello) []byte {
	b = strconv.AppendUint(b, uint64(h.Version), 10)
	b = append(b, ',')
	b = strconv.AppendUint(b, uint64(h.Cipher), 10)
	b = append(b, ',')
	first := true
	for _, e := range h.Extensions {
		if isGREASE(e.Type) {
			continue
		}
		if !first {
			b = append(b, '-')
		}
		first = false
		b = strconv.AppendUint(b, uint64(e.Type), 10)
	}
	return b
}

func appendDecList(b []byte, vs []uint16) []byte {
	first := true
	for _, v := range vs {
		if isGREASE(v) {
			continue
		}
		if !first {
			b = append(b, '-')
		}
		first = false
		b = strconv.AppendUint(b, uint64(v), 10)
	}
	return b
}

// ja4 returns the hashed and raw JA4 of h, sorted (JA4, JA4_r) or in
// original order (JA4_o, JA4_ro), as FoxIO's reference tools print them.
func (s *Scratch) ja4(h *ClientHello, original bool) (hashed, raw string) {
	b := s.b[:0]
	b = appendJA4a(b, h)
	if s.marker != 0 {
		b[0] = s.marker
	}
	aLen := len(b)

	// Ciphers, GREASE removed.
	b = append(b, '_')
	cStart := len(b)
	u := s.u16[:0]
	for _, c := range h.Ciphers {
		if !isGREASE(c) {
			u = append(u, c)
		}
	}
	if !original {
		slices.Sort(u)
	}
	b = appendHexList(b, u)
	cEnd := len(b)

	// Extensions (sorted form: without SNI and ALPN), then the signature
	// algorithms in wire order after an underscore if there are any.
	b = append(b, '_')
	eStart := len(b)
	u = u[:0]
	nExt := 0 // extensions besides SNI and ALPN; none gives the zero hash
	for _, e := range h.Extensions {
		if isGREASE(e.Type) {
			continue
		}
		other := e.Type != extServerName && e.Type != extALPN
		if other {
			nExt++
		}
		if original || other {
			u = append(u, e.Type)
		}
	}
	if !original {
		slices.Sort(u)
	}
	b = appendHexList(b, u)
	u = u[:0]
	for _, a := range h.SigAlgs {
		if !isGREASE(a) {
			u = append(u, a)
		}
	}
	if len(u) > 0 {
		b = append(b, '_')
		b = appendHexList(b, u)
	}
	eEnd := len(b)
	s.u16 = u
	raw = string(b)

	// Hashed form: a_hash(ciphers)_hash(exts[_sigalgs]). The spec gives
	// twelve zeros for an empty list; FoxIO's Python gives them to JA4_o
	// too when SNI and ALPN are the only extensions (https3-301-get).
	b = b[:eEnd]
	var cHash, eHash [12]byte
	hash12(&cHash, b[cStart:cEnd])
	if nExt == 0 {
		eHash = [12]byte([]byte("000000000000"))
	} else {
		hash12(&eHash, b[eStart:eEnd])
	}
	b = append(b[:eEnd], b[:aLen]...)
	b = append(b, '_')
	b = append(b, cHash[:]...)
	b = append(b, '_')
	b = append(b, eHash[:]...)
	hashed = string(b[eEnd:])
	s.b = b
	return hashed, raw
}

func hash12(dst *[12]byte, in []byte) {
	if len(in) == 0 {
		*dst = [12]byte([]byte("000000000000"))
		return
	}
	sum := sha256.Sum256(in)
	hex.Encode(dst[:], sum[:6])
}

func appendHexList(b []byte, vs []uint16) []byte {
	const digits = "0123456789abcdef"
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, digits[v>>12], digits[v>>8&15], digits[v>>4&15], digits[v&15])
	}
	return b
}

// appendJA4a appends JA4's first part: transport, version, SNI flag,
// cipher and extension counts, ALPN first and last characters.
func appendJA4a(b []byte, h *ClientHello) []byte {
	// FoxIO's reference tool marks QUIC by the quic_transport_parameters
	// extension rather than by the transport.
	if hasExt(h.Extensions, extQUICTransport) {
		b = append(b, 'q')
	} else {
		b = append(b, 't')
	}
	v := h.Version
	if hasExt(h.Extensions, extSupportedVersions) {
		v = 0
		for _, sv := range h.SupportedVersions {
			if !isGREASE(sv) && sv > v {
				v = sv
			}
		}
	}
	b = append(b, ja4Version(v)...)
	if hasExt(h.Extensions, extServerName) {
		b = append(b, 'd')
	} else {
		b = append(b, 'i')
	}
	nc, ne := 0, 0
	for _, c := range h.Ciphers {
		if !isGREASE(c) {
			nc++
		}
	}
	for _, e := range h.Extensions {
		if !isGREASE(e.Type) {
			ne++
		}
	}
	b = append2d(b, nc)
	b = append2d(b, ne)
	first, last := alpnChars(h.FirstALPN())
	return append(b, first, last)
}

func append2d(b []byte, n int) []byte {
	n = min(n, 99)
	return append(b, byte('0'+n/10), byte('0'+n%10))
}

func ja4Version(v uint16) string {
	switch v {
	case 0x0304:
		return "13"
	case 0x0303:
		return "12"
	case 0x0302:
		return "11"
	case 0x0301:
		return "10"
	case 0x0300:
		return "s3"
	case 0x0002:
		return "s2"
	case 0xfeff:
		return "d1"
	case 0xfefd:
		return "d2"
	case 0xfefc:
		return "d3"
	}
	return "00"
}

// alpnChars returns the first and last characters of the first ALPN value
// the way FoxIO's reference outputs have them: "00" when there is none,
// '0' for the last of a one-character value, and '9' for a non-ASCII
// character (tls-non-ascii-alpn.pcapng gives "99"; the newer spec text's
// hex rule is not what the reference outputs do).
func alpnChars(p []byte) (byte, byte) {
	if len(p) == 0 {
		return '0', '0'
	}
	r, n := utf8.DecodeRune(p)
	first := asciiOr9(r)
	if n == len(p) {
		return first, '0'
	}
	r, _ = utf8.DecodeLastRune(p)
	return first, asciiOr9(r)
}

func asciiOr9(r rune) byte {
	if r < utf8.RuneSelf && r != utf8.RuneError {
		return byte(r)
	}
	return '9'
}
