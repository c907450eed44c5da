package flow

import (
	"net/netip"
	"sort"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/sinks/encode"
)

const sec = int64(time.Second)

var t0 = int64(1_700_000_000) * sec

var (
	cli  = netip.MustParseAddr("10.0.0.1")
	srv  = netip.MustParseAddr("10.0.0.2")
	rtr  = netip.MustParseAddr("10.0.0.254")
	cli6 = netip.MustParseAddr("fd00::1")
	srv6 = netip.MustParseAddr("fd00::2")
)

func ipv(a netip.Addr) uint8 {
	if a.Is4() {
		return 4
	}
	return 6
}

func tcpPkt(ts int64, src netip.Addr, sp uint16, dst netip.Addr, dp uint16, flags uint8, n uint32) packet.Packet {
	return packet.Packet{OrigLen: n, Timestamp: ts, IfIndex: -1, Meta: packet.Meta{
		IPVersion: ipv(src), Src: src, Dst: dst, Proto: packet.ProtoTCP,
		SrcPort: sp, DstPort: dp, HasL4: true, TCPFlags: flags,
	}}
}

func udpPkt(ts int64, src netip.Addr, sp uint16, dst netip.Addr, dp uint16, n uint32) packet.Packet {
	return packet.Packet{OrigLen: n, Timestamp: ts, IfIndex: -1, Meta: packet.Meta{
		IPVersion: ipv(src), Src: src, Dst: dst, Proto: packet.ProtoUDP,
		SrcPort: sp, DstPort: dp, HasL4: true,
	}}
}

func icmpPkt(ts int64, src, dst netip.Addr, typ, code uint8, id uint16, n uint32) packet.Packet {
	proto := uint8(packet.ProtoICMP)
	if src.Is6() {
		proto = packet.ProtoICMPv6
	}
	p := packet.Packet{OrigLen: n, Timestamp: ts, IfIndex: -1, Meta: packet.Meta{
		IPVersion: ipv(src), Src: src, Dst: dst, Proto: proto, HasL4: true,
		ICMPType: typ, ICMPCode: code,
	}}
	if packet.IsEcho(proto, typ) {
		p.Meta.ICMPID = id
	}
	return p
}

// icmpErr is an ICMP error from src to dst quoting a packet q sent from
// qsrc:qsp to qdst:qdp with protocol qproto.
func icmpErr(ts int64, src, dst netip.Addr, typ, code uint8, qproto uint8, qsrc netip.Addr, qsp uint16, qdst netip.Addr, qdp uint16) packet.Packet {
	p := icmpPkt(ts, src, dst, typ, code, 0, 70)
	p.Meta.X = &packet.Extra{Quote: packet.Quote{
		Present: true, IPVersion: ipv(qsrc), Src: qsrc, Dst: qdst, Proto: qproto,
		SrcPort: qsp, DstPort: qdp, HasPorts: qproto == packet.ProtoTCP || qproto == packet.ProtoUDP,
	}}
	return p
}

// collector drains an Emitter's channel, as the engine's sink would.
type collector struct {
	ch     chan *event.Batch
	done   chan struct{}
	em     *pipeline.Emitter
	events []event.Event
	keep   bool
	count  int
}

func newCollector(keep bool) *collector {
	c := &collector{ch: make(chan *event.Batch, 16), done: make(chan struct{}), keep: keep}
	c.em = pipeline.NewEmitter(c.ch)
	go func() {
		defer close(c.done)
		for b := range c.ch {
			c.count += len(b.Events)
			if c.keep {
				c.events = append(c.events, b.Events...)
			}
			b.Release()
		}
	}()
	return c
}

// close flushes the emitter and waits for the drain to finish.
func (c *collector) close() []event.Event {
	c.em.Flush()
	close(c.ch)
	<-c.done
	return c.events
}

func flows(evs []event.Event) []*event.Flow {
	var out []*event.Flow
	for _, e := range evs {
		if f, ok := e.(*event.Flow); ok {
			out = append(out, f)
		}
	}
	return out
}

// run feeds pkts to p in batches of size n (Now = the latest timestamp so
// far, as the dispatcher sets it), then flushes at the latest timestamp.
func run(t testing.TB, p *Processor, pkts []packet.Packet, n int) []event.Event {
	t.Helper()
	c := newCollector(true)
	now := feed(p, c.em, pkts, n)
	p.Flush(now, c.em)
	return c.close()
}

func feed(p pipeline.Processor, em *pipeline.Emitter, pkts []packet.Packet, n int) (now int64) {
	pool := packet.NewPool(n, 1<<20)
	for len(pkts) > 0 {
		b := pool.Get()
		for len(pkts) > 0 && !b.Full(len(pkts[0].Data)) {
			b.AppendPacket(&pkts[0])
			now = max(now, pkts[0].Timestamp)
			pkts = pkts[1:]
		}
		b.Now = now
		p.Process(b, em)
		em.Flush()
		b.Release()
	}
	return now
}

// jsonLines encodes events with the project's JSON encoder, sorted.
func jsonLines(t testing.TB, evs []event.Event) []string {
	t.Helper()
	enc, err := encode.New("json")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, string(enc.Append(nil, e)))
	}
	sort.Strings(out)
	return out
}

func counter(t testing.TB, p *Processor, id string) float64 {
	t.Helper()
	v, ok := p.cfg.Stats.Value(id)
	if !ok {
		t.Fatalf("no series %s", id)
	}
	return v
}
