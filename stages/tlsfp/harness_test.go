package tlsfp

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/stages/reassembly"
)

// tuple is a TCP flow's endpoints in the order of its client (the SYN's
// sender, else the first packet's).
type tuple struct{ src, dst netip.AddrPort }

func (t tuple) String() string { return t.src.String() + "->" + t.dst.String() }

func (t tuple) canon() tuple {
	if t.src.Compare(t.dst) > 0 {
		return tuple{t.dst, t.src}
	}
	return t
}

// testFlow is one TCP flow of a capture, with its tracker.
type testFlow struct {
	idx   int // order of first appearance (tshark's tcp.stream, barring port reuse)
	tuple tuple
	tr    Tracker
	doneN int // packets fed when Segment first returned done
	pkts  int
}

type tcpSeg struct {
	src, dst netip.AddrPort
	seq      uint32
	flags    uint8
	payload  []byte
	ts       int64
}

// readSegments decodes every TCP segment of a pcap/pcapng file (gzip
// accepted), tunnels included (the innermost IP/TCP is used).
func readSegments(t testing.TB, path string) ([]tcpSeg, int) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) > 2 && raw[0] == 0x1f && raw[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if raw, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	type source interface {
		ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	}
	var (
		src      source
		linkType func(ci gopacket.CaptureInfo) layers.LinkType
	)
	if len(raw) >= 4 && bytes.Equal(raw[:4], []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
		r, err := pcapgo.NewNgReader(bytes.NewReader(raw), pcapgo.DefaultNgReaderOptions)
		if err != nil {
			t.Fatal(err)
		}
		src = r
		linkType = func(ci gopacket.CaptureInfo) layers.LinkType {
			if ifc, err := r.Interface(ci.InterfaceIndex); err == nil {
				return ifc.LinkType
			}
			return r.LinkType()
		}
	} else {
		r, err := pcapgo.NewReader(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			t.Fatal(err)
		}
		src = r
		linkType = func(gopacket.CaptureInfo) layers.LinkType { return r.LinkType() }
	}
	var segs []tcpSeg
	frames := 0
	for {
		data, ci, err := src.ReadPacketData()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		frames++
		pkt := gopacket.NewPacket(data, linkType(ci), gopacket.DecodeOptions{Lazy: false, NoCopy: true})
		var srcIP, dstIP netip.Addr
		var tcp *layers.TCP
		for _, l := range pkt.Layers() {
			switch l := l.(type) {
			case *layers.IPv4:
				srcIP, _ = netip.AddrFromSlice(l.SrcIP.To4())
				dstIP, _ = netip.AddrFromSlice(l.DstIP.To4())
				tcp = nil
			case *layers.IPv6:
				srcIP, _ = netip.AddrFromSlice(l.SrcIP)
				dstIP, _ = netip.AddrFromSlice(l.DstIP)
				tcp = nil
			case *layers.TCP:
				tcp = l
			}
		}
		if tcp == nil || !srcIP.IsValid() {
			continue
		}
		var flags uint8
		for i, b := range []bool{tcp.FIN, tcp.SYN, tcp.RST, tcp.PSH, tcp.ACK, tcp.URG, tcp.ECE, tcp.CWR} {
			if b {
				flags |= 1 << i
			}
		}
		segs = append(segs, tcpSeg{
			src:     netip.AddrPortFrom(srcIP, uint16(tcp.SrcPort)),
			dst:     netip.AddrPortFrom(dstIP, uint16(tcp.DstPort)),
			seq:     tcp.Seq,
			flags:   flags,
			payload: tcp.Payload,
			ts:      ci.Timestamp.UnixNano(),
		})
	}
	return segs, frames
}

// runCapture feeds every TCP flow of a capture to its own tracker.
func runCapture(t testing.TB, path string) []*testFlow {
	t.Helper()
	flows, _ := runCaptureFrames(t, path)
	return flows
}

// runCaptureFrames is runCapture that also returns the number of packets
// in the file.
func runCaptureFrames(t testing.TB, path string) ([]*testFlow, int) {
	t.Helper()
	var (
		flows []*testFlow
		byKey = map[tuple]*testFlow{}
		sc    Scratch
	)
	// The default budget of one worker: nothing of a capture is given up.
	sc.bufs.bud = defaultBudget()
	segs, frames := readSegments(t, path)
	for _, s := range segs {
		tu := tuple{s.src, s.dst}
		f := byKey[tu.canon()]
		if f == nil {
			// The client is the SYN's sender; a flow met midstream
			// starts with whoever spoke first.
			if s.flags&0x12 == 0x12 {
				tu = tuple{s.dst, s.src}
			}
			f = &testFlow{idx: len(flows), tuple: tu}
			f.tr.Scratch = &sc
			flows = append(flows, f)
			byKey[tu.canon()] = f
		}
		d := ToServer
		if s.src != f.tuple.src {
			d = ToClient
		}
		f.pkts++
		if f.tr.Segment(d, s.seq, s.flags, s.payload, s.ts) && f.doneN == 0 {
			f.doneN = f.pkts
		}
	}
	if n := sc.bufs.bud.GivenUp(); n != 0 {
		t.Fatalf("%s: %d reassembly buffers given up under the default budget", path, n)
	}
	return flows, frames
}

// defaultBudget is one worker's reassembly budget with the default
// process budget and one worker per core, as pktpipe runs by default.
func defaultBudget() *reassembly.Budget {
	return reassembly.NewBudget(reassembly.PerWorker(reassembly.DefaultProcessBytes, runtime.NumCPU()), nil)
}

// conformancePcaps lists the captures of the conformance suites the
// package is checked against.
func conformancePcaps(t testing.TB) []string {
	t.Helper()
	var out []string
	fox := testenv.Conformance(t, "foxio-ja4", "pcap")
	m, _ := filepath.Glob(filepath.Join(fox, "*"))
	out = append(out, m...)
	sv := testenv.Conformance(t, "suricata-verify", "tests")
	for _, pat := range []string{"tls/*/*.pcap", "ja4*/*.pcap", "bug-5713*/*.pcap", "tls-*/*.pcap"} {
		m, _ := filepath.Glob(filepath.Join(sv, pat))
		out = append(out, m...)
	}
	if len(out) < 40 {
		t.Fatalf("only %d conformance captures found", len(out))
	}
	return out
}

func (f *testFlow) String() string { return fmt.Sprintf("stream %d %s", f.idx, f.tuple) }
