package pcapfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/registry"
)

// openPcapKind opens the "pcap" kind through the registry, as the app does,
// with the flags in args.
func openPcapKind(t *testing.T, env pipeline.SourceEnv, args ...string) (pipeline.Opened, error) {
	t.Helper()
	spec, ok := pipeline.SourceKind(Kind)
	if !ok {
		t.Fatalf("source kind %q is not registered", Kind)
	}
	if spec.Live {
		t.Fatal("the pcap kind says it is live")
	}
	opts := spec.NewOptions()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	opts.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if v, ok := opts.(registry.Validator); ok {
		if err := v.Validate(); err != nil {
			return pipeline.Opened{}, err
		}
	}
	return spec.Open(opts, env)
}

// udpFrame is Ethernet/IPv4/UDP to port dport.
func udpFrame(dport uint16) []byte {
	b := make([]byte, 14+20+8)
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0], ip[9] = 0x45, 17
	binary.BigEndian.PutUint16(ip[2:], 28)
	copy(ip[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
	binary.BigEndian.PutUint16(ip[20+2:], dport)
	binary.BigEndian.PutUint16(ip[20+4:], 8)
	return b
}

func TestKindOpen(t *testing.T) {
	dir := t.TempDir()
	var want []pkt
	for i, name := range []string{"a.pcap", "b.pcap"} {
		data, w := genPcap(t, false, 20+i, base.Add(time.Duration(i)*time.Hour), time.Millisecond)
		want = append(want, w...)
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	reg := newStats()
	op, err := openPcapKind(t, pipeline.SourceEnv{Files: []string{filepath.Join(dir, "*.pcap")}, Stats: reg}, "--replay-speed", "0")
	if err != nil {
		t.Fatal(err)
	}
	if len(op.Sources) != 1 || op.NewFilter != nil || op.IfName == nil || op.CloseNeedsPrivileges {
		t.Fatalf("opened %+v, want one source and nothing else", op)
	}
	src := op.Sources[0].(*Source)
	got, err := drain(t, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	samePkts(t, got, want) // the glob was expanded, in order
	if v, _ := reg.Value("pktpipe_pcapfile_files_total"); v != 2 {
		t.Errorf("files counter %v in the env's registry, want 2", v)
	}
	for range 2 {
		if err := src.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestKindOpenFilter(t *testing.T) {
	testenv.NeedCommand(t, "tcpdump")
	f := writeTemp(t, nil)
	data, _ := genPcap(t, false, 1, base, time.Millisecond)
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	op, err := openPcapKind(t, pipeline.SourceEnv{Files: []string{f}, Filter: "udp port 53"})
	if err != nil {
		t.Fatal(err)
	}
	defer op.Sources[0].Close()
	if op.NewFilter == nil {
		t.Fatal("no user-space filter for the expression")
	}
	flt := op.NewFilter()
	for _, c := range []struct {
		port uint16
		want bool
	}{{53, true}, {54, false}} {
		p := &packet.Packet{Data: udpFrame(c.port), LinkType: packet.LinkEthernet}
		if got := flt.Match(p); got != c.want {
			t.Errorf("udp port %d: Match %v, want %v", c.port, got, c.want)
		}
	}
	// A typo fails at Open, as a usage error, before any file is read.
	_, err = openPcapKind(t, pipeline.SourceEnv{Files: []string{f}, Filter: "tcp port"})
	if err == nil || !registry.IsUsage(err) {
		t.Fatalf("filter %q: error %v, want a usage error", "tcp port", err)
	}
}

func TestKindReplaySpeed(t *testing.T) {
	f := writeTemp(t, nil)
	for _, v := range []string{"-1", "NaN", "+Inf"} {
		_, err := openPcapKind(t, pipeline.SourceEnv{Files: []string{f}}, "--replay-speed", v)
		if err == nil || !registry.IsUsage(err) || !strings.Contains(err.Error(), "--replay-speed") {
			t.Errorf("--replay-speed %s: error %v, want a usage error naming the flag", v, err)
		}
	}
	// Open checks too, for options that did not come through Validate.
	spec, _ := pipeline.SourceKind(Kind)
	if _, err := spec.Open(&Options{ReplaySpeed: -2}, pipeline.SourceEnv{Files: []string{f}}); !registry.IsUsage(err) {
		t.Errorf("Open with a negative speed: %v, want a usage error", err)
	}
}

func TestCloseIdempotent(t *testing.T) {
	data, want := genPcap(t, false, 5, base, time.Millisecond)
	for _, comp := range []string{"plain", "zstd"} {
		in := data
		if comp == "zstd" {
			in = zst(t, data)
		}
		src, err := New(Config{Files: []string{writeTemp(t, in)}})
		if err != nil {
			t.Fatal(err)
		}
		// Twice: the decompressor and buffer are kept between runs.
		for range 2 {
			got, err := drain(t, src, nil)
			if err != nil {
				t.Fatal(err)
			}
			samePkts(t, got, want)
		}
		for range 3 {
			if err := src.Close(); err != nil {
				t.Fatalf("%s: Close: %v", comp, err)
			}
		}
		if src.op != nil || src.rd != nil {
			t.Fatalf("%s: Close kept the opener or the reader", comp)
		}
		if _, err := drain(t, src, nil); err == nil {
			t.Fatalf("%s: Run after Close succeeded", comp)
		}
	}
	// A source that never ran closes too.
	src, err := New(Config{Files: []string{writeTemp(t, data)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Close(); err != nil || src.Close() != nil {
		t.Fatal("Close of a source that never ran failed")
	}
}

// TestCloseAfterFailedRun: a Run that fails mid-file leaves no file
// descriptor open, and Close after it is still fine.
func TestCloseAfterFailedRun(t *testing.T) {
	data, _ := genPcap(t, false, 5, base, time.Millisecond)
	src, err := New(Config{Files: []string{writeTemp(t, data[:len(data)-3])}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := drain(t, src, nil); err == nil {
		t.Fatal("no error for a cut file")
	}
	if src.op == nil || src.op.f != nil {
		t.Fatal("the file is still open after Run returned")
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
}

// withLinkType returns a classic pcap (little-endian, as pcapgo writes it)
// with its header's link type replaced.
func withLinkType(t *testing.T, data []byte, lt uint32) []byte {
	t.Helper()
	if binary.LittleEndian.Uint32(data) != 0xa1b2c3d4 {
		t.Fatalf("want a little-endian pcap, have magic % x", data[:4])
	}
	out := bytes.Clone(data)
	binary.LittleEndian.PutUint32(out[20:], lt)
	return out
}

// TestUndecodableLinkTypeWarning: a capture of a link type the decoder
// cannot read is still read whole, but the source warns, once per file
// and link type, naming it; decodable captures make no warning.
func TestUndecodableLinkTypeWarning(t *testing.T) {
	dir := t.TempDir()
	data, want := genPcap(t, false, 30, base, time.Millisecond)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var d0, d1 = frame(0, 60), frame(1, 60)
	ng := (&ngb{}).shb(false).idb(147, 0).idb(1, 0).idb(147, 0).
		epb(0, 1, d0, 60).epb(1, 2, d1, 60).epb(2, 3, d0, 60).epb(0, 4, d1, 60).buf
	files := []string{
		write("eth.pcap", data),
		write("user0.pcap", withLinkType(t, data, 147)),
		write("ffff.pcap.gz", gz(t, withLinkType(t, data, 0xffff))),
		write("mixed.pcapng", ng),
		write("user0-again.pcap", withLinkType(t, data, 147)),
	}
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	src, err := New(Config{Files: files, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	got, err := drain(t, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4*len(want)+4 {
		t.Fatalf("read %d packets, want %d: undecodable link types are read all the same", len(got), 4*len(want)+4)
	}
	lines := strings.Split(strings.TrimSpace(logBuf.String()), "\n")
	wantLines := []struct{ file, lt string }{
		{"user0.pcap", "147"}, {"ffff.pcap.gz", "65535"}, {"mixed.pcapng", "147"}, {"user0-again.pcap", "147"},
	}
	if len(lines) != len(wantLines) {
		t.Fatalf("%d log lines, want %d (one per file with an undecodable link type):\n%s", len(lines), len(wantLines), logBuf.String())
	}
	for i, w := range wantLines {
		l := lines[i]
		if !strings.Contains(l, "level=WARN") || !strings.Contains(l, "file="+filepath.Join(dir, w.file)+" ") ||
			!strings.Contains(l, "link_type="+w.lt) || !strings.Contains(l, "unknown_link") {
			t.Errorf("log line %d %q, want a warning naming %s and link type %s", i, l, w.file, w.lt)
		}
	}
}

// TestDecompressedOffset: for compressed input the offset of an error is
// into the decompressed stream, and the message says so; for plain input
// it is the file's own offset, said plainly.
func TestDecompressedOffset(t *testing.T) {
	data, want := genPcap(t, false, 50, base, time.Millisecond)
	cut := data[:len(data)-7]
	last := int64(len(data) - 16 - len(want[49].Data))
	for _, c := range []struct {
		comp  string
		in    []byte
		where string
	}{
		{"plain", cut, ": offset " + fmt.Sprint(last) + ": truncated packet record"},
		{"gzip", gz(t, cut), ": offset " + fmt.Sprint(last) + " in the decompressed (gzip) stream: truncated packet record"},
		{"zstd", zst(t, cut), ": offset " + fmt.Sprint(last) + " in the decompressed (zstd) stream: truncated packet record"},
	} {
		got, err := readBytes(t, "cut", c.in)
		samePkts(t, got, want[:49])
		wantErr(t, err, last, "cut"+c.where)
		var fe *Error
		if c.comp != "plain" && (!errors.As(err, &fe) || fe.Compression != c.comp) {
			t.Errorf("%s: Error.Compression %q", c.comp, fe.Compression)
		}
	}
}
