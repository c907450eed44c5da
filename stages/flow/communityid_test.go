package flow

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
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

// asker emits, on a flow's third packet, an event about it (as rtt does at
// the end of a handshake), so that the flow's Community ID is asked for
// while it lives.
type asker struct{ nop }

func (asker) Packet(f *Flow, p *packet.Packet, _ Dir, em *pipeline.Emitter) {
	if f.Packets(ToServer)+f.Packets(ToClient) == 3 {
		ev := &event.RTT{Kind: event.RTTTCPHandshake}
		f.FillHeader(&ev.Header, p.Timestamp)
		em.Emit(ev)
	}
}

// TestCommunityIDWhenAsked: a flow nothing asks about holds no Community
// ID while it lives (its record still has it); one that an event asked
// about keeps it beside the table until it ends, and its record and the
// event carry the same.
func TestCommunityIDWhenAsked(t *testing.T) {
	p := NewProcessor(Config{MaxFlows: 16}, asker{})
	quiet := []packet.Packet{tcpPkt(t0, cli, 1000, srv, 80, syn, 60), tcpPkt(t0+1, srv, 80, cli, 1000, synack, 60)}
	c := newCollector(true)
	feed(p, c.em, quiet, 1)
	if len(p.rows) != 0 {
		t.Fatalf("a Community ID is kept for a flow nothing asked about")
	}
	talk := []packet.Packet{
		tcpPkt(t0+2, cli, 2000, srv, 80, syn, 60), tcpPkt(t0+3, srv, 80, cli, 2000, synack, 60),
		tcpPkt(t0+4, cli, 2000, srv, 80, ack, 60),
	}
	feed(p, c.em, talk, 1)
	if f := p.Lookup(packet.FlowKey{Src: cli, Dst: srv, SrcPort: 2000, DstPort: 80, Proto: packet.ProtoTCP}); f == nil || f.bits&bitCID == 0 || p.rows[0].cids[f.row] == "" {
		t.Fatalf("the Community ID an event asked for is not kept")
	}
	p.Flush(t0+10*sec, c.em)
	want := communityid.New(0, true)
	byPort := map[uint16]string{}
	for _, e := range c.close() {
		switch e := e.(type) {
		case *event.Flow:
			byPort[e.SrcPort] = e.CommunityID
		case *event.RTT:
			byPort[1] = e.CommunityID
		}
	}
	for _, port := range []uint16{1000, 2000} {
		k := packet.FlowKey{Src: cli, Dst: srv, SrcPort: port, DstPort: 80, Proto: packet.ProtoTCP}
		if id := want.ID(k); byPort[port] != id {
			t.Errorf("port %d: record's community_id %q, want %q", port, byPort[port], id)
		}
	}
	if byPort[1] != byPort[2000] {
		t.Errorf("event's community_id %q, record's %q", byPort[1], byPort[2000])
	}
	for _, c := range p.rows {
		for _, id := range c.cids {
			if id != "" {
				t.Fatalf("a Community ID is kept after its flow ended")
			}
		}
	}
}
