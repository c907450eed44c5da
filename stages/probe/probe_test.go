package probe

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sinks/encode"
	"github.com/pktpipe/pktpipe/stages/flow"
	"github.com/pktpipe/pktpipe/stages/tcpstate"
)

const ms = int64(time.Millisecond)

var (
	t0   = int64(1_700_000_000) * int64(time.Second)
	cli  = netip.MustParseAddr("10.0.0.1")
	srv  = netip.MustParseAddr("10.0.0.2")
	rtr  = netip.MustParseAddr("10.0.0.254")
	cli6 = netip.MustParseAddr("fd00::1")
	srv6 = netip.MustParseAddr("fd00::2")
	rtr6 = netip.MustParseAddr("fd00::fe")
)

func ipv(a netip.Addr) uint8 {
	if a.Is4() {
		return 4
	}
	return 6
}

func tcp(ts int64, src netip.Addr, sp uint16, dst netip.Addr, dp uint16, flags uint8, seq, ack uint32) packet.Packet {
	return packet.Packet{OrigLen: 60, Timestamp: ts, IfIndex: -1, Meta: packet.Meta{
		IPVersion: ipv(src), Src: src, Dst: dst, Proto: packet.ProtoTCP,
		SrcPort: sp, DstPort: dp, HasL4: true, TCPFlags: flags, Seq: seq, Ack: ack, Window: 1024,
	}}
}

func udp(ts int64, src netip.Addr, sp uint16, dst netip.Addr, dp uint16) packet.Packet {
	return packet.Packet{OrigLen: 60, Timestamp: ts, IfIndex: -1, Meta: packet.Meta{
		IPVersion: ipv(src), Src: src, Dst: dst, Proto: packet.ProtoUDP,
		SrcPort: sp, DstPort: dp, HasL4: true,
	}}
}

func icmpProto(a netip.Addr) uint8 {
	if a.Is4() {
		return packet.ProtoICMP
	}
	return packet.ProtoICMPv6
}

func echo(ts int64, src, dst netip.Addr, typ uint8, id uint16) packet.Packet {
	return packet.Packet{OrigLen: 84, Timestamp: ts, IfIndex: -1, Meta: packet.Meta{
		IPVersion: ipv(src), Src: src, Dst: dst, Proto: icmpProto(src), HasL4: true,
		ICMPType: typ, ICMPID: id,
	}}
}

// icmpErr is an error from rep to the quoted packet's sender, quoting q.
func icmpErr(ts int64, rep netip.Addr, typ, code uint8, q *packet.Packet) packet.Packet {
	qm := &q.Meta
	p := packet.Packet{OrigLen: 70, Timestamp: ts, IfIndex: -1, Meta: packet.Meta{
		IPVersion: ipv(rep), Src: rep, Dst: qm.Src, Proto: icmpProto(rep), HasL4: true,
		ICMPType: typ, ICMPCode: code,
	}}
	p.Meta.X = &packet.Extra{Quote: packet.Quote{
		Present: true, IPVersion: qm.IPVersion, Src: qm.Src, Dst: qm.Dst, Proto: qm.Proto,
		SrcPort: qm.SrcPort, DstPort: qm.DstPort,
		HasPorts: qm.Proto == packet.ProtoTCP || qm.Proto == packet.ProtoUDP,
		Seq:      qm.Seq, HasSeq: qm.Proto == packet.ProtoTCP,
		HasEcho: packet.IsEcho(qm.Proto, qm.ICMPType), ICMPID: qm.ICMPID, ICMPType: qm.ICMPType,
	}}
	return p
}

const (
	syn    = packet.TCPSyn
	synack = packet.TCPSyn | packet.TCPAck
	ack    = packet.TCPAck
	rstack = packet.TCPRst | packet.TCPAck
)

type connJSON struct {
	State        string   `json:"state"`
	History      string   `json:"history"`
	Outcome      string   `json:"outcome"`
	Attempts     int      `json:"attempts"`
	RTTMS        *float64 `json:"rtt_ms"`
	RTTNS        *int64   `json:"rtt_ns"`
	ICMPReporter string   `json:"icmp_reporter"`
	ICMPType     *int     `json:"icmp_type"`
	ICMPCode     *int     `json:"icmp_code"`
}

type recJSON struct {
	raw       string
	EventType string    `json:"event_type"`
	FlowID    uint64    `json:"flow_id"`
	SrcIP     string    `json:"src_ip"`
	SrcPort   int       `json:"src_port"`
	DestIP    string    `json:"dest_ip"`
	DestPort  int       `json:"dest_port"`
	Proto     string    `json:"proto"`
	Conn      *connJSON `json:"conn"`
}

// runFlows runs pkts through a flow table with tcpstate (unless noTCPState)
// and probe, and returns the flow records as JSON.
func runFlows(t *testing.T, reg *stats.Registry, noTCPState bool, pkts ...packet.Packet) []recJSON {
	t.Helper()
	as := []flow.Analyzer{tcpstate.New(), New(reg)}
	if noTCPState {
		as = as[1:]
	}
	p := flow.NewProcessor(flow.Config{Workers: 1, Stats: reg}, as...)
	ch := make(chan *event.Batch, 1024)
	em := pipeline.NewEmitter(ch)
	var now int64
	for i := range pkts {
		p.Packet(&pkts[i], em)
		now = max(now, pkts[i].Timestamp)
	}
	p.Flush(now, em)
	em.Flush()
	close(ch)
	enc, err := encode.New("json")
	if err != nil {
		t.Fatal(err)
	}
	var out []recJSON
	for b := range ch {
		for _, e := range b.Events {
			line := string(enc.Append(nil, e))
			if strings.Count(line, `"conn":`) > 1 {
				t.Errorf("two conn objects: %s", line)
			}
			var r recJSON
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("%v: %s", err, line)
			}
			r.raw = line
			if r.EventType == "flow" {
				out = append(out, r)
			}
		}
		b.Release()
	}
	return out
}

func TestOutcomes(t *testing.T) {
	synA := tcp(t0, cli, 40000, srv, 22, syn, 1000, 0)
	synB := tcp(t0, cli, 40001, srv, 23, syn, 5000, 0)
	synC := tcp(t0, cli, 40002, srv, 24, syn, 7000, 0)
	synD := tcp(t0, cli6, 40003, srv6, 25, syn, 9000, 0)
	synE := tcp(t0, cli, 40004, srv, 26, syn, 100, 0)
	udpA := udp(t0, cli, 50000, srv, 53)
	udpB := udp(t0, cli6, 50001, srv6, 161)
	echoA := echo(t0, cli, srv, 8, 7)
	echoB := echo(t0, cli6, srv6, 128, 8)
	echoC := echo(t0, cli, netip.MustParseAddr("10.0.9.9"), 8, 9)
	at := func(p packet.Packet, d int64) packet.Packet { p.Timestamp = t0 + d*ms; return p }
	tests := []struct {
		name       string
		noTCPState bool
		pkts       []packet.Packet
		outcome    string
		attempts   int
		rttMS      float64 // -1: none
		reporter   string
		state      string // tcpstate's conn.state, when it runs
	}{
		{name: "syn answered", pkts: []packet.Packet{
			synA, tcp(t0+2*ms, srv, 22, cli, 40000, synack, 77, 1001), tcp(t0+3*ms, cli, 40000, srv, 22, ack, 1001, 78),
		}, outcome: "open", attempts: 1, rttMS: 2, state: "S1"},
		{name: "syn answered without tcpstate", noTCPState: true, pkts: []packet.Packet{
			synA, tcp(t0+2*ms, srv, 22, cli, 40000, synack, 77, 1001),
		}, outcome: "open", attempts: 1, rttMS: 2},
		{name: "syn answered after two retransmissions", pkts: []packet.Packet{
			synA, at(synA, 1000), at(synA, 3000), tcp(t0+3004*ms, srv, 22, cli, 40000, synack, 77, 1001),
		}, outcome: "open", attempts: 3, rttMS: 4, state: "S1"},
		{name: "refused", pkts: []packet.Packet{
			synB, tcp(t0+1*ms, srv, 23, cli, 40001, rstack, 0, 5001),
		}, outcome: "closed", attempts: 1, rttMS: 1, state: "REJ"},
		{name: "no answer", pkts: []packet.Packet{
			synC, at(synC, 1000),
		}, outcome: "filtered", attempts: 2, rttMS: -1, state: "S0"},
		{name: "admin prohibited v4", pkts: []packet.Packet{
			synC, icmpErr(t0+5*ms, rtr, 3, 13, &synC),
		}, outcome: "admin_prohibited", attempts: 1, rttMS: 5, reporter: "10.0.0.254", state: "S0"},
		{name: "admin prohibited v6", pkts: []packet.Packet{
			synD, icmpErr(t0+5*ms, rtr6, 1, 1, &synD),
		}, outcome: "admin_prohibited", attempts: 1, rttMS: 5, reporter: "fd00::fe", state: "S0"},
		{name: "tcp port unreachable", pkts: []packet.Packet{
			synE, icmpErr(t0+1*ms, srv, 3, 3, &synE),
		}, outcome: "closed", attempts: 1, rttMS: 1, reporter: "10.0.0.2", state: "S0"},
		{name: "ttl exceeded", pkts: []packet.Packet{
			synE, icmpErr(t0+1*ms, rtr, 11, 0, &synE),
		}, outcome: "ttl_exceeded", attempts: 1, rttMS: 1, reporter: "10.0.0.254", state: "S0"},
		{name: "frag needed says nothing", pkts: []packet.Packet{
			synE, icmpErr(t0+1*ms, rtr, 3, 4, &synE),
		}, outcome: "filtered", attempts: 1, rttMS: -1, state: "S0"},
		{name: "error then answer: the target wins", pkts: []packet.Packet{
			synA, icmpErr(t0+1*ms, rtr, 3, 1, &synA), at(synA, 1000), tcp(t0+1010*ms, srv, 22, cli, 40000, synack, 77, 1001),
		}, outcome: "open", attempts: 2, rttMS: 10, state: "S1"},
		{name: "answer then error: the answer stays", pkts: []packet.Packet{
			synB, tcp(t0+1*ms, srv, 23, cli, 40001, rstack, 0, 5001), icmpErr(t0+2*ms, rtr, 3, 13, &synB),
		}, outcome: "closed", attempts: 1, rttMS: 1, state: "REJ"},
		{name: "forged syn/ack ignored", pkts: []packet.Packet{
			synA, tcp(t0+2*ms, srv, 22, cli, 40000, synack, 77, 4242),
		}, outcome: "filtered", attempts: 1, rttMS: -1, state: "S1"},
		{name: "forged rst ignored", pkts: []packet.Packet{
			synB, tcp(t0+1*ms, srv, 23, cli, 40001, packet.TCPRst, 0, 0),
		}, outcome: "filtered", attempts: 1, rttMS: -1, state: "REJ"},
		{name: "udp answered", pkts: []packet.Packet{
			udpA, at(udpA, 1000), func() packet.Packet { p := udp(t0+1003*ms, srv, 53, cli, 50000); return p }(),
		}, outcome: "open", attempts: 2, rttMS: 3},
		{name: "udp port unreachable v6", pkts: []packet.Packet{
			udpB, icmpErr(t0+1*ms, srv6, 1, 4, &udpB),
		}, outcome: "closed", attempts: 1, rttMS: 1, reporter: "fd00::2"},
		{name: "udp no answer", pkts: []packet.Packet{udpA},
			outcome: "filtered", attempts: 1, rttMS: -1},
		{name: "echo answered", pkts: []packet.Packet{
			echoA, echo(t0+1*ms, srv, cli, 0, 7), at(echoA, 1000), echo(t0+1001*ms, srv, cli, 0, 7),
		}, outcome: "open", attempts: 1, rttMS: 1},
		{name: "echo v6 answered", pkts: []packet.Packet{
			echoB, echo(t0+2*ms, srv6, cli6, 129, 8),
		}, outcome: "open", attempts: 1, rttMS: 2},
		{name: "echo host unreachable", pkts: []packet.Packet{
			echoC, at(echoC, 1000), icmpErr(t0+1500*ms, rtr, 3, 1, &echoC),
		}, outcome: "unreachable", attempts: 2, rttMS: 500, reporter: "10.0.0.254"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			recs := runFlows(t, stats.NewRegistry(), tc.noTCPState, tc.pkts...)
			if len(recs) != 1 {
				t.Fatalf("%d flow records, want 1", len(recs))
			}
			r := recs[0]
			c := r.Conn
			if c == nil {
				t.Fatalf("no conn: %s", r.raw)
			}
			if c.Outcome != tc.outcome || c.Attempts != tc.attempts {
				t.Errorf("outcome %s attempts %d, want %s %d: %s", c.Outcome, c.Attempts, tc.outcome, tc.attempts, r.raw)
			}
			switch {
			case tc.rttMS < 0 && c.RTTMS != nil:
				t.Errorf("rtt on an unanswered attempt: %s", r.raw)
			case tc.rttMS >= 0 && (c.RTTMS == nil || *c.RTTMS != tc.rttMS || *c.RTTNS != int64(tc.rttMS*1e6)):
				t.Errorf("rtt want %v ms: %s", tc.rttMS, r.raw)
			}
			if c.ICMPReporter != tc.reporter {
				t.Errorf("icmp_reporter %q, want %q: %s", c.ICMPReporter, tc.reporter, r.raw)
			}
			if !tc.noTCPState && r.Proto == "TCP" && c.State != tc.state {
				t.Errorf("tcpstate's state %q, want %q (same conn object): %s", c.State, tc.state, r.raw)
			}
		})
	}
}

func TestNotAttempts(t *testing.T) {
	for _, tc := range []struct {
		name string
		pkts []packet.Packet
	}{
		{"midstream", []packet.Packet{tcp(t0, cli, 40000, srv, 22, ack, 1, 1), tcp(t0+ms, srv, 22, cli, 40000, ack, 1, 1)}},
		{"syn/ack first", []packet.Packet{tcp(t0, srv, 22, cli, 40000, synack, 1, 1), tcp(t0+ms, cli, 40000, srv, 22, ack, 2, 2)}},
		{"echo reply first", []packet.Packet{echo(t0, srv, cli, 0, 3)}},
		{"icmp other", []packet.Packet{echo(t0, cli, srv, 13, 3)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range runFlows(t, stats.NewRegistry(), false, tc.pkts...) {
				if r.Conn != nil && r.Conn.Outcome != "" {
					t.Errorf("outcome on a flow that is not an attempt: %s", r.raw)
				}
			}
		})
	}
}

func TestIgnoredCounted(t *testing.T) {
	reg := stats.NewRegistry()
	synA := tcp(t0, cli, 40000, srv, 22, syn, 1000, 0)
	forged := icmpErr(t0+ms, rtr, 3, 13, &synA)
	forged.Meta.X.Quote.Seq = 99
	answer := tcp(t0+2*ms, srv, 22, cli, 40000, synack, 77, 1001)
	recs := runFlows(t, reg, false, synA, forged, answer)
	if len(recs) != 1 || recs[0].Conn.Outcome != "open" {
		t.Fatalf("records %+v", recs)
	}
	// An error quoting the server's side of the flow (its SYN/ACK never
	// seen here) is about the other direction.
	synB := tcp(t0, cli, 41000, srv, 22, syn, 1000, 0)
	back := tcp(t0, srv, 22, cli, 41000, synack, 5, 1001)
	recs = runFlows(t, reg, false, synB, icmpErr(t0+ms, rtr, 3, 1, &back))
	if len(recs) != 1 || recs[0].Conn.Outcome != "filtered" {
		t.Fatalf("records %+v", recs)
	}
	for id, want := range map[string]float64{
		`pktpipe_probe_ignored_total{reason="quote_mismatch"}`:  1,
		`pktpipe_probe_ignored_total{reason="quote_direction"}`: 1,
		`pktpipe_probe_outcomes_total{outcome="open"}`:          1,
		`pktpipe_probe_outcomes_total{outcome="filtered"}`:      1,
	} {
		if v, ok := reg.Value(id); !ok || v != want {
			t.Errorf("%s = %v (%v), want %v", id, v, ok, want)
		}
	}
}

// TestAllocs: per attempt, the analyzer allocates only the record's conn
// extension (state comes from the free list), and nothing per packet.
func TestAllocs(t *testing.T) {
	cycle := func(as ...flow.Analyzer) float64 {
		reg := stats.NewRegistry()
		p := flow.NewProcessor(flow.Config{Workers: 1, Stats: reg, MaxFlows: 1024}, as...)
		ch := make(chan *event.Batch, 64)
		done := make(chan struct{})
		go func() {
			for b := range ch {
				b.Release()
			}
			close(done)
		}()
		defer func() { close(ch); <-done }()
		em := pipeline.NewEmitter(ch)
		ts := t0
		pkts := make([]packet.Packet, 4)
		n := testing.AllocsPerRun(200, func() {
			ts += 10 * int64(time.Second)
			pkts[0] = tcp(ts, cli, 40000, srv, 22, syn, 1000, 0)
			pkts[1] = tcp(ts+ms, cli, 40000, srv, 22, syn, 1000, 0)
			pkts[2] = tcp(ts+2*ms, cli, 40000, srv, 22, syn, 1000, 0)
			pkts[3] = tcp(ts+3*ms, srv, 22, cli, 40000, rstack, 0, 1001)
			for i := range pkts {
				p.Packet(&pkts[i], em)
			}
			p.Flush(ts+4*ms, em)
			em.Flush()
		})
		return n
	}
	// Alone, the record's Extra slice is the probe's to allocate too.
	without, with := cycle(), cycle(New(nil))
	t.Logf("allocations per attempt of 4 packets: %.1f without probe, %.1f with", without, with)
	if with-without > 2 {
		t.Errorf("probe alone allocates %.1f per attempt, want 2 (the extension and rec.Extra)", with-without)
	}
	// Joined to tcpstate's conn: only the extension.
	without, with = cycle(tcpstate.New()), cycle(tcpstate.New(), New(nil))
	t.Logf("with tcpstate: %.1f without probe, %.1f with", without, with)
	if with-without > 1 {
		t.Errorf("probe after tcpstate allocates %.1f per attempt, want 1 (the extension)", with-without)
	}
}
