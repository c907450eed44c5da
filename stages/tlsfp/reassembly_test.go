package tlsfp

import (
	"github.com/pktpipe/pktpipe/pipeline/event"
	"path/filepath"
	"testing"

	"github.com/pktpipe/pktpipe/internal/testenv"
)

// helloFlow returns a real handshake to cut up: the client's and server's
// payload bytes of tls12.pcap's one flow (foxio), in order, with the
// expected JA4.
func helloFlow(t testing.TB) (client, server []byte, isn uint32) {
	t.Helper()
	p := filepath.Join(testenv.Conformance(t, "foxio-ja4", "pcap"), "tls-alpn-h2.pcap")
	segs, _ := readSegments(t, p)
	var cli tuple
	for _, s := range segs {
		if s.flags&0x12 == 0x02 {
			cli, isn = tuple{s.src, s.dst}, s.seq
			break
		}
	}
	for _, s := range segs {
		if s.src == cli.src {
			client = append(client, s.payload...)
		} else {
			server = append(server, s.payload...)
		}
	}
	if len(client) < 100 {
		t.Fatal("no client payload")
	}
	return client, server, isn
}

// feed sends the client bytes as segments cut at the given boundaries, in
// the given order, after a SYN.
func feedCuts(tr *Tracker, isn uint32, data []byte, cuts []int, order []int) {
	tr.Segment(ToServer, isn, 0x02, nil, 0)
	bounds := append(append([]int{0}, cuts...), len(data))
	for _, i := range order {
		a, b := bounds[i], bounds[i+1]
		tr.Segment(ToServer, isn+1+uint32(a), 0x18, data[a:b], 1)
	}
}

func wantJA4(t *testing.T, tr *Tracker, want string) {
	t.Helper()
	c := tr.Result().Client
	if c == nil {
		t.Fatalf("no ClientHello; want %s", want)
	}
	if c.JA4 != want {
		t.Fatalf("ja4 %s, want %s", c.JA4, want)
	}
}

func refJA4(t *testing.T, client []byte, isn uint32) string {
	var tr Tracker
	feedCuts(&tr, isn, client, nil, []int{0})
	c := tr.Result().Client
	if c == nil || c.JA4 == "" {
		t.Fatal("reference hello not parsed")
	}
	return c.JA4
}

func TestReassemblyHelloInThreeSegments(t *testing.T) {
	client, _, isn := helloFlow(t)
	want := refJA4(t, client, isn)
	var tr Tracker
	feedCuts(&tr, isn, client, []int{3, 100}, []int{0, 1, 2})
	wantJA4(t, &tr, want)
}

func TestReassemblyOneByteSegments(t *testing.T) {
	client, _, isn := helloFlow(t)
	want := refJA4(t, client, isn)
	var tr Tracker
	tr.Segment(ToServer, isn, 0x02, nil, 0)
	for i := range client {
		tr.Segment(ToServer, isn+1+uint32(i), 0x10, client[i:i+1], 1)
	}
	wantJA4(t, &tr, want)
}

func TestReassemblyOutOfOrder(t *testing.T) {
	client, _, isn := helloFlow(t)
	want := refJA4(t, client, isn)
	var tr Tracker
	feedCuts(&tr, isn, client, []int{50, 120, 200}, []int{3, 2, 1, 0})
	wantJA4(t, &tr, want)
}

func TestReassemblyRetransmissionOverlap(t *testing.T) {
	client, _, isn := helloFlow(t)
	want := refJA4(t, client, isn)
	var tr Tracker
	tr.Segment(ToServer, isn, 0x02, nil, 0)
	n := uint32(len(client))
	seg := func(a, b uint32) { tr.Segment(ToServer, isn+1+a, 0x10, client[a:b], 1) }
	seg(0, n/3)
	seg(0, n/3)          // exact retransmission
	seg(n/6, n/2)        // overlaps the old, brings new
	seg(4*n/5, n)        // ahead: held
	seg(n/2-10, 4*n/5+5) // fills the gap, overlapping both sides
	wantJA4(t, &tr, want)
}

func TestReassemblyCapExceeded(t *testing.T) {
	// A "handshake record" announcing a huge message never completes: the
	// direction must stop at MaxBuffer, report truncation, free its
	// buffer and ignore what follows.
	var tr Tracker
	tr.Segment(ToServer, 1000, 0x02, nil, 0)
	rec := []byte{22, 3, 1, 0x40, 0x00, 1, 0xff, 0xff, 0xff}
	seq := uint32(1001)
	tr.Segment(ToServer, seq, 0x18, rec, 1)
	seq += uint32(len(rec))
	chunk := make([]byte, 1400)
	for i := 0; i < 20; i++ {
		tr.Segment(ToServer, seq, 0x10, chunk, 1)
		seq += uint32(len(chunk))
	}
	h := &tr.half[ToServer]
	if tr.state[ToServer] != stDone || h.buf != nil || h.accepted > MaxBuffer {
		t.Fatalf("direction not stopped at the cap: state %d, accepted %d, buf %d", tr.state[ToServer], h.accepted, cap(h.buf))
	}
	if !tr.Result().Truncated {
		t.Fatal("cap not reported")
	}
}

func TestNotTLSStopsEarly(t *testing.T) {
	var tr Tracker
	tr.Segment(ToServer, 1, 0x02, nil, 0)
	if !tr.Segment(ToServer, 2, 0x18, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 1) {
		t.Fatal("HTTP on the client side not rejected")
	}
	if !tr.Result().NotTLS || tr.HasHandshake() || tr.half[0].buf != nil {
		t.Fatal("not-TLS flow kept state")
	}
}

func TestDoneFreesBuffers(t *testing.T) {
	client, server, isn := helloFlow(t)
	var tr Tracker
	tr.Segment(ToServer, isn, 0x02, nil, 0)
	tr.Segment(ToClient, 5000, 0x12, nil, 0)
	tr.Segment(ToServer, isn+1, 0x18, client, 1)
	done := tr.Segment(ToClient, 5001, 0x18, server, 2)
	if !done {
		t.Fatal("handshake not done after both flights")
	}
	if tr.half[0].buf != nil || tr.half[1].buf != nil {
		t.Fatal("buffers kept after done")
	}
	e := tr.Event(tr.eventHeaderForTest())
	if e == nil || e.JA3SHash == "" || !e.HasHelloRTT || e.HelloRTTms != 1e-6 {
		t.Fatalf("event %+v", e)
	}
}

func (t *Tracker) eventHeaderForTest() (h eventHeader) { return }

type eventHeader = event.Header
