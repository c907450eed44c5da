package rtt_test

import (
	"net/netip"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/flow"
	"github.com/pktpipe/pktpipe/stages/rtt"
	"github.com/pktpipe/pktpipe/stages/tcpstate"
)

const ms = int64(1e6)

var (
	cli = netip.MustParseAddr("10.0.0.1")
	srv = netip.MustParseAddr("10.0.0.2")
	t0  = int64(1_700_000_000) * 1e9
)

func tcp(ts int64, fromClient bool, flags uint8, seq, ack uint32, plen uint16) packet.Packet {
	s, d, sp, dp := cli, srv, uint16(40000), uint16(443)
	if !fromClient {
		s, d, sp, dp = srv, cli, 443, 40000
	}
	return packet.Packet{OrigLen: 60 + uint32(plen), Timestamp: ts, IfIndex: -1, Meta: packet.Meta{
		IPVersion: 4, Src: s, Dst: d, Proto: packet.ProtoTCP, SrcPort: sp, DstPort: dp, HasL4: true,
		TCPFlags: flags, Seq: seq, Ack: ack, Window: 1000, PayloadLen: plen,
	}}
}

func echo(ts int64, request bool, seq uint16) packet.Packet {
	s, d, typ := cli, srv, uint8(8)
	if !request {
		s, d, typ = srv, cli, 0
	}
	return packet.Packet{OrigLen: 84, Timestamp: ts, IfIndex: -1, Meta: packet.Meta{
		IPVersion: 4, Src: s, Dst: d, Proto: packet.ProtoICMP, HasL4: true, ICMPType: typ, ICMPID: 9, ICMPSeq: seq,
	}}
}

// run feeds pkts one per batch through a flow table with our analyzers
// and returns the events.
func run(t *testing.T, reg *stats.Registry, pkts ...packet.Packet) []event.Event {
	t.Helper()
	ch := make(chan *event.Batch, 64)
	em := pipeline.NewEmitter(ch)
	var evs []event.Event
	done := make(chan struct{})
	go func() {
		for b := range ch {
			evs = append(evs, b.Events...)
		}
		close(done)
	}()
	p := flow.NewProcessor(flow.Config{Workers: 1, Stats: reg}, analyzers(reg)...)
	pool := packet.NewPool(4, 1<<16)
	var now int64
	for i := range pkts {
		b := pool.Get()
		b.AppendPacket(&pkts[i])
		now = max(now, pkts[i].Timestamp)
		b.Now = now
		p.Process(b, em)
		b.Release()
	}
	p.Flush(now, em)
	em.Flush()
	close(ch)
	<-done
	return evs
}

func rtts(evs []event.Event) []*event.RTT {
	var out []*event.RTT
	for _, e := range evs {
		if r, ok := e.(*event.RTT); ok {
			out = append(out, r)
		}
	}
	return out
}

func flowRec(t *testing.T, evs []event.Event) *event.Flow {
	t.Helper()
	for _, e := range evs {
		if f, ok := e.(*event.Flow); ok {
			return f
		}
	}
	t.Fatal("no flow record")
	return nil
}

func conn(t *testing.T, f *event.Flow) *tcpstate.Conn {
	t.Helper()
	for _, x := range f.Extra {
		if c, ok := x.(*tcpstate.Conn); ok {
			return c
		}
	}
	t.Fatal("no conn extension")
	return nil
}

func TestHandshake(t *testing.T) {
	evs := run(t, nil,
		tcp(t0, true, packet.TCPSyn, 100, 0, 0),
		tcp(t0+7*ms, false, packet.TCPSyn|packet.TCPAck, 5000, 101, 0),
		tcp(t0+10*ms, true, packet.TCPAck, 101, 5001, 0),
		tcp(t0+11*ms, true, packet.TCPAck|packet.TCPPsh, 101, 5001, 50),
	)
	rs := rtts(evs)
	if len(rs) != 1 {
		t.Fatalf("%d rtt events", len(rs))
	}
	r := rs[0]
	if r.ServerNS != 7*ms || r.ClientNS != 3*ms || r.HandshakeNS != 10*ms || r.SYNRetransmitted || r.Timestamp != t0+10*ms {
		t.Errorf("got %+v", r)
	}
	if r.SrcIP != cli || r.DestPort != 443 {
		t.Errorf("header %+v", r.Header)
	}
}

// A retransmitted SYN: measured from the latest SYN before the SYN/ACK
// (tshark's ts_mru_syn); a SYN/ACK acking something else is ignored.
func TestHandshakeSYNRetransmitted(t *testing.T) {
	evs := run(t, nil,
		tcp(t0, true, packet.TCPSyn, 100, 0, 0),
		tcp(t0+1000*ms, true, packet.TCPSyn, 100, 0, 0),
		tcp(t0+1001*ms, false, packet.TCPSyn|packet.TCPAck, 5000, 77, 0), // wrong ack
		tcp(t0+1005*ms, false, packet.TCPSyn|packet.TCPAck, 5000, 101, 0),
		tcp(t0+1006*ms, false, packet.TCPSyn|packet.TCPAck, 5000, 101, 0), // retransmitted
		tcp(t0+1008*ms, true, packet.TCPAck, 101, 5001, 0),
	)
	rs := rtts(evs)
	if len(rs) != 1 {
		t.Fatalf("%d rtt events", len(rs))
	}
	r := rs[0]
	if r.ServerNS != 5*ms || r.ClientNS != 3*ms || r.HandshakeNS != 8*ms || !r.SYNRetransmitted || !r.SYNACKRetransmitted {
		t.Errorf("got %+v", r)
	}
}

func TestRefused(t *testing.T) {
	reg := stats.NewRegistry()
	evs := run(t, reg,
		tcp(t0, true, packet.TCPSyn, 100, 0, 0),
		tcp(t0+2*ms, false, packet.TCPRst|packet.TCPAck, 0, 101, 0),
	)
	rs := rtts(evs)
	if len(rs) != 1 || !rs[0].Refused || rs[0].RSTNS != 2*ms || rs[0].HandshakeNS != 0 {
		t.Fatalf("got %+v", rs)
	}
	if c := conn(t, flowRec(t, evs)); c.State != "REJ" || c.History != "Sr" {
		t.Errorf("conn %+v", c)
	}
	if v, _ := reg.Value("pktpipe_rtt_refused_total"); v != 1 {
		t.Errorf("refused counter %v", v)
	}
}

func TestEcho(t *testing.T) {
	reg := stats.NewRegistry()
	var pkts []packet.Packet
	pkts = append(pkts, echo(t0, true, 1), echo(t0+2*ms, false, 1))
	pkts = append(pkts, echo(t0+1000*ms, true, 2)) // never answered: expires
	pkts = append(pkts, echo(t0+12000*ms, true, 3), echo(t0+12004*ms, false, 3))
	pkts = append(pkts, echo(t0+12500*ms, true, 4), echo(t0+12600*ms, true, 4), echo(t0+12601*ms, false, 4)) // latest copy
	pkts = append(pkts, echo(t0+12700*ms, false, 99))                                                        // unmatched
	pkts = append(pkts, echo(t0+13000*ms, true, 5))                                                          // outstanding at the end
	evs := run(t, reg, pkts...)
	rs := rtts(evs)
	want := []int64{2 * ms, 4 * ms, 1 * ms}
	if len(rs) != len(want) {
		t.Fatalf("%d rtt events", len(rs))
	}
	for i, r := range rs {
		if r.NS != want[i] || r.Kind != event.RTTICMPEcho || r.ID != 9 {
			t.Errorf("%d: %+v", i, r)
		}
	}
	if !rs[2].Retransmitted {
		t.Error("duplicate request not flagged")
	}
	var sum *event.RTTSummary
	for _, x := range flowRec(t, evs).Extra {
		if s, ok := x.(*event.RTTSummary); ok {
			sum = s
		}
	}
	if sum == nil || sum.Echo.Count != 3 || sum.Echo.Unanswered != 2 || sum.Echo.MinNS != 1*ms || sum.Echo.MaxNS != 4*ms {
		t.Fatalf("summary %+v", sum)
	}
	for id, want := range map[string]float64{
		`pktpipe_rtt_unanswered_total{kind="icmp_echo"}`: 2,
		`pktpipe_rtt_unmatched_total{kind="icmp_echo"}`:  1,
		`pktpipe_rtt_measured_total{kind="icmp_echo"}`:   3,
	} {
		if v, _ := reg.Value(id); v != want {
			t.Errorf("%s = %v, want %v", id, v, want)
		}
	}
}

func TestPendingCap(t *testing.T) {
	var p rtt.Pending
	p.Max = 4
	drops := 0
	for i := range 10 {
		if _, d := p.Request(uint32(i), int64(i)); d {
			drops++
		}
	}
	if drops != 6 || p.Len() != 4 {
		t.Fatalf("drops %d len %d", drops, p.Len())
	}
	if _, _, ok := p.Answer(5, 20); ok {
		t.Error("dropped request answered")
	}
	if d, _, ok := p.Answer(9, 20); !ok || d != 11 {
		t.Errorf("answer 9: %d %v", d, ok)
	}
	if n := p.Expire(100, 10); n != 3 || p.Len() != 0 {
		t.Errorf("expired %d, left %d", n, p.Len())
	}
	p.KeepFirst = true
	p.Request(1, 0)
	if dup, _ := p.Request(1, 5); !dup {
		t.Error("duplicate not reported")
	}
	if d, dup, _ := p.Answer(1, 7); d != 7 || !dup {
		t.Errorf("KeepFirst: %d %v", d, dup)
	}
}

func TestConnStates(t *testing.T) {
	A, S, SA, F, R, P := uint8(packet.TCPAck), uint8(packet.TCPSyn), uint8(packet.TCPSyn|packet.TCPAck), uint8(packet.TCPFin|packet.TCPAck), uint8(packet.TCPRst), uint8(packet.TCPPsh|packet.TCPAck)
	c, s := true, false
	cases := []struct {
		name    string
		pkts    []packet.Packet
		state   string
		history string
		missed  uint64
	}{
		{"S0", []packet.Packet{tcp(t0, c, S, 100, 0, 0)}, "S0", "S", 0},
		{"S1", []packet.Packet{tcp(t0, c, S, 100, 0, 0), tcp(t0+1, s, SA, 900, 101, 0), tcp(t0+2, c, A, 101, 901, 0)}, "S1", "ShA", 0},
		{"SF", []packet.Packet{
			tcp(t0, c, S, 100, 0, 0), tcp(t0+1, s, SA, 900, 101, 0), tcp(t0+2, c, A, 101, 901, 0),
			tcp(t0+3, c, P, 101, 901, 10), tcp(t0+4, s, A, 901, 111, 0), tcp(t0+5, s, P, 901, 111, 20),
			tcp(t0+6, c, F, 111, 921, 0), tcp(t0+7, s, F, 921, 112, 0), tcp(t0+8, c, A, 112, 922, 0),
		}, "SF", "ShADadFf", 0},
		{"RSTO", []packet.Packet{tcp(t0, c, S, 100, 0, 0), tcp(t0+1, s, SA, 900, 101, 0), tcp(t0+2, c, A, 101, 901, 0), tcp(t0+3, c, R, 101, 0, 0)}, "RSTO", "ShAR", 0},
		{"RSTR", []packet.Packet{tcp(t0, c, S, 100, 0, 0), tcp(t0+1, s, SA, 900, 101, 0), tcp(t0+2, c, A, 101, 901, 0), tcp(t0+3, s, R, 901, 0, 0)}, "RSTR", "ShAr", 0},
		{"SH", []packet.Packet{tcp(t0, c, S, 100, 0, 0), tcp(t0+1, c, F, 101, 0, 0)}, "SH", "SF", 0},
		{"RSTOS0", []packet.Packet{tcp(t0, c, S, 100, 0, 0), tcp(t0+1, c, R, 101, 0, 0)}, "RSTOS0", "SR", 0},
		{"OTH-midstream", []packet.Packet{tcp(t0, c, P, 100, 900, 10), tcp(t0+1, s, A, 900, 110, 0)}, "OTH", "Da", 0},
		{"SHR", []packet.Packet{tcp(t0, s, SA, 900, 101, 0), tcp(t0+1, s, F, 901, 101, 0)}, "SHR", "^hf", 0},
		{"gap-retrans-reorder", []packet.Packet{
			tcp(t0, c, S, 0xfffffff0, 0, 0), tcp(t0+1, s, SA, 900, 0xfffffff1, 0), tcp(t0+2, c, A, 0xfffffff1, 901, 0),
			tcp(t0+3, c, P, 0xfffffff1, 901, 100), // wraps past 0
			tcp(t0+4, c, P, 0x55+100, 901, 100),   // skips 100 bytes: a hole [0x55, 0xb9)
			tcp(t0+5, c, P, 0x55+200, 901, 50),
			tcp(t0+6, c, P, 0x55, 901, 40),     // fills the first 40 bytes of the hole (reordering)
			tcp(t0+7, c, P, 0x55+200, 901, 50), // retransmission
		}, "S1", "ShADTG", 60},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := conn(t, flowRec(t, run(t, nil, tc.pkts...)))
			if got.State != tc.state || got.History != tc.history || got.MissedToServer+got.MissedToClient != tc.missed {
				t.Errorf("got %s %q missed %d, want %s %q %d", got.State, got.History, got.MissedToServer+got.MissedToClient, tc.state, tc.history, tc.missed)
			}
		})
	}
}
