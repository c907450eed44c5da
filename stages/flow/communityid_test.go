package flow

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sources/pcapfile"
	"github.com/pktpipe/pktpipe/stages/communityid"
	"github.com/pktpipe/pktpipe/stages/decode"
)

// cidCheck runs the flow table and, after each packet, compares the
// Community ID of the flow the packet went to with the packet's own.
type cidCheck struct {
	*Processor
	h                   *communityid.Hasher
	checked, icmpErrors int
	mismatches          []string
	ids                 map[string]bool
}

func (c *cidCheck) Process(b *packet.Batch, em *pipeline.Emitter) {
	for i := range b.Packets {
		pk := &b.Packets[i]
		c.Packet(pk, em)
		m := &pk.Meta
		if m.IPVersion == 0 || m.Err != packet.MalformedNone || (m.Frag.Is && !m.Frag.First) {
			continue
		}
		if (m.Proto == packet.ProtoICMP || m.Proto == packet.ProtoICMPv6) && packet.IsICMPError(m.Proto, m.ICMPType) {
			c.icmpErrors++ // tied to the flow it quotes, by design
			continue
		}
		k, _ := packet.KeyOf(m)
		want := c.h.ID(k)
		if m.Proto == packet.ProtoICMP || m.Proto == packet.ProtoICMPv6 {
			want = c.h.IDICMP(k, m.ICMPType, m.ICMPCode)
		}
		f := c.Lookup(k)
		c.checked++
		if f == nil || f.CommunityID() != want {
			got := "no flow"
			if f != nil {
				got = f.CommunityID()
			}
			c.mismatches = append(c.mismatches, k.Src.String()+">"+k.Dst.String()+" "+want+" in flow "+got)
		}
		c.ids[want] = true
	}
	c.Sweep(b.Now, em)
}

// Every packet of the Community ID spec's combined.pcap.gz lands in a flow
// whose community_id is the packet's own: ICMP and ICMPv6 flows are keyed
// by the spec's type pairing, so a Neighbour Solicitation/Advertisement
// exchange started from the other side is a flow of its own.
func TestEveryPacketsFlowCarriesItsCommunityID(t *testing.T) {
	file := filepath.Join(testenv.Conformance(t, "community-id-spec", "pcaps"), "combined.pcap.gz")
	reg := stats.NewRegistry()
	src, err := pcapfile.New(pcapfile.Config{Files: []string{file}, Stats: reg})
	if err != nil {
		t.Fatal(err)
	}
	c := &cidCheck{Processor: NewProcessor(Config{Workers: 1, Stats: reg}), h: communityid.New(0, true), ids: map[string]bool{}}
	eng, err := pipeline.New(pipeline.Config{Workers: 1, Stats: reg}, pipeline.Parts{
		Sources:      []pipeline.Source{src},
		NewDecoder:   func() pipeline.Decoder { return decode.New() },
		NewProcessor: func(int) pipeline.Processor { return c },
		Sink:         &keepSink{},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, m := range c.mismatches {
		t.Error(m)
	}
	if c.checked < 50 {
		t.Fatalf("checked only %d packets", c.checked)
	}
	if !c.ids["1:zavyT/cezQr1fmImYCwYnMXbgck="] {
		t.Error("the spec's ID of the reverse NS/NA exchange never appears")
	}
	t.Logf("%d packets in flows with their own Community ID; %d ICMP errors tied to the flows they quote", c.checked, c.icmpErrors)
}
