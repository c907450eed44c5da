package tlsfp

import (
	"testing"

	"github.com/pktpipe/pktpipe/stages/reassembly"
)

// helloBodies returns real ClientHello and ServerHello bodies for seeds
// and benchmarks.
func helloBodies(t testing.TB) (ch, sh []byte) {
	t.Helper()
	client, server, _ := helloFlow(t)
	body := func(stream []byte) []byte {
		var h half
		h.segment(0, false, stream)
		ev, _, b := h.nextEvent()
		if ev != evMessage {
			t.Fatal("no message in stream")
		}
		return append([]byte(nil), b...)
	}
	return body(client), body(server)
}

func FuzzParseClientHello(f *testing.F) {
	ch, _ := helloBodies(f)
	f.Add(ch)
	f.Add(ch[:len(ch)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		var h ClientHello
		if h.Parse(b) == nil {
			var s Scratch
			fp := s.Client(&h)
			if len(fp.JA3Hash) != 32 || len(fp.JA4) != 36 {
				t.Fatalf("bad fingerprint lengths: %q %q", fp.JA3Hash, fp.JA4)
			}
			// Recalled (the seed's hello remembered too): the same.
			var seed ClientHello
			if seed.Parse(ch) == nil {
				s.Client(&seed)
			}
			if again := s.Client(&h); again != fp {
				t.Fatalf("recalled %+v, computed %+v", again, fp)
			}
		}
	})
}

func FuzzParseServerHello(f *testing.F) {
	_, sh := helloBodies(f)
	f.Add(sh)
	f.Fuzz(func(t *testing.T, b []byte) {
		var h ServerHello
		if h.Parse(b) == nil {
			var s Scratch
			fp := s.Server(&h)
			if len(fp.JA3SHash) != 32 {
				t.Fatal("bad JA3S hash")
			}
			var seed ServerHello
			if seed.Parse(sh) == nil {
				s.Server(&seed)
			}
			if again := s.Server(&h); again != fp {
				t.Fatalf("recalled %+v, computed %+v", again, fp)
			}
		}
	})
}

// FuzzTracker cuts a byte string into segments of both directions with
// fuzzed sequence numbers; the tracker must never panic nor buffer past
// its cap.
func FuzzTracker(f *testing.F) {
	client, server, _ := helloFlow(f)
	f.Add(client, server, uint16(100), uint8(0))
	f.Add(client, server, uint16(7), uint8(3))
	f.Add(client, server, uint16(3000), uint8(4))
	// Proxy preambles (CONNECT, SOCKS5) in front of the hellos.
	f.Add(append([]byte("CONNECT h:443 HTTP/1.1\r\n\r\n"), client...), append([]byte("HTTP/1.1 200 OK\r\n\r\n"), server...), uint16(5), uint8(0))
	f.Add(append([]byte{5, 1, 0, 5, 1, 0, 1, 10, 0, 0, 2, 1, 187}, client...), append([]byte{5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0}, server...), uint16(2), uint8(0))
	f.Fuzz(func(t *testing.T, c, s []byte, cut uint16, mode uint8) {
		// mode&4: the two directions share a budget smaller than both
		// buffers, so they give each other up.
		var b *reassembly.Budget
		if mode&4 != 0 {
			b = reassembly.NewBudget(int64(cut)%(2*MaxBuffer)+1, nil)
		}
		tr := &Tracker{Scratch: new(Scratch)}
		tr.Scratch.bufs.bud = b
		step := int(cut%1500) + 1
		tr.Segment(ToServer, 10, 0x02, nil, 0)
		tr.Segment(ToClient, 20, 0x12, nil, 0)
		feed := func(d Dir, base uint32, data []byte) {
			for off := 0; off < len(data); off += step {
				end := min(off+step, len(data))
				seq := base + uint32(off)
				if mode&1 != 0 && off > 0 {
					seq -= uint32(mode) // overlaps
				}
				tr.Segment(d, seq, 0x10, data[off:end], int64(off))
			}
		}
		if mode&2 != 0 {
			feed(ToClient, 21, s)
			feed(ToServer, 11, c)
		} else {
			feed(ToServer, 11, c)
			feed(ToClient, 21, s)
		}
		for d := range tr.half {
			if tr.half[d].accepted > MaxBuffer || len(tr.half[d].buf) > MaxBuffer {
				t.Fatalf("direction %d buffered %d bytes", d, tr.half[d].accepted)
			}
			if len(tr.half[d].pending) > maxPending {
				t.Fatal("too many pending segments")
			}
		}
		if b != nil {
			var held int64
			for d := range tr.half {
				held += int64(cap(tr.half[d].buf) + tr.half[d].pendBytes)
			}
			if b.Used() != held || b.Used() > b.Limit() {
				t.Fatalf("budget %d of %d in use, buffers hold %d", b.Used(), b.Limit(), held)
			}
		}
		_ = tr.Event(eventHeader{})
		tr.Release()
		if b != nil && b.Used() != 0 {
			t.Fatalf("%d bytes in use after release", b.Used())
		}
	})
}
