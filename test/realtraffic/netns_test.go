package realtraffic

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/sources/afpacket/netnstest"
)

// lab is a client and a server namespace joined by one veth pair (MTU
// 1500, segmentation and receive offloads off, so a capture holds
// wire-sized segments). Addresses are 10.97.0.0/24 and fd00:97::/64, only
// ever inside the two namespaces. Everything it starts is stopped and the
// namespaces are deleted in t.Cleanup, even when the test fails.
type lab struct {
	t      *testing.T
	ns     [2]string // client, server
	dev    [2]string
	v4, v6 [2]string
}

const (
	cli = 0
	srv = 1
)

func newLab(t *testing.T) *lab {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "ip")
	testenv.NeedCommand(t, "ethtool")
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	id := hex.EncodeToString(rnd[:])
	l := &lab{
		t:   t,
		ns:  [2]string{"pp-rt-" + id + "-c", "pp-rt-" + id + "-s"},
		dev: [2]string{"rtc" + id, "rts" + id},
		v4:  [2]string{"10.97.0.1", "10.97.0.2"},
		v6:  [2]string{"fd00:97::1", "fd00:97::2"},
	}
	for _, ns := range l.ns {
		mustRun(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	mustRun(t, "ip", "link", "add", l.dev[0], "netns", l.ns[0], "type", "veth", "peer", "name", l.dev[1], "netns", l.ns[1])
	for i := range l.ns {
		for _, s := range []string{
			"net.ipv6.conf.all.router_solicitations=0", "net.ipv6.conf.default.router_solicitations=0",
		} {
			l.run(i, "sysctl", "-qw", s)
		}
		l.run(i, "ip", "link", "set", "lo", "up")
		l.run(i, "ip", "link", "set", l.dev[i], "mtu", "1500")
		l.run(i, "ip", "addr", "add", l.v4[i]+"/24", "dev", l.dev[i])
		l.run(i, "ip", "addr", "add", l.v6[i]+"/64", "dev", l.dev[i], "nodad")
		l.run(i, "ethtool", "-K", l.dev[i], "tso", "off", "gso", "off", "gro", "off")
		l.run(i, "ip", "link", "set", l.dev[i], "up")
	}
	return l
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// run runs a command in namespace i and fails the test if it fails.
func (l *lab) run(i int, args ...string) string {
	l.t.Helper()
	return mustRun(l.t, append([]string{"ip", "netns", "exec", l.ns[i]}, args...)...)
}

// exec runs a bounded command in namespace i and returns its output.
func (l *lab) exec(ctx context.Context, i int, stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.ns[i]}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), err
}

// proc is a program start runs; done is closed once it has exited.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// start starts a long-running program in namespace i (`ip netns exec`
// execs it, so the process is the program itself); t.Cleanup kills it and
// waits for it. ready, when not empty, is a line its stdout or stderr
// prints once it serves.
func (l *lab) start(i int, ready string, args ...string) *proc {
	l.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.ns[i]}, args...)...)
	pr, pw, err := os.Pipe()
	if err != nil {
		l.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	pw.Close()
	done := make(chan struct{})
	l.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	found := make(chan struct{})
	var tail bytes.Buffer
	go func() {
		defer close(done)
		defer func() { _ = cmd.Wait() }()
		sc := bufio.NewScanner(pr)
		seen := false
		for sc.Scan() {
			if !seen && ready != "" && strings.Contains(sc.Text(), ready) {
				seen = true
				close(found)
			}
			if tail.Len() < 4096 {
				tail.WriteString(sc.Text() + "\n")
			}
		}
		_, _ = io.Copy(io.Discard, pr)
		pr.Close()
	}()
	if ready != "" {
		select {
		case <-found:
		case <-done:
			l.t.Fatalf("%s exited before %q:\n%s", args[0], ready, tail.String())
		case <-time.After(15 * time.Second):
			l.t.Fatalf("%s did not print %q", args[0], ready)
		}
	}
	return &proc{cmd, done}
}

// do runs fn on a thread switched into namespace i: sockets opened there
// stay in that namespace.
func (l *lab) do(i int, fn func() error) {
	l.t.Helper()
	if err := netnstest.InNetns("/var/run/netns/"+l.ns[i], fn); err != nil {
		l.t.Fatal(err)
	}
}

// listenTCP and listenUDP open dual-stack sockets in namespace i.
func (l *lab) listenTCP(i int, port int) net.Listener {
	l.t.Helper()
	var ln net.Listener
	l.do(i, func() (err error) { ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port)); return })
	l.t.Cleanup(func() { ln.Close() })
	return ln
}

func (l *lab) listenUDP(i int, port int) net.PacketConn {
	l.t.Helper()
	var pc net.PacketConn
	l.do(i, func() (err error) { pc, err = net.ListenPacket("udp", fmt.Sprintf(":%d", port)); return })
	l.t.Cleanup(func() { pc.Close() })
	return pc
}

// dialTCP connects from namespace i.
func (l *lab) dialTCP(i int, addr string) (net.Conn, error) {
	var c net.Conn
	var derr error
	l.do(i, func() error {
		c, derr = (&net.Dialer{Timeout: 10 * time.Second}).Dial("tcp", addr)
		return nil
	})
	return c, derr
}

// capture is tcpdump writing a nanosecond pcap of the client's link.
type capture struct {
	l    *lab
	path string
	p    *proc
}

func (l *lab) startCapture(path string) *capture {
	l.t.Helper()
	testenv.NeedCommand(l.t, "tcpdump")
	p := l.start(cli, "listening on", "tcpdump", "-i", l.dev[cli], "-n", "-s0", "-U", "--immediate-mode",
		"--time-stamp-precision=nano", "-Z", "root", "-w", path)
	return &capture{l: l, path: path, p: p}
}

// stop sends a sentinel datagram, waits until tcpdump has written it (so
// every earlier packet is in the file too), then stops tcpdump with SIGINT
// and waits for it to finish the file.
func (c *capture) stop() {
	l := c.l
	l.t.Helper()
	sink := l.listenUDP(srv, 9)
	go func() { _, _ = io.Copy(io.Discard, readerOf(sink)) }()
	marker := []byte("pktpipe-realtraffic-end-" + l.ns[0])
	var conn net.Conn
	l.do(cli, func() (err error) { conn, err = net.Dial("udp", net.JoinHostPort(l.v4[srv], "9")); return })
	defer conn.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, _ = conn.Write(marker)
		time.Sleep(50 * time.Millisecond)
		b, _ := os.ReadFile(c.path)
		if bytes.Contains(b, marker) {
			break
		}
		if time.Now().After(deadline) {
			l.t.Fatal("tcpdump never wrote the end marker")
		}
	}
	_ = c.p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.p.done:
	case <-time.After(15 * time.Second):
		l.t.Fatal("tcpdump did not exit on SIGINT")
	}
}

type pcReader struct{ pc net.PacketConn }

func (r pcReader) Read(b []byte) (int, error) { n, _, err := r.pc.ReadFrom(b); return n, err }
func readerOf(pc net.PacketConn) io.Reader    { return pcReader{pc} }
