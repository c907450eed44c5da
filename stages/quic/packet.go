package quic

import "encoding/binary"

// maxCIDLen is the longest connection ID QUIC v1 allows (RFC 9000 17.2).
const maxCIDLen = 20

// longHeader is a parsed long header packet. Slices alias the datagram.
type longHeader struct {
	version uint32
	p       *params // nil for versions this package cannot decrypt
	typ     int     // typeInitial... (meaningful when p != nil)
	dcid    []byte
	scid    []byte
	pnOff   int // offset of the (protected) packet number
	end     int // end of this packet in the datagram
}

// parseLong parses the long header packet at the start of b (RFC 9000
// 17.2). ok is false when b does not start with one that can be
// delimited: a short header, padding, a truncated header, or a version
// whose header layout is unknown. A Version Negotiation or Retry packet
// runs to the end of the datagram.
func parseLong(b []byte) (h longHeader, ok bool) {
	if len(b) < 7 || b[0]&0x80 == 0 {
		return h, false
	}
	h.version = binary.BigEndian.Uint32(b[1:5])
	i := 5
	dl := int(b[i])
	i++
	if i+dl >= len(b) {
		return h, false
	}
	h.dcid = b[i : i+dl]
	i += dl
	sl := int(b[i])
	i++
	if i+sl > len(b) {
		return h, false
	}
	h.scid = b[i : i+sl]
	i += sl
	if h.version == versionVN {
		h.pnOff, h.end = i, len(b)
		return h, true
	}
	h.p = paramsFor(h.version)
	if h.p == nil || dl > maxCIDLen || sl > maxCIDLen {
		// Unknown layout beyond the invariant fields (RFC 8999): the
		// packet cannot be delimited, so the rest of the datagram is
		// skipped.
		h.p = nil
		h.pnOff, h.end = i, len(b)
		return h, true
	}
	h.typ = h.p.typeOf(b[0])
	switch h.typ {
	case typeRetry:
		h.pnOff, h.end = i, len(b)
		return h, true
	case typeInitial:
		tl, n := readVarint(b[i:])
		if n == 0 || tl > uint64(len(b)-i-n) {
			return h, false
		}
		i += n + int(tl)
	}
	l, n := readVarint(b[i:])
	if n == 0 || l > uint64(len(b)-i-n) {
		return h, false
	}
	i += n
	h.pnOff, h.end = i, i+int(l)
	return h, true
}

// readVarint reads a QUIC variable-length integer (RFC 9000 16); n is 0
// when b is too short.
func readVarint(b []byte) (v uint64, n int) {
	if len(b) == 0 {
		return 0, 0
	}
	n = 1 << (b[0] >> 6)
	if len(b) < n {
		return 0, 0
	}
	v = uint64(b[0] & 0x3f)
	for _, c := range b[1:n] {
		v = v<<8 | uint64(c)
	}
	return v, n
}

// sampleLen is the header protection sample size for AES (RFC 9001 5.4.2).
const sampleLen = 16

// decryptor holds the scratch one worker's decryption uses, so that a
// packet costs no allocation.
type decryptor struct {
	buf   []byte
	mask  [aesBlock]byte
	nonce [12]byte
}

const aesBlock = 16

// open removes header protection from and decrypts the Initial packet
// pkt (pkt[:h.end] of a datagram, h its parsed header) with k, into the
// decryptor's buffer (pkt is not modified). largest is the largest packet
// number decrypted so far in this direction (-1 if none). It returns the
// plaintext frames and the full packet number, or ok false if the packet
// does not authenticate.
func (d *decryptor) open(k *keys, pkt []byte, h *longHeader, largest int64) (plain []byte, pn uint64, ok bool) {
	if k.aead == nil || h.pnOff+4+sampleLen > h.end || h.end > len(pkt) {
		return nil, 0, false
	}
	k.hp.Encrypt(d.mask[:], pkt[h.pnOff+4:h.pnOff+4+sampleLen])
	first := pkt[0] ^ d.mask[0]&0x0f
	pnLen := int(first&3) + 1
	hdrLen := h.pnOff + pnLen
	if hdrLen+k.aead.Overhead() > h.end {
		return nil, 0, false
	}
	if cap(d.buf) < h.end {
		d.buf = make([]byte, h.end, max(h.end, 2048))
	}
	buf := d.buf[:h.end]
	copy(buf, pkt[:h.end])
	buf[0] = first
	var trunc uint64
	for i := range pnLen {
		buf[h.pnOff+i] ^= d.mask[1+i]
		trunc = trunc<<8 | uint64(buf[h.pnOff+i])
	}
	pn = decodePN(largest, trunc, uint(pnLen*8))
	d.nonce = k.iv
	for i := range 8 {
		d.nonce[4+i] ^= byte(pn >> (56 - 8*i))
	}
	out, err := k.aead.Open(buf[hdrLen:hdrLen], d.nonce[:], buf[hdrLen:], buf[:hdrLen])
	if err != nil {
		return nil, 0, false
	}
	return out, pn, true
}
