// Package netnstest builds the throw-away network namespaces that the live
// capture sources' tests run in: two namespaces joined by a veth pair, with
// 10.77.0.0/24 and fd00:77::/64 addresses, removed in t.Cleanup even when
// the test fails. Tests send traffic only between the two ends.
//
// It lives beside sources/afpacket because the afpacket and ebpf tests both
// need it; it has no use outside tests.
package netnstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"github.com/pktpipe/pktpipe/internal/netns"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/registry"
)

// Pair is two namespaces, NS[0] and NS[1], joined by veth Dev[0] <-> Dev[1].
type Pair struct {
	NS      [2]string
	Dev     [2]string
	IfIndex [2]int
	V4      [2]netip.Addr
	V6      [2]netip.Addr
}

// New creates a pair, or skips the test (fails it under PKTPIPE_CI=1) when
// it is not root or `ip` is missing.
func New(t testing.TB) *Pair {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "ip")
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	id := hex.EncodeToString(rnd[:])
	p := &Pair{
		NS:  [2]string{"pp-test-" + id + "a", "pp-test-" + id + "b"},
		Dev: [2]string{"ppa" + id, "ppb" + id},
		V4:  [2]netip.Addr{netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("10.77.0.2")},
		V6:  [2]netip.Addr{netip.MustParseAddr("fd00:77::1"), netip.MustParseAddr("fd00:77::2")},
	}
	for _, ns := range p.NS {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	run(t, "ip", "link", "add", p.Dev[0], "netns", p.NS[0], "type", "veth", "peer", "name", p.Dev[1], "netns", p.NS[1])
	for i := range p.NS {
		// No router solicitations or MLD chatter beyond what the kernel
		// must send; tests still count only the packets they caused.
		for _, s := range []string{"net.ipv6.conf.all.router_solicitations=0", "net.ipv6.conf.default.router_solicitations=0"} {
			p.Run(t, i, "sysctl", "-qw", s)
		}
		p.Run(t, i, "ip", "link", "set", "lo", "up")
		p.Run(t, i, "ip", "addr", "add", p.V4[i].String()+"/24", "dev", p.Dev[i])
		p.Run(t, i, "ip", "addr", "add", p.V6[i].String()+"/64", "dev", p.Dev[i], "nodad")
		p.Run(t, i, "ip", "link", "set", p.Dev[i], "up")
	}
	for i := range p.Dev {
		err := p.Do(i, func() error {
			ifi, err := ifIndexIoctl(p.Dev[i])
			p.IfIndex[i] = ifi
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// Path is the namespace's bind-mount path, usable with setns(2).
func (p *Pair) Path(i int) string { return "/var/run/netns/" + p.NS[i] }

// Run runs a command inside namespace i and fails the test if it fails.
func (p *Pair) Run(t testing.TB, i int, args ...string) string {
	t.Helper()
	return run(t, append([]string{"ip", "netns", "exec", p.NS[i]}, args...)...)
}

// Command returns an unstarted command that runs inside namespace i.
func (p *Pair) Command(i int, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", p.NS[i]}, args...)...)
}

// Do runs fn on a locked OS thread switched into namespace i. Sockets fn
// opens stay in that namespace after Do returns.
func (p *Pair) Do(i int, fn func() error) error { return InNetns(p.Path(i), fn) }

// InNetns runs fn on a locked OS thread switched into the namespace at path.
func InNetns(path string, fn func() error) error { return netns.Do(path, fn) }

func run(t testing.TB, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func ifIndexIoctl(name string) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, fmt.Errorf("SIOCGIFINDEX %s: %w", name, err)
	}
	return int(ifr.Uint32()), nil
}

// Info is what a test needs to know about an Ethernet frame.
type Info struct {
	IPVersion        int
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
	ICMPType         uint8
	TCPFlags         uint8
	Payload          int // transport payload bytes present
}

// Parse reads an untagged Ethernet frame carrying IPv4 or IPv6 (no
// extension headers). ok is false for anything else.
func Parse(b []byte) (in Info, ok bool) {
	if len(b) < 14 {
		return in, false
	}
	et := binary.BigEndian.Uint16(b[12:])
	b = b[14:]
	var l4 []byte
	switch et {
	case 0x0800:
		if len(b) < 20 {
			return in, false
		}
		ihl := int(b[0]&0xf) * 4
		tot := int(binary.BigEndian.Uint16(b[2:]))
		if len(b) < ihl || tot < ihl {
			return in, false
		}
		in.IPVersion, in.Proto = 4, b[9]
		in.Src = netip.AddrFrom4([4]byte(b[12:16]))
		in.Dst = netip.AddrFrom4([4]byte(b[16:20]))
		l4 = b[ihl:min(tot, len(b))]
	case 0x86dd:
		if len(b) < 40 {
			return in, false
		}
		in.IPVersion, in.Proto = 6, b[6]
		in.Src = netip.AddrFrom16([16]byte(b[8:24]))
		in.Dst = netip.AddrFrom16([16]byte(b[24:40]))
		l4 = b[40:min(40+int(binary.BigEndian.Uint16(b[4:])), len(b))]
	default:
		return in, false
	}
	switch in.Proto {
	case 6:
		if len(l4) < 20 {
			return in, true
		}
		in.SrcPort, in.DstPort = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
		in.TCPFlags = l4[13]
		in.Payload = len(l4) - int(l4[12]>>4)*4
	case 17:
		if len(l4) < 8 {
			return in, true
		}
		in.SrcPort, in.DstPort = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
		in.Payload = len(l4) - 8
	case 1, 58:
		if len(l4) > 0 {
			in.ICMPType = l4[0]
		}
	}
	return in, true
}

// IsEcho reports an ICMP or ICMPv6 echo request or reply.
func (in Info) IsEcho() bool {
	return (in.Proto == 1 && (in.ICMPType == 8 || in.ICMPType == 0)) ||
		(in.Proto == 58 && (in.ICMPType == 128 || in.ICMPType == 129))
}

// IsEchoRequest reports an ICMP or ICMPv6 echo request.
func (in Info) IsEchoRequest() bool {
	return (in.Proto == 1 && in.ICMPType == 8) || (in.Proto == 58 && in.ICMPType == 128)
}

// FlowID is a direction-independent name for a packet's 5-tuple.
func (in Info) FlowID() string {
	a := netip.AddrPortFrom(in.Src, in.SrcPort).String()
	b := netip.AddrPortFrom(in.Dst, in.DstPort).String()
	if a > b {
		a, b = b, a
	}
	return fmt.Sprintf("%d %s %s", in.Proto, a, b)
}

// OpenKind opens the registered source kind as the app does: its options
// with their flag defaults, args parsed over them, Validate, then Open.
// The caller's test package imports the kind's package (which registers
// it).
func OpenKind(t testing.TB, kind string, env pipeline.SourceEnv, args ...string) (pipeline.Opened, error) {
	t.Helper()
	spec, ok := pipeline.SourceKind(kind)
	if !ok {
		t.Fatalf("source kind %q is not registered (have %v)", kind, pipeline.SourceKinds())
	}
	opts := spec.NewOptions()
	fs := flag.NewFlagSet(kind, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	opts.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("%s flags %q: %v", kind, args, err)
	}
	if v, ok := opts.(registry.Validator); ok {
		if err := v.Validate(); err != nil {
			return pipeline.Opened{}, err
		}
	}
	return spec.Open(opts, env)
}

// Capture runs live sources until Stop, keeping a copy of every packet each
// source delivered.
type Capture struct {
	mu     sync.Mutex
	pkts   [][]packet.Packet // per source
	errs   []error
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start runs srcs, each with its own consumer, and closes each once its
// Run returns (as the engine does); t.Cleanup stops them.
func Start(t testing.TB, srcs ...pipeline.Source) *Capture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &Capture{pkts: make([][]packet.Packet, len(srcs)), errs: make([]error, len(srcs)), cancel: cancel}
	pool := packet.NewPool(0, 0)
	for i, s := range srcs {
		out := make(chan *packet.Batch, 8)
		c.wg.Add(2)
		go func() {
			defer c.wg.Done()
			defer close(out)
			// As the engine does: Close once Run has returned.
			c.errs[i] = errors.Join(s.Run(ctx, pool, out), s.Close())
		}()
		go func() {
			defer c.wg.Done()
			for b := range out {
				c.mu.Lock()
				for _, p := range b.Packets {
					p.Data = append([]byte(nil), p.Data...)
					c.pkts[i] = append(c.pkts[i], p)
				}
				c.mu.Unlock()
				b.Release()
			}
		}()
	}
	t.Cleanup(func() { c.Stop() })
	return c
}

// Stop cancels the sources, waits for them to return and be closed, and
// returns the errors of their Run and Close.
func (c *Capture) Stop() error {
	c.cancel()
	c.wg.Wait()
	return errors.Join(c.errs...)
}

// Packets returns what source i delivered so far.
func (c *Capture) Packets(i int) []packet.Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.pkts[i])
}

// WaitFor polls until cond holds on the packets delivered so far; it is
// bounded so that a broken capture fails instead of hanging.
func (c *Capture) WaitFor(t testing.TB, what string, cond func(pkts [][]packet.Packet) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		ok := cond(c.pkts)
		c.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// CountEcho counts ICMP/ICMPv6 echo requests and replies.
func CountEcho(pkts []packet.Packet) (req, rep int) {
	for _, p := range pkts {
		in, ok := Parse(p.Data)
		if !ok || !in.IsEcho() {
			continue
		}
		if in.IsEchoRequest() {
			req++
		} else {
			rep++
		}
	}
	return
}

// SendUDP sends count datagrams of size bytes on each of flows flows
// (source ports 20000+i) from namespace side to addr[1]:7777; a socket in
// the other namespace drains them, so nothing answers with ICMP errors.
func (p *Pair) SendUDP(t testing.TB, side int, addr [2]netip.Addr, flows, count, size int) {
	t.Helper()
	var rc *net.UDPConn
	err := p.Do(1-side, func() error {
		var err error
		rc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr[1], 7777)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	go io.Copy(io.Discard, rc)
	payload := make([]byte, size)
	for f := range flows {
		var conn *net.UDPConn
		err := p.Do(side, func() error {
			var err error
			conn, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr[0], uint16(20000+f))),
				net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr[1], 7777)))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		for range count {
			if _, err := conn.Write(payload); err != nil {
				t.Fatal(err)
			}
		}
		conn.Close()
	}
}

// FloodDst is where Blast sends: an address in the pair's subnet that no
// namespace owns, reached through a static neighbour entry with a MAC no
// device has, so the far end drops the frames before its IP stack (no
// socket, no ICMP errors) while capture hooks still see every one.
var FloodDst = netip.MustParseAddr("10.77.0.99")

// FloodPort is the UDP destination port of Blast's datagrams.
const FloodPort = 9

// Blast sends count UDP datagrams of payload bytes from namespace side to
// FloodDst as fast as sendmmsg(2) allows and returns how many the kernel
// accepted and how long that took. payload 22 gives 64-byte frames.
func (p *Pair) Blast(t testing.TB, side, count, payload int) (sent int, took time.Duration) {
	t.Helper()
	p.Run(t, side, "ip", "neigh", "replace", FloodDst.String(), "lladdr", "02:00:00:77:00:99", "dev", p.Dev[side], "nud", "permanent")
	var fd int
	err := p.Do(side, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		return unix.Connect(fd, &unix.SockaddrInet4{Port: FloodPort, Addr: FloodDst.As4()})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	const vlen = 64
	buf := make([]byte, payload)
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	var msgs [vlen]unix.Mmsghdr
	for i := range msgs {
		msgs[i].Hdr.Iov = &iov
		msgs[i].Hdr.SetIovlen(1)
	}
	start := time.Now()
	for sent < count {
		n := min(vlen, count-sent)
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(n), 0, 0, 0)
		if errno != 0 {
			if errno == unix.ENOBUFS || errno == unix.EAGAIN || errno == unix.EINTR {
				continue
			}
			t.Fatalf("sendmmsg: %v", errno)
		}
		sent += int(r)
	}
	return sent, time.Since(start)
}

// RxPackets is the RX packet counter of Dev[side].
func (p *Pair) RxPackets(t testing.TB, side int) uint64 {
	t.Helper()
	out := p.Run(t, side, "cat", "/sys/class/net/"+p.Dev[side]+"/statistics/rx_packets")
	var n uint64
	if _, err := fmt.Sscan(out, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// FloodResult is what RunFlood measured.
type FloodResult struct {
	Sent      int           // datagrams the sender's kernel accepted
	Delivered uint64        // frames that reached the far veth (its rx_packets)
	Received  uint64        // flood datagrams the sources delivered
	Took      time.Duration // the sender's time
	ReaderCPU time.Duration // CPU time of the threads running Source.Run
	Mallocs   uint64        // heap allocations in the whole process during the flood
}

// RunFlood runs srcs (each Run on its own locked OS thread so its CPU time
// can be measured), blasts count 64-byte frames from namespace 0 to
// namespace 1, waits for the sources to go quiet, and stops them.
func RunFlood(t testing.TB, p *Pair, count int, srcs ...pipeline.Source) FloodResult {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := packet.NewPool(0, 0)
	var (
		received atomic.Uint64
		cpu      atomic.Int64
		wg       sync.WaitGroup
	)
	for _, s := range srcs {
		out := make(chan *packet.Batch, 8)
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer close(out)
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var r0, r1 unix.Rusage
			_ = unix.Getrusage(unix.RUSAGE_THREAD, &r0)
			if err := s.Run(ctx, pool, out); err != nil {
				t.Error(err)
			}
			_ = unix.Getrusage(unix.RUSAGE_THREAD, &r1)
			if err := s.Close(); err != nil {
				t.Error(err)
			}
			cpu.Add(tvNs(r1.Utime) - tvNs(r0.Utime) + tvNs(r1.Stime) - tvNs(r0.Stime))
		}()
		go func() {
			defer wg.Done()
			for b := range out {
				var n uint64
				for i := range b.Packets {
					d := b.Packets[i].Data
					if len(d) >= 38 && d[12] == 0x08 && d[13] == 0 && d[23] == 17 && d[36] == 0 && d[37] == FloodPort {
						n++
					}
				}
				received.Add(n)
				b.Release()
			}
		}()
	}
	rx0 := p.RxPackets(t, 1)
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	var res FloodResult
	res.Sent, res.Took = p.Blast(t, 0, count, 22)
	// Let the sources drain: stop when the count has not moved for a while.
	last, still := received.Load(), 0
	for still < 5 {
		time.Sleep(100 * time.Millisecond)
		if n := received.Load(); n != last {
			last, still = n, 0
		} else {
			still++
		}
	}
	runtime.ReadMemStats(&ms1)
	res.Mallocs = ms1.Mallocs - ms0.Mallocs
	cancel()
	wg.Wait()
	res.Delivered = p.RxPackets(t, 1) - rx0
	res.Received = received.Load()
	res.ReaderCPU = time.Duration(cpu.Load())
	return res
}

func tvNs(tv unix.Timeval) int64 { return tv.Sec*1e9 + tv.Usec*1e3 }

// String formats the figures for a test log.
func (r FloodResult) String() string {
	rate := float64(r.Received) / r.Took.Seconds()
	var perPkt float64
	if r.Received > 0 {
		perPkt = float64(r.ReaderCPU.Nanoseconds()) / float64(r.Received)
	}
	return fmt.Sprintf("sent %d in %v (%.0f pps), delivered %d, captured %d (%.2f%% of delivered, %.0f pps), reader CPU %.0f ns/packet, %d heap allocations",
		r.Sent, r.Took.Round(time.Millisecond), float64(r.Sent)/r.Took.Seconds(), r.Delivered, r.Received,
		100*float64(r.Received)/float64(max(r.Delivered, 1)), rate, perPkt, r.Mallocs)
}

// CheckPings checks what a live source captured on namespace 0's end of
// the pair while it pinged the other end `count` times: exactly count
// requests (egress) and count replies (ingress), each with the pair's
// ifindex, Ethernet link type, whole frames and recent timestamps.
func CheckPings(t testing.TB, p *Pair, pkts []packet.Packet, count int) {
	t.Helper()
	var req, rep int
	for _, pk := range pkts {
		in, ok := Parse(pk.Data)
		if !ok || !in.IsEcho() {
			continue
		}
		want := packet.DirIngress
		if in.IsEchoRequest() {
			req++
			want = packet.DirEgress
		} else {
			rep++
		}
		if pk.Direction != want {
			t.Errorf("echo (request=%v) has direction %d, want %d", in.IsEchoRequest(), pk.Direction, want)
		}
		if pk.IfIndex != int32(p.IfIndex[0]) || pk.LinkType != packet.LinkEthernet {
			t.Errorf("ifindex %d linktype %d, want %d, Ethernet", pk.IfIndex, pk.LinkType, p.IfIndex[0])
		}
		if int(pk.OrigLen) != len(pk.Data) {
			t.Errorf("orig len %d != captured %d", pk.OrigLen, len(pk.Data))
		}
		if d := time.Since(time.Unix(0, pk.Timestamp)); d < 0 || d > time.Minute {
			t.Errorf("timestamp %v is not recent", time.Unix(0, pk.Timestamp))
		}
	}
	if req != count || rep != count {
		t.Fatalf("saw %d echo requests and %d replies, want %d and %d", req, rep, count, count)
	}
}
