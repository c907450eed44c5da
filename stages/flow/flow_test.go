package flow

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/stages/communityid"
)

const (
	syn    = packet.TCPSyn
	synack = packet.TCPSyn | packet.TCPAck
	ack    = packet.TCPAck
	pshack = packet.TCPPsh | packet.TCPAck
	finack = packet.TCPFin | packet.TCPAck
	rst    = packet.TCPRst
)

func handshakeFin(base int64) []packet.Packet {
	ms := sec / 1000
	return []packet.Packet{
		tcpPkt(base, cli, 40000, srv, 443, syn, 74),
		tcpPkt(base+1*ms, srv, 443, cli, 40000, synack, 74),
		tcpPkt(base+2*ms, cli, 40000, srv, 443, ack, 66),
		tcpPkt(base+3*ms, cli, 40000, srv, 443, pshack, 583),
		tcpPkt(base+4*ms, srv, 443, cli, 40000, pshack, 1514),
		tcpPkt(base+5*ms, cli, 40000, srv, 443, finack, 66),
		tcpPkt(base+6*ms, srv, 443, cli, 40000, finack, 66),
		tcpPkt(base+500*ms, cli, 40000, srv, 443, ack, 66), // trailing ACK in the linger
	}
}

func TestTCPHandshakeFin(t *testing.T) {
	p := NewProcessor(Config{MaxFlows: 16})
	pkts := handshakeFin(t0)
	evs := run(t, p, pkts, 256)
	fl := flows(evs)
	if len(fl) != 1 {
		t.Fatalf("%d flow records, want 1", len(fl))
	}
	r := fl[0]
	want := event.Flow{
		Header: event.Header{
			Timestamp: t0, FlowID: r.FlowID, SrcIP: cli, DestIP: srv, SrcPort: 40000, DestPort: 443,
			Proto: 6, CommunityID: communityid.New(0, true).ID(keyOf(pkts[0])), IfIndex: -1,
		},
		PktsToServer: 5, PktsToClient: 3, BytesToServer: 74 + 66 + 583 + 66 + 66, BytesToClient: 74 + 1514 + 66,
		Start: t0, End: t0 + 500*sec/1000, State: "closed", Reason: "fin",
		TCPFlags: 0x1b, TCPFlagsTS: 0x1b, TCPFlagsTC: 0x1b,
	}
	got := *r
	// event_id is the Emitter's (pipeline/event/id.go): not compared here.
	got.Header = event.Header{
		Timestamp: r.Timestamp, FlowID: r.FlowID, SrcIP: r.SrcIP, DestIP: r.DestIP, SrcPort: r.SrcPort, DestPort: r.DestPort,
		Proto: r.Proto, CommunityID: r.CommunityID, VLAN: r.VLAN, IfIndex: r.IfIndex, PcapCnt: r.PcapCnt, Sensor: r.Sensor,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("record\n got %+v\nwant %+v", got, want)
	}
	if r.FlowID == 0 || r.FlowID >= 1<<53 {
		t.Errorf("flow_id %d not in (0, 2^53)", r.FlowID)
	}
	if r.CommunityID == "" {
		t.Error("no community id")
	}
	if p.Len() != 0 {
		t.Errorf("%d flows left", p.Len())
	}
	if v := counter(t, p, `pktpipe_flow_ended_total{reason="fin"}`); v != 1 {
		t.Errorf("ended{fin} = %v", v)
	}
}

// TestLingerThenSweep: after both FINs the flow stays for the linger, so a
// trailing ACK is counted, then a later batch's sweep ends it as fin.
func TestLingerThenSweep(t *testing.T) {
	p := NewProcessor(Config{MaxFlows: 16})
	c := newCollector(true)
	feed(p, c.em, handshakeFin(t0), 256)
	if p.Len() != 1 {
		t.Fatalf("flow ended before its linger: %d live", p.Len())
	}
	// A batch with another flow 10 s later: the sweep ends the closed one.
	feed(p, c.em, []packet.Packet{udpPkt(t0+10*sec, cli, 5000, srv, 53, 80)}, 256)
	evs := c.close()
	fl := flows(evs)
	if len(fl) != 1 || fl[0].Reason != "fin" || fl[0].PktsToServer != 5 {
		t.Fatalf("after sweep: %+v", fl)
	}
}

func TestRST(t *testing.T) {
	p := NewProcessor(Config{MaxFlows: 16})
	ms := sec / 1000
	evs := run(t, p, []packet.Packet{
		tcpPkt(t0, cli, 40001, srv, 80, syn, 74),
		tcpPkt(t0+ms, srv, 80, cli, 40001, rst|ack, 60),
		tcpPkt(t0+2*ms, cli, 40001, srv, 80, syn, 74), // retried SYN: port reuse, new flow
	}, 1)
	fl := flows(evs)
	if len(fl) != 2 {
		t.Fatalf("%d records, want 2", len(fl))
	}
	slices.SortFunc(fl, func(a, b *event.Flow) int { return int(a.Start - b.Start) })
	if r := fl[0]; r.Reason != "rst" || r.State != "closed" || r.PktsToServer != 1 || r.PktsToClient != 1 || r.TCPFlagsTC != rst|ack {
		t.Errorf("first: %+v", r)
	}
	if r := fl[1]; r.Reason != "shutdown" || r.State != "new" || r.PktsToServer != 1 {
		t.Errorf("second: %+v", r)
	}
	if fl[0].FlowID == fl[1].FlowID {
		t.Error("two flows share a flow_id")
	}
}

// TestIdleTimeoutByPacket: a packet after the idle timeout ends the old
// flow (end = its last packet) and starts a new one; idle == timeout is
// not yet expired.
func TestIdleTimeoutByPacket(t *testing.T) {
	p := NewProcessor(Config{MaxFlows: 16})
	evs := run(t, p, []packet.Packet{
		udpPkt(t0, cli, 5000, srv, 53, 80),
		udpPkt(t0+sec, srv, 53, cli, 5000, 120),
		udpPkt(t0+61*sec, cli, 5000, srv, 53, 80),  // idle exactly 60 s: same flow
		udpPkt(t0+122*sec, cli, 5000, srv, 53, 80), // idle 61 s: new flow
	}, 256)
	fl := flows(evs)
	if len(fl) != 2 {
		t.Fatalf("%d records, want 2", len(fl))
	}
	slices.SortFunc(fl, func(a, b *event.Flow) int { return int(a.Start - b.Start) })
	if r := fl[0]; r.Reason != "timeout" || r.End != t0+61*sec || r.PktsToServer != 2 || r.PktsToClient != 1 || r.State != "established" {
		t.Errorf("first: %+v", r)
	}
	if r := fl[1]; r.Reason != "shutdown" || r.Start != t0+122*sec || r.State != "new" {
		t.Errorf("second: %+v", r)
	}
}

// TestSweepEqualsOnPacket: the same packets cut into different batches end
// a flow by sweep or by its own next packet, with the same record.
func TestSweepEqualsOnPacket(t *testing.T) {
	pkts := []packet.Packet{
		udpPkt(t0, cli, 5000, srv, 53, 80),
		udpPkt(t0+sec, srv, 53, cli, 5000, 120),
		tcpPkt(t0+100*sec, cli6, 1234, srv6, 22, syn, 80), // another flow, later
		udpPkt(t0+200*sec, cli, 5000, srv, 53, 80),        // the first flow's tuple again
	}
	// Batches of one: the sweep after the third packet ends the UDP flow.
	p1 := NewProcessor(Config{MaxFlows: 16})
	c := newCollector(true)
	feed(p1, c.em, pkts[:3], 1)
	if p1.Len() != 1 || p1.Lookup(keyOf(pkts[0])) != nil {
		t.Fatalf("sweep did not end the idle flow (%d live)", p1.Len())
	}
	now := feed(p1, c.em, pkts[3:], 1)
	p1.Flush(now, c.em)
	a := jsonLines(t, c.close())
	// One batch: no sweep in between, its own packet ends it.
	p2 := NewProcessor(Config{MaxFlows: 16})
	b := jsonLines(t, run(t, p2, pkts, 256))
	if !slices.Equal(a, b) {
		t.Fatalf("records differ:\n%s\n---\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
	if len(a) != 3 || !strings.Contains(strings.Join(a, ""), `"reason":"timeout"`) {
		t.Fatalf("unexpected records:\n%s", strings.Join(a, "\n"))
	}
}

func TestShutdown(t *testing.T) {
	p := NewProcessor(Config{MaxFlows: 16})
	evs := run(t, p, []packet.Packet{
		udpPkt(t0, cli, 1, srv, 2, 60),             // new, idle 40 s at the end: timeout
		tcpPkt(t0+40*sec, cli, 3, srv, 4, syn, 60), // recent: shutdown
	}, 256)
	got := map[uint8]string{}
	for _, r := range flows(evs) {
		got[r.Proto] = r.Reason
	}
	if got[17] != "timeout" || got[6] != "shutdown" {
		t.Errorf("reasons %v", got)
	}
	if v := counter(t, p, "pktpipe_flow_table_flows"); v != 0 {
		t.Errorf("table gauge %v after flush", v)
	}
}

func TestEvictionAtCap(t *testing.T) {
	p := NewProcessor(Config{MaxFlows: 4})
	c := newCollector(true)
	var pkts []packet.Packet
	for i := range 6 {
		pkts = append(pkts, udpPkt(t0+int64(i)*sec, cli, uint16(1000+i), srv, 53, 60))
		if i == 3 {
			// Touch flow 0: now flows 1 and 2 are the least recently seen.
			pkts = append(pkts, udpPkt(t0+int64(i)*sec, cli, 1000, srv, 53, 60))
		}
	}
	for i := range pkts {
		feed(p, c.em, pkts[i:i+1], 1)
		if p.Len() > 4 {
			t.Fatalf("table holds %d > cap 4", p.Len())
		}
	}
	evicted := flows(c.close())
	var ports []uint16
	for _, r := range evicted {
		if r.Reason != "evicted" {
			t.Errorf("reason %q", r.Reason)
		}
		ports = append(ports, r.SrcPort)
	}
	if !slices.Equal(ports, []uint16{1001, 1002}) {
		t.Errorf("evicted %v, want [1001 1002]", ports)
	}
	if v := counter(t, p, "pktpipe_flow_evicted_total"); v != 2 {
		t.Errorf("evicted counter %v", v)
	}
	if p.Lookup(keyOf(udpPkt(0, cli, 1000, srv, 53, 0))) == nil {
		t.Error("recently seen flow 1000 was evicted")
	}
}

// TestFullTableExpiresFirst: a full table ends a flow already past its
// timeout (reason timeout) rather than evicting a live one.
func TestFullTableExpiresFirst(t *testing.T) {
	p := NewProcessor(Config{MaxFlows: 2})
	evs := run(t, p, []packet.Packet{
		udpPkt(t0, cli, 1, srv, 2, 60),
		tcpPkt(t0+20*sec, cli, 3, srv, 4, syn, 60),
		tcpPkt(t0+40*sec, cli, 5, srv, 6, syn, 60), // flow 1 idle 40 s > 30 s
	}, 256)
	if v := counter(t, p, "pktpipe_flow_evicted_total"); v != 0 {
		t.Errorf("evicted %v, want 0", v)
	}
	for _, r := range flows(evs) {
		if r.SrcPort == 1 && r.Reason != "timeout" {
			t.Errorf("flow 1 reason %q", r.Reason)
		}
	}
}

func TestRoles(t *testing.T) {
	for _, c := range []struct {
		name       string
		first      packet.Packet
		client     string
		clientPort uint16
	}{
		{"syn", tcpPkt(t0, cli, 40000, srv, 443, syn, 60), "10.0.0.1", 40000},
		{"synack first", tcpPkt(t0, srv, 443, cli, 40000, synack, 60), "10.0.0.1", 40000},
		{"midstream from server", tcpPkt(t0, srv, 443, cli, 40000, pshack, 60), "10.0.0.1", 40000},
		{"midstream from client", tcpPkt(t0, cli, 40000, srv, 443, ack, 60), "10.0.0.1", 40000},
		{"midstream high ip low port", tcpPkt(t0, cli, 22, srv, 50000, ack, 60), "10.0.0.2", 50000},
		{"udp", udpPkt(t0, srv, 53, cli, 5353, 60), "10.0.0.2", 53},
		{"echo request", icmpPkt(t0, cli, srv, 8, 0, 7, 84), "10.0.0.1", 7},
		{"echo reply first", icmpPkt(t0, srv, cli, 0, 0, 7, 84), "10.0.0.1", 7},
	} {
		p := NewProcessor(Config{MaxFlows: 4})
		fl := flows(run(t, p, []packet.Packet{c.first}, 1))
		if len(fl) != 1 {
			t.Fatalf("%s: %d records", c.name, len(fl))
		}
		r := fl[0]
		if r.SrcIP.String() != c.client || r.SrcPort != c.clientPort {
			t.Errorf("%s: client %v:%d, want %s:%d", c.name, r.SrcIP, r.SrcPort, c.client, c.clientPort)
		}
		// The one packet counts in the right direction.
		fromClient := c.first.Meta.Src == r.SrcIP && keyOf(c.first).SrcPort == r.SrcPort
		if fromClient != (r.PktsToServer == 1) || r.PktsToServer+r.PktsToClient != 1 {
			t.Errorf("%s: pkts %d/%d", c.name, r.PktsToServer, r.PktsToClient)
		}
	}
}

func TestICMPFlows(t *testing.T) {
	a, b := mustAddr("192.168.0.89"), mustAddr("192.168.0.1")
	p := NewProcessor(Config{MaxFlows: 16})
	evs := run(t, p, []packet.Packet{
		icmpPkt(t0, a, b, 8, 0, 0x1234, 98),
		icmpPkt(t0+1000, b, a, 0, 0, 0x1234, 98),
		icmpPkt(t0+sec, a, b, 8, 0, 0x1234, 98),
		icmpPkt(t0+sec+1000, b, a, 0, 0, 0x1234, 98),
		icmpPkt(t0+2*sec, a, b, 8, 0, 0x9999, 98), // another ping session
		icmpPkt(t0+3*sec, cli6, srv6, 135, 0, 0, 86),
		icmpPkt(t0+3*sec+1000, srv6, cli6, 136, 0, 0, 86),
	}, 3)
	fl := flows(evs)
	if len(fl) != 3 {
		t.Fatalf("%d records, want 3", len(fl))
	}
	slices.SortFunc(fl, func(x, y *event.Flow) int { return int(x.Start - y.Start) })
	// The spec baseline's ID for this echo pair (baseline_deflt.json).
	if r := fl[0]; r.PktsToServer != 2 || r.PktsToClient != 2 || r.SrcPort != 0x1234 || r.State != "established" ||
		r.CommunityID != "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=" || r.Proto != 1 {
		t.Errorf("ping: %+v", r)
	}
	if r := fl[1]; r.SrcPort != 0x9999 || r.State != "new" {
		t.Errorf("second ping: %+v", r)
	}
	h := communityid.New(0, true)
	// Keyed as Community ID pairs the types (its ports are not written for
	// ICMP): the solicitation and its advertisement are one flow.
	if r := fl[2]; r.SrcPort != 135 || r.DestPort != 136 || r.PktsToServer != 1 || r.PktsToClient != 1 || r.Proto != 58 ||
		r.CommunityID != h.IDICMP(packet.FlowKey{Src: cli6, Dst: srv6, Proto: 58}, 135, 0) {
		t.Errorf("neighbour discovery: %+v", r)
	}
}

// recorder is an analyzer that remembers what it was given and keeps a
// per-flow counter in its slot.
type recorder struct {
	slot   int
	errs   []*Flow
	errKey []packet.FlowKey
	dirs   []Dir
	ended  int
}

type recState struct{ pkts int }

type recExt struct{ n int }

func (x recExt) Key() string           { return "rec" }
func (x recExt) Encode(w event.Writer) { w.Uint(uint64(x.n)) }
func (r *recorder) SetSlot(i int)      { r.slot = i }
func (r *recorder) ICMPError(f *Flow, p *packet.Packet, _ *pipeline.Emitter) {
	r.errs = append(r.errs, f)
	if f != nil {
		r.errKey = append(r.errKey, f.Key())
	}
}
func (r *recorder) Packet(f *Flow, p *packet.Packet, d Dir, _ *pipeline.Emitter) {
	s, _ := f.State(r.slot).(*recState)
	if s == nil {
		s = &recState{}
		f.SetState(r.slot, s)
	}
	s.pkts++
	r.dirs = append(r.dirs, d)
}
func (r *recorder) End(f *Flow, rec *event.Flow, _ *pipeline.Emitter) {
	r.ended++
	if s, ok := f.State(r.slot).(*recState); ok {
		rec.Extra = append(rec.Extra, recExt{s.pkts})
	}
}

// nop is an analyzer in slot 0 so the recorder's slot is 1.
type nop struct{}

func (nop) Packet(*Flow, *packet.Packet, Dir, *pipeline.Emitter) {}
func (nop) ICMPError(*Flow, *packet.Packet, *pipeline.Emitter)   {}
func (nop) End(*Flow, *event.Flow, *pipeline.Emitter)            {}

func TestICMPErrorReachesAnalyzer(t *testing.T) {
	rec := &recorder{}
	p := NewProcessor(Config{MaxFlows: 16}, nop{}, rec)
	if rec.slot != 1 {
		t.Fatalf("slot %d, want 1", rec.slot)
	}
	pkts := []packet.Packet{
		udpPkt(t0, cli, 5353, srv, 53, 80),
		// Port unreachable from the server, quoting the client's packet.
		icmpErr(t0+sec, srv, cli, 3, 3, packet.ProtoUDP, cli, 5353, srv, 53),
		// A router's TTL exceeded to the server, quoting a server→client
		// packet: the reverse direction of the same flow.
		icmpErr(t0+2*sec, rtr, srv, 11, 0, packet.ProtoUDP, srv, 53, cli, 5353),
		// Quoting a flow that does not exist.
		icmpErr(t0+3*sec, srv, cli, 3, 3, packet.ProtoUDP, cli, 9999, srv, 53),
	}
	c := newCollector(true)
	feed(p, c.em, pkts, 2)
	if p.Len() != 1 {
		t.Fatalf("%d live flows, want 1 (errors make no flow)", p.Len())
	}
	f := p.Lookup(keyOf(pkts[0]))
	if f == nil || f.Packets(ToServer) != 1 || f.Packets(ToClient) != 0 {
		t.Fatalf("flow counted the errors: %+v", f)
	}
	if len(rec.errs) != 3 || rec.errs[0] != f || rec.errs[1] != f || rec.errs[2] != nil {
		t.Fatalf("analyzer got flows %v, want [f f nil]", rec.errs)
	}
	if d, ok := f.DirOf(quoteKeyOf(pkts[2])); !ok || d != ToClient {
		t.Errorf("reverse quote dir %v %v", d, ok)
	}
	p.Flush(t0+3*sec, c.em)
	fl := flows(c.close())
	if len(fl) != 1 || len(fl[0].Extra) != 1 || fl[0].Extra[0].(recExt).n != 1 {
		t.Fatalf("records %+v", fl)
	}
	if v := counter(t, p, `pktpipe_flow_icmp_errors_total{result="matched"}`); v != 2 {
		t.Errorf("matched %v", v)
	}
	if v := counter(t, p, `pktpipe_flow_icmp_errors_total{result="unmatched"}`); v != 1 {
		t.Errorf("unmatched %v", v)
	}
}

// TestICMPErrorAfterTimeout: a quote of a flow that is already past its
// timeout does not match (the flow ends, as a sweep would have ended it).
func TestICMPErrorAfterTimeout(t *testing.T) {
	rec := &recorder{}
	p := NewProcessor(Config{MaxFlows: 16}, rec)
	evs := run(t, p, []packet.Packet{
		udpPkt(t0, cli, 5353, srv, 53, 80),
		icmpErr(t0+31*sec, srv, cli, 3, 3, packet.ProtoUDP, cli, 5353, srv, 53),
	}, 256)
	if len(rec.errs) != 1 || rec.errs[0] != nil {
		t.Errorf("expired flow matched: %v", rec.errs)
	}
	if fl := flows(evs); len(fl) != 1 || fl[0].Reason != "timeout" {
		t.Errorf("records %+v", fl)
	}
}

func TestAnalyzerLifecycle(t *testing.T) {
	rec := &recorder{}
	p := NewProcessor(Config{MaxFlows: 16}, rec)
	evs := run(t, p, handshakeFin(t0), 3)
	want := []Dir{ToServer, ToClient, ToServer, ToServer, ToClient, ToServer, ToClient, ToServer}
	if !slices.Equal(rec.dirs, want) {
		t.Errorf("dirs %v, want %v", rec.dirs, want)
	}
	if rec.ended != 1 {
		t.Errorf("End called %d times", rec.ended)
	}
	lines := jsonLines(t, evs)
	if len(lines) != 1 || !strings.Contains(lines[0], `"rec":8`) {
		t.Errorf("extension missing: %v", lines)
	}
	// The slot is cleared for the next flow in that row.
	if len(p.rowFree) != 1 {
		t.Fatalf("%d free rows, want the ended flow's", len(p.rowFree))
	}
	for _, c := range p.rows {
		if c.width == 0 {
			t.Fatal("the recorder's slot was never used")
		}
		for _, s := range c.vals {
			if s != nil {
				t.Fatal("state slot not cleared after End")
			}
		}
	}
}

// TestStateSlots: slots first used in any order get a place in every row
// of the chunk, keep what each flow stored as rows widen, read nil where
// nothing was stored, and are cleared with their row.
func TestStateSlots(t *testing.T) {
	c := newChunk(5, 4)
	type v struct{ slot, entry int }
	for _, s := range []v{{2, 0}, {0, 3}, {2, 4}, {3, 1}, {0, 0}} {
		c.setState(s.slot, int32(s.entry), s)
	}
	c.setState(1, 2, nil) // storing nil in an unused slot uses nothing
	if c.width != 3 || c.pos[1] != -1 {
		t.Fatalf("width %d, pos %v", c.width, c.pos)
	}
	for slot := range 5 {
		for e := range 5 {
			got := c.state(slot, int32(e))
			want := any(nil)
			switch (v{slot, e}) {
			case v{2, 0}, v{0, 3}, v{2, 4}, v{3, 1}, v{0, 0}:
				want = v{slot, e}
			}
			if got != want {
				t.Errorf("slot %d entry %d: %v, want %v", slot, e, got, want)
			}
		}
	}
	c.clear(0)
	if c.state(0, 0) != nil || c.state(2, 0) != nil || c.state(0, 3) == nil {
		t.Error("clear(0) cleared the wrong values")
	}
}

func TestTunnelAndVLAN(t *testing.T) {
	p := NewProcessor(Config{MaxFlows: 4})
	pk := udpPkt(t0, cli, 1, srv, 4789, 150)
	pk.Meta.Tunnel = packet.TunnelVXLAN
	pk.Meta.X = &packet.Extra{OuterSrc: mustAddr("192.0.2.1"), OuterDst: mustAddr("192.0.2.2")}
	pk.Meta.VLAN = [2]uint16{100, 0}
	pk.IfIndex = 3
	fl := flows(run(t, p, []packet.Packet{pk}, 1))
	if len(fl) != 1 {
		t.Fatal(len(fl))
	}
	r := fl[0]
	if r.Tunnel != "vxlan" || r.OuterSrc != pk.Meta.X.OuterSrc || r.OuterDst != pk.Meta.X.OuterDst || r.VLAN != [2]uint16{100, 0} || r.IfIndex != 3 {
		t.Errorf("record %+v", r)
	}
}

// TestNoCommunityID and a seed: the option is honoured.
func TestCommunityIDConfig(t *testing.T) {
	pk := tcpPkt(t0, mustAddr("1.2.3.4"), 1122, mustAddr("5.6.7.8"), 3344, syn, 60)
	r := flows(run(t, NewProcessor(Config{MaxFlows: 2, CommunityIDSeed: 1}), []packet.Packet{pk}, 1))[0]
	if r.CommunityID != "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk=" { // spec README, seed=1
		t.Errorf("seed 1: %s", r.CommunityID)
	}
	r = flows(run(t, NewProcessor(Config{MaxFlows: 2, NoCommunityID: true}), []packet.Packet{pk}, 1))[0]
	if r.CommunityID != "" {
		t.Errorf("disabled: %s", r.CommunityID)
	}
}

// TestNeverPanics feeds half-decoded and inconsistent metadata.
func TestNeverPanics(t *testing.T) {
	p := NewProcessor(Config{MaxFlows: 8}, &recorder{})
	bad := []packet.Packet{
		{Timestamp: t0}, // no IP
		{Timestamp: t0, Meta: packet.Meta{IPVersion: 4}},                         // IP without addresses
		{Timestamp: t0, Meta: packet.Meta{IPVersion: 6, Proto: 58, ICMPType: 1}}, // error without quote
		{Timestamp: t0, Meta: packet.Meta{IPVersion: 4, Proto: 1, ICMPType: 3, X: &packet.Extra{Quote: packet.Quote{Present: true}}}},
		{Timestamp: t0, Meta: packet.Meta{IPVersion: 4, Src: cli, Dst: srv6, Proto: 6}}, // mixed families
		{Timestamp: t0, Meta: packet.Meta{IPVersion: 4, Src: cli, Dst: srv, Proto: 6, Err: packet.MalformedTruncatedL4}},
		{Timestamp: t0, Meta: packet.Meta{IPVersion: 4, Src: cli, Dst: srv, Proto: 17, Frag: packet.Fragment{Is: true}}},
		{Timestamp: -1, Meta: packet.Meta{IPVersion: 4, Src: cli, Dst: srv, Proto: 250}},
		{Timestamp: t0 - 100*sec, Meta: packet.Meta{IPVersion: 4, Src: cli, Dst: srv, Proto: 250}}, // time going back
	}
	for i := range 200 { // more flows than the cap
		bad = append(bad, udpPkt(t0+int64(i), cli, uint16(i), srv, 1, 0))
	}
	evs := run(t, p, bad, 5)
	if len(flows(evs)) == 0 {
		t.Fatal("no records")
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func keyOf(p packet.Packet) packet.FlowKey {
	k, _ := packet.KeyOf(&p.Meta)
	return k
}

func quoteKeyOf(p packet.Packet) packet.FlowKey {
	k, _ := packet.QuoteKey(&p.Meta)
	return k
}

// skipper asks for no more packets after its third one of a flow.
type skipper struct {
	slot        int
	pkts, ended int
}

func (s *skipper) SetSlot(i int) { s.slot = i }
func (s *skipper) Packet(f *Flow, _ *packet.Packet, _ Dir, _ *pipeline.Emitter) {
	if s.pkts++; f.Packets(ToServer)+f.Packets(ToClient) == 3 {
		f.SkipPackets(s.slot)
	}
}
func (s *skipper) ICMPError(*Flow, *packet.Packet, *pipeline.Emitter) {}
func (s *skipper) End(*Flow, *event.Flow, *pipeline.Emitter)          { s.ended++ }

// TestSkipPackets: an analyzer that skips a flow's packets gets none of
// them after asking, still gets End, and a new flow on a reused entry
// starts without the skip; the other analyzers see every packet.
func TestSkipPackets(t *testing.T) {
	sk, rec := &skipper{}, &recorder{}
	p := NewProcessor(Config{MaxFlows: 1}, sk, rec)
	pkts := append(handshakeFin(0), handshakeFin(10*sec)...) // the second reuses the entry
	fl := flows(run(t, p, pkts, 3))
	if sk.pkts != 6 || sk.ended != 2 || len(fl) != 2 || len(rec.dirs) != len(pkts) {
		t.Fatalf("skipper saw %d packets and %d ends (want 6 and 2); recorder saw %d of %d; %d flows",
			sk.pkts, sk.ended, len(rec.dirs), len(pkts), len(fl))
	}
}

// otherSkipper, on a flow's second packet, tells the flow table that the
// analyzer in slot target wants no more of its packets.
type otherSkipper struct{ target int }

func (s *otherSkipper) Packet(f *Flow, _ *packet.Packet, _ Dir, _ *pipeline.Emitter) {
	if f.Packets(ToServer)+f.Packets(ToClient) == 2 {
		f.SkipPackets(s.target)
	}
}
func (s *otherSkipper) ICMPError(*Flow, *packet.Packet, *pipeline.Emitter) {}
func (s *otherSkipper) End(*Flow, *event.Flow, *pipeline.Emitter)          {}

// TestSkipPacketsOfALaterSlot: a skip set while a packet goes through the
// analyzers holds for the slots after the one that set it, from that very
// packet on, as in a plain loop over the slots; the slots before and the
// others still see every packet.
func TestSkipPacketsOfALaterSlot(t *testing.T) {
	before, between, target := &recorder{}, &recorder{}, &recorder{}
	p := NewProcessor(Config{MaxFlows: 4}, before, &otherSkipper{target: 3}, between, target)
	pkts := handshakeFin(0)
	run(t, p, pkts, 1)
	if len(before.dirs) != len(pkts) || len(between.dirs) != len(pkts) || len(target.dirs) != 1 {
		t.Fatalf("slots 0, 2 and 3 saw %d, %d and %d of %d packets; want all, all and 1",
			len(before.dirs), len(between.dirs), len(target.dirs), len(pkts))
	}
}

// The flow record carries EVE's ether object: the MACs of the first packet
// each way, on Ethernet links only; a reused entry starts clean.
func TestEtherOfFirstPacketEachWay(t *testing.T) {
	p := NewProcessor(Config{MaxFlows: 1})
	a := udpPkt(t0, cli, 5000, srv, 53, 60)
	b := udpPkt(t0+1000, srv, 53, cli, 5000, 60)
	a.LinkType, b.LinkType = packet.LinkEthernet, packet.LinkEthernet
	a.Data = append([]byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0}, make([]byte, 46)...)
	b.Data = append([]byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0}, make([]byte, 46)...)
	c := udpPkt(t0+2000, cli, 5001, srv, 53, 60) // evicts the first flow; no Ethernet
	fl := flows(run(t, p, []packet.Packet{a, b, c}, 1))
	if len(fl) != 2 {
		t.Fatalf("%d records", len(fl))
	}
	e := fl[0].Ether
	if !e[0].Valid || !e[1].Valid || e[0].Src != [6]byte{2, 0, 0, 0, 0, 1} || e[1].Src != [6]byte{2, 0, 0, 0, 0, 2} {
		t.Fatalf("ether %+v", e)
	}
	if fl[1].Ether[0].Valid || fl[1].Ether[1].Valid {
		t.Fatalf("a reused entry kept the old ether: %+v", fl[1].Ether)
	}
}

// A DNS answer seen first (the query was not captured) makes its receiver
// the client, as Suricata's suricata-verify dns-reversed-udp-1 expects.
func TestDNSAnswerFirstReversesTheFlow(t *testing.T) {
	p := NewProcessor(Config{MaxFlows: 4})
	fl := flows(run(t, p, []packet.Packet{udpPkt(t0, srv, 53, cli, 40000, 90)}, 1))
	if len(fl) != 1 || fl[0].SrcIP != cli || fl[0].SrcPort != 40000 || fl[0].PktsToClient != 1 {
		t.Fatalf("%+v", fl)
	}
}

// TestFirstTCP: the entry keeps the first packet's TCP flags and sequence
// number, and whether it was bare (whole header, no payload, captured or
// by its IP length), whatever follows; other protocols have none, and an
// ICMP flow's types are untouched.
func TestFirstTCP(t *testing.T) {
	cli, srv := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	first := func(mod func(m *packet.Meta)) *Processor {
		p := NewProcessor(Config{Workers: 1, MaxFlows: 8})
		c := newCollector(false)
		em := c.em
		q := tcpPkt(1e9, cli, 40000, srv, 443, packet.TCPSyn, 60)
		q.Meta.Seq, q.Meta.L3Off, q.Meta.PayloadOff, q.Meta.IPLen = 1234, 14, 54, 40
		mod(&q.Meta)
		p.Packet(&q, em)
		r := tcpPkt(2e9, srv, 443, cli, 40000, packet.TCPSyn|packet.TCPAck, 60)
		r.Meta.Seq = 99
		p.Packet(&r, em)
		c.close()
		return p
	}
	key := packet.FlowKey{Src: cli, Dst: srv, SrcPort: 40000, DstPort: 443, Proto: packet.ProtoTCP}
	for _, c := range []struct {
		name string
		mod  func(m *packet.Meta)
		bare bool
	}{
		{"syn", func(*packet.Meta) {}, true},
		{"payload", func(m *packet.Meta) { m.PayloadLen, m.IPLen = 10, 50 }, false},
		{"payload cut by the snaplen", func(m *packet.Meta) { m.IPLen = 50 }, false},
		{"header cut", func(m *packet.Meta) { m.HasL4 = false }, false},
		{"no offsets", func(m *packet.Meta) { m.L3Off, m.PayloadOff, m.IPLen = 0, 0, 0 }, true},
	} {
		f := first(c.mod).Lookup(key)
		if f == nil {
			t.Fatalf("%s: no flow", c.name)
		}
		fl, seq, bare := f.FirstTCP()
		if fl != packet.TCPSyn || seq != 1234 || bare != c.bare || f.FirstDir() != ToServer {
			t.Errorf("%s: FirstTCP = %#x, %d, %v, dir %v; want SYN, 1234, %v, toserver", c.name, fl, seq, bare, f.FirstDir(), c.bare)
		}
	}
	p := NewProcessor(Config{Workers: 1, MaxFlows: 8})
	col := newCollector(false)
	em := col.em
	u := udpPkt(1e9, cli, 5000, srv, 53, 60)
	p.Packet(&u, em)
	e := icmpPkt(1e9, cli, srv, 8, 0, 7, 60)
	p.Packet(&e, em)
	col.close()
	if fl, seq, bare := p.Lookup(packet.FlowKey{Src: cli, Dst: srv, SrcPort: 5000, DstPort: 53, Proto: packet.ProtoUDP}).FirstTCP(); fl != 0 || seq != 0 || bare {
		t.Errorf("UDP: FirstTCP = %#x, %d, %v; want nothing", fl, seq, bare)
	}
	ek, _ := packet.KeyOf(&e.Meta)
	if typ, code := p.Lookup(ek).FirstICMP(); typ != 8 || code != 0 {
		t.Errorf("ICMP: FirstICMP = %d/%d, want 8/0", typ, code)
	}
}

// engageRecorder notes, for each Engage, what the flow said then.
type engageRecorder struct {
	noop
	calls []string
}

type noop struct{}

func (noop) Packet(*Flow, *packet.Packet, Dir, *pipeline.Emitter) {}
func (noop) ICMPError(*Flow, *packet.Packet, *pipeline.Emitter)   {}
func (noop) End(*Flow, *event.Flow, *pipeline.Emitter)            {}

func (e *engageRecorder) Engage(f *Flow) {
	fl, seq, acks, ok := f.Reply()
	e.calls = append(e.calls, fmt.Sprintf("pkts %d handshake %v reply %#x %d %v %v", f.Packets(0)+f.Packets(1), f.Handshake(), fl, seq, acks, ok))
}

// TestHandshake: a flow is a handshake while it has a bare first packet
// and at most a bare, not older reply; the packet that ends it calls
// Engage first, once, with the handshake still readable.
func TestHandshake(t *testing.T) {
	seg := func(ts int64, toServer bool, flags uint8, seq, ack uint32, payload uint16) packet.Packet {
		q := tcpPkt(ts, cli, 40000, srv, 443, flags, 60)
		if !toServer {
			q = tcpPkt(ts, srv, 443, cli, 40000, flags, 60)
		}
		q.Meta.Seq, q.Meta.Ack, q.Meta.PayloadLen = seq, ack, payload
		return q
	}
	for _, c := range []struct {
		name  string
		pkts  []packet.Packet
		after []bool // Handshake after each packet
		calls []string
	}{
		{"syn, syn/ack, ack", []packet.Packet{seg(t0, true, syn, 100, 0, 0), seg(t0+1, false, synack, 500, 101, 0), seg(t0+2, true, ack, 101, 501, 0)},
			[]bool{true, true, false}, []string{"pkts 2 handshake true reply 0x12 500 true true"}},
		{"wrong ack", []packet.Packet{seg(t0, true, syn, 100, 0, 0), seg(t0+1, false, synack, 500, 7, 0), seg(t0+2, true, ack, 101, 501, 0)},
			[]bool{true, true, false}, []string{"pkts 2 handshake true reply 0x12 500 false true"}},
		{"syn twice", []packet.Packet{seg(t0, true, syn, 100, 0, 0), seg(t0+1, true, syn, 100, 0, 0)},
			[]bool{true, false}, []string{"pkts 1 handshake true reply 0x0 0 false false"}},
		{"older reply", []packet.Packet{seg(t0, true, syn, 100, 0, 0), seg(t0-1, false, synack, 500, 101, 0)},
			[]bool{true, false}, []string{"pkts 1 handshake true reply 0x0 0 false false"}},
		{"reply with payload", []packet.Packet{seg(t0, true, syn, 100, 0, 0), seg(t0+1, false, synack, 500, 101, 5)},
			[]bool{true, false}, []string{"pkts 1 handshake true reply 0x0 0 false false"}},
		{"payload first", []packet.Packet{seg(t0, true, syn, 100, 0, 5), seg(t0+1, false, synack, 500, 106, 0)},
			[]bool{false, false}, nil},
	} {
		rec := &engageRecorder{}
		p := NewProcessor(Config{Workers: 1, MaxFlows: 8}, rec)
		col := newCollector(false)
		for i := range c.pkts {
			p.Packet(&c.pkts[i], col.em)
			f := p.Lookup(packet.FlowKey{Src: cli, Dst: srv, SrcPort: 40000, DstPort: 443, Proto: packet.ProtoTCP})
			if f.Handshake() != c.after[i] {
				t.Errorf("%s: after packet %d Handshake() = %v", c.name, i, f.Handshake())
			}
		}
		col.close()
		if !slices.Equal(rec.calls, c.calls) {
			t.Errorf("%s: Engage calls %q, want %q", c.name, rec.calls, c.calls)
		}
	}
}
