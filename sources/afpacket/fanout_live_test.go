package afpacket

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/sources/afpacket/netnstest"
)

// flowOf names the direction-independent 5-tuple of an Ethernet frame (any
// number of in-band VLAN tags) or, for an ICMP/ICMPv6 error, of the packet
// it quotes; isErr says which. ok is false for anything but UDP and errors.
func flowOf(b []byte) (id string, isErr, ok bool) {
	if len(b) < 14 {
		return "", false, false
	}
	et, b := binary.BigEndian.Uint16(b[12:]), b[14:]
	for (et == 0x8100 || et == 0x88a8) && len(b) >= 4 {
		et, b = binary.BigEndian.Uint16(b[2:]), b[4:]
	}
	ipOf := func(b []byte) (src, dst netip.Addr, proto uint8, l4 []byte, ok bool) {
		switch {
		case len(b) >= 20 && b[0]>>4 == 4:
			ihl := int(b[0]&0xf) * 4
			return netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20])), b[9], b[ihl:], true
		case len(b) >= 40 && b[0]>>4 == 6:
			return netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40])), b[6], b[40:], true
		}
		return src, dst, 0, nil, false
	}
	name := func(src, dst netip.Addr, l4 []byte) string {
		a := netip.AddrPortFrom(src, binary.BigEndian.Uint16(l4)).String()
		z := netip.AddrPortFrom(dst, binary.BigEndian.Uint16(l4[2:])).String()
		if a > z {
			a, z = z, a
		}
		return a + " " + z
	}
	if et != 0x0800 && et != 0x86dd {
		return "", false, false
	}
	src, dst, proto, l4, ok := ipOf(b)
	switch {
	case !ok || len(l4) < 8:
		return "", false, false
	case proto == 17:
		return name(src, dst, l4), false, true
	case proto == 1 && l4[0] == 3, proto == 58 && l4[0] == 1:
		qs, qd, qp, ql4, ok := ipOf(l4[8:])
		if !ok || qp != 17 || len(ql4) < 4 {
			return "", false, false
		}
		return name(qs, qd, ql4), true, true
	}
	return "", false, false
}

// TestFanoutICMPErrors sends UDP datagrams to 24 closed ports (IPv4 and
// IPv6) and captures them and the port-unreachables they draw with a
// fanout group of 2 on the sender's veth; and the same as 802.1Q-tagged
// frames (VLAN 5) written on raw sockets at both ends, the datagrams with
// the tag in the data (outgoing), the errors with the tag the receiving
// veth moves into skb metadata (incoming; this kernel may have no VLAN
// devices). In eBPF mode every error must reach the socket that got
// the datagram it quotes, while the flows use both sockets. In hash mode,
// the kernel hashes each error by its own addresses: the check must see
// errors on the other socket (else it would prove nothing).
func TestFanoutICMPErrors(t *testing.T) {
	np := netnstest.New(t)
	// No ICMP rate limits on the responder.
	for _, s := range []string{"net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0", "net.ipv4.icmp_msgs_per_sec=100000", "net.ipv4.icmp_msgs_burst=100000"} {
		_ = exec.Command("ip", "netns", "exec", np.NS[1], "sysctl", "-qw", s).Run() // best effort: some are not per namespace
	}
	dsts := []string{np.V4[1].String(), np.V6[1].String()}
	const nPorts = 24
	// The tagged exchanges: ns0's datagram, then ns1's error about it.
	a4, b4 := netip.MustParseAddr("10.78.0.1"), netip.MustParseAddr("10.78.0.2")
	a6, b6 := netip.MustParseAddr("fd00:78::1"), netip.MustParseAddr("fd00:78::2")
	var tagged [2][][]byte
	for p := range nPorts {
		sp, dp := uint16(41000+p), uint16(33434+p)
		q4, q6 := ipv4(a4, b4, 17, 0, ports(sp, dp, 5)), ipv6(a6, b6, 17, ports(sp, dp, 5))
		tagged[0] = append(tagged[0], ether(q4, 5, false), ether(q6, 5, false))
		tagged[1] = append(tagged[1], ether(ipv4(b4, a4, 1, 0, icmp(3, 3, 0, q4)), 5, false), ether(ipv6(b6, a6, 58, icmp(1, 4, 0, q6)), 5, false))
	}
	sendRaw := func(side int, frame []byte) error {
		return np.Do(side, func() error {
			fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			to := &unix.SockaddrLinklayer{Ifindex: np.IfIndex[side], Halen: 6, Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
			return unix.Sendto(fd, frame, 0, to)
		})
	}

	for _, mode := range []string{FanoutEBPF, FanoutHash} {
		t.Run(mode, func(t *testing.T) {
			srcs, err := NewGroup(Config{Interface: np.Dev[0], Netns: np.Path(0), Fanout: 2,
				FanoutHash: mode == FanoutHash, BlockTimeout: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range srcs {
				if s.FanoutMode() != mode {
					t.Fatalf("fanout mode %q, want %q", s.FanoutMode(), mode)
				}
			}
			c := netnstest.Start(t, srcs[0], srcs[1])
			err = np.Do(0, func() error {
				for _, d := range dsts {
					for p := range nPorts {
						u, err := net.Dial("udp", net.JoinHostPort(d, fmt.Sprint(33434+p)))
						if err != nil {
							return err
						}
						u.Write([]byte("probe"))
						u.Close()
						time.Sleep(time.Millisecond)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for i := range tagged[0] {
				if err := sendRaw(0, tagged[0][i]); err != nil {
					t.Fatal(err)
				}
				if err := sendRaw(1, tagged[1][i]); err != nil {
					t.Fatal(err)
				}
			}
			count := func(p [][]packet.Packet) (flows, errs int) {
				for _, pk := range append(append([]packet.Packet(nil), p[0]...), p[1]...) {
					if _, isErr, ok := flowOf(pk.Data); ok && isErr {
						errs++
					} else if ok {
						flows++
					}
				}
				return
			}
			want := (len(dsts) + 2) * nPorts
			c.WaitFor(t, "the datagrams and their errors", func(p [][]packet.Packet) bool {
				f, e := count(p)
				return f >= want && e >= want
			})
			if err := c.Stop(); err != nil {
				t.Fatal(err)
			}
			owner := map[string]int{}
			var nTagged int
			for i := range 2 {
				for _, p := range c.Packets(i) {
					if id, isErr, ok := flowOf(p.Data); ok && !isErr {
						if o, dup := owner[id]; dup && o != i {
							t.Fatalf("flow %s on both sockets", id)
						}
						owner[id] = i
						if binary.BigEndian.Uint16(p.Data[12:]) == 0x8100 {
							nTagged++
						}
					}
				}
			}
			if len(owner) != want || nTagged != 2*nPorts {
				t.Fatalf("%d flows (%d tagged datagrams), want %d (%d)", len(owner), nTagged, want, 2*nPorts)
			}
			var elsewhere, errs int
			var used [2]int
			for i := range 2 {
				for _, p := range c.Packets(i) {
					id, isErr, ok := flowOf(p.Data)
					if !ok || !isErr {
						continue
					}
					errs++
					o, found := owner[id]
					if !found {
						t.Fatalf("error quoting an unknown flow %s", id)
					}
					used[o]++
					if o != i {
						elsewhere++
					}
				}
			}
			t.Logf("%s: %d errors; flows' sockets %v; %d errors on another socket than their flow", mode, errs, used, elsewhere)
			switch {
			case errs != want:
				t.Fatalf("%d errors, want %d", errs, want)
			case used[0] == 0 || used[1] == 0:
				t.Fatalf("flows did not spread over both sockets: %v", used)
			case mode == FanoutEBPF && elsewhere != 0:
				t.Fatalf("%d of %d errors reached another socket than the flow they quote", elsewhere, errs)
			case mode == FanoutHash && elsewhere == 0:
				t.Fatalf("hash mode put every error with its flow: the test cannot tell the modes apart")
			}
		})
	}
}

// TestFanoutFallbackToHash re-runs itself in a test namespace without
// CAP_BPF and CAP_SYS_ADMIN (so the program cannot be loaded) and checks
// that the group is opened in hash mode and that this is logged.
func TestFanoutFallbackToHash(t *testing.T) {
	if os.Getenv("PKTPIPE_TEST_CHILD") == "nobpf" {
		var log bytes.Buffer
		srcs, err := NewGroup(Config{Interface: os.Getenv("PKTPIPE_TEST_IF"), Fanout: 2, Log: slog.New(slog.NewTextHandler(&log, nil))})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range srcs {
			s.Close()
			if s.FanoutMode() != FanoutHash {
				t.Fatalf("fanout mode %q without CAP_BPF, want %q", s.FanoutMode(), FanoutHash)
			}
		}
		if !strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), "using PACKET_FANOUT_HASH") {
			t.Fatalf("fallback not logged: %q", log.String())
		}
		t.Log(log.String())
		return
	}
	np := netnstest.New(t)
	setpriv := testenv.NeedCommand(t, "setpriv")
	cmd := np.Command(0, setpriv, "--bounding-set=-bpf,-sys_admin", os.Args[0], "-test.run=^TestFanoutFallbackToHash$", "-test.v")
	cmd.Env = append(os.Environ(), "PKTPIPE_TEST_CHILD=nobpf", "PKTPIPE_TEST_IF="+np.Dev[0])
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
