package decode

import (
	"testing"

	"github.com/pktpipe/pktpipe/pipeline/packet"
)

// inner checks the tunnel kind and outer addresses of a decoded tunnel.
func inner(kind packet.Tunnel, osrc, odst any) func(*testing.T, *packet.Meta, *packet.Packet) {
	return func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
		t.Helper()
		eq(t, "Tunnel", m.Tunnel, kind)
		var x packet.Extra // no tunnel: no outer addresses
		if m.X != nil {
			x = *m.X
		} else if kind != packet.TunnelNone {
			t.Fatal("tunnel without Extra")
		}
		eq(t, "OuterSrc", x.OuterSrc.String(), osrc.(interface{ String() string }).String())
		eq(t, "OuterDst", x.OuterDst.String(), odst.(interface{ String() string }).String())
	}
}

func tunnelCases() []tcase {
	in4 := ip4(v4c, v4d, 6, tcp(40000, 443, packet.TCPSyn, payload), ip4opt{})
	in6 := ip6(v6c, v6d, 17, udp(5353, 53, payload))
	inEth := cat(eth(0x0800, 0x8100, 7), in4)
	nest := in4
	for range maxTunnels + 1 {
		nest = ip4(v4a, v4b, 4, nest, ip4opt{})
	}
	return []tcase{
		{"gre ipv4 with key and seq", packet.LinkIPv4, ip4(v4a, v4b, 47, cat(gre(0xb000, 0x0800, make([]byte, 12)...), in4), ip4opt{}),
			both(flow(v4c, v4d, 6, 40000, 443), inner(packet.TunnelGRE, v4a, v4b), func(t *testing.T, m *packet.Meta, p *packet.Packet) {
				eq(t, "payload", string(p.Payload()), string(payload))
				eq(t, "L3Off", m.L3Off, 20+16)
			})},
		{"gre ipv6 over ipv6", packet.LinkIPv6, ip6(v6a, v6b, 47, cat(gre(0, 0x86dd), in6)), both(flow(v6c, v6d, 17, 5353, 53), inner(packet.TunnelGRE, v6a, v6b))},
		{"gre ethernet", packet.LinkIPv4, ip4(v4a, v4b, 47, cat(gre(0x2000, 0x6558, 0, 0, 0, 1), inEth), ip4opt{}),
			both(flow(v4c, v4d, 6, 40000, 443), inner(packet.TunnelGRE, v4a, v4b), func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
				eq(t, "VLAN", m.VLAN[0], 7)
			})},
		{"erspan type II", packet.LinkEthernet, cat(eth(0x0800, 0x8100, 3), ip4(v4a, v4b, 47, cat(gre(0x1000, 0x88be, 0, 0, 0, 9), []byte{0x10, 0, 0, 1, 0, 0, 0, 0}, inEth), ip4opt{})),
			both(flow(v4c, v4d, 6, 40000, 443), inner(packet.TunnelERSPAN, v4a, v4b), func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
				eq(t, "VLAN", m.VLAN, [2]uint16{3, 7})
			})},
		{"erspan type I", packet.LinkIPv4, ip4(v4a, v4b, 47, cat(gre(0, 0x88be), inEth), ip4opt{}), both(flow(v4c, v4d, 6, 40000, 443), inner(packet.TunnelERSPAN, v4a, v4b))},
		{"erspan type III with subheader", packet.LinkIPv4, ip4(v4a, v4b, 47, cat(gre(0x1000, 0x22eb, 0, 0, 0, 1), []byte{0x20, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}, make([]byte, 8), inEth), ip4opt{}),
			both(flow(v4c, v4d, 6, 40000, 443), inner(packet.TunnelERSPAN, v4a, v4b))},
		{"erspan II wrong version stays gre", packet.LinkIPv4, ip4(v4a, v4b, 47, cat(gre(0x1000, 0x88be, 0, 0, 0, 9), []byte{0x70, 0, 0, 1, 0, 0, 0, 0}, inEth), ip4opt{}),
			func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
				eq(t, "Tunnel", m.Tunnel, packet.TunnelNone)
				eq(t, "Proto", m.Proto, 47)
			}},
		{"gre pptp stays gre", packet.LinkIPv4, ip4(v4a, v4b, 47, cat(gre(0x3001, 0x880b, 0, 4, 0, 1, 0, 0, 0, 1), payload), ip4opt{}),
			func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
				eq(t, "Err", m.Err, packet.MalformedNone)
				eq(t, "Tunnel", m.Tunnel, packet.TunnelNone)
			}},
		{"vxlan", packet.LinkEthernet, cat(eth(0x0800), ip4(v4a, v4b, 17, udp(51000, 4789, cat(vxlanHdr(42), inEth)), ip4opt{})),
			both(flow(v4c, v4d, 6, 40000, 443), inner(packet.TunnelVXLAN, v4a, v4b))},
		{"vxlan without I flag stays udp", packet.LinkIPv4, ip4(v4a, v4b, 17, udp(51000, 4789, cat(make([]byte, 8), inEth)), ip4opt{}),
			both(flow(v4a, v4b, 17, 51000, 4789), inner(packet.TunnelNone, netip0, netip0))},
		{"geneve ethernet with options", packet.LinkIPv6, ip6(v6a, v6b, 17, udp(51000, 6081, cat([]byte{0x02, 0, 0x65, 0x58, 0, 0, 1, 0}, make([]byte, 8), inEth))),
			both(flow(v4c, v4d, 6, 40000, 443), inner(packet.TunnelGeneve, v6a, v6b))},
		{"geneve ipv6", packet.LinkIPv4, ip4(v4a, v4b, 17, udp(51000, 6081, cat([]byte{0, 0, 0x86, 0xdd, 0, 0, 1, 0}, in6)), ip4opt{}),
			both(flow(v6c, v6d, 17, 5353, 53), inner(packet.TunnelGeneve, v4a, v4b))},
		{"ipip", packet.LinkIPv4, ip4(v4a, v4b, 4, in4, ip4opt{}), both(flow(v4c, v4d, 6, 40000, 443), inner(packet.TunnelIPIP, v4a, v4b))},
		{"6in4", packet.LinkIPv4, ip4(v4a, v4b, 41, in6, ip4opt{}), both(flow(v6c, v6d, 17, 5353, 53), inner(packet.TunnelIPIP, v4a, v4b))},
		{"4in6", packet.LinkIPv6, ip6(v6a, v6b, 4, in4), both(flow(v4c, v4d, 6, 40000, 443), inner(packet.TunnelIPIP, v6a, v6b))},
		{"nested tunnels keep the outermost", packet.LinkIPv4, ip4(v4a, v4b, 47, cat(gre(0, 0x0800), ip4(v4b, v4a, 4, in4, ip4opt{})), ip4opt{}),
			both(flow(v4c, v4d, 6, 40000, 443), inner(packet.TunnelGRE, v4a, v4b))},
		{"nesting limit", packet.LinkIPv4, nest, func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
			eq(t, "Err", m.Err, packet.MalformedTooManyHeaders)
			eq(t, "Tunnel", m.Tunnel, packet.TunnelIPIP)
		}},
		{"inner packet bounded by outer", packet.LinkIPv4, func() []byte {
			return ip4(v4a, v4b, 4, in4, ip4opt{totalLen: 20 + len(in4) - 5})
		}(), func(t *testing.T, m *packet.Meta, p *packet.Packet) {
			// The outer length ends the inner packet 5 bytes short: the
			// payload is clipped there, whatever follows.
			eq(t, "payload", string(p.Payload()), "hello, ")
		}},
		{"truncated gre", packet.LinkIPv4, ip4(v4a, v4b, 47, gre(0x2000, 0x0800, 0, 0), ip4opt{}), fails(packet.MalformedTruncatedTunnel)},
		{"truncated erspan", packet.LinkIPv4, ip4(v4a, v4b, 47, cat(gre(0x1000, 0x88be, 0, 0, 0, 9), []byte{0x10, 0}), ip4opt{}), fails(packet.MalformedTruncatedTunnel)},
		{"truncated vxlan", packet.LinkIPv4, ip4(v4a, v4b, 17, udp(1, 4789, []byte{8, 0, 0}), ip4opt{}), fails(packet.MalformedTruncatedTunnel)},
		{"geneve options past end", packet.LinkIPv4, ip4(v4a, v4b, 17, udp(1, 6081, []byte{0x3f, 0, 0x65, 0x58, 0, 0, 1, 0}), ip4opt{}), fails(packet.MalformedTruncatedTunnel)},
		{"vxlan inner truncated", packet.LinkIPv4, ip4(v4a, v4b, 17, udp(51000, 4789, cat(vxlanHdr(1), eth(0x0800)[:6])), ip4opt{}), both(fails(packet.MalformedTruncatedLink), inner(packet.TunnelVXLAN, v4a, v4b))},
	}
}

func quoteCases() []tcase {
	tcpq := ip4(v4b, v4d, 6, tcp(40000, 443, packet.TCPSyn, nil), ip4opt{flags: 0x4000, ttl: 1})
	udp6q := ip6(v6b, v6d, 44, cat(frag6(17, 0, true, 9), udp(5353, 53, payload)))
	return []tcase{
		{"frag needed quoting tcp", packet.LinkIPv4, ip4(v4c, v4b, 1, icmp(3, 4, 1400, tcpq), ip4opt{}), func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
			q := m.Quoted()
			eq(t, "Err", m.Err, packet.MalformedNone)
			eq(t, "MTU", m.ICMPRest&0xffff, 1400)
			eq(t, "Quote", q, packet.Quote{Present: true, IPVersion: 4, Src: v4b, Dst: v4d, Proto: 6, SrcPort: 40000, DstPort: 443, HasPorts: true, Seq: 1000, HasSeq: true, TTL: 1, IPLen: 40, DF: true})
		}},
		{"redirect gateway, quote with options", packet.LinkIPv4, ip4(v4c, v4b, 1, icmp(5, 1, 0xc0000201, ip4(v4b, v4d, 17, udp(1, 2, nil), ip4opt{options: []byte{1, 1, 1, 0}})), ip4opt{}), func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
			eq(t, "gateway", m.ICMPRest, 0xc0000201)
			eq(t, "ports", [3]any{m.Quoted().HasPorts, m.Quoted().SrcPort, m.Quoted().DstPort}, [3]any{true, uint16(1), uint16(2)})
		}},
		{"parameter problem pointer", packet.LinkIPv4, ip4(v4c, v4b, 1, icmp(12, 0, 20<<24, tcpq), ip4opt{}), func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
			eq(t, "pointer", m.ICMPRest>>24, 20)
			eq(t, "Quote.Present", m.Quoted().Present, true)
		}},
		{"time exceeded quoting echo", packet.LinkIPv4, ip4(v4c, v4b, 1, icmp(11, 0, 0, ip4(v4b, v4d, 1, icmp(8, 0, 0x00420003, payload), ip4opt{})), ip4opt{}), func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
			q := m.Quoted()
			eq(t, "echo", [4]any{q.HasEcho, q.ICMPType, q.ICMPID, q.ICMPSeq}, [4]any{true, uint8(8), uint16(0x42), uint16(3)})
			eq(t, "Truncated", q.Truncated, false)
		}},
		{"quote cut after ports", packet.LinkIPv4, ip4(v4c, v4b, 1, icmp(3, 3, 0, tcpq[:24]), ip4opt{}), func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
			q := m.Quoted()
			eq(t, "Err", m.Err, packet.MalformedNone)
			eq(t, "HasPorts/HasSeq/Truncated", [3]bool{q.HasPorts, q.HasSeq, q.Truncated}, [3]bool{true, false, true})
		}},
		{"quote cut in ip header", packet.LinkIPv4, ip4(v4c, v4b, 1, icmp(3, 3, 0, tcpq[:15]), ip4opt{}), func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
			q := m.Quoted()
			eq(t, "Err", m.Err, packet.MalformedNone)
			eq(t, "Present/Truncated", [2]bool{q.Present, q.Truncated}, [2]bool{false, true})
			if _, ok := packet.ShardKey(m); !ok {
				t.Error("the outer error must still have a flow key")
			}
		}},
		{"quote of a later fragment", packet.LinkIPv4, ip4(v4c, v4b, 1, icmp(11, 1, 0, ip4(v4b, v4d, 17, payload, ip4opt{flags: 0x2000 | 10})), ip4opt{}), func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
			q := m.Quoted()
			eq(t, "frag", [3]any{q.MF, q.FragOff, q.HasPorts}, [3]any{true, uint16(80), false})
		}},
		{"no quote", packet.LinkIPv4, ip4(v4c, v4b, 1, icmp(3, 1, 0, nil), ip4opt{}), func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
			eq(t, "Quote", m.Quoted(), packet.Quote{})
			eq(t, "Err", m.Err, packet.MalformedNone)
		}},
		{"garbage quote", packet.LinkIPv4, ip4(v4c, v4b, 1, icmp(3, 1, 0, []byte{0x45, 0xff}), ip4opt{}), func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
			eq(t, "Err", m.Err, packet.MalformedNone)
			eq(t, "Present", m.Quoted().Present, false)
		}},
		{"icmpv6 unreachable quoting fragment header and udp", packet.LinkIPv6, ip6(v6c, v6b, 58, icmp(1, 4, 0, udp6q)), func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
			q := m.Quoted()
			eq(t, "Quote", q, packet.Quote{Present: true, IPVersion: 6, Src: v6b, Dst: v6d, Proto: 17, SrcPort: 5353, DstPort: 53, HasPorts: true, TTL: 64, IPLen: uint16(len(udp6q)), MF: true})
		}},
		{"packet too big mtu", packet.LinkIPv6, ip6(v6c, v6b, 58, icmp(2, 0, 1280, udp6q)), func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
			eq(t, "MTU", m.ICMPRest, 1280)
		}},
		{"icmpv6 quote cut in extension header", packet.LinkIPv6, ip6(v6c, v6b, 58, icmp(3, 0, 0, udp6q[:44])), func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
			q := m.Quoted()
			eq(t, "Present/Truncated/HasPorts", [3]bool{q.Present, q.Truncated, q.HasPorts}, [3]bool{true, true, false})
		}},
		{"icmpv6 quoting echo", packet.LinkIPv6, ip6(v6c, v6b, 58, icmp(3, 0, 0, ip6(v6b, v6d, 58, icmp(128, 0, 0x00070008, nil)))), func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
			q := m.Quoted()
			eq(t, "echo", [3]any{q.HasEcho, q.ICMPID, q.ICMPSeq}, [3]any{true, uint16(7), uint16(8)})
			k, _ := packet.ShardKey(m)
			eq(t, "shard key", k.Src, v6b)
		}},
		{"icmp quote bounded by ip length", packet.LinkEthernet, cat(eth(0x0800), ip4(v4c, v4b, 1, icmp(3, 3, 0, tcpq[:22]), ip4opt{}), make([]byte, 10)), func(t *testing.T, m *packet.Meta, _ *packet.Packet) {
			// Ethernet padding after the IP packet must not be read as
			// the rest of the quote.
			eq(t, "HasPorts/Truncated", [2]bool{m.Quoted().HasPorts, m.Quoted().Truncated}, [2]bool{false, true})
		}},
	}
}

func TestTunnel(t *testing.T) { runCases(t, tunnelCases()) }
func TestQuote(t *testing.T)  { runCases(t, quoteCases()) }
