package icmpfb

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/pktpipe/pktpipe/bench/gen"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/stages/decode"
)

// genCapture writes a synthetic capture with ground truth.
func genCapture(t *testing.T, seed int64, pkts int) (string, *gen.Truth) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gen.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := gen.Write(f, gen.Config{Seed: seed, Packets: pkts, Truth: true}, gen.Format{})
	if err1 := f.Close(); err == nil {
		err = err1
	}
	if err != nil {
		t.Fatal(err)
	}
	return path, sum.Truth
}

// TestGeneratorTruth: every ICMP error bench/gen wrote (port unreachable,
// TTL exceeded for a SYN, frag-needed / packet-too-big with an MTU) is
// classified as the generator named it, from the router it came from,
// matched to its flow and verified where a TCP seq was quoted; the flow
// records carry count, summary and path_mtu.
func TestGeneratorTruth(t *testing.T) {
	path, truth := genCapture(t, 11, 40000)
	lines, _ := run(t, path, 2)
	fbs, flows := parse(t, lines)
	type key struct {
		src, dst     string
		sport, dport int
	}
	byKey := map[key][]*lineJSON{}
	for i := range flows {
		f := &flows[i]
		k := key{f.SrcIP, f.DestIP, f.SrcPort, f.DestPort}
		byKey[k] = append(byKey[k], f)
	}
	for _, e := range fbs {
		if !e.FB.Matched {
			t.Errorf("unmatched error: %s", e.raw)
		}
		if e.FB.Verified != nil && !*e.FB.Verified {
			t.Errorf("a genuine error not verified: %s", e.raw)
		}
	}
	names := map[string]int{}
	sent := 0
	for _, c := range truth.Conns {
		ic := c.ICMP
		if ic == nil || ic.Sent == 0 {
			continue
		}
		sent += ic.Sent
		names[ic.Name]++
		recs := byKey[key{c.Client.String(), c.Server.String(), int(c.ClientPort), int(c.ServerPort)}]
		var rec *lineJSON
		for _, r := range recs {
			if r.FlowFB != nil {
				rec = r
			}
		}
		if rec == nil {
			t.Errorf("conn %d (%s %s): no flow record with icmp_feedback", c.ID, c.Kind, ic.Name)
			continue
		}
		x := rec.FlowFB
		it := x.Items[0]
		if x.Count != ic.Sent || it.Class != ic.Name || it.Reporter != ic.From.String() || it.ICMPType != int(ic.Type) || it.ICMPCode != int(ic.Code) {
			t.Errorf("conn %d: truth %+v, record %s", c.ID, *ic, rec.raw)
		}
		if ic.MTU != 0 && (it.MTU == nil || *it.MTU != ic.MTU || x.PathMTU != ic.MTU) {
			t.Errorf("conn %d: MTU %d, record %s", c.ID, ic.MTU, rec.raw)
		}
		wantSum := map[string]string{"port-unreachable": "rejected", "ttl-exceeded": "ttl-exceeded"}[ic.Name]
		if x.Summary != wantSum {
			t.Errorf("conn %d: summary %q, want %q", c.ID, x.Summary, wantSum)
		}
		if c.Proto == "tcp" && (it.Verified == nil || !*it.Verified) {
			t.Errorf("conn %d: TCP quote not verified: %s", c.ID, rec.raw)
		}
	}
	if len(fbs) != sent {
		t.Errorf("%d icmp_feedback events, generator sent %d errors", len(fbs), sent)
	}
	t.Logf("%d errors from %d conns: %v", sent, len(names), names)
	for _, n := range []string{"port-unreachable", "ttl-exceeded", "frag-needed", "packet-too-big"} {
		if names[n] == 0 {
			t.Errorf("the capture has no %s: pick another seed (%v)", n, names)
		}
	}
}

// TestErrorsFollowTheQuotedFlow: with 4 workers, ICMP errors whose own
// addresses hash to a different worker than the flow they quote still
// match that flow, and the output equals the 1-worker run's.
func TestErrorsFollowTheQuotedFlow(t *testing.T) {
	path, _ := genCapture(t, 12, 20000)
	// Which errors would have gone astray by their outer header?
	pkts := readPcap(t, path)
	dec := decode.New()
	astray := 0
	for i := range pkts {
		p := &pkts[i]
		dec.Decode(p)
		m := &p.Meta
		if !m.Quoted().Present {
			continue
		}
		outer, _ := packet.KeyOf(m)
		quoted, _ := packet.QuoteKey(m)
		if outer.Hash()%4 != quoted.Hash()%4 {
			astray++
		}
	}
	if astray == 0 {
		t.Fatal("no error in the capture hashes differently by its outer header: the test proves nothing")
	}
	one, _ := run(t, path, 1)
	four, reg := run(t, path, 4)
	if !slices.Equal(sortedCopy(one), sortedCopy(four)) {
		t.Fatal("1 and 4 workers differ")
	}
	fbs, flows := parse(t, four)
	for _, e := range fbs {
		if !e.FB.Matched || flowByID(flows, e.FlowID) == nil {
			t.Errorf("not matched to a flow record: %s", e.raw)
		}
	}
	un, _ := reg.Value(`pktpipe_flow_icmp_errors_total{result="unmatched"}`)
	if un != 0 {
		t.Errorf("%v unmatched errors", un)
	}
	t.Logf("%d errors, %d of them hash to another worker by their outer header", len(fbs), astray)
}

// readPcap reads a classic pcap with gopacket's reader (not the project's
// source, which the pipeline run uses).
func readPcap(t *testing.T, path string) []packet.Packet {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(bufio.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	var out []packet.Packet
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		out = append(out, packet.Packet{Data: data, OrigLen: uint32(ci.Length), Timestamp: ci.Timestamp.UnixNano(),
			LinkType: packet.LinkType(r.LinkType()), IfIndex: -1})
	}
	if len(out) == 0 {
		t.Fatalf("no packets in %s", path)
	}
	return out
}
