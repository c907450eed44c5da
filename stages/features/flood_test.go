package features_test

import (
	"encoding/binary"
	"runtime"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/decode"
	"github.com/pktpipe/pktpipe/stages/flow"

	_ "github.com/pktpipe/pktpipe/stages/all" // every analyzer
)

// synFrame is an Ethernet frame: TCP SYN number i from its own source
// (10.64.0.0/10 + i) to 10.0.0.1:443, as a flood sends them.
func synFrame(i uint32) []byte {
	f := make([]byte, 54)
	copy(f[0:6], []byte{2, 0, 0, 0, 0, 1})
	copy(f[6:12], []byte{2, 0, 0, 0, 0, 2})
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 6
	binary.BigEndian.PutUint16(ip[2:], 40)
	binary.BigEndian.PutUint32(ip[12:], 10<<24|64<<16+i)
	binary.BigEndian.PutUint32(ip[16:], 10<<24|1)
	tcp := f[34:54]
	binary.BigEndian.PutUint16(tcp[0:], uint16(1024+i%60000))
	binary.BigEndian.PutUint16(tcp[2:], 443)
	binary.BigEndian.PutUint32(tcp[4:], i*2654435761)
	tcp[12], tcp[13] = 5<<4, packet.TCPSyn
	binary.BigEndian.PutUint16(tcp[14:], 64240)
	return f
}

// echoFrame is an ICMP echo request of id i from syn's source.
func echoFrame(syn []byte, i uint32) []byte {
	f := append([]byte(nil), syn...)
	f[14+9] = 1
	c := f[34:54]
	clear(c)
	c[0] = 8
	binary.BigEndian.PutUint16(c[4:], uint16(i))
	binary.BigEndian.PutUint16(c[6:], 1)
	return f
}

// synAckFrame is the server's SYN/ACK answering syn.
func synAckFrame(syn []byte) []byte {
	f := append([]byte(nil), syn...)
	ip, tcp := f[14:34], f[34:54]
	copy(ip[12:16], syn[30:34])
	copy(ip[16:20], syn[26:30])
	copy(tcp[0:2], syn[36:38])
	copy(tcp[2:4], syn[34:36])
	binary.BigEndian.PutUint32(tcp[8:], binary.BigEndian.Uint32(syn[38:])+1)
	binary.BigEndian.PutUint32(tcp[4:], 777)
	tcp[13] = packet.TCPSyn | packet.TCPAck
	return f
}

// ackFrame is the client's ACK completing syn's handshake.
func ackFrame(syn []byte) []byte {
	f := append([]byte(nil), syn...)
	tcp := f[34:54]
	binary.BigEndian.PutUint32(tcp[4:], binary.BigEndian.Uint32(syn[38:])+1)
	binary.BigEndian.PutUint32(tcp[8:], 778)
	tcp[13] = packet.TCPAck
	return f
}

// floodHeap is the live heap of a flow table holding n flows of one SYN
// each, with analyzers names (none when nil), and the table. Every
// answered-th flow (0 = none) has the server's SYN/ACK too, and every
// acked-th of those the client's ACK: a connection the analyzers engage
// in.
func floodHeap(t *testing.T, names []string, n, answered, acked int) (uint64, *flow.Processor) {
	return floodHeapOf(t, names, n, func(i int) [][]byte {
		frames := [][]byte{synFrame(uint32(i))}
		if answered > 0 && i%answered == 0 {
			frames = append(frames, synAckFrame(frames[0]))
			if acked > 0 && i/answered%acked == 0 {
				frames = append(frames, ackFrame(frames[0]))
			}
		}
		return frames
	})
}

// floodHeapOf is floodHeap with flow i's frames from frames.
func floodHeapOf(t *testing.T, names []string, n int, frames func(i int) [][]byte) (uint64, *flow.Processor) {
	t.Helper()
	var as []flow.Analyzer
	reg := stats.NewRegistry()
	if names != nil {
		specs, err := flow.ResolveAnalyzers(names)
		if err != nil {
			t.Fatal(err)
		}
		if as, err = flow.BuildAnalyzers(specs, nil, flow.AnalyzerEnv{Workers: 1, Stats: reg}); err != nil {
			t.Fatal(err)
		}
	}
	dec := decode.New()
	var pkts []packet.Packet
	for i := range n {
		for _, fr := range frames(i) {
			p := packet.Packet{Data: fr, LinkType: packet.LinkEthernet, Timestamp: int64(1_700_000_000)*1e9 + int64(len(pkts))*500}
			p.OrigLen = uint32(len(p.Data))
			dec.Decode(&p)
			pkts = append(pkts, p)
		}
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	p := flow.NewProcessor(flow.Config{Workers: 1, MaxFlows: n, Stats: reg}, as...)
	ch := make(chan *event.Batch, 1) // nothing ends; rtt times the handshakes
	done := make(chan struct{})
	go func() {
		for b := range ch {
			b.Release()
		}
		close(done)
	}()
	em := pipeline.NewEmitter(ch)
	for i := range pkts {
		p.Packet(&pkts[i], em)
	}
	em.Flush()
	close(ch)
	<-done
	runtime.GC()
	runtime.ReadMemStats(&ms)
	runtime.KeepAlive(pkts)
	if p.Len() != n {
		t.Fatalf("%d live flows, want %d", p.Len(), n)
	}
	return ms.HeapAlloc - before, p
}

// TestSYNFloodKeepsNoAnalyzerState: a flow of one SYN, or of a SYN and
// its SYN/ACK, or of one echo request, costs its flow table entry and
// nothing more, with every
// analyzer on (features too): what its packets say is in the entry, and
// the analyzers keep state only when a packet past the handshake (or
// payload) engages them.
func TestSYNFloodKeepsNoAnalyzerState(t *testing.T) {
	const n = 40_000
	for _, c := range []struct {
		name     string
		answered int
	}{{"SYN", 0}, {"SYN and SYN/ACK", 1}} {
		off, p0 := floodHeap(t, nil, n, c.answered, 0)
		on, p1 := floodHeap(t, []string{"all", "features"}, n, c.answered, 0)
		runtime.KeepAlive(p0)
		runtime.KeepAlive(p1)
		per := (float64(on) - float64(off)) / n
		t.Logf("%s: every analyzer adds %.1f bytes per flow (table alone %.1f)", c.name, per, float64(off)/n)
		if per > 2 {
			t.Errorf("%s: the analyzers keep %.1f bytes per flow, want none", c.name, per)
		}
	}
	echo := func(i int) [][]byte { return [][]byte{echoFrame(synFrame(uint32(i)), uint32(i))} }
	off, p0 := floodHeapOf(t, nil, n, echo)
	on, p1 := floodHeapOf(t, []string{"all", "features"}, n, echo)
	runtime.KeepAlive(p0)
	runtime.KeepAlive(p1)
	per := (float64(on) - float64(off)) / n
	t.Logf("echo requests: every analyzer adds %.1f bytes per flow", per)
	if per > 2 {
		t.Errorf("echo requests: the analyzers keep %.1f bytes per flow, want none", per)
	}
}

// TestSYNFloodAmongFlows: the same with one flow in 100 a connection (its
// handshake complete), whose entries lie among the flood's: the
// analyzers' state costs the connections, not the chunks of the table
// they share with the flood.
func TestSYNFloodAmongFlows(t *testing.T) {
	const n, answered = 200_000, 100
	off, p0 := floodHeap(t, nil, n, answered, 1)
	on, p1 := floodHeap(t, []string{"all", "features"}, n, answered, 1)
	runtime.KeepAlive(p0)
	runtime.KeepAlive(p1)
	per := (float64(on) - float64(off)) / n
	t.Logf("every analyzer adds %.1f bytes per flow, %.0f per connection (table alone %.1f)", per, per*answered, float64(off)/n)
	// The connections' state in whole chunks of rows (a few hundred KiB)
	// and their 2,000 states: a few bytes a flow. Were the chunks the
	// table's, every chunk would hold connections and all pay.
	if per > 8 {
		t.Errorf("the analyzers keep %.1f bytes per flow, want the connections' only", per)
	}
}
