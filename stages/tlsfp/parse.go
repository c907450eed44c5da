package tlsfp

import (
	"errors"

	"golang.org/x/crypto/cryptobyte"
)

// Handshake message types used here.
const (
	typeClientHello = 1
	typeServerHello = 2
	typeCertificate = 11
)

// Extension types used here.
const (
	extServerName        = 0
	extSupportedGroups   = 10
	extECPointFormats    = 11
	extSignatureAlgs     = 13
	extALPN              = 16
	extSupportedVersions = 43
	extQUICTransport     = 57
)

var errMalformed = errors.New("tlsfp: malformed handshake message")

// Extension is one hello extension in wire order; Data aliases the parsed
// message.
type Extension struct {
	Type uint16
	Data []byte
}

// ClientHello is a parsed ClientHello body. Its slices are reused by the
// next Parse and alias the input; copy what must outlive it.
type ClientHello struct {
	Version           uint16   // legacy_version
	Ciphers           []uint16 // wire order, GREASE included
	Extensions        []Extension
	SupportedVersions []uint16 // supported_versions list, wire order
	Groups            []uint16 // supported_groups, wire order
	PointFormats      []uint8
	SigAlgs           []uint16 // signature_algorithms, wire order
	SNI               []byte   // first host_name of server_name, nil if none
	HasSNI            bool     // the server_name extension is present
	alpn              []byte   // protocol_name_list, u8-prefixed names
	HasALPN           bool
}

func (h *ClientHello) reset() {
	*h = ClientHello{
		Ciphers:           h.Ciphers[:0],
		Extensions:        h.Extensions[:0],
		SupportedVersions: h.SupportedVersions[:0],
		Groups:            h.Groups[:0],
		PointFormats:      h.PointFormats[:0],
		SigAlgs:           h.SigAlgs[:0],
	}
}

// Parse reads a ClientHello body (the handshake message without its 4-byte
// header). It never panics; on error h holds what was read so far.
func (h *ClientHello) Parse(b []byte) error {
	h.reset()
	s := cryptobyte.String(b)
	var sid, cs, comp cryptobyte.String
	if !s.ReadUint16(&h.Version) || !s.Skip(32) ||
		!s.ReadUint8LengthPrefixed(&sid) ||
		!s.ReadUint16LengthPrefixed(&cs) || len(cs)%2 != 0 ||
		!s.ReadUint8LengthPrefixed(&comp) {
		return errMalformed
	}
	for !cs.Empty() {
		var c uint16
		cs.ReadUint16(&c)
		h.Ciphers = append(h.Ciphers, c)
	}
	if s.Empty() {
		return nil // no extensions block: legal before TLS 1.3
	}
	var exts cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&exts) {
		return errMalformed
	}
	for !exts.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return errMalformed
		}
		h.Extensions = append(h.Extensions, Extension{typ, data})
		// A malformed body leaves the extension listed (it counts for
		// the fingerprints, as it does in tshark) but adds no values.
		switch typ {
		case extServerName:
			h.HasSNI = true
			if h.SNI == nil {
				h.SNI = parseSNI(data)
			}
		case extSupportedGroups:
			h.Groups = appendU16List(h.Groups, data)
		case extECPointFormats:
			var l cryptobyte.String
			if data.ReadUint8LengthPrefixed(&l) {
				h.PointFormats = append(h.PointFormats, l...)
			}
		case extSignatureAlgs:
			h.SigAlgs = appendU16List(h.SigAlgs, data)
		case extALPN:
			var l cryptobyte.String
			if !h.HasALPN && data.ReadUint16LengthPrefixed(&l) {
				h.HasALPN, h.alpn = true, l
			}
		case extSupportedVersions:
			var l cryptobyte.String
			if data.ReadUint8LengthPrefixed(&l) {
				for len(l) >= 2 {
					var v uint16
					l.ReadUint16(&v)
					h.SupportedVersions = append(h.SupportedVersions, v)
				}
			}
		}
	}
	return nil
}

// FirstALPN returns the first protocol the client offers, or nil.
func (h *ClientHello) FirstALPN() []byte {
	l := cryptobyte.String(h.alpn)
	var p cryptobyte.String
	if l.ReadUint8LengthPrefixed(&p) {
		return p
	}
	return nil
}

// ALPNs appends the offered protocols to dst.
func (h *ClientHello) ALPNs(dst []string) []string { return appendALPNs(dst, h.alpn) }

func appendALPNs(dst []string, list []byte) []string {
	l := cryptobyte.String(list)
	for !l.Empty() {
		var p cryptobyte.String
		if !l.ReadUint8LengthPrefixed(&p) {
			break
		}
		dst = append(dst, string(p))
	}
	return dst
}

// hasExt reports whether extension typ is present.
func hasExt(exts []Extension, typ uint16) bool {
	for _, e := range exts {
		if e.Type == typ {
			return true
		}
	}
	return false
}

func parseSNI(data cryptobyte.String) []byte {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) {
		return nil
	}
	for !list.Empty() {
		var typ uint8
		var name cryptobyte.String
		if !list.ReadUint8(&typ) || !list.ReadUint16LengthPrefixed(&name) {
			return nil
		}
		if typ == 0 && len(name) > 0 {
			return name
		}
	}
	return nil
}

func appendU16List(dst []uint16, data cryptobyte.String) []uint16 {
	var l cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&l) {
		return dst
	}
	for len(l) >= 2 {
		var v uint16
		l.ReadUint16(&v)
		dst = append(dst, v)
	}
	return dst
}

// hrrRandom is the ServerHello.random that marks a HelloRetryRequest
// (RFC 8446 4.1.3).
var hrrRandom = [32]byte{
	0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
	0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
}

// ServerHello is a parsed ServerHello body; slices are reused by the next
// Parse and alias the input.
type ServerHello struct {
	Version         uint16 // legacy_version (the real one before TLS 1.3 draft 22)
	Cipher          uint16
	Extensions      []Extension
	SelectedVersion uint16 // supported_versions, 0 if absent
	ALPN            []byte // selected protocol, nil if none
	HRR             bool   // HelloRetryRequest
}

// Parse reads a ServerHello body. It never panics.
func (h *ServerHello) Parse(b []byte) error {
	*h = ServerHello{Extensions: h.Extensions[:0]}
	s := cryptobyte.String(b)
	var random []byte
	if !s.ReadUint16(&h.Version) || !s.ReadBytes(&random, 32) {
		return errMalformed
	}
	h.HRR = [32]byte(random) == hrrRandom
	// TLS 1.3 drafts before 22 dropped session id and compression.
	legacy := !(h.Version>>8 == 0x7f && h.Version&0xff < 22) && h.Version != 0x0304
	var sid cryptobyte.String
	if legacy && !s.ReadUint8LengthPrefixed(&sid) {
		return errMalformed
	}
	if !s.ReadUint16(&h.Cipher) {
		return errMalformed
	}
	var comp uint8
	if legacy && !s.ReadUint8(&comp) {
		return errMalformed
	}
	if s.Empty() {
		return nil
	}
	var exts cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&exts) {
		return errMalformed
	}
	for !exts.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return errMalformed
		}
		h.Extensions = append(h.Extensions, Extension{typ, data})
		switch typ {
		case extSupportedVersions:
			data.ReadUint16(&h.SelectedVersion)
		case extALPN:
			var l, p cryptobyte.String
			if data.ReadUint16LengthPrefixed(&l) && l.ReadUint8LengthPrefixed(&p) {
				h.ALPN = p
			}
		}
	}
	return nil
}

// Negotiated returns the version the server chose.
func (h *ServerHello) Negotiated() uint16 {
	if h.SelectedVersion != 0 {
		return h.SelectedVersion
	}
	return h.Version
}

// isTLS13 reports whether v is TLS 1.3 or one of its drafts, after which
// the certificate is encrypted.
func isTLS13(v uint16) bool {
	return v == 0x0304 || v>>8 == 0x7f || v>>8 == 0xfb
}

// isGREASE reports whether v is one of the RFC 8701 reserved values.
func isGREASE(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }
