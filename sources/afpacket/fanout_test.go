package afpacket

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/pktpipe/pktpipe/internal/testenv"
)

// Frame builders for the fanout program's unit test. Checksums are left
// zero: the program does not read them.

func ipv4(src, dst netip.Addr, proto uint8, flags uint16, payload []byte) []byte {
	h := make([]byte, 20, 20+len(payload))
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(h[6:], flags)
	h[8], h[9] = 64, proto
	s, d := src.As4(), dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	return append(h, payload...)
}

func ipv6(src, dst netip.Addr, nh uint8, payload []byte) []byte {
	h := make([]byte, 40, 40+len(payload))
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
	h[6], h[7] = nh, 64
	s, d := src.As16(), dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return append(h, payload...)
}

func ports(sp, dp uint16, rest int) []byte {
	b := make([]byte, 8+rest)
	binary.BigEndian.PutUint16(b, sp)
	binary.BigEndian.PutUint16(b[2:], dp)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	return b
}

func icmp(typ, code uint8, id uint16, body []byte) []byte {
	b := make([]byte, 8, 8+len(body))
	b[0], b[1] = typ, code
	binary.BigEndian.PutUint16(b[4:], id)
	return append(b, body...)
}

// ether wraps an IP packet in Ethernet, with an in-band 802.1Q tag (and an
// outer 802.1ad one for qinq) when vlan is not 0.
func ether(ip []byte, vlan uint16, qinq bool) []byte {
	f := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1}
	if qinq {
		f = append(f, 0x88, 0xa8, 0, 9)
	}
	if vlan != 0 {
		f = append(f, 0x81, 0x00, byte(vlan>>8), byte(vlan))
	}
	if ip[0]>>4 == 4 {
		f = append(f, 0x08, 0x00)
	} else {
		f = append(f, 0x86, 0xdd)
	}
	return append(f, ip...)
}

func runFanout(t *testing.T, prog *ebpf.Program, frame []byte) uint32 {
	t.Helper()
	ret, err := prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatal(err)
	}
	return ret
}

// TestFanoutProgram runs bpf/fanout.c on crafted frames (BPF_PROG_TEST_RUN
// gives a socket filter the frame as the kernel's receive path does: the
// Ethernet header pulled, an in-band tag left in the data) and checks that
// a flow's two directions and the ICMP errors quoting it, from the far end
// or from a router, get the same return value, so the same socket for
// any group size.
func TestFanoutProgram(t *testing.T) {
	testenv.NeedRoot(t)
	prog, err := loadFanoutProg(true)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()

	a4, b4, r4 := netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("10.77.0.2"), netip.MustParseAddr("10.77.9.254")
	a6, b6, r6 := netip.MustParseAddr("fd00:77::1"), netip.MustParseAddr("fd00:77::2"), netip.MustParseAddr("fd00:77:9::fe")

	type flow struct {
		name     string
		fwd, rev []byte   // A->B and B->A IP packets
		errs     [][]byte // ICMP errors quoting fwd (or rev)
	}
	var flows []flow
	for i := range 8 {
		sp, dp := uint16(40000+i*7), uint16(33434+i)
		// UDP: port unreachable from B, and TTL exceeded from a router.
		q4 := ipv4(a4, b4, 17, 0, ports(sp, dp, 20))
		flows = append(flows, flow{
			name: fmt.Sprintf("udp4/%d", dp),
			fwd:  q4, rev: ipv4(b4, a4, 17, 0, ports(dp, sp, 3)),
			errs: [][]byte{
				ipv4(b4, a4, 1, 0, icmp(3, 3, 0, q4)),
				ipv4(r4, a4, 1, 0, icmp(11, 0, 0, q4[:28])), // header + 8 bytes only
			},
		})
		q6 := ipv6(a6, b6, 17, ports(sp, dp, 20))
		flows = append(flows, flow{
			name: fmt.Sprintf("udp6/%d", dp),
			fwd:  q6, rev: ipv6(b6, a6, 17, ports(dp, sp, 3)),
			errs: [][]byte{
				ipv6(b6, a6, 58, icmp(1, 4, 0, q6)),
				ipv6(r6, a6, 58, icmp(3, 0, 0, q6[:48])),
			},
		})
		// TCP: an error about the server's reply direction (quoting B->A).
		t4r := ipv4(b4, a4, 6, 0x4000, ports(443, sp, 12))
		flows = append(flows, flow{
			name: fmt.Sprintf("tcp4/%d", sp),
			fwd:  ipv4(a4, b4, 6, 0x4000, ports(sp, 443, 12)), rev: t4r,
			errs: [][]byte{ipv4(r4, b4, 1, 0, icmp(3, 4, 1400, t4r[:28]))},
		})
		// Ping: echo request/reply, and an error quoting the request.
		e6 := ipv6(a6, b6, 58, icmp(128, 0, uint16(100+i), make([]byte, 16)))
		flows = append(flows, flow{
			name: fmt.Sprintf("ping6/%d", 100+i),
			fwd:  e6, rev: ipv6(b6, a6, 58, icmp(129, 0, uint16(100+i), make([]byte, 16))),
			errs: [][]byte{ipv6(r6, a6, 58, icmp(3, 0, 0, e6))},
		})
		e4 := ipv4(a4, b4, 1, 0, icmp(8, 0, uint16(100+i), make([]byte, 16)))
		flows = append(flows, flow{
			name: fmt.Sprintf("ping4/%d", 100+i),
			fwd:  e4, rev: ipv4(b4, a4, 1, 0, icmp(0, 0, uint16(100+i), make([]byte, 16))),
			errs: [][]byte{ipv4(r4, a4, 1, 0, icmp(11, 0, 0, e4[:28]))},
		})
	}

	sizes := []uint32{2, 3, 4}
	// seen[tagging][n] is the set of sockets of n the flows went to.
	seen := map[string]map[uint32]map[uint32]bool{}
	for _, f := range flows {
		for _, tag := range []struct {
			name       string
			vlan       uint16
			qinq       bool
			errVLAN    uint16 // the error may come tagged differently (or not)
			errTagless bool
		}{
			{"untagged", 0, false, 0, false},
			{"vlan", 5, false, 5, false},
			{"qinq", 5, true, 5, false},
			{"vlan/error-untagged", 5, false, 0, true},
		} {
			if seen[tag.name] == nil {
				seen[tag.name] = map[uint32]map[uint32]bool{2: {}, 3: {}, 4: {}}
			}
			t.Run(f.name+"/"+tag.name, func(t *testing.T) {
				want := runFanout(t, prog, ether(f.fwd, tag.vlan, tag.qinq))
				check := func(what string, ret uint32) {
					t.Helper()
					for _, n := range sizes {
						if ret%n != want%n {
							t.Errorf("%s: socket %d of %d, the flow's is %d (ret %#x vs %#x)", what, ret%n, n, want%n, ret, want)
						}
					}
				}
				check("B->A", runFanout(t, prog, ether(f.rev, tag.vlan, tag.qinq)))
				for i, e := range f.errs {
					if tag.errTagless {
						check(fmt.Sprintf("error %d", i), runFanout(t, prog, ether(e, 0, false)))
					} else {
						check(fmt.Sprintf("error %d", i), runFanout(t, prog, ether(e, tag.errVLAN, tag.qinq)))
					}
				}
				for _, n := range sizes {
					seen[tag.name][n][want%n] = true
				}
			})
		}
	}
	// A constant would pass the checks above: the flows must spread.
	for name, byN := range seen {
		for n, s := range byN {
			if len(s) != int(n) {
				t.Errorf("%s: %d flows use %d of %d sockets", name, len(flows), len(s), n)
			}
		}
	}

	t.Run("fragments", func(t *testing.T) {
		// IPv4 fragments that got past PACKET_FANOUT_FLAG_DEFRAG, and IPv6
		// fragments: all of one datagram together (addresses and
		// protocol), and an error quoting the first one with them.
		first4 := ipv4(a4, b4, 17, 0x2000, ports(5000, 53, 1400))
		later4 := ipv4(a4, b4, 17, 0x00af, make([]byte, 600))
		want := runFanout(t, prog, ether(first4, 0, false))
		if got := runFanout(t, prog, ether(later4, 0, false)); got != want {
			t.Errorf("IPv4 fragments: %#x and %#x", want, got)
		}
		frag := func(off uint16, more bool, body []byte) []byte {
			h := []byte{17, 0, byte(off >> 5), byte(off<<3) & 0xf8, 0, 0, 0x12, 0x34}
			if more {
				h[3] |= 1
			}
			return ipv6(a6, b6, 44, append(h, body...))
		}
		first6 := frag(0, true, ports(5000, 53, 1400))
		want = runFanout(t, prog, ether(first6, 0, false))
		for _, p := range [][]byte{
			frag(176, false, make([]byte, 600)),
			ipv6(b6, a6, 58, icmp(1, 4, 0, first6[:40+8+8])),
		} {
			if got := runFanout(t, prog, ether(p, 0, false)); got != want {
				t.Errorf("IPv6 fragment or error quoting one: %#x, the first fragment %#x", got, want)
			}
		}
	})
}

// TestFanoutProgramRawIP checks the variant for devices without a link
// header. BPF_PROG_TEST_RUN always parses an Ethernet header, so the IP
// packet is preceded by 14 bytes the kernel pulls: the data it runs on is
// the IP packet, as on a tun device.
func TestFanoutProgramRawIP(t *testing.T) {
	testenv.NeedRoot(t)
	prog, err := loadFanoutProg(false)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	a, b := netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("10.77.0.2")
	q := ipv4(a, b, 17, 0, ports(40000, 9, 4))
	pad := func(p []byte) []byte { return append(make([]byte, 14), p...) }
	fwd := runFanout(t, prog, pad(q))
	rev := runFanout(t, prog, pad(ipv4(b, a, 17, 0, ports(9, 40000, 4))))
	e := runFanout(t, prog, pad(ipv4(b, a, 1, 0, icmp(3, 3, 0, q))))
	other := runFanout(t, prog, pad(ipv4(a, b, 17, 0, ports(40001, 9, 4))))
	if fwd != rev || fwd != e {
		t.Errorf("A->B %#x, B->A %#x, error %#x: want one value", fwd, rev, e)
	}
	if fwd == other || fwd == 0 {
		t.Errorf("different flows hash alike (%#x, %#x)", fwd, other)
	}
}
