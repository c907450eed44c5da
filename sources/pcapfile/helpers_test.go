package pcapfile

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

// pkt is a copy of a delivered packet's fields.
type pkt struct {
	Data    []byte
	OrigLen uint32
	TS      int64
	Link    packet.LinkType
	If      int32
}

// drain runs src to the end and returns copies of every packet it sent,
// checking batch invariants on the way.
func drain(t testing.TB, src *Source, pool *packet.Pool) ([]pkt, error) {
	t.Helper()
	return drainCtx(t, context.Background(), src, pool, nil)
}

// drainCtx is drain with a context and a hook called after each batch.
func drainCtx(t testing.TB, ctx context.Context, src *Source, pool *packet.Pool, onBatch func(n int)) ([]pkt, error) {
	t.Helper()
	if pool == nil {
		pool = packet.NewPool(0, 0)
	}
	out := make(chan *packet.Batch, 4)
	errc := make(chan error, 1)
	go func() { errc <- src.Run(ctx, pool, out); close(out) }()
	var got []pkt
	for b := range out {
		if b.Len() == 0 {
			t.Errorf("empty batch sent")
		}
		for i := range b.Packets {
			p := &b.Packets[i]
			if p.Timestamp > b.Now {
				t.Errorf("batch Now %d before packet time %d", b.Now, p.Timestamp)
			}
			// Index is the position in the run's stream, across files.
			if want := uint64(len(got) + 1); p.Index != want {
				t.Errorf("packet %d has Index %d", want, p.Index)
			}
			got = append(got, pkt{bytes.Clone(p.Data), p.OrigLen, p.Timestamp, p.LinkType, p.IfIndex})
		}
		b.Release()
		if onBatch != nil {
			onBatch(len(got))
		}
	}
	return got, <-errc
}

// readFiles builds a source over files and drains it.
func readFiles(t testing.TB, files ...string) ([]pkt, error) {
	t.Helper()
	src, err := New(Config{Files: files})
	if err != nil {
		t.Fatal(err)
	}
	return drain(t, src, nil)
}

// readBytes writes data to a temp file and reads it.
func readBytes(t testing.TB, name string, data []byte) ([]pkt, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return readFiles(t, p)
}

// frame makes a recognisable packet of n bytes.
func frame(i, n int) []byte {
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(i*7 + j)
	}
	if n >= 4 {
		binary.BigEndian.PutUint32(b, uint32(i))
	}
	return b
}

// genPcap writes n packets with pcapgo (µs or ns), packet i of size
// 60+i%1455 at base + i*step.
func genPcap(t testing.TB, nanos bool, n int, base time.Time, step time.Duration) ([]byte, []pkt) {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if nanos {
		w = pcapgo.NewWriterNanos(&buf)
	}
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	want := make([]pkt, 0, n)
	for i := range n {
		d := frame(i, 60+i%1455)
		ts := base.Add(time.Duration(i) * step)
		ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(d), Length: len(d) + i%3}
		if err := w.WritePacket(ci, d); err != nil {
			t.Fatal(err)
		}
		exp := ts.UnixNano()
		if !nanos {
			exp = ts.Truncate(time.Microsecond).UnixNano()
		}
		want = append(want, pkt{d, uint32(len(d) + i%3), exp, packet.LinkEthernet, 0})
	}
	return buf.Bytes(), want
}

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zst(t testing.TB, b []byte) []byte {
	e, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	return e.EncodeAll(b, nil)
}

func samePkts(t testing.TB, got, want []pkt) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d packets, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if !bytes.Equal(g.Data, w.Data) || g.OrigLen != w.OrigLen || g.TS != w.TS || g.Link != w.Link || g.If != w.If {
			t.Fatalf("packet %d:\n got  len=%d orig=%d ts=%d link=%d if=%d\n want len=%d orig=%d ts=%d link=%d if=%d",
				i, len(g.Data), g.OrigLen, g.TS, g.Link, g.If, len(w.Data), w.OrigLen, w.TS, w.Link, w.If)
		}
	}
}

// ngb builds pcapng files byte by byte, in either byte order, including
// things pcapgo's writer cannot make (SPB, PB, tsresol, several sections).
type ngb struct {
	buf []byte
	be  bool
}

func (w *ngb) ord() binary.AppendByteOrder {
	if w.be {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

func (w *ngb) u16(v uint16) []byte { return w.ord().AppendUint16(nil, v) }
func (w *ngb) u32(v uint32) []byte { return w.ord().AppendUint32(nil, v) }

// block appends a block; body is padded to 4 bytes.
func (w *ngb) block(typ uint32, body ...[]byte) *ngb {
	var b []byte
	for _, p := range body {
		b = append(b, p...)
	}
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	n := uint32(12 + len(b))
	w.buf = append(w.buf, w.u32(typ)...)
	w.buf = append(w.buf, w.u32(n)...)
	w.buf = append(w.buf, b...)
	w.buf = append(w.buf, w.u32(n)...)
	return w
}

func (w *ngb) opt(code uint16, v []byte) []byte {
	b := append(w.u16(code), w.u16(uint16(len(v)))...)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func (w *ngb) shb(be bool) *ngb {
	w.be = be
	return w.block(ngSHB, w.u32(0x1a2b3c4d), w.u16(1), w.u16(0), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
}

func (w *ngb) idb(link uint16, snap uint32, opts ...[]byte) *ngb {
	body := [][]byte{w.u16(link), w.u16(0), w.u32(snap)}
	body = append(body, opts...)
	if len(opts) > 0 {
		body = append(body, w.u32(0)) // opt_endofopt
	}
	return w.block(ngIDB, body...)
}

func (w *ngb) epb(ifid uint32, ts uint64, data []byte, orig uint32) *ngb {
	return w.block(ngEPB, w.u32(ifid), w.u32(uint32(ts>>32)), w.u32(uint32(ts)), w.u32(uint32(len(data))), w.u32(orig), data)
}

func (w *ngb) spb(data []byte, orig uint32) *ngb {
	return w.block(ngSPB, w.u32(orig), data)
}

func (w *ngb) pb(ifid uint16, ts uint64, data []byte) *ngb {
	return w.block(ngPB, w.u16(ifid), w.u16(0), w.u32(uint32(ts>>32)), w.u32(uint32(ts)), w.u32(uint32(len(data))), w.u32(uint32(len(data))), data)
}

func newStats() *stats.Registry { return stats.NewRegistry() }

func writeTemp(t testing.TB, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "in.pcap")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
