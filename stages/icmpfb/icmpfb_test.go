package icmpfb

import (
	"net/netip"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/sinks/encode"
	"github.com/pktpipe/pktpipe/stages/flow"
)

func TestClassify(t *testing.T) {
	type tc struct {
		proto, typ, code uint8
		name, detail     string
		summary          string
	}
	for _, c := range []tc{
		{1, 3, 0, "net-unreachable", "", "unreachable"},
		{1, 3, 1, "host-unreachable", "", "unreachable"},
		{1, 3, 2, "protocol-unreachable", "", "rejected"},
		{1, 3, 3, "port-unreachable", "", "rejected"},
		{1, 3, 4, "frag-needed", "", ""},
		{1, 3, 5, "source-route-failed", "", "unreachable"},
		{1, 3, 6, "net-unknown", "", "unreachable"},
		{1, 3, 7, "host-unknown", "", "unreachable"},
		{1, 3, 8, "source-host-isolated", "", "unreachable"},
		{1, 3, 9, "admin-prohibited", "net-prohibited", "filtered"},
		{1, 3, 10, "admin-prohibited", "host-prohibited", "filtered"},
		{1, 3, 11, "net-unreachable", "for-tos", "unreachable"},
		{1, 3, 12, "host-unreachable", "for-tos", "unreachable"},
		{1, 3, 13, "admin-prohibited", "communication-prohibited", "filtered"},
		{1, 3, 14, "host-precedence-violation", "", "filtered"},
		{1, 3, 15, "precedence-cutoff", "", "filtered"},
		{1, 3, 99, "dest-unreachable", "", "unreachable"},
		{1, 4, 0, "source-quench", "", ""},
		{1, 5, 0, "redirect", "net", ""},
		{1, 5, 1, "redirect", "host", ""},
		{1, 11, 0, "ttl-exceeded", "", "ttl-exceeded"},
		{1, 11, 1, "reassembly-timeout", "", ""},
		{1, 12, 0, "parameter-problem", "pointer", ""},
		{1, 12, 1, "parameter-problem", "missing-option", ""},
		{58, 1, 0, "no-route", "", "unreachable"},
		{58, 1, 1, "admin-prohibited", "communication-prohibited", "filtered"},
		{58, 1, 2, "beyond-scope", "", "unreachable"},
		{58, 1, 3, "address-unreachable", "", "unreachable"},
		{58, 1, 4, "port-unreachable", "", "rejected"},
		{58, 1, 5, "source-policy-failed", "", "filtered"},
		{58, 1, 6, "reject-route", "", "filtered"},
		{58, 2, 0, "packet-too-big", "", ""},
		{58, 3, 0, "ttl-exceeded", "", "ttl-exceeded"},
		{58, 3, 1, "reassembly-timeout", "", ""},
		{58, 4, 1, "parameter-problem", "unrecognized-next-header", ""},
	} {
		got, ok := Classify(c.proto, c.typ, c.code)
		if !ok || got.Name != c.name || got.Detail != c.detail || got.Summary != c.summary {
			t.Errorf("Classify(%d, %d, %d) = %+v %v, want %s/%s/%s", c.proto, c.typ, c.code, got, ok, c.name, c.detail, c.summary)
		}
	}
	for _, c := range [][3]uint8{{1, 8, 0}, {1, 0, 0}, {58, 128, 0}, {58, 135, 0}, {6, 3, 3}} {
		if _, ok := Classify(c[0], c[1], c[2]); ok {
			t.Errorf("Classify%v: not an error, but classified", c)
		}
	}
}

// Synthetic metadata, as the decoder would fill it.
const sec = int64(1e9)

var (
	t0  = int64(1_700_000_000) * sec
	cli = netip.MustParseAddr("10.0.0.1")
	srv = netip.MustParseAddr("10.0.0.2")
	rtr = netip.MustParseAddr("10.0.0.254")
)

func tcp(ts int64, src netip.Addr, sp uint16, dst netip.Addr, dp uint16, flags uint8, seq uint32, n int) packet.Packet {
	return packet.Packet{OrigLen: uint32(54 + n), Timestamp: ts, IfIndex: -1, Meta: packet.Meta{
		IPVersion: 4, Src: src, Dst: dst, Proto: packet.ProtoTCP, SrcPort: sp, DstPort: dp, HasL4: true,
		TCPFlags: flags, Seq: seq, L3Off: 14, L4Off: 34, PayloadOff: 54, PayloadLen: uint16(min(n, 100)), IPLen: uint16(40 + n),
	}}
}

func udp(ts int64, src netip.Addr, sp uint16, dst netip.Addr, dp uint16) packet.Packet {
	return packet.Packet{OrigLen: 60, Timestamp: ts, IfIndex: -1, Meta: packet.Meta{
		IPVersion: 4, Src: src, Dst: dst, Proto: packet.ProtoUDP, SrcPort: sp, DstPort: dp, HasL4: true,
	}}
}

// icmpErr is an ICMPv4 error from `from` quoting q (sent as the quote says).
func icmpErr(ts int64, from netip.Addr, typ, code uint8, rest uint32, q packet.Quote) packet.Packet {
	q.Present, q.IPVersion = true, 4
	if q.TTL == 0 {
		q.TTL = 1
	}
	return packet.Packet{OrigLen: 70, Timestamp: ts, IfIndex: -1, Meta: packet.Meta{
		IPVersion: 4, Src: from, Dst: q.Src, Proto: packet.ProtoICMP, HasL4: true,
		ICMPType: typ, ICMPCode: code, ICMPRest: rest, X: &packet.Extra{Quote: q},
	}}
}

func tcpQuote(src netip.Addr, sp uint16, dst netip.Addr, dp uint16, seq uint32) packet.Quote {
	return packet.Quote{Src: src, Dst: dst, Proto: packet.ProtoTCP, SrcPort: sp, DstPort: dp, HasPorts: true, Seq: seq, HasSeq: true, IPLen: 1500}
}

// drive runs packets through a one-worker flow table with the analyzer,
// flushes, and returns the parsed icmp_feedback events and flow records.
func drive(t *testing.T, cfg Config, pkts []packet.Packet) (fbs, flows []lineJSON) {
	t.Helper()
	ch := make(chan *event.Batch, 1024)
	em := pipeline.NewEmitter(ch)
	p := flow.NewProcessor(flow.Config{}, New(cfg))
	var now int64
	for i := range pkts {
		p.Packet(&pkts[i], em)
		now = max(now, pkts[i].Timestamp)
	}
	p.Flush(now, em)
	em.Flush()
	close(ch)
	enc := encode.NewJSON()
	var lines []string
	for b := range ch {
		for _, ev := range b.Events {
			lines = append(lines, string(enc.Append(nil, ev)))
		}
	}
	return parse(t, lines)
}

// TestSeqVerification: errors quoting TCP sequence numbers the flow's
// quoted direction sent are verified, others (forged) are not, across the
// 2^32 wrap; unverified errors change neither summary nor path_mtu.
func TestSeqVerification(t *testing.T) {
	var isn, sisn uint32 = 0xffffff00, 5000 // the client's data wraps around 0
	pk := []packet.Packet{
		tcp(t0, cli, 40000, srv, 443, packet.TCPSyn, isn, 0),
		tcp(t0+1e6, srv, 443, cli, 40000, packet.TCPSyn|packet.TCPAck, sisn, 0),
		tcp(t0+2e6, cli, 40000, srv, 443, packet.TCPAck, isn+1, 0),
		tcp(t0+3e6, cli, 40000, srv, 443, packet.TCPAck, isn+1, 1000), // 0xffffff01 .. 0x2e9
		tcp(t0+4e6, srv, 443, cli, 40000, packet.TCPAck, sisn+1, 200),
		// In range, after the wrap: verified.
		icmpErr(t0+5e6, rtr, 3, 4, 1400, tcpQuote(cli, 40000, srv, 443, isn+1+600)),
		// The server's direction, in its range.
		icmpErr(t0+6e6, rtr, 3, 4, 1300, tcpQuote(srv, 443, cli, 40000, sisn+1)),
		// Forged: far outside; an MTU of 576 and a prohibition it must not count.
		icmpErr(t0+7e6, rtr, 3, 4, 576, tcpQuote(cli, 40000, srv, 443, isn-100000)),
		icmpErr(t0+8e6, rtr, 3, 13, 0, tcpQuote(cli, 40000, srv, 443, isn+1+5000)),
		// Just past the highest byte sent + 1: outside.
		icmpErr(t0+9e6, rtr, 3, 3, 0, tcpQuote(cli, 40000, srv, 443, isn+1+1000+1)),
		// Exactly snd.nxt (a pure ACK would carry it): inside.
		icmpErr(t0+10e6, rtr, 11, 0, 0, tcpQuote(cli, 40000, srv, 443, isn+1+1000)),
	}
	fbs, flows := drive(t, Config{}, pk)
	if len(fbs) != 6 || len(flows) != 1 {
		t.Fatalf("%d events, %d flows", len(fbs), len(flows))
	}
	want := []struct {
		verified  bool
		direction string
	}{{true, "toserver"}, {true, "toclient"}, {false, "toserver"}, {false, "toserver"}, {false, "toserver"}, {true, "toserver"}}
	for i, w := range want {
		fb := fbs[i].FB
		if fb.Verified == nil || *fb.Verified != w.verified || fb.Direction != w.direction || !fb.Matched {
			t.Errorf("error %d: verified %v direction %q matched %v, want %v %s: %s", i, fb.Verified, fb.Direction, fb.Matched, w.verified, w.direction, fbs[i].raw)
		}
		if fbs[i].FlowID != flows[0].FlowID || fbs[i].SrcIP != "10.0.0.1" || fbs[i].DestPort != 443 || fbs[i].CommunityID != flows[0].CommunityID {
			t.Errorf("error %d: header is not the flow's: %s", i, fbs[i].raw)
		}
	}
	if q := fbs[0].FB.Quoted; q == nil || q.Seq == nil || *q.Seq != isn+1+600 {
		t.Errorf("quoted seq: %s", fbs[0].raw)
	}
	if fb := fbs[0].FB; fb.MTU == nil || *fb.MTU != 1400 || fb.SinceLastMs == nil || *fb.SinceLastMs != 1 {
		t.Errorf("mtu/since_last_ms: %s", fbs[0].raw)
	}
	x := flows[0].FlowFB
	if x == nil || x.Count != 6 || x.Unverified != 3 || x.PathMTU != 1300 || x.Summary != "ttl-exceeded" || len(x.Items) != 6 {
		t.Fatalf("flow feedback: %s", flows[0].raw)
	}
}

// TestSummaries: a UDP flow that drew port-unreachable is rejected, a TCP
// SYN that drew admin-prohibited is filtered; items are capped while count
// goes on; an unmatched error carries the quoted tuple.
func TestSummaries(t *testing.T) {
	var pk []packet.Packet
	pk = append(pk, udp(t0, cli, 5000, srv, 53))
	uq := packet.Quote{Src: cli, Dst: srv, Proto: packet.ProtoUDP, SrcPort: 5000, DstPort: 53, HasPorts: true, IPLen: 60}
	for i := range 10 {
		pk = append(pk, icmpErr(t0+int64(i+1)*1e6, srv, 3, 3, 0, uq))
	}
	pk = append(pk, tcp(t0+sec, cli, 41000, srv, 22, packet.TCPSyn, 77, 0))
	pk = append(pk, icmpErr(t0+sec+1e6, rtr, 3, 10, 0, tcpQuote(cli, 41000, srv, 22, 77)))
	// Unmatched: nothing of 10.0.0.9:7 was seen.
	pk = append(pk, icmpErr(t0+2*sec, rtr, 3, 1, 0, packet.Quote{Src: cli, Dst: netip.MustParseAddr("10.0.0.9"), Proto: packet.ProtoUDP, SrcPort: 6000, DstPort: 7, HasPorts: true}))
	// Redirect and parameter problem on the UDP flow: gateway and pointer.
	pk = append(pk, icmpErr(t0+3*sec, rtr, 5, 1, 0x0a000003, uq))
	pk = append(pk, icmpErr(t0+3*sec+1, rtr, 12, 0, 20<<24, uq))

	fbs, flows := drive(t, Config{}, pk)
	if len(fbs) != 14 || len(flows) != 2 {
		t.Fatalf("%d events, %d flows", len(fbs), len(flows))
	}
	for _, f := range flows {
		x := f.FlowFB
		switch f.Proto {
		case "UDP":
			if x.Count != 12 || x.Summary != "rejected" || len(x.Items) != DefaultMaxItems {
				t.Errorf("UDP flow: %s", f.raw)
			}
			if it := x.Items[0]; it.Class != "port-unreachable" || it.Reporter != "10.0.0.2" || it.ICMPType != 3 || it.ICMPCode != 3 || it.Verified != nil {
				t.Errorf("UDP item: %+v", it)
			}
		case "TCP":
			if x.Count != 1 || x.Summary != "filtered" || x.Items[0].Detail != "host-prohibited" || x.Items[0].Verified == nil || !*x.Items[0].Verified {
				t.Errorf("TCP flow: %s", f.raw)
			}
		}
	}
	var un, redirect, param *lineJSON
	for i := range fbs {
		switch fbs[i].FB.Class {
		case "host-unreachable":
			un = &fbs[i]
		case "redirect":
			redirect = &fbs[i]
		case "parameter-problem":
			param = &fbs[i]
		}
	}
	if un == nil || un.FB.Matched || un.FlowID != 0 || un.SrcIP != "10.0.0.1" || un.DestIP != "10.0.0.9" || un.DestPort != 7 || un.Proto != "UDP" || un.CommunityID == "" {
		t.Errorf("unmatched: %+v", un)
	}
	if redirect == nil || redirect.FB.Gateway != "10.0.0.3" || redirect.FB.Detail != "host" {
		t.Errorf("redirect: %+v", redirect)
	}
	if param == nil || param.FB.Pointer == nil || *param.FB.Pointer != 20 {
		t.Errorf("parameter problem: %+v", param)
	}
}

// TestNoAllocPerPacket: TCP packets of a live flow cost no allocation.
func TestNoAllocPerPacket(t *testing.T) {
	ch := make(chan *event.Batch, 1024)
	em := pipeline.NewEmitter(ch)
	p := flow.NewProcessor(flow.Config{}, New(Config{}))
	pk := tcp(t0, cli, 40000, srv, 443, packet.TCPSyn, 1, 0)
	p.Packet(&pk, em)
	data := tcp(t0+1e6, cli, 40000, srv, 443, packet.TCPAck, 2, 1000)
	allocs := testing.AllocsPerRun(1000, func() {
		data.Meta.Seq += 1000
		p.Packet(&data, em)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per packet", allocs)
	}
	// Flows that end give their feedback's entry back: the next flow
	// reuses it.
	a := New(Config{})
	p = flow.NewProcessor(flow.Config{}, a)
	for i := range 3 {
		ts := t0 + int64(i)*sec
		pk := tcp(ts, cli, uint16(1000+i), srv, 443, packet.TCPSyn, 1, 0)
		p.Packet(&pk, em)
		e := icmpErr(ts+1e6, rtr, 3, 3, 0, tcpQuote(cli, uint16(1000+i), srv, 443, 1))
		p.Packet(&e, em)
		p.Flush(ts+100*sec, em)
		em.Flush()
		for len(ch) > 0 {
			<-ch
		}
	}
	if n := len(a.fbs); n != 1 {
		t.Fatalf("%d feedback entries after 3 sequential flows with an error each, want 1", n)
	}
	if len(a.fbFree) != 1 || a.fbs[0] != nil {
		t.Fatalf("the feedback entry is not free after every flow ended (%d free)", len(a.fbFree))
	}
}
