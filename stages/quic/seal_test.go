package quic

import (
	"encoding/binary"
	"testing"
)

// seal builds a protected Initial packet (RFC 9001 5): the long header of
// version v with dcid and scid, a 4-byte packet number pn, and payload
// encrypted with the keys derived from keyDCID for label ("client in" or
// "server in"). Test-only: the package itself never encrypts.
func seal(t testing.TB, v uint32, label string, keyDCID, dcid, scid []byte, pn uint32, payload []byte) []byte {
	t.Helper()
	p := paramsFor(v)
	k, err := deriveKeys(p, keyDCID, label)
	if err != nil {
		t.Fatal(err)
	}
	typeBits := byte(0) // Initial
	if p.v2 {
		typeBits = 1
	}
	hdr := []byte{0xc0 | typeBits<<4 | 3}
	hdr = binary.BigEndian.AppendUint32(hdr, v)
	hdr = append(hdr, byte(len(dcid)))
	hdr = append(hdr, dcid...)
	hdr = append(hdr, byte(len(scid)))
	hdr = append(hdr, scid...)
	hdr = append(hdr, 0) // no token
	length := 4 + len(payload) + k.aead.Overhead()
	hdr = binary.BigEndian.AppendUint16(hdr, 0x4000|uint16(length))
	pnOff := len(hdr)
	hdr = binary.BigEndian.AppendUint32(hdr, pn)
	nonce := k.iv
	for i := range 8 {
		nonce[4+i] ^= byte(uint64(pn) >> (56 - 8*i))
	}
	pkt := k.aead.Seal(hdr, nonce[:], payload, hdr)
	var mask [16]byte
	k.hp.Encrypt(mask[:], pkt[pnOff+4:pnOff+4+16])
	pkt[0] ^= mask[0] & 0x0f
	for i := range 4 {
		pkt[pnOff+i] ^= mask[1+i]
	}
	return pkt
}

// cryptoFrame encodes a CRYPTO frame.
func cryptoFrame(off int, data []byte) []byte {
	b := []byte{frameCrypto}
	b = binary.BigEndian.AppendUint32(b, 0x80000000|uint32(off))
	b = binary.BigEndian.AppendUint32(b, 0x80000000|uint32(len(data)))
	return append(b, data...)
}
