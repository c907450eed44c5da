package pcapfile

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/pipeline/packet"
)

// readAllInto runs the hot loop the source runs: next, then Append.
func readAllInto(t testing.TB, rd *reader, br *bytes.Reader, data []byte, b *packet.Batch) int {
	br.Reset(data)
	if err := rd.reset("x", br, ""); err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		d, rec, err := rd.next()
		if err != nil {
			return n
		}
		if b.Full(len(d)) {
			b.Reset()
		}
		p := b.Append(d)
		p.Timestamp, p.OrigLen = rec.ts, rec.origLen
		n++
	}
}

// TestNoAllocPerPacket: reading and copying a record allocates nothing.
func TestNoAllocPerPacket(t *testing.T) {
	pc, _ := genPcap(t, true, 2000, base, time.Microsecond)
	ng := (&ngb{}).shb(false).idb(1, 0).idb(101, 0, w9())
	for i := range 2000 {
		ng.epb(uint32(i%2), uint64(i), frame(i, 60+i%1000), 1500)
		if i%100 == 0 {
			ng.spb(frame(i, 64), 64)
			ng.block(0x0badf00d, make([]byte, 20))
		}
	}
	rd, br := newReader(), bytes.NewReader(nil)
	b := packet.NewPool(256, 0).Get()
	for name, data := range map[string][]byte{"pcap": pc, "pcapng": ng.buf} {
		if n := readAllInto(t, rd, br, data, b); n < 2000 {
			t.Fatalf("%s: read %d packets", name, n)
		}
		if a := testing.AllocsPerRun(5, func() { readAllInto(t, rd, br, data, b) }); a != 0 {
			t.Errorf("%s: %v allocations per file of 2000 packets, want 0", name, a)
		}
	}
}

// TestRunAllocsIndependentOfPackets: a whole Run's allocations (buffers,
// counters, batches the pool had to make) do not grow with the packet count.
func TestRunAllocsIndependentOfPackets(t *testing.T) {
	small, _ := genPcap(t, false, 100, base, time.Microsecond)
	big, _ := genPcap(t, false, 20000, base, time.Microsecond)
	fs, fb := writeTemp(t, small), writeTemp(t, big)
	pool := packet.NewPool(0, 0)
	allocs := func(f string) float64 {
		src, err := New(Config{Files: []string{f}})
		if err != nil {
			t.Fatal(err)
		}
		return testing.AllocsPerRun(3, func() { runDiscard(src, pool) })
	}
	as, ab := allocs(fs), allocs(fb)
	t.Logf("allocs per run: 100 packets %v, 20000 packets %v", as, ab)
	if ab-as > 200 { // 1% of the extra packets; per-packet allocation would be >= 19900
		t.Fatalf("allocations grow with packets: %v for 100, %v for 20000", as, ab)
	}
}

// runDiscard runs src, releasing every batch; it returns the packet count.
func runDiscard(src *Source, pool *packet.Pool) (int, error) {
	out := make(chan *packet.Batch, 8)
	errc := make(chan error, 1)
	go func() { errc <- src.Run(context.Background(), pool, out); close(out) }()
	n := 0
	for b := range out {
		n += b.Len()
		b.Release()
	}
	return n, <-errc
}

func BenchmarkRead(b *testing.B) {
	const n = 100_000
	data, _ := genPcap(b, false, n, base, time.Microsecond)
	ng := &ngb{}
	ng.shb(false).idb(1, 0)
	for i := range n {
		ng.epb(0, uint64(i), frame(i, 60+i%1455), uint32(60+i%1455))
	}
	for _, bc := range []struct {
		name string
		data []byte
	}{
		{"pcap", data},
		{"pcapng", ng.buf},
		{"pcap.zst", zst(b, data)},
		{"pcap.gz", gz(b, data)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := writeTemp(b, bc.data)
			src, err := New(Config{Files: []string{f}})
			if err != nil {
				b.Fatal(err)
			}
			pool := packet.NewPool(0, 0)
			b.SetBytes(int64(len(bc.data)))
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				if got, err := runDiscard(src, pool); err != nil || got != n {
					b.Fatalf("read %d packets, %v", got, err)
				}
			}
			el := time.Since(start)
			b.ReportMetric(float64(n*b.N)/el.Seconds(), "pkts/s")
			b.ReportMetric(float64(el.Nanoseconds())/float64(n*b.N), "ns/pkt")
		})
	}
}
