package quic

import (
	"testing"

	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/stages/reassembly"
)

// FuzzInitial feeds a client datagram and a server datagram to a tracker
// as they are, then seals each as the payload of an Initial (so that the
// fuzzer's bytes reach the frame parser, the reassembly and the TLS
// parsers past the AEAD) and feeds those. Nothing may panic, and the
// limits must hold.
func FuzzInitial(f *testing.F) {
	f.Add(unhex(f, v1ClientPacket), unhex(f, v1ServerPacket))
	f.Add(unhex(f, v2ClientPacket), unhex(f, v2ServerPacket))
	f.Add(unhex(f, rfcClientFrames), unhex(f, rfcServerFrames))
	f.Add(unhex(f, v1ClientPacket)[:60], unhex(f, v1Retry))
	f.Fuzz(func(t *testing.T, client, server []byte) {
		w := &Worker{}
		tr := &Tracker{Worker: w}
		Plausible(client)
		tr.Datagram(ToServer, client)
		tr.Datagram(ToClient, server)
		tr.Datagram(ToServer, server)
		tr.Datagram(ToClient, client)
		check(t, tr)

		tr = &Tracker{Worker: w}
		tr.Datagram(ToServer, seal(t, Version1, "client in", dcidA, dcidA, scidC, 0, client))
		tr.Datagram(ToClient, seal(t, Version1, "server in", dcidA, scidC, nil, 0, server))
		tr.Datagram(ToServer, seal(t, Version1, "client in", dcidA, scidC, scidC, 1, server))
		check(t, tr)
		tr.ClientEvent(event.Header{})
		tr.ServerEvent(event.Header{})
		tr.Summary()
	})
}

// FuzzFrames feeds plaintext frames to both directions' reassembly.
func FuzzFrames(f *testing.F) {
	f.Add(unhex(f, rfcClientFrames))
	f.Add(unhex(f, rfcServerFrames))
	f.Add(cryptoFrame(5, []byte{1, 2, 3}))
	f.Fuzz(func(t *testing.T, plain []byte) {
		tr := &Tracker{Worker: &Worker{}}
		tr.crypto(ToServer, plain)
		tr.crypto(ToClient, plain)
		tr.crypto(ToServer, plain)
		check(t, tr)

		// Again with a budget that may not hold both streams: they give
		// each other up, and the accounting stays exact.
		b := reassembly.NewBudget(int64(len(plain))*16, nil)
		tr = &Tracker{Worker: &Worker{Budget: b}}
		tr.crypto(ToServer, plain)
		tr.crypto(ToClient, plain)
		tr.crypto(ToServer, plain)
		check(t, tr)
		var held int64
		for d := range tr.streams {
			s := &tr.streams[d]
			if s.held.Bytes() > 0 {
				held += int64(cap(s.buf) + cap(s.spans)*spanBytes)
			}
		}
		if b.Used() != held || b.Limit() > 0 && b.Used() > b.Limit() {
			t.Fatalf("budget %d of %d in use, streams hold %d", b.Used(), b.Limit(), held)
		}
		tr.Reset()
		if b.Used() != 0 {
			t.Fatalf("%d bytes in use after reset", b.Used())
		}
	})
}

func check(t *testing.T, tr *Tracker) {
	for d := range tr.streams {
		s := &tr.streams[d]
		if len(s.buf) > MaxCryptoBytes || len(s.spans) > maxSpans {
			t.Fatalf("stream %d: %d bytes, %d spans", d, len(s.buf), len(s.spans))
		}
		for i, sp := range s.spans {
			if sp.start >= sp.end || sp.end > len(s.buf) || i > 0 && s.spans[i-1].end >= sp.start {
				t.Fatalf("stream %d: bad spans %v (buf %d)", d, s.spans, len(s.buf))
			}
		}
	}
	if tr.derived > maxDerivations {
		t.Fatalf("%d derivations", tr.derived)
	}
}
