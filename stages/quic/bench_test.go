package quic

import (
	"testing"
)

// BenchmarkInitialDecrypt: header protection removal and AEAD opening of
// the RFC 9001 1200-byte client Initial with keys already derived (the
// per-packet cost; 0 allocations).
func BenchmarkInitialDecrypt(b *testing.B) {
	pkt := unhex(b, v1ClientPacket)
	h, _ := parseLong(pkt)
	k, err := deriveKeys(paramsV1, unhex(b, rfcDCID), "client in")
	if err != nil {
		b.Fatal(err)
	}
	var d decryptor
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := d.open(&k, pkt, &h, -1); !ok {
			b.Fatal("does not open")
		}
	}
}

// BenchmarkClientHello: a new connection's first Initial, end to end: key
// derivation (both directions), decryption, reassembly, ClientHello
// parsing and fingerprints (the per-connection cost; its allocations are
// the ciphers and the event's strings).
func BenchmarkClientHello(b *testing.B) {
	pkt := unhex(b, v1ClientPacket)
	tr := &Tracker{Worker: &Worker{}}
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		tr.Reset()
		if c, _ := tr.Datagram(ToServer, pkt); !c {
			b.Fatal("no hello")
		}
	}
}

// TestNoAllocPerPacket: steady-state packets allocate nothing: an Initial
// of a connection whose keys are derived (here, one that repeats CRYPTO
// data already held), and any datagram of a flow that is not QUIC.
func TestNoAllocPerPacket(t *testing.T) {
	ch := rfcClientHello(t)
	part := seal(t, Version1, "client in", dcidA, dcidA, scidC, 0, cryptoFrame(0, ch[:100]))
	tr := &Tracker{Worker: &Worker{}}
	tr.Datagram(ToServer, part)
	if tr.Decrypted[ToServer] != 1 {
		t.Fatal("setup: not decrypted")
	}
	if n := testing.AllocsPerRun(100, func() {
		tr.dgrams[ToServer] = 0
		tr.Datagram(ToServer, part)
	}); n != 0 {
		t.Errorf("%v allocations per Initial with derived keys", n)
	}
	dns := []byte{0x9a, 0xbc, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'w', 'w', 'w', 0, 0, 1, 0, 1}
	if n := testing.AllocsPerRun(100, func() { Plausible(dns) }); n != 0 {
		t.Errorf("%v allocations to reject a non-QUIC datagram", n)
	}
}
