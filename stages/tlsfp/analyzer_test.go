package tlsfp

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/stages/decode"
	"github.com/pktpipe/pktpipe/stages/flow"
)

// TestAnalyzerInFlowTable runs the analyzer inside stages/flow on a
// suricata-verify capture, decoded by stages/decode: one tls event, with
// the flow's header and the expected JA3S.
func TestAnalyzerInFlowTable(t *testing.T) {
	p := filepath.Join(testenv.Conformance(t, "suricata-verify", "tests"), "tls", "tls-certs-alert", "input.pcap")
	fh, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	r, err := pcapgo.NewReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan *event.Batch, 64)
	em := pipeline.NewEmitter(out)
	proc := flow.NewProcessor(flow.Config{Workers: 1}, New(Config{Budget: defaultBudget()}))
	dec := decode.New()
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		pk := packet.Packet{Data: data, OrigLen: uint32(ci.Length), Timestamp: ci.Timestamp.UnixNano(), LinkType: packet.LinkType(r.LinkType()), IfIndex: -1}
		dec.Decode(&pk)
		proc.Packet(&pk, em)
	}
	proc.Flush(0, em)
	em.Flush()
	close(out)
	var tlsEvents []*event.TLS
	for b := range out {
		for _, e := range b.Events {
			if te, ok := e.(*event.TLS); ok {
				tlsEvents = append(tlsEvents, te)
			}
		}
	}
	if len(tlsEvents) != 1 {
		t.Fatalf("%d tls events, want 1", len(tlsEvents))
	}
	e := tlsEvents[0]
	if e.JA3SHash != "5d79edf64e03689ff559a54e9d9487bc" || e.FlowID == 0 || e.DestPort != 443 || e.Subject == "" {
		t.Fatalf("event %+v", e)
	}
}
