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

// floodHeap is the live heap of a flow table holding n flows of one SYN
// each, with analyzers as (none when names is nil), and the table.
func floodHeap(t *testing.T, names []string, n int) (uint64, *flow.Processor) {
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
	pkts := make([]packet.Packet, n)
	for i := range pkts {
		p := &pkts[i]
		p.Data, p.LinkType, p.Timestamp = synFrame(uint32(i)), packet.LinkEthernet, int64(1_700_000_000)*1e9+int64(i)*500
		p.OrigLen = uint32(len(p.Data))
		dec.Decode(p)
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	p := flow.NewProcessor(flow.Config{Workers: 1, MaxFlows: n, Stats: reg}, as...)
	em := pipeline.NewEmitter(make(chan *event.Batch, 1)) // nothing ends: no event
	for i := range pkts {
		p.Packet(&pkts[i], em)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	runtime.KeepAlive(pkts)
	if p.Len() != n {
		t.Fatalf("%d live flows, want %d", p.Len(), n)
	}
	return ms.HeapAlloc - before, p
}

// TestSYNFloodKeepsNoAnalyzerState: a flow of one SYN costs its flow table
// entry and nothing more, with every analyzer on (features too): what its
// packet says is in the entry, and the analyzers keep state only when a
// flow's second packet (or its first payload) engages them.
func TestSYNFloodKeepsNoAnalyzerState(t *testing.T) {
	const n = 40_000
	off, p0 := floodHeap(t, nil, n)
	on, p1 := floodHeap(t, []string{"all", "features"}, n)
	runtime.KeepAlive(p0)
	runtime.KeepAlive(p1)
	per := (float64(on) - float64(off)) / n
	t.Logf("every analyzer adds %.1f bytes per SYN-only flow (table alone %.1f)", per, float64(off)/n)
	if per > 2 {
		t.Errorf("the analyzers keep %.1f bytes per SYN-only flow, want none", per)
	}
}
