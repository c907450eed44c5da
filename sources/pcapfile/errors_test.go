package pcapfile

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/pipeline/packet"
)

func TestTruncatedPcap(t *testing.T) {
	data, want := genPcap(t, false, 10, base, time.Millisecond)
	last := len(data) - 16 - len(want[9].Data) // offset of the last record
	for _, tc := range []struct {
		cut  int
		msg  string
		good int
	}{
		{len(data), "", 10}, // ends at a record boundary: fine
		{len(data) - 1, fmt.Sprintf("truncated packet record (want %d bytes, have %d)", len(want[9].Data), len(want[9].Data)-1), 9},
		{last + 16, fmt.Sprintf("truncated packet record (want %d bytes, have 0)", len(want[9].Data)), 9},
		{last + 5, "truncated packet record header (want 16 bytes, have 5)", 9},
	} {
		for _, comp := range []string{"plain", "gzip"} {
			in := data[:tc.cut]
			if comp == "gzip" {
				in = gz(t, in)
			}
			got, err := readBytes(t, "cut.pcap", in)
			// Everything before the fault was delivered.
			samePkts(t, got, want[:tc.good])
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("cut at boundary: %v", err)
				}
				continue
			}
			where := "offset " + fmt.Sprint(last)
			if comp == "gzip" {
				// The offset counts decompressed bytes, and says so.
				where += " in the decompressed (gzip) stream"
			}
			wantErr(t, err, int64(last), "cut.pcap: "+where+": "+tc.msg)
		}
	}
}

func TestTruncatedPcapng(t *testing.T) {
	w := (&ngb{}).shb(false).idb(1, 0)
	var want []pkt
	for i := range 5 {
		d := frame(i, 100+i)
		w.epb(0, uint64(i), d, uint32(len(d)))
		want = append(want, pkt{d, uint32(len(d)), int64(i) * 1000, packet.LinkEthernet, 0})
	}
	blk := 32 + (104+3)&^3
	last := len(w.buf) - blk
	got, err := readBytes(t, "cut.pcapng", w.buf[:len(w.buf)-10])
	samePkts(t, got, want[:4])
	wantErr(t, err, int64(last), fmt.Sprintf("truncated block (want %d bytes, have %d)", blk, blk-10))

	got, err = readBytes(t, "cut.pcapng", w.buf[:last+7])
	samePkts(t, got, want[:4])
	wantErr(t, err, int64(last), "truncated block header (want 12 bytes, have 7)")
}

func TestCorrupt(t *testing.T) {
	ok := (&ngb{}).shb(false).idb(1, 0).epb(0, 1, frame(0, 60), 60)
	n := len(ok.buf)
	d := frame(1, 60)
	le := binary.LittleEndian
	mut := func(f func(w *ngb)) []byte {
		w := &ngb{buf: append([]byte(nil), ok.buf...)}
		f(w)
		return w.buf
	}
	for _, tc := range []struct {
		name string
		data []byte
		off  int64
		msg  string
	}{
		{"block length not a multiple of 4", mut(func(w *ngb) {
			w.epb(0, 2, d, 60)
			le.PutUint32(w.buf[n+4:], 93)
		}), int64(n), "bad block length 93 (block type 0x00000006)"},
		{"block length too small", mut(func(w *ngb) {
			w.epb(0, 2, d, 60)
			le.PutUint32(w.buf[n+4:], 8)
		}), int64(n), "bad block length 8"},
		{"block length huge", mut(func(w *ngb) {
			w.epb(0, 2, d, 60)
			le.PutUint32(w.buf[n+4:], 0xfffffff0)
		}), int64(n), "bad block length 4294967280"},
		{"trailer mismatch", mut(func(w *ngb) {
			w.epb(0, 2, d, 60)
			le.PutUint32(w.buf[len(w.buf)-4:], 64)
		}), int64(n), "block trailer length 64 does not match header length 92"},
		{"caplen overruns block", mut(func(w *ngb) {
			w.epb(0, 2, d, 60)
			le.PutUint32(w.buf[n+20:], 61)
		}), int64(n), "caplen 61 overruns its block (60 bytes of packet data)"},
		{"packet before any interface", (&ngb{}).shb(false).epb(0, 1, d, 60).buf, 28, "packet block refers to interface 0, but the section has 0"},
		{"bad byte-order magic", append([]byte{0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0}, "garbage!"...), 0, "section header with bad byte-order magic"},
		{"pcapng version", func() []byte { w := (&ngb{}).shb(false); le.PutUint16(w.buf[12:], 2); return w.buf }(), 0, "unsupported pcapng version 2.0"},
		{"pcap version", func() []byte { b, _ := genPcap(t, false, 1, base, 0); le.PutUint16(b[4:], 3); return b }(), 0, "unsupported pcap version 3.4"},
		{"pcap impossible caplen", func() []byte {
			b, _ := genPcap(t, false, 3, base, 0)
			le.PutUint32(b[24+16+60+8:], 300000)
			return b
		}(), 24 + 16 + 60, "impossible caplen 300000 (snaplen 65535, limit 262144)"},
		{"empty file", nil, 0, "empty file: no pcap or pcapng header"},
		{"short file", []byte{0xd4, 0xc3}, 0, "truncated file header (want 4 bytes, have 2)"},
		{"short pcap header", []byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0}, 0, "truncated pcap file header (want 24 bytes, have 8)"},
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 0, "not a pcap or pcapng file (starts with 47 45 54 20)"},
		{"kuznetzov", []byte{0x34, 0xcd, 0xb2, 0xa1, 2, 0, 4, 0}, 0, "modified (Kuznetzov) pcap"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readBytes(t, "bad.pcapng", tc.data)
			wantErr(t, err, tc.off, "bad.pcapng: offset "+fmt.Sprint(tc.off)+": "+tc.msg)
		})
	}
	// A corrupt gzip stream is a read error with the decompressed offset.
	z := gz(t, ok.buf)
	z[len(z)-5] ^= 0xff // damage the CRC/size trailer
	_, err := readBytes(t, "bad.gz", z)
	wantErr(t, err, int64(n), "reading block header")
}

// TestLargeUnknownBlock skips a block bigger than the read buffer.
func TestLargeUnknownBlock(t *testing.T) {
	w := (&ngb{}).shb(false).idb(1, 0)
	w.block(0x40000000, make([]byte, 3<<20))
	d := frame(0, 60)
	w.epb(0, 1, d, 60)
	got, err := readBytes(t, "big.pcapng", w.buf)
	if err != nil {
		t.Fatal(err)
	}
	samePkts(t, got, []pkt{{d, 60, 1000, packet.LinkEthernet, 0}})
	// Same block with a bad trailer.
	binary.LittleEndian.PutUint32(w.buf[len(w.buf)-92-4:], 12)
	_, err = readBytes(t, "big.pcapng", w.buf)
	wantErr(t, err, 28+20, "block trailer length 12 does not match header length 3145740")
}

func TestTruncateToBatch(t *testing.T) {
	data, want := genPcap(t, false, 40, base, time.Millisecond)
	reg := newStats()
	src, err := New(Config{Files: []string{writeTemp(t, data)}, Stats: reg})
	if err != nil {
		t.Fatal(err)
	}
	pool := packet.NewPool(4, 80) // packets over 80 bytes are cut
	got, err := drain(t, src, pool)
	if err != nil {
		t.Fatal(err)
	}
	cut := 0
	for i := range want {
		if len(want[i].Data) > 80 {
			want[i].Data = want[i].Data[:80]
			cut++
		}
	}
	samePkts(t, got, want)
	if v, _ := reg.Value("pktpipe_pcapfile_truncated_total"); v != float64(cut) || cut == 0 {
		t.Fatalf("truncated counter %v, want %d", v, cut)
	}
	if len(reg.Losses()) != 1 {
		t.Fatalf("truncation is not reported as a loss: %v", reg.Losses())
	}
}
