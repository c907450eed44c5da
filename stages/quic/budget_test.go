package quic

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/flow"
	"github.com/pktpipe/pktpipe/stages/reassembly"
)

// partialHello is a client Initial carrying the RFC ClientHello's first
// 100 bytes: the stream holds a buffer and waits for the rest.
func partialHello(t testing.TB) []byte {
	return seal(t, Version1, "client in", dcidA, dcidA, scidC, 0, cryptoFrame(0, rfcClientHello(t)[:100]))
}

// restOfHello completes partialHello's stream.
func restOfHello(t testing.TB) []byte {
	ch := rfcClientHello(t)
	return seal(t, Version1, "client in", dcidA, dcidA, scidC, 1, cryptoFrame(100, ch[100:]))
}

// held is what one stream holding a partial hello is charged: a pooled
// buffer and the first spans array.
const held = int64(poolBufSize + 4*spanBytes)

// TestBudgetGivesUpOldestConnection: connections share the worker's
// budget; when it is full the one that waited longest is abandoned (state
// gave_up) and the others complete.
func TestBudgetGivesUpOldestConnection(t *testing.T) {
	b := reassembly.NewBudget(3*held, nil)
	w := &Worker{Budget: b}
	trs := make([]*Tracker, 4)
	for i := range trs {
		trs[i] = &Tracker{Worker: w}
		trs[i].Datagram(ToServer, partialHello(t))
		if b.Used() > b.Limit() {
			t.Fatalf("%d bytes in use, budget %d", b.Used(), b.Limit())
		}
	}
	if b.Used() != 3*held || b.GivenUp() != 1 {
		t.Fatalf("in use %d, given up %d: want 3 streams held, 1 given up", b.Used(), b.GivenUp())
	}
	if !trs[0].GaveUp || trs[0].streams[ToServer].buf != nil || trs[0].Summary().State != "gave_up" {
		t.Fatalf("the oldest connection was not abandoned (gave up %v)", trs[0].GaveUp)
	}
	if c, _ := trs[0].Datagram(ToServer, restOfHello(t)); c {
		t.Fatal("an abandoned connection read its hello")
	}
	for _, tr := range trs[1:] {
		if c, _ := tr.Datagram(ToServer, restOfHello(t)); !c || tr.Client.SNI != "example.com" {
			t.Fatalf("a connection within the budget did not complete: %+v", tr.Client)
		}
	}
	// A read hello gives its buffer back: live flows hold nothing.
	if b.Used() != 0 || len(w.bufs) != 3 {
		t.Fatalf("in use %d, pooled %d after every hello was read", b.Used(), len(w.bufs))
	}
	for _, tr := range trs {
		tr.Reset()
	}
	if b.Used() != 0 {
		t.Fatalf("in use %d after reset", b.Used())
	}
}

// TestBudgetRefusesOversizedStream: a budget smaller than a stream's
// buffer gives the connection up instead of reading past it.
func TestBudgetRefusesOversizedStream(t *testing.T) {
	b := reassembly.NewBudget(poolBufSize-1, nil)
	tr := &Tracker{Worker: &Worker{Budget: b}}
	if c, _ := tr.Datagram(ToServer, seal(t, Version1, "client in", dcidA, dcidA, scidC, 0, cryptoFrame(0, rfcClientHello(t)))); c {
		t.Fatal("a hello was read past the budget")
	}
	if !tr.GaveUp || b.Used() != 0 || b.GivenUp() != 1 {
		t.Fatalf("gave up %v, in use %d, given up %d", tr.GaveUp, b.Used(), b.GivenUp())
	}
}

// TestNoAllocPerPacketWithBudget: with a budget, a steady-state Initial
// (keys derived, CRYPTO data already held) still allocates nothing.
func TestNoAllocPerPacketWithBudget(t *testing.T) {
	ch := rfcClientHello(t)
	part := seal(t, Version1, "client in", dcidA, dcidA, scidC, 0, cryptoFrame(0, ch[:100]))
	b := reassembly.NewBudget(1<<20, stats.NewRegistry())
	tr := &Tracker{Worker: &Worker{Budget: b}}
	tr.Datagram(ToServer, part)
	if n := testing.AllocsPerRun(100, func() {
		tr.dgrams[ToServer] = 0
		tr.Datagram(ToServer, part)
	}); n != 0 {
		t.Errorf("%v allocations per Initial", n)
	}
	if b.Used() != held {
		t.Fatalf("in use %d, want %d", b.Used(), held)
	}
}

// TestBudgetBoundsStalledConnections: many UDP flows, each an Initial
// whose CRYPTO data spans nearly 64 KiB and never completes, through the
// analyzer in a flow table: the bytes held never pass the budget, the
// flows are still recorded (state gave_up for those given up), and a real
// connection after them reads its hello.
func TestBudgetBoundsStalledConnections(t *testing.T) {
	const flows = 2000
	const limit = 8 << 20
	reg := stats.NewRegistry()
	b := reassembly.NewBudget(limit, reg)
	out := make(chan *event.Batch, 64)
	var quicEvents, summaries, gaveUp int
	done := make(chan struct{})
	go func() {
		defer close(done)
		for batch := range out {
			for _, e := range batch.Events {
				switch e := e.(type) {
				case *event.QUIC:
					quicEvents++
				case *event.Flow:
					for _, x := range e.Extra {
						if s, ok := x.(*event.QUICSummary); ok {
							summaries++
							if s.State == "gave_up" {
								gaveUp++
							}
						}
					}
				}
			}
		}
	}()
	em := pipeline.NewEmitter(out)
	proc := flow.NewProcessor(flow.Config{Workers: 1, MaxFlows: flows + 1, Stats: reg}, New(Config{Stats: reg, Budget: b}))
	// A hello announcing 60000 bytes, of which the start and a piece near
	// the end arrive: the stream holds a ~59 KB buffer.
	hello := make([]byte, 1000)
	copy(hello, []byte{1, 0, 0xea, 0x60})
	stalled := seal(t, Version1, "client in", dcidA, dcidA, scidC, 0,
		slices.Concat(cryptoFrame(0, hello), cryptoFrame(59000, make([]byte, 100))))
	ts := int64(1_700_000_000e9)
	send := func(i int, payload []byte) {
		ts += 1000
		p := packet.Packet{Data: payload, Timestamp: ts, IfIndex: -1, Meta: packet.Meta{
			IPVersion: 4, Src: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), Dst: netip.AddrFrom4([4]byte{192, 0, 2, 1}),
			Proto: packet.ProtoUDP, SrcPort: 50000, DstPort: 443, HasL4: true, PayloadLen: uint16(len(payload)),
		}}
		proc.Packet(&p, em)
	}
	for i := range flows {
		send(i, stalled)
		if b.Used() > limit {
			t.Fatalf("flow %d: %d bytes in use, budget %d", i, b.Used(), limit)
		}
	}
	if b.Used() < limit*9/10 || b.GivenUp() < flows-limit/59000 {
		t.Fatalf("in use %d, given up %d: the stalled streams should fill the budget and be given up", b.Used(), b.GivenUp())
	}
	send(flows, seal(t, Version1, "client in", dcidA, dcidA, scidC, 0, cryptoFrame(0, rfcClientHello(t))))
	proc.Flush(ts, em)
	em.Flush()
	close(out)
	<-done
	t.Logf("%d stalled QUIC connections, budget %d MiB: %d streams given up", flows, limit>>20, b.GivenUp())
	if quicEvents != 1 || summaries != flows+1 || gaveUp != int(b.GivenUp()) {
		t.Fatalf("%d quic events (want the real one), %d summaries (want %d), %d gave_up (want %d)",
			quicEvents, summaries, flows+1, gaveUp, b.GivenUp())
	}
	if b.Used() != 0 {
		t.Fatalf("%d bytes in use after every flow ended", b.Used())
	}
	if v, _ := reg.Value("pktpipe_reassembly_given_up_total"); uint64(v) != b.GivenUp() {
		t.Fatalf("given up counter %v", v)
	}
}
