package decode

import (
	"bytes"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline/packet"
)

type tcase struct {
	name  string
	link  packet.LinkType
	data  []byte
	check func(t *testing.T, m *packet.Meta, p *packet.Packet)
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// flow checks the 5-tuple and that nothing failed.
func flow(src, dst any, proto uint8, sp, dp uint16) func(*testing.T, *packet.Meta, *packet.Packet) {
	return func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
		t.Helper()
		eq(t, "Err", m.Err, packet.MalformedNone)
		eq(t, "Src", m.Src.String(), src.(interface{ String() string }).String())
		eq(t, "Dst", m.Dst.String(), dst.(interface{ String() string }).String())
		eq(t, "Proto", m.Proto, proto)
		eq(t, "SrcPort", m.SrcPort, sp)
		eq(t, "DstPort", m.DstPort, dp)
	}
}

func both(fs ...func(*testing.T, *packet.Meta, *packet.Packet)) func(*testing.T, *packet.Meta, *packet.Packet) {
	return func(t *testing.T, m *packet.Meta, p *packet.Packet) {
		t.Helper()
		for _, f := range fs {
			f(t, m, p)
		}
	}
}

func fails(r packet.Malformed) func(*testing.T, *packet.Meta, *packet.Packet) {
	return func(t *testing.T, m *packet.Meta, _ *packet.Packet) { t.Helper(); eq(t, "Err", m.Err, r) }
}

var netip0 = noAddr{}

type noAddr struct{}

func (noAddr) String() string { return "invalid IP" }

var payload = []byte("hello, world")

func linkCases() []tcase {
	tcp4 := ip4(v4a, v4b, 6, tcp(1234, 80, packet.TCPSyn, payload), ip4opt{})
	tcp6 := ip6(v6a, v6b, 6, tcp(1234, 443, packet.TCPAck, payload))
	return []tcase{
		{"ethernet ipv4 tcp", packet.LinkEthernet, cat(eth(0x0800), tcp4), both(flow(v4a, v4b, 6, 1234, 80),
			func(t *testing.T, m *packet.Meta, p *packet.Packet) {
				eq(t, "IPVersion", m.IPVersion, 4)
				eq(t, "L3Off", m.L3Off, 14)
				eq(t, "L4Off", m.L4Off, 34)
				eq(t, "HasL4", m.HasL4, true)
				eq(t, "TCPFlags", m.TCPFlags, packet.TCPSyn)
				eq(t, "Seq/Ack", [2]uint32{m.Seq, m.Ack}, [2]uint32{1000, 2000})
				eq(t, "Window", m.Window, 512)
				eq(t, "TTL", m.TTL, 64)
				eq(t, "payload", string(p.Payload()), string(payload))
			})},
		{"ethernet padding is not payload", packet.LinkEthernet, cat(eth(0x0800), ip4(v4a, v4b, 6, tcp(1, 2, packet.TCPAck, nil), ip4opt{}), make([]byte, 6)),
			func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
				eq(t, "Err", m.Err, packet.MalformedNone)
				eq(t, "IPLen", m.IPLen, 40)
				eq(t, "PayloadLen", m.PayloadLen, 0)
			}},
		{"ethernet ipv6 tcp", packet.LinkEthernet, cat(eth(0x86dd), tcp6), both(flow(v6a, v6b, 6, 1234, 443),
			func(t *testing.T, m *packet.Meta, p *packet.Packet) {
				eq(t, "IPLen", m.IPLen, uint16(len(tcp6)))
				eq(t, "payload", string(p.Payload()), string(payload))
			})},
		{"802.1Q", packet.LinkEthernet, cat(eth(0x0800, 0x8100, 100), tcp4), both(flow(v4a, v4b, 6, 1234, 80),
			func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
				eq(t, "VLAN", m.VLAN, [2]uint16{100, 0})
				eq(t, "NVLAN", m.NVLAN, 1)
			})},
		{"802.1ad QinQ", packet.LinkEthernet, cat(eth(0x0800, 0x88a8, 10, 0x8100, 20), tcp4), both(flow(v4a, v4b, 6, 1234, 80),
			func(t *testing.T, m *packet.Meta, _ *packet.Packet) { eq(t, "VLAN", m.VLAN, [2]uint16{10, 20}) })},
		{"three tags: two recorded", packet.LinkEthernet, cat(eth(0x86dd, 0x9100, 1, 0x8100, 2, 0x8100, 3), tcp6), both(flow(v6a, v6b, 6, 1234, 443),
			func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
				eq(t, "VLAN", m.VLAN, [2]uint16{1, 2})
				eq(t, "NVLAN", m.NVLAN, 2)
			})},
		{"arp has no IP", packet.LinkEthernet, cat(eth(0x0806), make([]byte, 28)), func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
			eq(t, "Err", m.Err, packet.MalformedNone)
			eq(t, "IPVersion", m.IPVersion, 0)
		}},
		{"mpls", packet.LinkEthernet, cat(eth(0x8847), []byte{0, 1, 0, 64, 0, 2, 1, 64}, tcp4), flow(v4a, v4b, 6, 1234, 80)},
		{"pppoe ipv6", packet.LinkEthernet, cat(eth(0x8864), []byte{0x11, 0, 0, 1}, u16(uint16(2+len(tcp6))), u16(0x0057), tcp6), flow(v6a, v6b, 6, 1234, 443)},
		{"sll", packet.LinkSLL, cat(make([]byte, 14), u16(0x0800), tcp4), both(flow(v4a, v4b, 6, 1234, 80),
			func(t *testing.T, m *packet.Meta, _ *packet.Packet) { eq(t, "L3Off", m.L3Off, 16) })},
		{"sll2", packet.LinkSLL2, cat(u16(0x86dd), make([]byte, 18), tcp6), flow(v6a, v6b, 6, 1234, 443)},
		{"raw v4", packet.LinkRaw, tcp4, flow(v4a, v4b, 6, 1234, 80)},
		{"raw v6", packet.LinkRaw, tcp6, flow(v6a, v6b, 6, 1234, 443)},
		{"ipv4 link", packet.LinkIPv4, tcp4, flow(v4a, v4b, 6, 1234, 80)},
		{"ipv6 link", packet.LinkIPv6, tcp6, flow(v6a, v6b, 6, 1234, 443)},
		{"null little-endian AF_INET", packet.LinkNull, cat([]byte{2, 0, 0, 0}, tcp4), flow(v4a, v4b, 6, 1234, 80)},
		{"null big-endian AF_INET6 (Darwin 30)", packet.LinkNull, cat([]byte{0, 0, 0, 30}, tcp6), flow(v6a, v6b, 6, 1234, 443)},
		{"null AF_INET6 24", packet.LinkNull, cat([]byte{24, 0, 0, 0}, tcp6), flow(v6a, v6b, 6, 1234, 443)},
		{"loop AF_INET6 28", packet.LinkLoop, cat([]byte{0, 0, 0, 28}, tcp6), flow(v6a, v6b, 6, 1234, 443)},
		{"null unknown family", packet.LinkNull, cat([]byte{7, 0, 0, 0}, tcp4), func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
			eq(t, "Err", m.Err, packet.MalformedNone)
			eq(t, "IPVersion", m.IPVersion, 0)
		}},
		{"unknown link", packet.LinkType(147), tcp4, fails(packet.MalformedUnknownLink)},
		{"truncated ethernet", packet.LinkEthernet, eth(0x0800)[:10], fails(packet.MalformedTruncatedLink)},
		{"truncated vlan tag", packet.LinkEthernet, eth(0x0800, 0x8100, 5)[:16], fails(packet.MalformedTruncatedLink)},
		{"too many vlan tags", packet.LinkEthernet, cat(eth(0x0800, 0x8100, 1, 0x8100, 2, 0x8100, 3, 0x8100, 4, 0x8100, 5, 0x8100, 6, 0x8100, 7, 0x8100, 8, 0x8100, 9), tcp4), fails(packet.MalformedTooManyHeaders)},
		{"truncated sll", packet.LinkSLL, make([]byte, 15), fails(packet.MalformedTruncatedLink)},
		{"truncated sll2", packet.LinkSLL2, make([]byte, 19), fails(packet.MalformedTruncatedLink)},
		{"truncated null", packet.LinkNull, []byte{2, 0}, fails(packet.MalformedTruncatedLink)},
		{"empty raw", packet.LinkRaw, nil, fails(packet.MalformedTruncatedIP)},
		{"raw bad version", packet.LinkRaw, cat([]byte{0x50}, tcp4[1:]), fails(packet.MalformedBadIPHeader)},
	}
}

func ipCases() []tcase {
	opts := []byte{1, 1, 1, 0} // NOP NOP NOP EOL
	frag1 := ip4(v4a, v4b, 17, udp(53, 5353, make([]byte, 32)), ip4opt{flags: 0x2000, id: 77})
	frag2 := ip4(v4a, v4b, 17, make([]byte, 24), ip4opt{flags: 5, id: 77})
	return []tcase{
		{"ipv4 options", packet.LinkIPv4, ip4(v4a, v4b, 17, udp(53, 5353, payload), ip4opt{options: opts, flags: 0x4000, ttl: 3}), both(flow(v4a, v4b, 17, 53, 5353),
			func(t *testing.T, m *packet.Meta, p *packet.Packet) {
				eq(t, "L4Off", m.L4Off, 24)
				eq(t, "DF", m.DF, true)
				eq(t, "TTL", m.TTL, 3)
				eq(t, "Frag.Is", m.Frag.Is, false)
				eq(t, "payload", string(p.Payload()), string(payload))
			})},
		{"ipv4 first fragment", packet.LinkIPv4, frag1, both(flow(v4a, v4b, 17, 53, 5353),
			func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
				eq(t, "Frag", m.Frag, packet.Fragment{Is: true, First: true, More: true, ID: 77})
				eq(t, "HasL4", m.HasL4, true)
			})},
		{"ipv4 later fragment", packet.LinkIPv4, frag2, func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
			eq(t, "Err", m.Err, packet.MalformedNone)
			eq(t, "Frag", m.Frag, packet.Fragment{Is: true, Offset: 40, ID: 77})
			eq(t, "HasL4", m.HasL4, false)
			eq(t, "ports", m.SrcPort|m.DstPort, 0)
			eq(t, "Proto", m.Proto, 17)
		}},
		{"ipv4 tso zero length", packet.LinkIPv4, ip4(v4a, v4b, 6, tcp(1, 2, 0, payload), ip4opt{totalLen: 0xffff + 1}), both(flow(v4a, v4b, 6, 1, 2),
			func(t *testing.T, m *packet.Meta, p *packet.Packet) {
				eq(t, "payload", string(p.Payload()), string(payload))
			})},
		{"ipv6 extension headers", packet.LinkIPv6, ip6(v6a, v6b, 0, cat(ext6(0, 43, 0), ext6(43, 60, 1), ext6(60, 51, 0), ext6(51, 6, 1), tcp(9, 10, 0, payload))), both(flow(v6a, v6b, 6, 9, 10),
			func(t *testing.T, m *packet.Meta, p *packet.Packet) {
				eq(t, "L4Off", m.L4Off, 40+8+16+8+12)
				eq(t, "payload", string(p.Payload()), string(payload))
			})},
		{"ipv6 first fragment", packet.LinkIPv6, ip6(v6a, v6b, 44, cat(frag6(17, 0, true, 0xabcdef), udp(7, 8, payload))), both(flow(v6a, v6b, 17, 7, 8),
			func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
				eq(t, "Frag", m.Frag, packet.Fragment{Is: true, First: true, More: true, ID: 0xabcdef})
			})},
		{"ipv6 later fragment", packet.LinkIPv6, ip6(v6a, v6b, 44, cat(frag6(17, 1232, false, 5), payload)), func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
			eq(t, "Err", m.Err, packet.MalformedNone)
			eq(t, "Frag", m.Frag, packet.Fragment{Is: true, Offset: 1232, ID: 5})
			eq(t, "Proto", m.Proto, 17)
			eq(t, "HasL4", m.HasL4, false)
		}},
		{"ipv6 too many extension headers", packet.LinkIPv6, ip6(v6a, v6b, 60, cat(ext6(60, 60, 0), ext6(60, 60, 0), ext6(60, 60, 0), ext6(60, 60, 0), ext6(60, 60, 0), ext6(60, 60, 0), ext6(60, 60, 0), ext6(60, 60, 0), ext6(60, 6, 0), tcp(1, 2, 0, nil))), fails(packet.MalformedTooManyHeaders)},
		{"ipv6 truncated extension header", packet.LinkIPv6, ip6(v6a, v6b, 0, ext6(0, 6, 2))[:40+12], fails(packet.MalformedTruncatedIP)},
		{"ipv6 extension header past the packet", packet.LinkIPv6, ip6(v6a, v6b, 0, ext6(0, 6, 0)[:8:8])[:48], func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
			// Exactly one extension header and nothing after it: TCP is missing.
			eq(t, "Err", m.Err, packet.MalformedBadL4Header)
		}},
		{"truncated ipv4", packet.LinkEthernet, cat(eth(0x0800), make([]byte, 10)), fails(packet.MalformedTruncatedIP)},
		{"ipv4 wrong version", packet.LinkIPv4, ip6(v6a, v6b, 6, tcp(1, 2, 0, nil)), fails(packet.MalformedBadIPHeader)},
		{"ipv4 ihl below 5", packet.LinkIPv4, func() []byte { b := ip4(v4a, v4b, 6, tcp(1, 2, 0, nil), ip4opt{}); b[0] = 0x44; return b }(), fails(packet.MalformedBadIPHeader)},
		{"ipv4 total length below ihl", packet.LinkIPv4, ip4(v4a, v4b, 6, tcp(1, 2, 0, nil), ip4opt{totalLen: 12}), fails(packet.MalformedBadIPHeader)},
		{"ipv4 options cut", packet.LinkIPv4, ip4(v4a, v4b, 6, nil, ip4opt{options: []byte{1, 1, 1, 1, 1, 1, 1, 0}})[:24], func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
			eq(t, "Err", m.Err, packet.MalformedTruncatedIP)
			eq(t, "Src kept", m.Src, v4a)
		}},
		{"truncated ipv6", packet.LinkIPv6, ip6(v6a, v6b, 6, nil)[:39], fails(packet.MalformedTruncatedIP)},
	}
}

func l4Cases() []tcase {
	return []tcase{
		{"udp", packet.LinkIPv4, ip4(v4a, v4b, 17, udp(5000, 53, payload), ip4opt{}), both(flow(v4a, v4b, 17, 5000, 53),
			func(t *testing.T, m *packet.Meta, p *packet.Packet) {
				eq(t, "payload", string(p.Payload()), string(payload))
			})},
		{"udp length shorter than ip", packet.LinkIPv4, func() []byte {
			b := ip4(v4a, v4b, 17, udp(5000, 53, payload), ip4opt{})
			b[20+5] = 8 + 5
			return b
		}(), func(t *testing.T, m *packet.Meta, p *packet.Packet) { eq(t, "payload", string(p.Payload()), "hello") }},
		{"sctp", packet.LinkIPv6, ip6(v6a, v6b, 132, sctp(36412, 38412)), flow(v6a, v6b, 132, 36412, 38412)},
		{"tcp options", packet.LinkIPv4, ip4(v4a, v4b, 6, tcp(1, 2, packet.TCPSyn|packet.TCPEce|packet.TCPCwr, payload, 2, 4, 5, 180), ip4opt{}), both(flow(v4a, v4b, 6, 1, 2),
			func(t *testing.T, m *packet.Meta, p *packet.Packet) {
				eq(t, "TCPFlags", m.TCPFlags, packet.TCPSyn|packet.TCPEce|packet.TCPCwr)
				eq(t, "PayloadOff", m.PayloadOff, 44)
				eq(t, "payload", string(p.Payload()), string(payload))
			})},
		{"snap length cuts payload", packet.LinkIPv4, ip4(v4a, v4b, 6, tcp(1, 2, 0, payload), ip4opt{})[:45], both(flow(v4a, v4b, 6, 1, 2),
			func(t *testing.T, m *packet.Meta, p *packet.Packet) {
				eq(t, "IPLen", m.IPLen, 52)
				eq(t, "payload", string(p.Payload()), "hello")
			})},
		{"snap length cuts tcp options", packet.LinkIPv4, ip4(v4a, v4b, 6, tcp(1, 2, 0, nil, 1, 1, 1, 1, 1, 1, 1, 0), ip4opt{})[:44], both(flow(v4a, v4b, 6, 1, 2),
			func(t *testing.T, m *packet.Meta, _ *packet.Packet) { eq(t, "HasL4", m.HasL4, false) })},
		{"snap length cuts tcp header", packet.LinkIPv4, ip4(v4a, v4b, 6, tcp(1, 2, 0, payload), ip4opt{})[:30], fails(packet.MalformedTruncatedL4)},
		{"ip length too short for tcp", packet.LinkIPv4, ip4(v4a, v4b, 6, tcp(1, 2, 0, nil), ip4opt{totalLen: 30}), fails(packet.MalformedBadL4Header)},
		{"tcp data offset below 5", packet.LinkIPv4, func() []byte { b := ip4(v4a, v4b, 6, tcp(1, 2, 0, nil), ip4opt{}); b[32] = 0x40; return b }(), fails(packet.MalformedBadL4Header)},
		{"tcp data offset past ip length", packet.LinkIPv4, func() []byte { b := ip4(v4a, v4b, 6, tcp(1, 2, 0, nil), ip4opt{}); b[32] = 0xf0; return b }(), fails(packet.MalformedBadL4Header)},
		{"udp length below 8", packet.LinkIPv4, func() []byte { b := ip4(v4a, v4b, 17, udp(1, 2, nil), ip4opt{}); b[25] = 4; return b }(), fails(packet.MalformedBadL4Header)},
		{"udp length past ip", packet.LinkIPv4, func() []byte { b := ip4(v4a, v4b, 17, udp(1, 2, nil), ip4opt{}); b[25] = 40; return b }(), fails(packet.MalformedBadL4Header)},
		{"truncated udp", packet.LinkIPv4, ip4(v4a, v4b, 17, udp(1, 2, nil), ip4opt{})[:25], fails(packet.MalformedTruncatedL4)},
		{"truncated sctp", packet.LinkIPv6, ip6(v6a, v6b, 132, sctp(1, 2))[:48], fails(packet.MalformedTruncatedL4)},
		{"other protocol", packet.LinkIPv4, ip4(v4a, v4b, 89, payload, ip4opt{}), func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
			eq(t, "Err", m.Err, packet.MalformedNone)
			eq(t, "Proto", m.Proto, 89)
			eq(t, "HasL4", m.HasL4, false)
		}},
		{"icmp echo request", packet.LinkIPv4, ip4(v4a, v4b, 1, icmp(8, 0, 0x1234_0007, payload), ip4opt{}), func(t *testing.T, m *packet.Meta, p *packet.Packet) {
			eq(t, "Err", m.Err, packet.MalformedNone)
			eq(t, "type/code", [2]uint8{m.ICMPType, m.ICMPCode}, [2]uint8{8, 0})
			eq(t, "id/seq", [2]uint16{m.ICMPID, m.ICMPSeq}, [2]uint16{0x1234, 7})
			eq(t, "payload", string(p.Payload()), string(payload))
			eq(t, "Quote.Present", m.Quoted().Present, false)
		}},
		{"icmpv6 echo reply", packet.LinkIPv6, ip6(v6a, v6b, 58, icmp(129, 0, 0x0001_0002, nil)), func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
			eq(t, "id/seq", [2]uint16{m.ICMPID, m.ICMPSeq}, [2]uint16{1, 2})
		}},
		{"icmp truncated", packet.LinkIPv4, ip4(v4a, v4b, 1, icmp(3, 1, 0, nil), ip4opt{})[:25], func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
			eq(t, "Err", m.Err, packet.MalformedTruncatedL4)
			eq(t, "type/code", [2]uint8{m.ICMPType, m.ICMPCode}, [2]uint8{3, 1})
		}},
	}
}

func runCases(t *testing.T, cases []tcase) {
	t.Helper()
	d := New()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := &packet.Packet{Data: c.data, LinkType: c.link}
			// Stale fields from an earlier packet must not survive.
			p.Meta = packet.Meta{Err: packet.MalformedBadL4Header, Tunnel: packet.TunnelGRE, SrcPort: 9, NVLAN: 2, X: &packet.Extra{Quote: packet.Quote{Present: true}}}
			orig := bytes.Clone(c.data)
			d.Decode(p)
			c.check(t, &p.Meta, p)
			checkInvariants(t, p)
			if !bytes.Equal(orig, p.Data) {
				t.Error("Decode modified the packet's bytes")
			}
		})
	}
}

// checkInvariants holds for every packet, decodable or not.
func checkInvariants(t testing.TB, p *packet.Packet) {
	t.Helper()
	m := &p.Meta
	n := len(p.Data)
	if int(m.PayloadOff)+int(m.PayloadLen) > n {
		t.Fatalf("payload [%d,+%d) beyond %d captured bytes", m.PayloadOff, m.PayloadLen, n)
	}
	if m.L3Off > m.L4Off && m.L4Off != 0 || int(m.L4Off) > n || int(m.L3Off) > n {
		t.Fatalf("offsets L3 %d L4 %d in %d bytes", m.L3Off, m.L4Off, n)
	}
	if m.PayloadLen != 0 && m.PayloadOff < m.L4Off {
		t.Fatalf("payload at %d before L4 at %d", m.PayloadOff, m.L4Off)
	}
	if m.Err >= packet.MalformedCount || m.NVLAN > 2 {
		t.Fatalf("Err %d NVLAN %d", m.Err, m.NVLAN)
	}
	if m.HasL4 && m.IPVersion == 0 {
		t.Fatal("HasL4 without an IP layer")
	}
	if m.IPVersion != 0 && m.IPVersion != 4 && m.IPVersion != 6 || m.IPVersion != 0 && !m.Src.IsValid() {
		t.Fatalf("IPVersion %d Src %v", m.IPVersion, m.Src)
	}
	if m.Frag.Is && !m.Frag.First && m.HasL4 {
		t.Fatal("later fragment with a transport header")
	}
	if q := m.Quoted(); q.Present && (!q.Src.IsValid() || !q.Dst.IsValid()) {
		t.Fatal("quote present without addresses")
	}
	if m.Quoted().Present && !packet.IsICMPError(m.Proto, m.ICMPType) {
		t.Fatal("quote on a packet that is not an ICMP error")
	}
	if m.Tunnel != packet.TunnelNone && (m.X == nil || !m.X.OuterSrc.IsValid()) {
		t.Fatal("tunnel without outer addresses")
	}
}

func TestLink(t *testing.T)      { runCases(t, linkCases()) }
func TestIP(t *testing.T)        { runCases(t, ipCases()) }
func TestTransport(t *testing.T) { runCases(t, l4Cases()) }
