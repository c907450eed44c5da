package decode

import (
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/pktpipe/pktpipe/pipeline/packet"
)

// benchMix is a realistic traffic mix as Ethernet frames: mostly TCP
// (v4 and v6, some with a VLAN tag), DNS over UDP, a ping, an ICMP error
// with its quote, and a VXLAN-tunnelled TCP segment.
func benchMix() []packet.Packet {
	data := make([]byte, 1200)
	syn := tcp(40000, 443, packet.TCPSyn, nil, 2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 3, 7)
	seg := tcp(443, 40000, packet.TCPAck|packet.TCPPsh, data, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2)
	ack := tcp(40000, 443, packet.TCPAck, nil, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2)
	dns := udp(53000, 53, make([]byte, 40))
	frames := [][]byte{
		cat(eth(0x0800), ip4(v4a, v4b, 6, syn, ip4opt{flags: 0x4000})),
		cat(eth(0x0800), ip4(v4b, v4a, 6, seg, ip4opt{flags: 0x4000})),
		cat(eth(0x0800), ip4(v4a, v4b, 6, ack, ip4opt{flags: 0x4000}), make([]byte, 6)),
		cat(eth(0x0800), ip4(v4b, v4a, 6, seg, ip4opt{flags: 0x4000})),
		cat(eth(0x86dd), ip6(v6a, v6b, 6, seg)),
		cat(eth(0x86dd), ip6(v6b, v6a, 6, ack)),
		cat(eth(0x0800, 0x8100, 100), ip4(v4c, v4d, 6, seg, ip4opt{})),
		cat(eth(0x0800, 0x8100, 100), ip4(v4d, v4c, 6, ack, ip4opt{})),
		cat(eth(0x0800), ip4(v4a, v4c, 17, dns, ip4opt{})),
		cat(eth(0x86dd), ip6(v6a, v6c, 17, dns)),
		cat(eth(0x0800), ip4(v4a, v4b, 1, icmp(8, 0, 0x00010001, make([]byte, 56)), ip4opt{})),
		cat(eth(0x0800), ip4(v4c, v4a, 1, icmp(3, 3, 0, ip4(v4a, v4c, 17, dns, ip4opt{})[:28]), ip4opt{})),
		cat(eth(0x0800), ip4(v4a, v4b, 17, udp(51000, 4789, cat(vxlanHdr(5), eth(0x0800), ip4(v4c, v4d, 6, ack, ip4opt{}))), ip4opt{})),
	}
	pkts := make([]packet.Packet, len(frames))
	for i, f := range frames {
		pkts[i] = packet.Packet{Data: f, LinkType: packet.LinkEthernet}
	}
	return pkts
}

func TestDecodeAllocs(t *testing.T) {
	pkts := benchMix()
	d := New()
	rooms := make([]packet.Extra, len(pkts)) // as a batch gives them (Batch.Room)
	allocs := testing.AllocsPerRun(100, func() {
		for i := range pkts {
			d.DecodeIn(&pkts[i], &rooms[i])
		}
	})
	if allocs != 0 {
		t.Fatalf("Decode allocates %v times per mix", allocs)
	}
	for i := range pkts {
		if m := &pkts[i].Meta; m.Err != packet.MalformedNone || !m.HasL4 {
			t.Fatalf("bench packet %d: %s", i, describe(m))
		}
	}
}

// BenchmarkDecode reports the cost of one packet of the mix.
func BenchmarkDecode(b *testing.B) {
	pkts := benchMix()
	rooms := make([]packet.Extra, len(pkts))
	d := New()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d.DecodeIn(&pkts[i%len(pkts)], &rooms[i%len(pkts)])
	}
}

// BenchmarkCompare decodes the same plain Ethernet/VLAN/IP/TCP/UDP frames
// (no ICMP quote, no tunnel: what DecodingLayerParser can decode) with
// this package and with gopacket's DecodingLayerParser over preallocated
// layers, copying addresses and ports into a Meta in both cases.
func BenchmarkCompare(b *testing.B) {
	var pkts []packet.Packet
	for _, p := range benchMix() {
		New().Decode(&p)
		if (p.Meta.Proto == packet.ProtoTCP || p.Meta.Proto == packet.ProtoUDP) && p.Meta.Tunnel == packet.TunnelNone {
			pkts = append(pkts, p)
		}
	}
	b.Run("handwritten", func(b *testing.B) {
		d := New()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			d.Decode(&pkts[i%len(pkts)])
		}
	})
	b.Run("gopacket", func(b *testing.B) {
		var (
			eth     layers.Ethernet
			dot1q   layers.Dot1Q
			ip4     layers.IPv4
			ip6     layers.IPv6
			tcp     layers.TCP
			udp     layers.UDP
			pay     gopacket.Payload
			decoded = make([]gopacket.LayerType, 0, 8)
		)
		parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &dot1q, &ip4, &ip6, &tcp, &udp, &pay)
		parser.IgnoreUnsupported = true
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			p := &pkts[i%len(pkts)]
			m := &p.Meta
			*m = packet.Meta{}
			if err := parser.DecodeLayers(p.Data, &decoded); err != nil {
				b.Fatal(err)
			}
			for _, lt := range decoded {
				switch lt {
				case layers.LayerTypeDot1Q:
					m.VLAN[m.NVLAN&1] = dot1q.VLANIdentifier
					m.NVLAN++
				case layers.LayerTypeIPv4:
					m.IPVersion, m.TTL, m.IPLen, m.Proto = 4, ip4.TTL, ip4.Length, uint8(ip4.Protocol)
					m.Src, _ = netip.AddrFromSlice(ip4.SrcIP)
					m.Dst, _ = netip.AddrFromSlice(ip4.DstIP)
				case layers.LayerTypeIPv6:
					m.IPVersion, m.TTL, m.IPLen, m.Proto = 6, ip6.HopLimit, 40+ip6.Length, uint8(ip6.NextHeader)
					m.Src, _ = netip.AddrFromSlice(ip6.SrcIP)
					m.Dst, _ = netip.AddrFromSlice(ip6.DstIP)
				case layers.LayerTypeTCP:
					m.SrcPort, m.DstPort, m.Seq, m.Ack, m.Window = uint16(tcp.SrcPort), uint16(tcp.DstPort), tcp.Seq, tcp.Ack, tcp.Window
					m.HasL4 = true
				case layers.LayerTypeUDP:
					m.SrcPort, m.DstPort = uint16(udp.SrcPort), uint16(udp.DstPort)
					m.HasL4 = true
				}
			}
			if !m.HasL4 {
				b.Fatalf("gopacket did not decode packet %d", i%len(pkts))
			}
		}
	})
}
