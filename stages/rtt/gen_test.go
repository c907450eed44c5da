package rtt_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/pktpipe/pktpipe/bench/gen"
	"github.com/pktpipe/pktpipe/pipeline/event"
)

// TestGroundTruth runs ~50k synthetic packets through the engine and checks
// every correlation against the generator's ground truth: each completed
// handshake's server/client halves, each echo RTT, each DNS delay, refused
// SYNs, unanswered queries and echoes; the same output with 1 and 3
// workers.
func TestGroundTruth(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := gen.Write(f, gen.Config{Seed: 7, Packets: 50000, BulkShare: 0.01, Truth: true}, gen.Format{})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	evs, reg := runPcap(t, path, 1)

	type ep struct {
		addr string
		port int64
	}
	conns := map[ep]*gen.Conn{}
	echoes := map[ep]*gen.Conn{} // client address, echo id
	for _, c := range sum.Truth.Conns {
		if c.Echo != nil {
			echoes[ep{c.Client.String(), int64(c.Echo.ID)}] = c
			continue
		}
		conns[ep{c.Client.String(), int64(c.ClientPort)}] = c
	}
	var hs, refused, echo, dnsN int
	for _, e := range ofType(evs, event.TypeRTT) {
		r := obj(e, "rtt")
		switch str(r["kind"]) {
		case event.RTTTCPHandshake:
			c := conns[ep{str(e["src_ip"]), i64(e["src_port"])}]
			if c == nil {
				t.Fatalf("no truth for %v", e)
			}
			if r["refused"] == true {
				refused++
				if c.Kind != "tcp-refused" {
					t.Errorf("flow %d (%s) reported refused", c.ID, c.Kind)
				}
				continue
			}
			hs++
			if !c.HandshakeComplete {
				t.Errorf("flow %d: handshake reported, truth says incomplete", c.ID)
			}
			if i64(r["server_ns"]) != c.ServerRTT || i64(r["client_ns"]) != c.ClientRTT || i64(r["handshake_ns"]) != c.ServerRTT+c.ClientRTT {
				t.Errorf("flow %d: server %v client %v handshake %v ns, truth %d + %d", c.ID, r["server_ns"], r["client_ns"], r["handshake_ns"], c.ServerRTT, c.ClientRTT)
			}
		case event.RTTICMPEcho:
			echo++
			c := echoes[ep{str(e["src_ip"]), i64(r["id"])}]
			if c == nil {
				t.Fatalf("no echo truth for %v", e)
			}
			if i64(r["rtt_ns"]) != c.Echo.RTT {
				t.Errorf("echo flow %d seq %v: %v ns, truth %d", c.ID, r["seq"], r["rtt_ns"], c.Echo.RTT)
			}
		case event.RTTDNS:
			dnsN++
			c := conns[ep{str(e["src_ip"]), i64(e["src_port"])}]
			if c == nil {
				t.Fatalf("no truth for %v", e)
			}
			found := false
			for _, q := range c.DNS {
				if int64(q.ID) == i64(r["id"]) {
					found = true
					if i64(r["rtt_ns"]) != q.Delay || str(r["rrname"]) != q.Name {
						t.Errorf("flow %d query %v: %v ns %v, truth %d ns %s", c.ID, r["id"], r["rtt_ns"], r["rrname"], q.Delay, q.Name)
					}
				}
			}
			if !found {
				t.Errorf("flow %d: no query with id %v in the truth", c.ID, r["id"])
			}
		default:
			t.Errorf("unexpected kind %v", r["kind"])
		}
	}
	if hs != sum.Handshakes || hs == 0 {
		t.Errorf("%d handshakes timed, truth has %d", hs, sum.Handshakes)
	}
	if refused != sum.Flows["tcp-refused"] || refused == 0 {
		t.Errorf("%d refused, truth has %d refused flows", refused, sum.Flows["tcp-refused"])
	}
	if echo != sum.EchoReplies || echo == 0 {
		t.Errorf("%d echoes timed, truth has %d replies", echo, sum.EchoReplies)
	}
	if dnsN != sum.DNSResponses || dnsN == 0 {
		t.Errorf("%d DNS responses timed, truth has %d", dnsN, sum.DNSResponses)
	}
	// Every request is either answered or counted unanswered.
	un := func(kind string) int {
		v, _ := reg.Value(fmt.Sprintf(`pktpipe_rtt_unanswered_total{kind="%s"}`, kind))
		return int(v)
	}
	if got := un(event.RTTICMPEcho) + echo; got != sum.EchoRequests {
		t.Errorf("echo: %d answered + %d unanswered, truth has %d requests", echo, un(event.RTTICMPEcho), sum.EchoRequests)
	}
	if got := un(event.RTTDNS) + dnsN; got != sum.DNSQueries {
		t.Errorf("dns: %d answered + %d unanswered, truth has %d queries", dnsN, un(event.RTTDNS), sum.DNSQueries)
	}
	t.Logf("%d handshakes, %d refused, %d echoes, %d DNS; unanswered echo %d dns %d", hs, refused, echo, dnsN, un(event.RTTICMPEcho), un(event.RTTDNS))
}
