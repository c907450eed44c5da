package bpffilter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/net/bpf"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline/packet"
)

// rec is one packet of a test capture.
type rec struct {
	data []byte
	link packet.LinkType
}

// readCapture reads a pcap or pcapng file with gopacket (an oracle
// independent of sources/pcapfile), with each packet's link type.
func readCapture(t *testing.T, path string) []rec {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []rec
	if ngr, err := pcapgo.NewNgReader(bytes.NewReader(raw), pcapgo.DefaultNgReaderOptions); err == nil {
		for {
			d, ci, err := ngr.ReadPacketData()
			if err == io.EOF {
				return out
			}
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			ifc, _ := ngr.Interface(ci.InterfaceIndex)
			out = append(out, rec{d, packet.LinkType(ifc.LinkType)})
		}
	}
	r, err := pcapgo.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for {
		d, _, err := r.ReadPacketData()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, rec{d, packet.LinkType(r.LinkType())})
	}
}

// writePcap writes records of one link type.
func writePcap(t *testing.T, path string, link packet.LinkType, recs [][]byte) {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(262144, layers.LinkType(link)); err != nil {
		t.Fatal(err)
	}
	for _, d := range recs {
		ci := gopacketCI(len(d))
		if err := w.WritePacket(ci, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// cooked rewrites Ethernet frames as Linux SLL (v1) or SLL2 frames.
func cooked(eth [][]byte, v2 bool) [][]byte {
	var out [][]byte
	for _, f := range eth {
		if len(f) < 14 {
			continue
		}
		proto := f[12:14]
		var h []byte
		if v2 {
			h = make([]byte, 20)
			copy(h[0:2], proto)
			binary.BigEndian.PutUint32(h[4:], 2) // ifindex
			binary.BigEndian.PutUint16(h[8:], 1) // ARPHRD_ETHER
			h[10] = 4                            // outgoing
			h[11] = 6
			copy(h[12:18], f[6:12])
		} else {
			h = make([]byte, 16)
			binary.BigEndian.PutUint16(h[0:], 4)
			binary.BigEndian.PutUint16(h[2:], 1)
			binary.BigEndian.PutUint16(h[4:], 6)
			copy(h[6:12], f[6:12])
			copy(h[14:16], proto)
		}
		out = append(out, append(h, f[14:]...))
	}
	return out
}

// tcpdumpCount is how many packets of path tcpdump's own filter passes,
// and false when tcpdump rejects the expression for that file.
func tcpdumpCount(t *testing.T, path, expr string) (int, bool) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.pcap")
	cmd := exec.Command("tcpdump", "-r", path, "-w", out, "--", expr)
	if _, err := cmd.CombinedOutput(); err != nil {
		return 0, false // e.g. "expression rejects all packets", or not for this link type
	}
	return len(readCapture(t, out)), true
}

var expressions = []string{
	"", "ip", "ip6", "tcp", "udp", "icmp", "icmp6", "arp", "not arp",
	"tcp port 443", "port 53 or icmp", "host 10.99.1.2", "net 10.99.0.0/16",
	"tcp[tcpflags] & (tcp-syn|tcp-fin) != 0", "ip6 and tcp", "greater 200",
	"ip[8] < 64", "udp and not port 53", "vlan", "ip proto 47",
}

// TestSameCountsAsTcpdump runs every expression on every capture with the
// user-space VM and compares the number of packets passed with tcpdump's
// own filtering of the same file (Ethernet, NULL, RAW, IPV6 from real
// captures; SLL and SLL2 made from the sample).
func TestSameCountsAsTcpdump(t *testing.T) {
	testenv.NeedCommand(t, "tcpdump")
	root := testenv.RepoRoot(t)
	sample := filepath.Join(root, "testdata", "sample.pcap")
	files := []string{sample}
	conf := filepath.Join(root, "..", "shared", "conformance")
	for _, f := range []string{
		"community-id-spec/pcaps/icmp6.pcap",
		"foxio-ja4/pcap/ipv6.pcapng",                              // NULL
		"suricata-verify/tests/tls-alpn-log-detect-02/input.pcap", // RAW
		"zeek/testing/btest/Traces/icmp/icmp6-mldv2.pcap",         // IPV6
	} {
		p := filepath.Join(conf, f)
		if _, err := os.Stat(p); err == nil {
			files = append(files, p)
		} else {
			testenv.Need(t, false, "conformance capture "+p)
		}
	}
	var eth [][]byte
	for _, r := range readCapture(t, sample) {
		eth = append(eth, r.data)
	}
	dir := t.TempDir()
	for _, v := range []struct {
		name string
		link packet.LinkType
		v2   bool
	}{{"sll.pcap", packet.LinkSLL, false}, {"sll2.pcap", packet.LinkSLL2, true}} {
		p := filepath.Join(dir, v.name)
		writePcap(t, p, v.link, cooked(eth, v.v2))
		files = append(files, p)
	}
	compared := 0
	for _, f := range files {
		recs := readCapture(t, f)
		for _, expr := range expressions {
			want, ok := tcpdumpCount(t, f, expr)
			e, err := New(expr, []packet.LinkType{recs[0].link}, 0, nil, nil)
			if !ok {
				if err == nil && expr != "" {
					t.Errorf("%s %q: tcpdump refused it, Compile did not", filepath.Base(f), expr)
				}
				continue
			}
			if expr == "" {
				continue // no filter: nothing to compile
			}
			if err != nil {
				t.Errorf("%s %q: %v", filepath.Base(f), expr, err)
				continue
			}
			flt := e.NewFilter()
			got := 0
			for _, r := range recs {
				p := packet.Packet{Data: r.data, LinkType: r.link}
				if flt.Match(&p) {
					got++
				}
			}
			if got != want {
				t.Errorf("%s %q: the VM passed %d packets, tcpdump %d", filepath.Base(f), expr, got, want)
			}
			compared++
		}
	}
	if compared < 60 {
		t.Fatalf("only %d file/expression pairs compared", compared)
	}
	t.Logf("%d file/expression pairs agree with tcpdump", compared)
}

func TestMatchDoesNotAllocate(t *testing.T) {
	testenv.NeedCommand(t, "tcpdump")
	recs := readCapture(t, filepath.Join(testenv.RepoRoot(t), "testdata", "sample.pcap"))
	e, err := New("tcp port 443 or (udp and not port 53) or icmp6", []packet.LinkType{packet.LinkEthernet}, 0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := e.NewFilter()
	ps := make([]packet.Packet, len(recs))
	for i, r := range recs {
		ps[i] = packet.Packet{Data: r.data, LinkType: r.link}
	}
	f.Match(&ps[0])
	n := testing.AllocsPerRun(20, func() {
		for i := range ps {
			f.Match(&ps[i])
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations per pass over %d packets", n, len(ps))
	}
}

func TestCompileErrors(t *testing.T) {
	testenv.NeedCommand(t, "tcpdump")
	_, err := Compile("tcp port", packet.LinkEthernet, 0)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("syntax error")) {
		t.Fatalf("bad expression: %v", err)
	}
	_, err = Compile("ether host 1:2:3:4:5:6", packet.LinkRaw, 0)
	if err == nil {
		t.Fatal("ether host on raw IP compiled")
	}
	old := Tcpdump
	Tcpdump = "tcpdump-not-installed-here"
	defer func() { Tcpdump = old }()
	if _, err := Compile("tcp", packet.LinkEthernet, 0); !errors.Is(err, ErrNoTcpdump) {
		t.Fatalf("missing tcpdump: %v", err)
	}
}

// An expression that does not compile for a link type met later rejects
// those packets and counts them as lost.
func TestUncompilableLinkTypeIsCounted(t *testing.T) {
	testenv.NeedCommand(t, "tcpdump")
	e, err := New("ether broadcast", []packet.LinkType{packet.LinkEthernet}, 0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := e.NewFilter()
	p := packet.Packet{Data: []byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2}, LinkType: packet.LinkRaw}
	// Twice: each rejected packet is counted.
	for range 2 {
		if f.Match(&p) {
			t.Fatal("matched a link type the expression cannot compile for")
		}
	}
	if e.uncompilable.Load() != 2 {
		t.Fatalf("counted %d", e.uncompilable.Load())
	}
}

func TestParseDDD(t *testing.T) {
	prog, err := ParseDDD("2\n40 0 0 12\n6 0 0 262144\n")
	want := []bpf.RawInstruction{{Op: 40, K: 12}, {Op: 6, K: 262144}}
	if err != nil || len(prog) != 2 || prog[0] != want[0] || prog[1] != want[1] {
		t.Fatalf("%v %v", prog, err)
	}
	for _, bad := range []string{"", "3\n40 0 0 12\n", "1\n40 0 12\n", "1\n70000 0 0 1\n"} {
		if _, err := ParseDDD(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestKernelSubset(t *testing.T) {
	a4 := netip.MustParseAddr("10.0.0.1")
	a6 := netip.MustParseAddr("fd00::1")
	for _, c := range []struct {
		expr  string
		addr  netip.Addr
		proto uint8
		port  uint16
	}{
		{"", netip.Addr{}, 0, 0},
		{"host 10.0.0.1", netip.Addr{}, 0, 0}, // also ARP: not in the kernel subset
		{"ip host 10.0.0.1", a4, 0, 0},
		{"host 10.0.0.1 and tcp", a4, 6, 0},
		{"host fd00::1 and tcp", a6, 0, 0}, // IPv6 fragments: protocol left to user space
		{"tcp", netip.Addr{}, 0, 0},
		{"icmp", netip.Addr{}, 1, 0},
		{"ip and udp", netip.Addr{}, 17, 0},
		{"port 443", netip.Addr{}, 0, 443},
		{"tcp port 443", netip.Addr{}, 6, 443},
		{"tcp dst port 443 && src host fd00::1", a6, 6, 443},
		{"tcp port 443 or icmp", netip.Addr{}, 0, 0},
		{"not port 22", netip.Addr{}, 0, 0},
		{"host 10.0.0.1 and (port 1 or port 2)", netip.Addr{}, 0, 0},
		{"tcp[13] & 2 = 2 and port 80", netip.Addr{}, 0, 80},
		{"tcp[13] & 2 != 0 and port 80", netip.Addr{}, 0, 0}, // "!" read as negation: nothing
		{"ip6 host 10.0.0.1", netip.Addr{}, 0, 0},
	} {
		addr, proto, port := KernelSubset(c.expr)
		if addr != c.addr || proto != c.proto || port != c.port {
			t.Errorf("%q: got %v/%d/%d, want %v/%d/%d", c.expr, addr, proto, port, c.addr, c.proto, c.port)
		}
	}
}
