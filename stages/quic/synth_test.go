package quic

import (
	"bytes"
	"slices"
	"testing"
)

// rfcClientHello is the RFC 9001 A.2 ClientHello message (SNI
// example.com, ALPN "alpn").
func rfcClientHello(t testing.TB) []byte { return unhex(t, rfcClientFrames)[4:] }

var (
	dcidA = []byte{1, 2, 3, 4, 5, 6, 7, 8}
	dcidB = []byte{9, 9, 9, 9, 9, 9, 9, 9, 9}
	scidC = []byte{0xc, 0xc, 0xc, 0xc}
)

func newTracker() *Tracker { return &Tracker{Worker: &Worker{}} }

// TestFragmentsOutOfOrder: a hello cut into overlapping, repeated,
// out-of-order CRYPTO frames over three Initials (with PING and PADDING
// between) completes with the packet that fills the last gap, not before.
func TestFragmentsOutOfOrder(t *testing.T) {
	ch := rfcClientHello(t)
	n := len(ch)
	pk1 := seal(t, Version1, "client in", dcidA, dcidA, scidC, 0, slices.Concat(
		cryptoFrame(100, ch[100:180]), []byte{framePing}, cryptoFrame(150, ch[150:n]), make([]byte, 30)))
	pk2 := seal(t, Version1, "client in", dcidA, dcidA, scidC, 1, slices.Concat(
		cryptoFrame(100, ch[100:120]), cryptoFrame(0, ch[0:40])))
	pk3 := seal(t, Version1, "client in", dcidA, dcidA, scidC, 2, slices.Concat(
		[]byte{0, 0, 0}, cryptoFrame(30, ch[30:101])))
	tr := newTracker()
	for i, pk := range [][]byte{pk1, pk2, pk2, pk3} {
		c, _ := tr.Datagram(ToServer, pk)
		if c != (i == 3) {
			t.Fatalf("datagram %d: complete %v", i, c)
		}
	}
	if tr.Client.SNI != "example.com" || tr.Client.Initials != 4 {
		t.Fatalf("client %+v", tr.Client)
	}
}

// TestCoalesced: an Initial followed by a Handshake packet, a 0-RTT
// packet and zero padding in one datagram; the Initial is read and the
// rest skipped by their lengths.
func TestCoalesced(t *testing.T) {
	ch := rfcClientHello(t)
	ini := seal(t, Version1, "client in", dcidA, dcidA, scidC, 0, cryptoFrame(0, ch))
	// A Handshake packet (type 2) with Length 20 of junk.
	hs := append([]byte{0xe0, 0, 0, 0, 1, 8}, dcidA...)
	hs = append(hs, 0, 20)
	hs = append(hs, bytes.Repeat([]byte{0xaa}, 20)...)
	zrtt := append([]byte{0xd0, 0, 0, 0, 1, 8}, dcidA...)
	zrtt = append(zrtt, 0, 5, 1, 2, 3, 4, 5)
	dg := slices.Concat(hs, ini, zrtt, make([]byte, 200))
	tr := newTracker()
	if c, _ := tr.Datagram(ToServer, dg); !c || tr.Client.SNI != "example.com" {
		t.Fatalf("hello not read from a coalesced datagram: %+v", tr)
	}
	if tr.Undecryptable != 0 {
		t.Errorf("%d undecryptable", tr.Undecryptable)
	}
}

// TestRetry: after a Retry, the client's Initials go to the Retry's SCID
// and both directions' keys come from it.
func TestRetry(t *testing.T) {
	ch := rfcClientHello(t)
	tr := newTracker()
	tr.Datagram(ToServer, seal(t, Version1, "client in", dcidA, dcidA, scidC, 0, cryptoFrame(0, ch[:50])))
	retry := append([]byte{0xf0, 0, 0, 0, 1, byte(len(scidC))}, scidC...)
	retry = append(retry, byte(len(dcidB)))
	retry = append(retry, dcidB...)
	retry = append(retry, []byte("token")...)
	retry = append(retry, make([]byte, 16)...) // integrity tag (not checked)
	tr.Datagram(ToClient, retry)
	c, _ := tr.Datagram(ToServer, seal(t, Version1, "client in", dcidB, dcidB, scidC, 1, cryptoFrame(0, ch)))
	if !c || !tr.Client.Retry {
		t.Fatalf("hello after retry: %+v", tr.Client)
	}
	sh := unhex(t, rfcServerFrames)
	_, s := tr.Datagram(ToClient, seal(t, Version1, "server in", dcidB, scidC, dcidB, 0, sh))
	if !s || tr.Server.Cipher != 0x1301 {
		t.Fatalf("server hello with the retry's keys: %+v", tr.Server)
	}
	if tr.derived != 2 {
		t.Errorf("%d key derivations, want 2", tr.derived)
	}
}

// TestVersionNegotiation: a client probing with a reserved version, the
// server's Version Negotiation, then a version 2 Initial.
func TestVersionNegotiation(t *testing.T) {
	probe := append([]byte{0xc0, 0x1a, 0x2a, 0x3a, 0x4a, 8}, dcidA...)
	probe = append(probe, 0)
	probe = append(probe, make([]byte, 1200)...)
	if !Plausible(probe) {
		t.Fatal("a reserved-version Initial is not plausible")
	}
	tr := newTracker()
	tr.Datagram(ToServer, probe)
	vn := append([]byte{0x80, 0, 0, 0, 0, 0, 8}, dcidA...)
	vn = append(vn, 0, 0, 0, 1, 0x6b, 0x33, 0x43, 0xcf)
	tr.Datagram(ToClient, vn)
	c, _ := tr.Datagram(ToServer, seal(t, Version2, "client in", dcidA, dcidA, scidC, 0, cryptoFrame(0, rfcClientHello(t))))
	if !c || VersionString(tr.Client.Version) != "6b3343cf" {
		t.Fatalf("v2 hello after VN: %+v", tr.Client)
	}
	if s := tr.Summary(); !slices.Equal(s.VersionsOffered, []string{"1", "6b3343cf"}) {
		t.Errorf("versions offered %v", s.VersionsOffered)
	}
}

// TestDraft29: a draft-29 Initial (its transport parameters use 0xffa5)
// still gets JA4's 'q'.
func TestDraft29(t *testing.T) {
	ch := rfcClientHello(t)
	// Rewrite quic_transport_parameters (0x0039) to the draft codepoint.
	i := bytes.Index(ch, []byte{0x00, 0x39, 0x00, 0x32})
	if i < 0 {
		t.Fatal("no transport parameters in the RFC hello")
	}
	ch = bytes.Clone(ch)
	ch[i], ch[i+1] = 0xff, 0xa5
	tr := newTracker()
	c, _ := tr.Datagram(ToServer, seal(t, Draft29, "client in", dcidA, dcidA, nil, 0, cryptoFrame(0, ch)))
	if !c || tr.Client.JA4[0] != 'q' || VersionString(tr.Client.Version) != "ff00001d" {
		t.Fatalf("draft-29 hello: %+v", tr.Client)
	}
}

// TestGiveUp: a hello longer than the cap, data beyond the cap, and a
// stream of undecryptable Initials end the attempt.
func TestGiveUp(t *testing.T) {
	t.Run("hello too long", func(t *testing.T) {
		tr := newTracker()
		tr.Datagram(ToServer, seal(t, Version1, "client in", dcidA, dcidA, nil, 0, cryptoFrame(0, []byte{1, 0x02, 0, 0, 3, 3})))
		if !tr.GaveUp {
			t.Fatal("a 128 KiB hello was not refused")
		}
	})
	t.Run("offset beyond cap", func(t *testing.T) {
		tr := newTracker()
		tr.Datagram(ToServer, seal(t, Version1, "client in", dcidA, dcidA, nil, 0, cryptoFrame(MaxCryptoBytes, []byte{1})))
		if !tr.GaveUp {
			t.Fatal("data beyond the cap was taken")
		}
	})
	t.Run("undecryptable", func(t *testing.T) {
		tr := newTracker()
		pk := seal(t, Version1, "client in", dcidB, dcidA, nil, 0, cryptoFrame(0, rfcClientHello(t)))
		for range maxUndecryptable {
			tr.Datagram(ToServer, pk)
		}
		if !tr.GaveUp || tr.Client != nil || !tr.Done() {
			t.Fatalf("gave up %v", tr.GaveUp)
		}
		if s := tr.Summary(); s.State != "gave_up" {
			t.Errorf("state %s", s.State)
		}
	})
	t.Run("not a hello", func(t *testing.T) {
		tr := newTracker()
		tr.Datagram(ToServer, seal(t, Version1, "client in", dcidA, dcidA, nil, 0, cryptoFrame(0, []byte{2, 0, 0, 1, 0})))
		if !tr.GaveUp {
			t.Fatal("a ServerHello from the client was taken")
		}
	})
}
