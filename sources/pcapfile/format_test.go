package pcapfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/pktpipe/pktpipe/pipeline/packet"
)

var base = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)

func TestPcapMicrosLittleEndian(t *testing.T) {
	data, want := genPcap(t, false, 50, base, 1234567*time.Nanosecond)
	if binary.LittleEndian.Uint32(data) != 0xa1b2c3d4 {
		t.Fatalf("pcapgo wrote magic % x, want a µs little-endian file", data[:4])
	}
	got, err := readBytes(t, "us.pcap", data)
	if err != nil {
		t.Fatal(err)
	}
	samePkts(t, got, want)
}

func TestPcapNanosBigEndian(t *testing.T) {
	// Built by hand: pcapgo writes only little-endian files.
	be := binary.BigEndian
	var b []byte
	b = be.AppendUint32(b, 0xa1b23c4d)
	b = be.AppendUint16(b, 2)
	b = be.AppendUint16(b, 4)
	b = append(b, make([]byte, 8)...)                         // thiszone, sigfigs
	b = be.AppendUint32(b, 262144)                            // snaplen
	b = be.AppendUint32(b, uint32(packet.LinkRaw)|0x10000000) // FCS bits set: ignored
	var want []pkt
	for i, sz := range []int{20, 0, 1500, 41} {
		d := frame(i, sz)
		sec, nsec := uint32(1700000000+i), uint32(999999999-i)
		b = be.AppendUint32(b, sec)
		b = be.AppendUint32(b, nsec)
		b = be.AppendUint32(b, uint32(sz))
		b = be.AppendUint32(b, uint32(sz+10))
		b = append(b, d...)
		want = append(want, pkt{d, uint32(sz + 10), int64(sec)*1e9 + int64(nsec), packet.LinkRaw, 0})
	}
	got, err := readBytes(t, "ns-be.pcap", b)
	if err != nil {
		t.Fatal(err)
	}
	samePkts(t, got, want)
}

func TestPcapngInterfacesAndBlocks(t *testing.T) {
	for _, be := range []bool{false, true} {
		w := &ngb{}
		w.shb(be)
		w.idb(uint16(packet.LinkEthernet), 0)                                                                                                // default µs
		w.idb(uint16(packet.LinkRaw), 128, w.opt(2, []byte("eth9")), w.opt(9, []byte{0x80 | 20}), w.opt(14, w.ord().AppendUint64(nil, 100))) // 2^-20 s, +100 s
		w.idb(uint16(packet.LinkSLL2), 0, w.opt(9, []byte{9}))                                                                               // ns
		var want []pkt
		d0, d1, d2, d3, d4 := frame(0, 60), frame(1, 40), frame(2, 99), frame(3, 70), frame(4, 33)
		w.epb(0, 1700000000_123456, d0, 60)
		want = append(want, pkt{d0, 60, 1700000000_123456_000, packet.LinkEthernet, 0})
		w.block(0x0badf00d, []byte("an unknown block, skipped by its length"))
		w.block(0x00000005, make([]byte, 16)) // interface statistics: skipped
		// 2^-20 s units: 3.5 s + 1 unit (953.674 ns, floored), plus 100 s offset.
		w.epb(1, 3<<20|1<<19|1, d1, 1500)
		want = append(want, pkt{d1, 1500, (100+3)*1e9 + 5e8 + 953, packet.LinkRaw, 1})
		w.epb(2, 1700000001_000000007, d2, 99)
		want = append(want, pkt{d2, 99, 1700000001_000000007, packet.LinkSLL2, 2})
		// SPB: interface 0, the previous packet's timestamp.
		w.spb(d3, 70)
		want = append(want, pkt{d3, 70, 1700000001_000000007, packet.LinkEthernet, 0})
		// Picoseconds: frac*1e9 overflows 64 bits, so this needs the
		// 128-bit division.
		w.idb(uint16(packet.LinkIPv4), 0, w.opt(9, []byte{12}))
		d5 := frame(5, 21)
		w.epb(3, 5e12+987654321987, d5, 21)
		want = append(want, pkt{d5, 21, 5_987_654_321, packet.LinkIPv4, 3})
		// Obsolete Packet Block.
		w.pb(2, 5, d4)
		want = append(want, pkt{d4, 33, 5, packet.LinkSLL2, 2})
		got, err := readBytes(t, "x.pcapng", w.buf)
		if err != nil {
			t.Fatalf("be=%v: %v", be, err)
		}
		samePkts(t, got, want)
	}
}

func TestPcapngSPBSnaplen(t *testing.T) {
	// An SPB's caplen is min(original length, snaplen, block space).
	w := (&ngb{}).shb(false).idb(1, 16)
	d := frame(0, 16)
	w.spb(d, 1514)
	got, err := readBytes(t, "spb.pcapng", w.buf)
	if err != nil {
		t.Fatal(err)
	}
	samePkts(t, got, []pkt{{d, 1514, 0, packet.LinkEthernet, 0}})
}

func TestPcapngSections(t *testing.T) {
	// Two sections of opposite byte order; interface ids restart.
	w := &ngb{}
	w.shb(false).idb(uint16(packet.LinkEthernet), 0).idb(uint16(packet.LinkRaw), 0)
	d0, d1, d2 := frame(0, 50), frame(1, 51), frame(2, 52)
	w.epb(1, 10, d0, 50)
	w.shb(true).idb(uint16(packet.LinkSLL), 0, w.opt(9, []byte{3})) // ms
	w.epb(0, 20, d1, 51)
	w.shb(false).idb(uint16(packet.LinkNull), 0)
	w.epb(0, 30, d2, 52)
	got, err := readBytes(t, "sections.pcapng", w.buf)
	if err != nil {
		t.Fatal(err)
	}
	samePkts(t, got, []pkt{
		{d0, 50, 10_000, packet.LinkRaw, 1},
		{d1, 51, 20_000_000, packet.LinkSLL, 0},
		{d2, 52, 30_000, packet.LinkNull, 0},
	})
	// The second section has one interface: id 1 there is an error.
	w2 := &ngb{}
	w2.shb(false).idb(1, 0).idb(1, 0).shb(false).idb(1, 0).epb(1, 0, d0, 50)
	_, err = readBytes(t, "badif.pcapng", w2.buf)
	wantErr(t, err, int64(len(w2.buf)-32-52), "refers to interface 1, but the section has 1")
}

func TestPcapngFromPcapgoWriter(t *testing.T) {
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&buf, pcapgo.NgInterface{Name: "a", LinkType: layers.LinkTypeEthernet}, pcapgo.NgWriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := w.AddInterface(pcapgo.NgInterface{Name: "b", LinkType: layers.LinkTypeRaw, TimestampOffset: 7})
	if err != nil {
		t.Fatal(err)
	}
	var want []pkt
	for i := range 20 {
		d := frame(i, 40+i)
		ci := gopacket.CaptureInfo{Timestamp: base.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(d), Length: len(d), InterfaceIndex: i % 2 * id}
		if err := w.WritePacket(ci, d); err != nil {
			t.Fatal(err)
		}
		link, ts := packet.LinkEthernet, ci.Timestamp.UnixNano()
		if i%2 == 1 {
			// pcapgo writes if_tsoffset but subtracts nothing: readers add it.
			link, ts = packet.LinkRaw, ts+7e9
		}
		want = append(want, pkt{d, uint32(len(d)), ts, link, int32(i % 2 * id)})
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	got, err := readBytes(t, "w.pcapng", buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	samePkts(t, got, want)
}

func TestCompressed(t *testing.T) {
	data, want := genPcap(t, true, 300, base, time.Millisecond)
	ng := (&ngb{}).shb(false).idb(1, 0).epb(0, 42, frame(0, 64), 64)
	for _, tc := range []struct {
		name string
		data []byte
		want []pkt
	}{
		// Names deliberately lie: detection is by magic bytes.
		{"gzip.pcap", gz(t, data), want},
		{"zstd.pcap.gz", zst(t, data), want},
		{"ng.zst", gz(t, ng.buf), []pkt{{frame(0, 64), 64, 42_000, packet.LinkEthernet, 0}}},
		// Concatenated gzip members are one stream.
		{"two-members", append(gz(t, data[:1000]), gz(t, data[1000:])...), want},
	} {
		got, err := readBytes(t, tc.name, tc.data)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		samePkts(t, got, tc.want)
	}
}

func TestStdin(t *testing.T) {
	data, want := genPcap(t, false, 100, base, time.Second)
	for _, in := range [][]byte{data, zst(t, data), gz(t, data)} {
		src, err := New(Config{Files: []string{"-"}, Stdin: bytes.NewReader(in)})
		if err != nil {
			t.Fatal(err)
		}
		got, err := drain(t, src, nil)
		if err != nil {
			t.Fatal(err)
		}
		samePkts(t, got, want)
	}
	// Garbage on stdin is reported as stdin.
	src, _ := New(Config{Files: []string{"-"}, Stdin: strings.NewReader("hello world")})
	_, err := drain(t, src, nil)
	wantErr(t, err, 0, "stdin: offset 0: not a pcap or pcapng file")
	if _, err := New(Config{Files: []string{"-", "-"}}); err == nil {
		t.Fatal("stdin twice accepted")
	}
}

func TestSeveralFilesAndExpand(t *testing.T) {
	dir := t.TempDir()
	var all []pkt
	for i, name := range []string{"b.pcap", "a.pcap", "c.pcapng"} {
		var data []byte
		var want []pkt
		if i < 2 {
			data, want = genPcap(t, i == 1, 10+i, base.Add(time.Duration(i)*time.Hour), time.Millisecond)
		} else {
			d := frame(9, 77)
			data = (&ngb{}).shb(true).idb(uint16(packet.LinkRaw), 0).epb(0, 5, d, 77).buf
			want = []pkt{{d, 77, 5000, packet.LinkRaw, 0}}
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if name != "b.pcap" {
			all = append(all, want...)
		} else {
			all = append(want, all...)
		}
	}
	// Explicit order is kept: b, then the glob (a, c sorted).
	files, err := Expand([]string{filepath.Join(dir, "b.pcap"), filepath.Join(dir, "[ac].pcap*")})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 || filepath.Base(files[1]) != "a.pcap" || filepath.Base(files[2]) != "c.pcapng" {
		t.Fatalf("Expand: %v", files)
	}
	reg := newStats()
	src, err := New(Config{Files: files, Stats: reg})
	if err != nil {
		t.Fatal(err)
	}
	got, err := drain(t, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	samePkts(t, got, all)
	if v, _ := reg.Value("pktpipe_pcapfile_files_total"); v != 3 {
		t.Errorf("files counter %v, want 3", v)
	}
	if v, _ := reg.Value("pktpipe_pcapfile_packets_total"); v != float64(len(all)) {
		t.Errorf("packets counter %v, want %d", v, len(all))
	}
	if _, err := Expand([]string{filepath.Join(dir, "*.nothing")}); err == nil {
		t.Error("Expand of a glob matching nothing: no error")
	}
	if _, err := New(Config{Files: []string{filepath.Join(dir, "missing.pcap")}}); err == nil {
		t.Error("missing file accepted by New")
	}
}

// wantErr checks that err is an *Error at offset off whose text contains msg.
func wantErr(t *testing.T, err error, off int64, msg string) {
	t.Helper()
	var fe *Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T), want *Error", err, err)
	}
	if fe.Offset != off || !strings.Contains(err.Error(), msg) {
		t.Fatalf("error %q (offset %d), want offset %d and %q", err, fe.Offset, off, msg)
	}
}
