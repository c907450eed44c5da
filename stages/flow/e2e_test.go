package flow

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sources/pcapfile"
	"github.com/pktpipe/pktpipe/stages/decode"
)

// keepSink keeps every event (events are pointers; the slice is reused).
type keepSink struct{ events []event.Event }

func (s *keepSink) Write(evs []event.Event) error { s.events = append(s.events, evs...); return nil }
func (s *keepSink) Flush() error                  { return nil }
func (s *keepSink) Close() error                  { return nil }

// runPcap runs the real engine: pcapfile → decode → flow (workers) → sink.
func runPcap(t *testing.T, file string, workers int) ([]event.Event, *stats.Registry) {
	t.Helper()
	reg := stats.NewRegistry()
	src, err := pcapfile.New(pcapfile.Config{Files: []string{file}, Stats: reg})
	if err != nil {
		t.Fatal(err)
	}
	sink := &keepSink{}
	eng, err := pipeline.New(pipeline.Config{Workers: workers, Stats: reg}, pipeline.Parts{
		Sources:    []pipeline.Source{src},
		NewDecoder: func() pipeline.Decoder { return decode.New() },
		NewProcessor: func(w int) pipeline.Processor {
			return NewProcessor(Config{Workers: workers, Stats: reg}, errEmitter{})
		},
		Sink: sink,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return sink.events, reg
}

// TestSamplePcap: the repository's capture of real programs gives the same
// records with 1 and 4 workers, the TCP sessions close with fin, and the
// ICMP errors (closed UDP port, traceroute) find the flows they quote.
func TestSamplePcap(t *testing.T) {
	file := filepath.Join(testenv.RepoRoot(t), "testdata", "sample.pcap")
	if _, err := os.Stat(file); err != nil {
		t.Fatal(err)
	}
	evs, reg := runPcap(t, file, 1)
	one := jsonLines(t, evs)
	evs4, _ := runPcap(t, file, 4)
	if four := jsonLines(t, evs4); !slices.Equal(one, four) {
		t.Fatalf("1 vs 4 workers differ:\n%s\n---\n%s", strings.Join(one, "\n"), strings.Join(four, "\n"))
	}
	matched, _ := reg.Value(`pktpipe_flow_icmp_errors_total{result="matched"}`)
	unmatched, _ := reg.Value(`pktpipe_flow_icmp_errors_total{result="unmatched"}`)
	if matched == 0 {
		t.Errorf("no ICMP error matched its flow (unmatched %v)", unmatched)
	}
	tcp := 0
	for _, r := range flows(evs) {
		if r.Proto != 6 {
			continue
		}
		tcp++
		if r.SrcIP.String() != "10.99.1.2" && r.SrcIP.String() != "fd00:99:1::2" {
			t.Errorf("tcp flow with client %v: %+v", r.SrcIP, r)
		}
		if r.Reason != "fin" && r.Reason != "rst" {
			t.Errorf("tcp flow ended by %q: %+v", r.Reason, r)
		}
		if r.PktsToServer == 0 || r.PktsToClient == 0 || r.CommunityID == "" {
			t.Errorf("tcp flow %+v", r)
		}
	}
	if tcp == 0 {
		t.Error("no TCP flow")
	}
	t.Logf("%d events, %d tcp flows, icmp errors matched %v unmatched %v", len(evs), tcp, matched, unmatched)
}

// TestZeekCommunityIDPcaps: for Zeek's TCP, UDP and SCTP community-id
// traces, the flow records (client, server, ports, community_id) are
// Zeek's connections (SCTP with its real ports, see ORIGIN.md).
func TestZeekCommunityIDPcaps(t *testing.T) {
	dir := testenv.Conformance(t, "zeek", "testing", "btest")
	for _, name := range []string{"tcp.pcap", "udp.pcap", "ipv6.pcap", "sctp.pcap"} {
		raw, err := os.ReadFile(filepath.Join(dir, "Baseline", "bifs.community_id.run-pcaps", name+".out"))
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, line := range strings.Split(string(raw), "\n") {
			if !strings.HasPrefix(line, "[") {
				continue
			}
			k, id := parseZeek(t, line)
			if k.Proto == 132 {
				k.SrcPort, k.DstPort, id = 7, 7, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs="
			}
			want = append(want, fmt.Sprintf("%v:%d %v:%d %d %s", k.Src, k.SrcPort, k.Dst, k.DstPort, k.Proto, id))
		}
		evs, _ := runPcap(t, filepath.Join(dir, "Traces", "communityid", name), 2)
		var got []string
		for _, r := range flows(evs) {
			got = append(got, fmt.Sprintf("%v:%d %v:%d %d %s", r.SrcIP, r.SrcPort, r.DestIP, r.DestPort, r.Proto, r.CommunityID))
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s:\n got %v\nwant %v", name, got, want)
		}
	}
}

// parseZeek reads "[orig_h=A, orig_p=N/proto, resp_h=B, resp_p=M/proto,
// proto=P, ctx=[]], ID".
func parseZeek(t *testing.T, line string) (packet.FlowKey, string) {
	t.Helper()
	body, id, ok := strings.Cut(strings.TrimPrefix(line, "["), "], ")
	if !ok {
		t.Fatalf("bad line %q", line)
	}
	f := map[string]string{}
	for _, kv := range strings.Split(body, ", ") {
		n, v, _ := strings.Cut(kv, "=")
		f[n] = v
	}
	num := func(s string) uint64 {
		s, _, _ = strings.Cut(s, "/")
		v, err := strconv.ParseUint(s, 10, 16)
		if err != nil {
			t.Fatalf("bad number %q in %q", s, line)
		}
		return v
	}
	return packet.FlowKey{
		Src: netip.MustParseAddr(f["orig_h"]), Dst: netip.MustParseAddr(f["resp_h"]),
		SrcPort: uint16(num(f["orig_p"])), DstPort: uint16(num(f["resp_p"])), Proto: uint8(num(f["proto"])),
	}, strings.TrimSpace(id)
}
