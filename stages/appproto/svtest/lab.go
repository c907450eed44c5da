package svtest

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/testenv"
)

// Lab is a network namespace of a test's own, with loopback up: servers
// and clients run in it, tcpdump captures its loopback.
type Lab struct {
	t    testing.TB
	Ctx  context.Context
	Name string
	Dir  string // temporary directory for configs and the capture
}

// NewLab creates the namespace (root, ip and tcpdump needed); everything
// is torn down when the test ends. Runs are bounded by timeout.
func NewLab(t testing.TB, timeout time.Duration) *Lab {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "ip")
	testenv.NeedCommand(t, "tcpdump")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	l := &Lab{t: t, Ctx: ctx, Name: fmt.Sprintf("svlab%d-%d", os.Getpid(), rand.IntN(1e6)), Dir: t.TempDir()}
	l.Run("ip", "netns", "add", l.Name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", l.Name).Run() })
	l.In("ip", "link", "set", "lo", "up")
	return l
}

// Run runs a command on the host and returns its output.
func (l *Lab) Run(args ...string) string {
	l.t.Helper()
	out, err := exec.CommandContext(l.Ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// In runs a command in the namespace and returns its output.
func (l *Lab) In(args ...string) string {
	l.t.Helper()
	return l.Run(append([]string{"ip", "netns", "exec", l.Name}, args...)...)
}

// Start starts a command in the namespace in the background; it is
// stopped (by its pid) when the test ends. Its output goes to a log file
// in Dir, returned.
func (l *Lab) Start(args ...string) (*exec.Cmd, string) {
	l.t.Helper()
	log := filepath.Join(l.Dir, fmt.Sprintf("%s-%d.log", filepath.Base(args[0]), time.Now().UnixNano()))
	f, err := os.Create(log)
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.CommandContext(l.Ctx, "ip", append([]string{"netns", "exec", l.Name}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		f.Close()
	})
	return cmd, log
}

// LabCapture is a running tcpdump.
type LabCapture struct {
	lab  *Lab
	cmd  *exec.Cmd
	File string
}

// StartCapture starts tcpdump on the namespace's loopback and waits until
// it listens.
func (l *Lab) StartCapture() *LabCapture {
	l.t.Helper()
	file := filepath.Join(l.Dir, "lab.pcap")
	cmd := exec.CommandContext(l.Ctx, "ip", "netns", "exec", l.Name, "tcpdump", "-i", "lo", "-U", "-s", "0", "-w", file)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		ok := false
		for sc.Scan() {
			if !ok && strings.Contains(sc.Text(), "listening on") {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			l.t.Fatal("tcpdump did not start")
		}
	case <-l.Ctx.Done():
		l.t.Fatal("tcpdump did not start in time")
	}
	return &LabCapture{lab: l, cmd: cmd, File: file}
}

// Stop ends the capture and returns the file. A marker datagram is sent
// last and the file polled until it holds it, so every packet before it
// was written when tcpdump is told to stop (SIGINT).
func (c *LabCapture) Stop(t testing.TB) string {
	t.Helper()
	mark := fmt.Sprintf("pktpipe-capture-end-%d", rand.Int64())
	c.lab.In("bash", "-c", "echo "+mark+" > /dev/udp/127.0.0.1/9")
	testenv.WaitFor(t, 10*time.Second, "the capture's end marker", func() bool {
		b, err := os.ReadFile(c.File)
		return err == nil && strings.Contains(string(b), mark)
	})
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	_ = c.cmd.Wait()
	return c.File
}

// WaitPort waits until a TCP port listens in the namespace.
func (l *Lab) WaitPort(port int) {
	l.t.Helper()
	testenv.WaitFor(l.t, 10*time.Second, fmt.Sprintf("port %d to listen", port), func() bool {
		out, err := exec.CommandContext(l.Ctx, "ip", "netns", "exec", l.Name, "ss", "-Hltn", fmt.Sprintf("sport = :%d", port)).Output()
		return err == nil && strings.Contains(string(out), "LISTEN")
	})
}
