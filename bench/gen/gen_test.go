package gen

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"io"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/klauspost/compress/zstd"
)

func generate(t testing.TB, cfg Config, f Format) ([]byte, Summary) {
	t.Helper()
	var buf bytes.Buffer
	sum, err := Write(&buf, cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), sum
}

func TestDeterministic(t *testing.T) {
	for _, f := range []Format{{PCAP, None}, {PCAPNG, Zstd}, {PCAP, Gzip}} {
		a, _ := generate(t, Config{Seed: 1, Packets: 5000}, f)
		b, _ := generate(t, Config{Seed: 1, Packets: 5000}, f)
		c, _ := generate(t, Config{Seed: 2, Packets: 5000}, f)
		if sha256.Sum256(a) != sha256.Sum256(b) {
			t.Errorf("format %+v: same seed gave different bytes", f)
		}
		if sha256.Sum256(a) == sha256.Sum256(c) {
			t.Errorf("format %+v: seeds 1 and 2 gave the same bytes", f)
		}
	}
}

func TestCompressedMatchesPlain(t *testing.T) {
	plain, _ := generate(t, Config{Seed: 3, Packets: 3000}, Format{PCAPNG, None})
	gz, _ := generate(t, Config{Seed: 3, Packets: 3000}, Format{PCAPNG, Gzip})
	zs, _ := generate(t, Config{Seed: 3, Packets: 3000}, Format{PCAPNG, Zstd})
	gr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(gr)
	if err != nil || !bytes.Equal(got, plain) {
		t.Errorf("gzip stream does not decompress to the plain capture (err %v)", err)
	}
	zr, err := zstd.NewReader(bytes.NewReader(zs))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	got, err = io.ReadAll(zr)
	if err != nil || !bytes.Equal(got, plain) {
		t.Errorf("zstd stream does not decompress to the plain capture (err %v)", err)
	}
}

// capPacket is one packet read back from a capture.
type capPacket struct {
	ts   int64
	data []byte
}

func readBack(t *testing.T, data []byte, c Container) []capPacket {
	t.Helper()
	var out []capPacket
	switch c {
	case PCAPNG:
		r, err := pcapgo.NewNgReader(bytes.NewReader(data), pcapgo.DefaultNgReaderOptions)
		if err != nil {
			t.Fatal(err)
		}
		for {
			d, ci, err := r.ReadPacketData()
			if err == io.EOF {
				return out
			}
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, capPacket{ci.Timestamp.UnixNano(), d})
		}
	default:
		r, err := pcapgo.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if r.LinkType() != layers.LinkTypeEthernet {
			t.Fatalf("link type %v", r.LinkType())
		}
		if c == PCAP && r.Resolution() != gopacket.TimestampResolutionNanosecond {
			t.Fatalf("resolution %v, want ns", r.Resolution())
		}
		for {
			d, ci, err := r.ReadPacketData()
			if err == io.EOF {
				return out
			}
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, capPacket{ci.Timestamp.UnixNano(), d})
		}
	}
}

func TestExactCountAndOrder(t *testing.T) {
	for _, c := range []Container{PCAP, PCAPUs, PCAPNG} {
		for _, n := range []int{1, 7, 4321} {
			data, sum := generate(t, Config{Seed: 9, Packets: n}, Format{Container: c})
			pkts := readBack(t, data, c)
			if len(pkts) != n || sum.Packets != n {
				t.Fatalf("container %d: read %d packets, summary %d, want %d", c, len(pkts), sum.Packets, n)
			}
			for i := 1; i < len(pkts); i++ {
				if pkts[i].ts < pkts[i-1].ts {
					t.Fatalf("container %d: packet %d at %d before packet %d at %d", c, i+1, pkts[i].ts, i, pkts[i-1].ts)
				}
			}
			if c != PCAPUs && (pkts[0].ts != sum.First || pkts[n-1].ts != sum.Last) {
				t.Errorf("container %d: first/last %d/%d, summary %d/%d", c, pkts[0].ts, pkts[n-1].ts, sum.First, sum.Last)
			}
		}
	}
}

// TestCaptureMatchesSummary decodes every packet with gopacket and counts
// what the summary claims, independently of the generator's bookkeeping.
func TestCaptureMatchesSummary(t *testing.T) {
	data, sum := generate(t, Config{Seed: 5, Packets: 30000, Truth: true}, Format{})
	pkts := readBack(t, data, PCAP)
	var (
		eth   layers.Ethernet
		dot1q layers.Dot1Q
		ip4   layers.IPv4
		ip6   layers.IPv6
		tcp   layers.TCP
		udp   layers.UDP
		icmp4 layers.ICMPv4
		icmp6 layers.ICMPv6
		dns   layers.DNS
		pl    gopacket.Payload
	)
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &dot1q, &ip4, &ip6, &tcp, &udp, &icmp4, &icmp6, &dns, &pl)
	parser.IgnoreUnsupported = true
	var synAcks, queries, responses, echoReq, echoRep, refused int
	errs := map[string]int{}
	net4 := netip.MustParsePrefix("10.0.0.0/8")
	net6 := netip.MustParsePrefix("fd00::/8")
	var decoded []gopacket.LayerType
	for i, p := range pkts {
		if err := parser.DecodeLayers(p.data, &decoded); err != nil {
			t.Fatalf("packet %d: %v", i+1, err)
		}
		var src, dst netip.Addr
		for _, lt := range decoded {
			switch lt {
			case layers.LayerTypeIPv4:
				src, _ = netip.AddrFromSlice(ip4.SrcIP)
				dst, _ = netip.AddrFromSlice(ip4.DstIP)
				src, dst = src.Unmap(), dst.Unmap()
			case layers.LayerTypeIPv6:
				src, _ = netip.AddrFromSlice(ip6.SrcIP)
				dst, _ = netip.AddrFromSlice(ip6.DstIP)
			case layers.LayerTypeTCP:
				if tcp.SYN && tcp.ACK {
					synAcks++
				}
				if tcp.RST && tcp.ACK && tcp.Seq == 0 {
					refused++
				}
			case layers.LayerTypeDNS:
				if dns.QR {
					responses++
				} else {
					queries++
				}
			case layers.LayerTypeICMPv4:
				switch tc := icmp4.TypeCode; {
				case tc.Type() == layers.ICMPv4TypeEchoRequest:
					echoReq++
				case tc.Type() == layers.ICMPv4TypeEchoReply:
					echoRep++
				case tc == layers.CreateICMPv4TypeCode(3, 3):
					errs["port-unreachable"]++
				case tc == layers.CreateICMPv4TypeCode(3, 4):
					errs["frag-needed"]++
				case tc.Type() == 11:
					errs["ttl-exceeded"]++
				}
			case layers.LayerTypeICMPv6:
				switch tc := icmp6.TypeCode; {
				case tc.Type() == layers.ICMPv6TypeEchoRequest:
					echoReq++
				case tc.Type() == layers.ICMPv6TypeEchoReply:
					echoRep++
				case tc == layers.CreateICMPv6TypeCode(1, 4):
					errs["port-unreachable"]++
				case tc.Type() == 2:
					errs["packet-too-big"]++
				case tc.Type() == 3:
					errs["ttl-exceeded"]++
				}
			}
		}
		if !(net4.Contains(src) && net4.Contains(dst)) && !(net6.Contains(src) && net6.Contains(dst)) {
			t.Fatalf("packet %d: %v -> %v outside 10/8 and fd00::/8", i+1, src, dst)
		}
	}
	// Every SYN/ACK is followed by its ACK unless the capture ended first.
	if synAcks < sum.Handshakes || synAcks > sum.Handshakes+20 {
		t.Errorf("%d SYN/ACKs for %d completed handshakes", synAcks, sum.Handshakes)
	}
	check := func(what string, got, want int) {
		t.Helper()
		if got != want {
			t.Errorf("%s: capture has %d, summary says %d", what, got, want)
		}
	}
	check("DNS queries", queries, sum.DNSQueries)
	check("DNS responses", responses, sum.DNSResponses)
	check("echo requests", echoReq, sum.EchoRequests)
	check("echo replies", echoRep, sum.EchoReplies)
	check("refused SYNs", refused, sum.RefusedSYNs)
	for _, k := range []string{"port-unreachable", "frag-needed", "packet-too-big", "ttl-exceeded"} {
		check(k, errs[k], sum.ICMPErrors[k])
		if sum.ICMPErrors[k] == 0 {
			t.Errorf("no %s errors in 30000 packets", k)
		}
	}
	if sum.DNSQueries == sum.DNSResponses || sum.EchoRequests == sum.EchoReplies {
		t.Error("expected some unanswered DNS queries and echo requests")
	}
	if sum.TLSSplitHellos == 0 || sum.TLSOddSplit == 0 || sum.QinQFlows == 0 || sum.IPv6Flows == 0 {
		t.Errorf("mix is missing a feature: %+v", sum)
	}
	// Shares are close to the defaults.
	var flows int
	for _, n := range sum.Flows {
		flows += n
	}
	if v6 := float64(sum.IPv6Flows) / float64(flows); v6 < 0.15 || v6 > 0.25 {
		t.Errorf("IPv6 share %.3f, want about 0.2", v6)
	}
	if vl := float64(sum.VLANFlows) / float64(flows); vl < 0.06 || vl > 0.14 {
		t.Errorf("VLAN share %.3f, want about 0.1", vl)
	}
	if len(sum.Truth.Conns) != flows {
		t.Errorf("truth has %d flows, summary %d", len(sum.Truth.Conns), flows)
	}
}

func TestNoIPv6NoVLAN(t *testing.T) {
	_, sum := generate(t, Config{Seed: 1, Packets: 5000, IPv6Share: -1, VLANShare: -1}, Format{})
	if sum.IPv6Flows != 0 || sum.VLANFlows != 0 {
		t.Errorf("IPv6 %d, VLAN %d flows with both shares disabled", sum.IPv6Flows, sum.VLANFlows)
	}
}

func TestTruthJSONRoundTrip(t *testing.T) {
	_, sum := generate(t, Config{Seed: 4, Packets: 2000, Truth: true}, Format{})
	var buf bytes.Buffer
	if err := sum.Truth.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	back, err := ReadTruth(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Conns) != len(sum.Truth.Conns) || back.Conns[0].Client != sum.Truth.Conns[0].Client {
		t.Fatalf("truth changed in a JSON round trip")
	}
}

func TestWriteErrors(t *testing.T) {
	if _, err := Write(io.Discard, Config{}, Format{}); err == nil {
		t.Error("Packets 0 accepted")
	}
	if _, err := ParseContainer("erf"); err == nil {
		t.Error("unknown container accepted")
	}
}

func BenchmarkWrite(b *testing.B) {
	const n = 100000
	var sum Summary
	for b.Loop() {
		var err error
		sum, err = Write(io.Discard, Config{Seed: 1, Packets: n}, Format{})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "packets/s")
	b.SetBytes(sum.Bytes)
}

// Unanswered SYNs come back with the same sequence number exactly 1 s and
// 3 s after the first.
func TestSYNRetransmissions(t *testing.T) {
	data, sum := generate(t, Config{Seed: 6, Packets: 20000, BulkShare: -1, FlowsPerSecond: 200}, Format{})
	type first struct {
		ts  int64
		seq uint32
	}
	syns := map[string]first{}
	retx := 0
	for i, p := range readBack(t, data, PCAP) {
		pk := gopacket.NewPacket(p.data, layers.LayerTypeEthernet, gopacket.NoCopy)
		tl, ok := pk.TransportLayer().(*layers.TCP)
		if !ok || !tl.SYN || tl.ACK || pk.Layer(layers.LayerTypeICMPv4) != nil || pk.Layer(layers.LayerTypeICMPv6) != nil {
			continue
		}
		key := pk.NetworkLayer().NetworkFlow().String() + ":" + tl.SrcPort.String()
		f, seen := syns[key]
		if !seen {
			syns[key] = first{p.ts, tl.Seq}
			continue
		}
		retx++
		if d := p.ts - f.ts; tl.Seq != f.seq || (d != 1e9 && d != 3e9) {
			t.Errorf("packet %d: SYN again after %d ns with seq %d (first %d)", i+1, d, tl.Seq, f.seq)
		}
	}
	if retx != sum.SYNRetrans || retx < 10 {
		t.Errorf("%d retransmitted SYNs, summary says %d", retx, sum.SYNRetrans)
	}
}
