package ebpf_test

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	cebpf "github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sources/afpacket"
	"github.com/pktpipe/pktpipe/sources/afpacket/netnstest"
	"github.com/pktpipe/pktpipe/sources/ebpf"
)

// modes are the attach modes every capture test runs in: TCX, and the
// clsact/cls_bpf fallback forced on this kernel.
var modes = []string{ebpf.AttachTCX, ebpf.AttachTC}

// tcState lists the tc filters on both hooks of Dev[0] and whether it has
// a clsact qdisc.
func tcState(t *testing.T, np *netnstest.Pair) (filters string, clsact bool) {
	t.Helper()
	filters = np.Run(t, 0, "tc", "filter", "show", "dev", np.Dev[0], "ingress") +
		np.Run(t, 0, "tc", "filter", "show", "dev", np.Dev[0], "egress")
	return strings.TrimSpace(filters), strings.Contains(np.Run(t, 0, "tc", "qdisc", "show", "dev", np.Dev[0]), "clsact")
}

// checkClean fails unless Dev[0] has neither tc filters nor a clsact qdisc.
func checkClean(t *testing.T, np *netnstest.Pair) {
	t.Helper()
	if f, q := tcState(t, np); f != "" || q {
		t.Fatalf("left on %s: clsact qdisc %v, filters:\n%s", np.Dev[0], q, f)
	}
}

func TestPing(t *testing.T) {
	np := netnstest.New(t)
	testenv.NeedCommand(t, "ping")
	testenv.NeedCommand(t, "tc")
	for _, mode := range modes {
		for _, v := range []string{"4", "6"} {
			t.Run(mode+"/IPv"+v, func(t *testing.T) { pingCase(t, np, mode, v) })
		}
	}
}

func pingCase(t *testing.T, np *netnstest.Pair, mode, v string) {
	reg := stats.NewRegistry()
	src, err := ebpf.New(ebpf.Config{Interface: np.Dev[0], Netns: np.Path(0), Stats: reg, Attach: mode})
	if err != nil {
		t.Fatal(err)
	}
	if src.AttachMode() != mode {
		t.Fatalf("attached with %s, want %s", src.AttachMode(), mode)
	}
	if mode == ebpf.AttachTC {
		f, q := tcState(t, np)
		if !q || strings.Count(f, ebpf.TCNamePrefix) != 2 || !strings.Contains(f, "direct-action") {
			t.Fatalf("tc mode: clsact %v, filters:\n%s", q, f)
		}
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
	netnstest.CheckPings(t, np, c.Packets(0), 5)
	if l := reg.Losses(); len(l) != 0 {
		t.Errorf("losses: %v", l)
	}
	checkClean(t, np)
}

// TestTCPAgainstAFPacketAndTcpdump captures one TCP conversation with the
// eBPF source, the AF_PACKET source and tcpdump at once, and checks that
// all three saw the same packets with the same bytes, in the same order in
// each direction.
func TestTCPAgainstAFPacketAndTcpdump(t *testing.T) {
	np := netnstest.New(t)
	testenv.NeedCommand(t, "tcpdump")
	testenv.NeedCommand(t, "tc")
	for _, mode := range modes {
		for _, fam := range []int{4, 6} {
			t.Run(fmt.Sprintf("%s/IPv%d", mode, fam), func(t *testing.T) { tcpCase(t, np, mode, fam) })
		}
	}
}

func tcpCase(t *testing.T, np *netnstest.Pair, mode string, fam int) {
	addr := np.V4
	if fam == 6 {
		addr = np.V6
	}
	var ln net.Listener
	if err := np.Do(1, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(addr[1], 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	pcapPath := filepath.Join(t.TempDir(), "conv.pcap")
	stopDump := startTcpdump(t, np, np.Dev[0], pcapPath, fmt.Sprintf("tcp port %d", port))
	eb, err := ebpf.New(ebpf.Config{Interface: np.Dev[0], Netns: np.Path(0), Attach: mode, Filter: ebpf.KernelFilter{Proto: 6, Port: uint16(port)}})
	if err != nil {
		t.Fatal(err)
	}
	af, err := afpacket.New(afpacket.Config{Interface: np.Dev[0], Netns: np.Path(0)})
	if err != nil {
		t.Fatal(err)
	}
	c := netnstest.Start(t, eb, af)

	request := bytes.Repeat([]byte("pktpipe-request-"), 250) // 4000 bytes: more than one MSS
	reply := []byte("pktpipe-reply")
	served := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer conn.Close()
		got, err := io.ReadAll(conn)
		if err == nil && !bytes.Equal(got, request) {
			err = fmt.Errorf("server got %d bytes, want %d", len(got), len(request))
		}
		if err == nil {
			_, err = conn.Write(reply)
		}
		served <- err
	}()
	var conn *net.TCPConn
	if err := np.Do(0, func() error {
		d, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr[1], uint16(port))))
		conn = d
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(request); err != nil {
		t.Fatal(err)
	}
	_ = conn.CloseWrite()
	got, err := io.ReadAll(conn)
	conn.Close()
	if err != nil || !bytes.Equal(got, reply) {
		t.Fatalf("client read %q, %v", got, err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}

	// The client's FIN went last; its ACK from the server ends the
	// conversation.
	// eBPF batches are sorted by time, but two batches can
	// overlap (one per-CPU buffer drained after another): order the
	// whole capture by time before comparing.
	conv := func(pkts []packet.Packet) []packet.Packet {
		var out []packet.Packet
		slices.SortStableFunc(pkts, func(a, b packet.Packet) int { return cmp.Compare(a.Timestamp, b.Timestamp) })
		for _, p := range pkts {
			if in, ok := netnstest.Parse(p.Data); ok && in.Proto == 6 && (in.SrcPort == uint16(port) || in.DstPort == uint16(port)) {
				out = append(out, p)
			}
		}
		return out
	}
	defer func() {
		if t.Failed() {
			for i := range 2 {
				for _, p := range conv(c.Packets(i)) {
					in, _ := netnstest.Parse(p.Data)
					t.Logf("src %d: %v:%d > %v:%d flags %#x len %d dir %d", i, in.Src, in.SrcPort, in.Dst, in.DstPort, in.TCPFlags, in.Payload, p.Direction)
				}
			}
		}
	}()
	c.WaitFor(t, "the end of the conversation", func(p [][]packet.Packet) bool {
		return ended(conv(slices.Clone(p[0])), port) && ended(conv(slices.Clone(p[1])), port)
	})
	var dumped []packet.Packet
	deadline := time.Now().Add(10 * time.Second)
	for dumped = readPcap(t, pcapPath); !ended(dumped, port); dumped = readPcap(t, pcapPath) {
		if time.Now().After(deadline) {
			t.Fatalf("tcpdump did not see the end of the conversation (%d packets)", len(dumped))
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopDump()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	byEBPF, byAF := conv(c.Packets(0)), conv(c.Packets(1))
	if len(byEBPF) != len(byAF) || len(byAF) != len(dumped) {
		t.Fatalf("packets: ebpf %d, afpacket %d, tcpdump %d", len(byEBPF), len(byAF), len(dumped))
	}
	// Same packets with the same bytes, compared per direction as
	// multisets: packets that two CPUs receive at the same moment
	// have no single order (AF_PACKET taps run before TC ingress).
	key := func(p packet.Packet) string { return fmt.Sprintf("%d/%x", p.OrigLen, p.Data) }
	for _, d := range []struct {
		name string
		pkts []packet.Packet
	}{{"ebpf", byEBPF}, {"afpacket", byAF}} {
		a, b := split(d.pkts, addr[0]), split(dumped, addr[0])
		for dir := range a {
			ka, kb := make([]string, len(a[dir])), make([]string, len(b[dir]))
			for i := range a[dir] {
				ka[i] = key(a[dir][i])
			}
			for i := range b[dir] {
				kb[i] = key(b[dir][i])
			}
			slices.Sort(ka)
			slices.Sort(kb)
			if !slices.Equal(ka, kb) {
				t.Fatalf("%s: direction %d: packets differ from tcpdump's (%d vs %d packets)", d.name, dir, len(ka), len(kb))
			}
		}
	}
	// The conversation itself: one handshake, all payload, two FINs.
	var syn, synack, fin, up, down int
	for _, p := range byEBPF {
		in, _ := netnstest.Parse(p.Data)
		switch {
		case in.TCPFlags&0x12 == 0x02:
			syn++
		case in.TCPFlags&0x12 == 0x12:
			synack++
		}
		if in.TCPFlags&0x01 != 0 {
			fin++
		}
		if in.Src == addr[0] {
			up += in.Payload
			if p.Direction != packet.DirEgress {
				t.Errorf("client packet with direction %d", p.Direction)
			}
		} else {
			down += in.Payload
			if p.Direction != packet.DirIngress {
				t.Errorf("server packet with direction %d", p.Direction)
			}
		}
	}
	if syn != 1 || synack != 1 || fin != 2 || up != len(request) || down != len(reply) {
		t.Fatalf("syn %d synack %d fin %d, payload %d up %d down; want 1 1 2 %d %d", syn, synack, fin, up, down, len(request), len(reply))
	}
	t.Logf("%d packets, identical in ebpf, afpacket and tcpdump", len(byEBPF))
	checkClean(t, np)
}

// ended reports whether pkts hold a FIN from each side and, after the
// second, the bare ACK that answers it: the last packet of the conversation.
func ended(pkts []packet.Packet, port int) bool {
	fins := 0
	var lastFinFromServer bool
	for _, p := range pkts {
		in, ok := netnstest.Parse(p.Data)
		if !ok {
			continue
		}
		fromServer := in.SrcPort == uint16(port)
		if in.TCPFlags&0x01 != 0 {
			fins++
			lastFinFromServer = fromServer
		} else if fins == 2 && fromServer != lastFinFromServer && in.TCPFlags == 0x10 {
			return true
		}
	}
	return false
}

// split separates packets sent by client from the others, keeping order.
func split(pkts []packet.Packet, client netip.Addr) [2][]packet.Packet {
	var out [2][]packet.Packet
	for _, p := range pkts {
		in, _ := netnstest.Parse(p.Data)
		if in.Src == client {
			out[0] = append(out[0], p)
		} else {
			out[1] = append(out[1], p)
		}
	}
	return out
}

// startTcpdump runs tcpdump in namespace 0 writing every packet at once
// (-U), and returns once it is listening.
func startTcpdump(t *testing.T, np *netnstest.Pair, dev, path, filter string) (stop func()) {
	t.Helper()
	cmd := np.Command(0, "tcpdump", "-i", dev, "-w", path, "-U", "-s", "0", "--immediate-mode", "-n", filter)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	t.Cleanup(stop)
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on") {
				ready <- true
			}
		}
		close(ready)
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("tcpdump exited before listening")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tcpdump did not start listening")
	}
	return stop
}

// readPcap reads a classic pcap file that may still be being written (a
// partial last record is ignored).
func readPcap(t *testing.T, path string) []packet.Packet {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 24 {
		return nil
	}
	var bo binary.ByteOrder = binary.LittleEndian
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d:
	case 0xd4c3b2a1, 0x4d3cb2a1:
		bo = binary.BigEndian
	default:
		t.Fatalf("%s is not a pcap file", path)
	}
	var out []packet.Packet
	for off := 24; off+16 <= len(b); {
		incl, orig := int(bo.Uint32(b[off+8:])), bo.Uint32(b[off+12:])
		if off+16+incl > len(b) {
			break
		}
		out = append(out, packet.Packet{Data: b[off+16 : off+16+incl], OrigLen: orig})
		off += 16 + incl
	}
	return out
}

func TestKernelFilter(t *testing.T) {
	np := netnstest.New(t)
	testenv.NeedCommand(t, "ping")
	src, err := ebpf.New(ebpf.Config{Interface: np.Dev[0], Netns: np.Path(0), Snaplen: 64,
		Filter: ebpf.KernelFilter{Addr: np.V6[1], Proto: 17, Port: 7777}})
	if err != nil {
		t.Fatal(err)
	}
	c := netnstest.Start(t, src)
	np.Run(t, 0, "ping", "-c", "2", "-i", "0.2", "-W", "2", np.V6[1].String())
	const n = 30
	np.SendUDP(t, 0, np.V4, 1, n, 300) // excluded by address family
	np.SendUDP(t, 0, np.V6, 1, n, 300)
	c.WaitFor(t, "the IPv6 datagrams", func(p [][]packet.Packet) bool { return len(p[0]) >= n })
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	pkts := c.Packets(0)
	if len(pkts) != n {
		t.Fatalf("captured %d packets, want exactly %d", len(pkts), n)
	}
	for _, p := range pkts {
		if len(p.Data) != 64 || p.OrigLen != 14+40+8+300 {
			t.Fatalf("captured %d of %d bytes, want 64 of %d", len(p.Data), p.OrigLen, 14+40+8+300)
		}
		in, ok := netnstest.Parse(p.Data)
		if !ok || in.IPVersion != 6 || in.Dst != np.V6[1] || in.DstPort != 7777 {
			t.Fatalf("unexpected packet %+v", in)
		}
	}
}

// TestCancelDetaches cancels a capture in each attach mode and checks that
// nothing of ours is left on the interface: no TCX program (asked of the
// kernel directly, as Debian 12's bpftool 7.1 does not list TCX links), no
// tc filter and no clsact qdisc (tc mode added it).
func TestCancelDetaches(t *testing.T) {
	np := netnstest.New(t)
	testenv.NeedCommand(t, "tc")
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) { cancelCase(t, np, mode) })
	}
}

// tcxAttached counts the TCX programs on Dev[0].
func tcxAttached(t *testing.T, np *netnstest.Pair) (n int) {
	t.Helper()
	for _, at := range []cebpf.AttachType{cebpf.AttachTCXIngress, cebpf.AttachTCXEgress} {
		err := np.Do(0, func() error {
			r, err := link.QueryPrograms(link.QueryOptions{Target: np.IfIndex[0], Attach: at})
			if err == nil {
				n += len(r.Programs)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return n
}

func cancelCase(t *testing.T, np *netnstest.Pair, mode string) {
	src, err := ebpf.New(ebpf.Config{Interface: np.Dev[0], Netns: np.Path(0), Attach: mode})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	f, q := tcState(t, np)
	switch n := tcxAttached(t, np); {
	case mode == ebpf.AttachTCX && (n != 2 || f != "" || q):
		t.Fatalf("tcx: %d TCX programs attached (want 2), clsact %v, tc filters:\n%s", n, q, f)
	case mode == ebpf.AttachTC && (n != 0 || strings.Count(f, ebpf.TCNamePrefix) != 2 || !q):
		t.Fatalf("tc: %d TCX programs attached (want 0), clsact %v, tc filters (want 2):\n%s", n, q, f)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	out := make(chan *packet.Batch, 64)
	go func() { done <- src.Run(ctx, packet.NewPool(0, 0), out) }()
	np.SendUDP(t, 0, np.V4, 1, 10, 100)
	cancel()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second): // bound only: a hung Run fails
		t.Fatal("Run did not return after cancel")
	}
	if n := tcxAttached(t, np); n != 0 {
		t.Fatalf("%d TCX programs still attached after cancel", n)
	}
	checkClean(t, np)
	if bpftool, err := exec.LookPath("bpftool"); err == nil {
		if s := np.Run(t, 0, bpftool, "net", "show", "dev", np.Dev[0]); strings.Contains(s, "capture") {
			t.Fatalf("bpftool still lists our program:\n%s", s)
		}
	}
	// Everything the source read was sent before it returned.
	close(out)
	var got int
	for b := range out {
		got += b.Len()
		b.Release()
	}
	if got < 10 {
		t.Fatalf("drained %d packets, want at least the 10 datagrams", got)
	}
}

// TestTCSharesTheQdisc runs the tc fallback on an interface whose clsact
// qdisc someone else added, with their own filter on it and leftovers of
// pktpipe runs: one of a process that is gone (removed at start) and one
// of a live process (pid 1: left alone). On cancel only our two filters
// go; the qdisc, the other filter and the live run's filter stay.
func TestTCSharesTheQdisc(t *testing.T) {
	np := netnstest.New(t)
	testenv.NeedCommand(t, "tc")
	np.Run(t, 0, "tc", "qdisc", "add", "dev", np.Dev[0], "clsact")
	// A pid that no process has any more.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadName := fmt.Sprintf("%s%d:1:ingress", ebpf.TCNamePrefix, dead.Process.Pid)
	liveName := ebpf.TCNamePrefix + "1:1:egress"
	prog, err := cebpf.NewProgram(&cebpf.ProgramSpec{
		Type:         cebpf.SchedCLS,
		License:      "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	addFilter := func(name string, parent uint32, pref uint16) {
		t.Helper()
		err := np.Do(0, func() error {
			return netlink.FilterAdd(&netlink.BpfFilter{
				FilterAttrs: netlink.FilterAttrs{LinkIndex: np.IfIndex[0], Parent: parent, Priority: pref, Protocol: syscall.ETH_P_ALL},
				Fd:          prog.FD(), Name: name, DirectAction: true,
			})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Theirs, before ours (pref 1), letting packets go on (TC_ACT_UNSPEC).
	addFilter("someone-else", netlink.HANDLE_MIN_INGRESS, 1)
	addFilter(deadName, netlink.HANDLE_MIN_INGRESS, ebpf.TCPref)
	addFilter(liveName, netlink.HANDLE_MIN_EGRESS, ebpf.TCPref)

	testenv.NeedCommand(t, "ping")
	src, err := ebpf.New(ebpf.Config{Interface: np.Dev[0], Netns: np.Path(0), Attach: ebpf.AttachTC})
	if err != nil {
		t.Fatal(err)
	}
	removed, others := src.StaleFilters()
	if removed != 1 || !slices.Equal(others, []string{liveName}) {
		t.Errorf("stale filters: removed %d (want 1), others %q (want %q)", removed, others, liveName)
	}
	c := netnstest.Start(t, src)
	np.Run(t, 0, "ping", "-c", "2", "-i", "0.2", "-W", "2", np.V4[1].String())
	c.WaitFor(t, "4 echo packets", func(p [][]packet.Packet) bool { r, s := netnstest.CountEcho(p[0]); return r+s >= 4 })
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if r, s := netnstest.CountEcho(c.Packets(0)); r != 2 || s != 2 {
		t.Errorf("%d echo requests, %d replies, want 2 and 2", r, s)
	}
	f, q := tcState(t, np)
	if !q || !strings.Contains(f, "someone-else") || !strings.Contains(f, liveName) ||
		strings.Contains(f, deadName) || strings.Count(f, ebpf.TCNamePrefix) != 1 {
		t.Fatalf("after the run: clsact %v, filters (want theirs and %s only):\n%s", q, liveName, f)
	}
}

// TestNoCaps re-runs itself without CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN
// and CAP_SYS_ADMIN and checks that the error names what is missing.
func TestNoCaps(t *testing.T) {
	if testenv.InCapsChild() {
		_, err := ebpf.New(ebpf.Config{Interface: "lo"})
		if err == nil || !strings.Contains(err.Error(), "CAP_BPF") {
			t.Fatalf("error %v does not name CAP_BPF", err)
		}
		t.Log(err)
		return
	}
	t.Log(testenv.WithoutCaps(t, "TestNoCaps", "-bpf,-perfmon,-net_admin,-sys_admin"))
}
