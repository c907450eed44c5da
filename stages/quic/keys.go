package quic

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
)

// QUIC versions whose Initial packets this package can decrypt.
const (
	Version1  uint32 = 0x00000001 // RFC 9000/9001
	Version2  uint32 = 0x6b3343cf // RFC 9369
	Draft29   uint32 = 0xff00001d // draft-ietf-quic-tls-29 (also 30-32: same salt and labels)
	draft32   uint32 = 0xff000020
	versionVN uint32 = 0 // Version Negotiation
)

// Long header packet types, normalised to RFC 9000's numbering (version 2
// rotates the wire bits; see params.typeOf).
const (
	typeInitial = iota
	type0RTT
	typeHandshake
	typeRetry
)

// params are a version's Initial protection parameters.
type params struct {
	salt                       []byte
	keyLabel, ivLabel, hpLabel string
	v2                         bool // RFC 9369 packet type bits
}

var (
	paramsV1 = &params{
		salt:     []byte{0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a},
		keyLabel: "quic key", ivLabel: "quic iv", hpLabel: "quic hp",
	}
	paramsV2 = &params{
		salt:     []byte{0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9},
		keyLabel: "quicv2 key", ivLabel: "quicv2 iv", hpLabel: "quicv2 hp",
		v2: true,
	}
	paramsDraft29 = &params{
		salt:     []byte{0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97, 0x86, 0xf1, 0x9c, 0x61, 0x11, 0xe0, 0x43, 0x90, 0xa8, 0x99},
		keyLabel: "quic key", ivLabel: "quic iv", hpLabel: "quic hp",
	}
)

// paramsFor returns the parameters of version v, or nil if Initial
// packets of v cannot be decrypted here.
func paramsFor(v uint32) *params {
	switch {
	case v == Version1:
		return paramsV1
	case v == Version2:
		return paramsV2
	case v >= Draft29 && v <= draft32:
		return paramsDraft29
	}
	return nil
}

// typeOf maps the long header's type bits to RFC 9000 numbering.
func (p *params) typeOf(first byte) int {
	t := int(first>>4) & 3
	if p.v2 {
		// RFC 9369 3.2: Initial 0b01, 0-RTT 0b10, Handshake 0b11, Retry 0b00.
		return (t + 3) & 3
	}
	return t
}

// isReserved reports whether v is a version reserved to exercise version
// negotiation (RFC 9000 15: 0x?a?a?a?a).
func isReserved(v uint32) bool { return v&0x0f0f0f0f == 0x0a0a0a0a }

// keys protect one direction's Initial packets.
type keys struct {
	aead cipher.AEAD
	hp   cipher.Block
	iv   [12]byte
}

var errKeys = errors.New("quic: key derivation failed")

// deriveKeys computes the Initial keys of one direction ("client in" or
// "server in") from the client's Destination Connection ID (RFC 9001
// 5.2). It allocates the ciphers: once per connection attempt.
func deriveKeys(p *params, dcid []byte, label string) (keys, error) {
	var k keys
	key, iv, hp, err := keyMaterial(p, dcid, label)
	if err != nil {
		return k, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return k, errKeys
	}
	if k.aead, err = cipher.NewGCM(block); err != nil {
		return k, errKeys
	}
	if k.hp, err = aes.NewCipher(hp); err != nil {
		return k, errKeys
	}
	copy(k.iv[:], iv)
	return k, nil
}

// keyMaterial derives the AEAD key, IV and header protection key of one
// direction.
func keyMaterial(p *params, dcid []byte, label string) (key, iv, hp []byte, err error) {
	initial, err := hkdf.Extract(sha256.New, dcid, p.salt)
	if err != nil {
		return nil, nil, nil, errKeys
	}
	secret, err := expandLabel(initial, label, 32)
	if err != nil {
		return nil, nil, nil, err
	}
	if key, err = expandLabel(secret, p.keyLabel, 16); err != nil {
		return nil, nil, nil, err
	}
	if iv, err = expandLabel(secret, p.ivLabel, 12); err != nil {
		return nil, nil, nil, err
	}
	if hp, err = expandLabel(secret, p.hpLabel, 16); err != nil {
		return nil, nil, nil, err
	}
	return key, iv, hp, nil
}

// expandLabel is TLS 1.3's HKDF-Expand-Label with an empty context
// (RFC 8446 7.1).
func expandLabel(secret []byte, label string, n int) ([]byte, error) {
	var info [2 + 1 + 255 + 1]byte
	binary.BigEndian.PutUint16(info[:], uint16(n))
	full := "tls13 " + label
	info[2] = byte(len(full))
	m := 3 + copy(info[3:], full)
	info[m] = 0 // empty context
	out, err := hkdf.Expand(sha256.New, secret, string(info[:m+1]), n)
	if err != nil {
		return nil, errKeys
	}
	return out, nil
}

// decodePN reconstructs a full packet number from its truncated form
// (RFC 9000 A.3); largest is the largest number received so far, -1 if
// none.
func decodePN(largest int64, truncated uint64, nbits uint) uint64 {
	expected := uint64(largest + 1)
	win := uint64(1) << nbits
	hwin := win / 2
	mask := win - 1
	candidate := (expected &^ mask) | truncated
	switch {
	case candidate+hwin <= expected && candidate < (1<<62)-win:
		return candidate + win
	case candidate > expected+hwin && candidate >= win:
		return candidate - win
	}
	return candidate
}
