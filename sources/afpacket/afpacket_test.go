package afpacket_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sources/afpacket"
	"github.com/pktpipe/pktpipe/sources/afpacket/netnstest"
)

func TestPing(t *testing.T) {
	np := netnstest.New(t)
	testenv.NeedCommand(t, "ping")
	for _, v := range []string{"4", "6"} {
		t.Run("IPv"+v, func(t *testing.T) {
			reg := stats.NewRegistry()
			src, err := afpacket.New(afpacket.Config{Interface: np.Dev[0], Netns: np.Path(0), Stats: reg})
			if err != nil {
				t.Fatal(err)
			}
			c := netnstest.Start(t, src)
			dst := np.V4[1].String()
			if v == "6" {
				dst = np.V6[1].String()
			}
			np.Run(t, 0, "ping", "-"+v, "-c", "5", "-i", "0.2", "-W", "2", dst)
			c.WaitFor(t, "10 echo packets", func(p [][]packet.Packet) bool { r, s := netnstest.CountEcho(p[0]); return r+s >= 10 })
			if err := c.Stop(); err != nil {
				t.Fatal(err)
			}
			for i, p := range c.Packets(0) {
				if p.Index != uint64(i+1) { // pcap_cnt: the position in this source's stream
					t.Errorf("packet %d has Index %d", i+1, p.Index)
				}
			}
			netnstest.CheckPings(t, np, c.Packets(0), 5)
			id := fmt.Sprintf(`pktpipe_afpacket_packets_total{interface="%s",socket="0"}`, np.Dev[0])
			if n, _ := reg.Value(id); n < 10 {
				t.Errorf("%s = %v, want >= 10", id, n)
			}
			if len(reg.Losses()) != 0 {
				t.Errorf("losses: %v", reg.Losses())
			}
		})
	}
}

// udpOnly is a hand-assembled classic BPF program accepting IPv4/IPv6 UDP
// over untagged Ethernet (IPv6 without extension headers).
func udpOnly(t *testing.T) []bpf.RawInstruction {
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x0800, SkipFalse: 3},
		bpf.LoadAbsolute{Off: 23, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 17, SkipTrue: 4, SkipFalse: 5},
		bpf.RetConstant{Val: 0}, // unreachable; keeps the jumps readable
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x86dd, SkipFalse: 3},
		bpf.LoadAbsolute{Off: 20, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 17, SkipFalse: 1},
		bpf.RetConstant{Val: 0xffffffff},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	return prog
}

func TestFilterUDPOnly(t *testing.T) {
	np := netnstest.New(t)
	testenv.NeedCommand(t, "ping")
	const snap = 100
	src, err := afpacket.New(afpacket.Config{Interface: np.Dev[0], Netns: np.Path(0), Filter: udpOnly(t), Snaplen: snap})
	if err != nil {
		t.Fatal(err)
	}
	c := netnstest.Start(t, src)
	np.Run(t, 0, "ping", "-c", "2", "-i", "0.2", "-W", "2", np.V4[1].String())
	const n = 20
	np.SendUDP(t, 0, np.V4, 1, n, 400)
	np.SendUDP(t, 0, np.V6, 1, n, 400)
	c.WaitFor(t, "the UDP datagrams", func(p [][]packet.Packet) bool { return len(p[0]) >= 2*n })
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	pkts := c.Packets(0)
	if len(pkts) != 2*n {
		t.Fatalf("captured %d packets, want exactly %d UDP datagrams", len(pkts), 2*n)
	}
	for _, p := range pkts {
		in, ok := netnstest.Parse(p.Data)
		if !ok || in.Proto != 17 {
			t.Fatalf("non-UDP packet passed the filter: %+v", in)
		}
		if len(p.Data) != snap || p.OrigLen <= snap {
			t.Fatalf("captured %d of %d bytes, want %d of more", len(p.Data), p.OrigLen, snap)
		}
	}
}

func TestFanout(t *testing.T) {
	np := netnstest.New(t)
	srcs, err := afpacket.NewGroup(afpacket.Config{Interface: np.Dev[0], Netns: np.Path(0), Fanout: 2, Filter: udpOnly(t)})
	if err != nil {
		t.Fatal(err)
	}
	if len(srcs) != 2 {
		t.Fatalf("%d sources, want 2", len(srcs))
	}
	c := netnstest.Start(t, srcs[0], srcs[1])
	const flows, per = 16, 25
	np.SendUDP(t, 0, np.V4, flows, per, 100)
	total := func(p [][]packet.Packet) int { return len(p[0]) + len(p[1]) }
	c.WaitFor(t, "every datagram", func(p [][]packet.Packet) bool { return total(p) >= flows*per })
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	got := [][]packet.Packet{c.Packets(0), c.Packets(1)}
	if n := total(got); n != flows*per {
		t.Fatalf("fanout delivered %d packets, want exactly %d", n, flows*per)
	}
	owner := map[string]int{}
	for i, pkts := range got {
		for _, p := range pkts {
			in, _ := netnstest.Parse(p.Data)
			id := in.FlowID()
			if o, ok := owner[id]; ok && o != i {
				t.Fatalf("flow %s seen on sockets %d and %d", id, o, i)
			}
			owner[id] = i
		}
	}
	if len(owner) != flows {
		t.Fatalf("%d flows, want %d", len(owner), flows)
	}
	t.Logf("socket 0: %d packets, socket 1: %d packets", len(got[0]), len(got[1]))
}

func TestCancel(t *testing.T) {
	np := netnstest.New(t)
	src, err := afpacket.New(afpacket.Config{Interface: np.Dev[0], Netns: np.Path(0), BlockTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan *packet.Batch, 64)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, packet.NewPool(0, 0), out) }()
	cancel()
	// Bounded only so a hung Run fails the test; the wake-up is an
	// eventfd, not the block timeout.
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if err := src.Run(context.Background(), packet.NewPool(0, 0), out); err == nil {
		t.Fatal("second Run succeeded")
	}
}

func TestBadInterface(t *testing.T) {
	testenv.NeedRoot(t)
	_, err := afpacket.New(afpacket.Config{Interface: "pp-does-not-exist"})
	if err == nil {
		t.Fatal("no error for a missing interface")
	}
}

// TestNoCapNetRaw re-runs itself without CAP_NET_RAW and checks that the
// error names the missing capability.
func TestNoCapNetRaw(t *testing.T) {
	if testenv.InCapsChild() {
		_, err := afpacket.New(afpacket.Config{Interface: "lo"})
		if err == nil || !strings.Contains(err.Error(), "CAP_NET_RAW") {
			t.Fatalf("error %v does not name CAP_NET_RAW", err)
		}
		t.Log(err)
		return
	}
	t.Log(testenv.WithoutCaps(t, "TestNoCapNetRaw", "-net_raw"))
}

// TestVLANTagRestored sends 802.1Q-tagged frames across the veth pair and
// checks that the tag, which the receiving kernel moves out of the frame
// into the ring header, is back in the captured bytes.
func TestVLANTagRestored(t *testing.T) {
	np := netnstest.New(t)
	src, err := afpacket.New(afpacket.Config{Interface: np.Dev[1], Netns: np.Path(1)})
	if err != nil {
		t.Fatal(err)
	}
	c := netnstest.Start(t, src)
	// Broadcast, 802.1Q VLAN 5 priority 3, IPv4/UDP 10.77.0.1 -> 10.77.0.2:7777.
	frame := []byte{
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0x77, 0, 1,
		0x81, 0x00, 0x60, 0x05, 0x08, 0x00,
		0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 77, 0, 1, 10, 77, 0, 2,
		0x4e, 0x20, 0x1e, 0x61, 0, 8, 0, 0,
	}
	const n = 3
	err = np.Do(0, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Ifindex: np.IfIndex[0], Halen: 6, Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
		for range n {
			if err := unix.Sendto(fd, frame, 0, to); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tagged := func(pkts []packet.Packet) (k int) {
		for _, p := range pkts {
			if bytes.Equal(p.Data, frame) && int(p.OrigLen) == len(frame) {
				k++
			}
		}
		return k
	}
	c.WaitFor(t, "the tagged frames", func(p [][]packet.Packet) bool { return tagged(p[0]) >= n })
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if k := tagged(c.Packets(0)); k != n {
		t.Fatalf("%d frames with the tag restored, want %d", k, n)
	}
}
