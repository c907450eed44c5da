package ebpf_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	cebpf "github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sources/afpacket/netnstest"
	"github.com/pktpipe/pktpipe/sources/ebpf"
)

// addDeadFilter leaves on Dev[0]'s ingress hook what a crashed tc-mode run
// leaves: a filter with our preference and name, of a pid no process has.
func addDeadFilter(t *testing.T, np *netnstest.Pair) string {
	t.Helper()
	np.Run(t, 0, "tc", "qdisc", "add", "dev", np.Dev[0], "clsact")
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("%s%d:1:ingress", ebpf.TCNamePrefix, dead.Process.Pid)
	prog, err := cebpf.NewProgram(&cebpf.ProgramSpec{
		Type:         cebpf.SchedCLS,
		License:      "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	err = np.Do(0, func() error {
		return netlink.FilterAdd(&netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{LinkIndex: np.IfIndex[0], Parent: netlink.HANDLE_MIN_INGRESS, Priority: ebpf.TCPref, Protocol: syscall.ETH_P_ALL},
			Fd:          prog.FD(), Name: name, DirectAction: true,
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// TestKindOpen opens the "ebpf" kind through the registry in each attach
// mode, with its own options and the shared environment, and checks that
// each took effect: the kernel subset of the filter, the user-space
// filter, the snaplen, the attach mode reported, the stale tc filter
// warning, and that nothing is left on the interface after Close.
func TestKindOpen(t *testing.T) {
	np := netnstest.New(t)
	testenv.NeedCommand(t, "tc")
	testenv.NeedCommand(t, "tcpdump")
	testenv.NeedCommand(t, "ping")
	spec, _ := pipeline.SourceKind(ebpf.Kind)
	if !spec.Live {
		t.Fatal("the ebpf kind does not say it is live")
	}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) { kindCase(t, np, mode) })
	}
}

func kindCase(t *testing.T, np *netnstest.Pair, mode string) {
	var dead string
	if mode == ebpf.AttachTC {
		dead = addDeadFilter(t, np)
	}
	var logBuf bytes.Buffer
	reg := stats.NewRegistry()
	const snap = 80
	op, err := netnstest.OpenKind(t, ebpf.Kind, pipeline.SourceEnv{
		Interface: np.Dev[0], Netns: np.Path(0), Snaplen: snap, Filter: "udp and dst port 7777",
		Stats: reg, Log: slog.New(slog.NewTextHandler(&logBuf, nil)),
	}, "--ebpf-attach", mode, "--perf-buffer", "256K")
	if err != nil {
		t.Fatal(err)
	}
	if len(op.Sources) != 1 || op.NewFilter == nil {
		t.Fatalf("opened %+v, want one source and a user-space filter", op)
	}
	if !slices.Equal(op.Attrs, []any{"attach", mode}) || op.CloseNeedsPrivileges != (mode == ebpf.AttachTC) {
		t.Fatalf("attrs %v, close needs privileges %v: want attach %s", op.Attrs, op.CloseNeedsPrivileges, mode)
	}
	if got := op.IfName(int32(np.IfIndex[0])); got != np.Dev[0] {
		t.Fatalf("IfName(%d) = %q, want %q", np.IfIndex[0], got, np.Dev[0])
	}
	if mode == ebpf.AttachTC {
		if f, _ := tcState(t, np); strings.Contains(f, dead) {
			t.Errorf("the dead run's filter %s is still there", dead)
		}
		if l := logBuf.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "removed tc filters") || !strings.Contains(l, "filters=1") {
			t.Errorf("no warning about the removed filter in the env's log:\n%s", l)
		}
	}
	c := netnstest.Start(t, op.Sources...)
	np.Run(t, 0, "ping", "-c", "2", "-i", "0.2", "-W", "2", np.V4[1].String())
	const n = 20
	np.SendUDP(t, 0, np.V4, 1, n, 300)
	np.SendUDP(t, 0, np.V6, 1, n, 300)
	c.WaitFor(t, "the datagrams", func(p [][]packet.Packet) bool { return len(p[0]) >= 2*n })
	if err := c.Stop(); err != nil { // runs, then closes
		t.Fatal(err)
	}
	// The kernel subset (UDP, port 7777) already kept the pings out.
	pkts := c.Packets(0)
	if len(pkts) != 2*n {
		t.Fatalf("captured %d packets, want exactly the %d datagrams", len(pkts), 2*n)
	}
	flt := op.NewFilter()
	for _, p := range pkts {
		in, ok := netnstest.Parse(p.Data)
		if !ok || in.Proto != 17 || in.DstPort != 7777 || len(p.Data) != snap {
			t.Fatalf("captured %d bytes of %+v, want %d bytes of UDP to 7777", len(p.Data), in, snap)
		}
		if !flt.Match(&p) {
			t.Fatalf("the user-space filter rejects %+v", in)
		}
	}
	if v, _ := reg.Value(fmt.Sprintf(`pktpipe_ebpf_samples_total{interface="%s"}`, np.Dev[0])); v != 2*n {
		t.Errorf("samples counter %v in the env's registry, want %d", v, 2*n)
	}
	if err := op.Sources[0].Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// No filter is left; the qdisc only where the test added it (tc).
	if f, q := tcState(t, np); f != "" || q != (mode == ebpf.AttachTC) {
		t.Fatalf("left on %s: clsact qdisc %v, filters:\n%s", np.Dev[0], q, f)
	}
	if mode == ebpf.AttachTC {
		np.Run(t, 0, "tc", "qdisc", "del", "dev", np.Dev[0], "clsact")
	}
}

// TestKindOptionErrors: bad settings are usage errors.
func TestKindOptionErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  pipeline.SourceEnv
		want string
	}{
		{[]string{"--ebpf-attach", "xdp"}, pipeline.SourceEnv{Interface: "lo"}, "--ebpf-attach"},
		{[]string{"--perf-buffer", "2G"}, pipeline.SourceEnv{Interface: "lo"}, "--perf-buffer"},
		{nil, pipeline.SourceEnv{}, "-i"},
		{nil, pipeline.SourceEnv{Interface: "lo", Snaplen: ebpf.MaxSnaplen + 1}, fmt.Sprint(ebpf.MaxSnaplen)},
		{nil, pipeline.SourceEnv{Interface: "lo", Snaplen: -1}, "--snaplen"},
	} {
		_, err := netnstest.OpenKind(t, ebpf.Kind, c.env, c.args...)
		if !registry.IsUsage(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v %+v: error %v, want a usage error naming %s", c.args, c.env, err, c.want)
		}
	}
}

// TestKindOpenErrors: a filter that does not compile, or an interface
// that does not exist, fails Open as a usage error and attaches nothing.
func TestKindOpenErrors(t *testing.T) {
	np := netnstest.New(t)
	testenv.NeedCommand(t, "tc")
	testenv.NeedCommand(t, "tcpdump")
	for _, c := range []struct {
		env  pipeline.SourceEnv
		want string
	}{
		{pipeline.SourceEnv{Interface: np.Dev[0], Netns: np.Path(0), Filter: "tcp port"}, "syntax error"},
		{pipeline.SourceEnv{Interface: "pp-no-such-if0", Netns: np.Path(0)}, "pp-no-such-if0"},
	} {
		_, err := netnstest.OpenKind(t, ebpf.Kind, c.env, "--ebpf-attach", "tc")
		if !registry.IsUsage(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want a usage error naming %s", c.env, err, c.want)
		}
		checkClean(t, np)
	}
}

// TestCloseIdempotent: Close detaches and releases a source that never
// ran, any number of times, and Run fails afterwards; Close while Run
// runs stops it, as a cancel does, after draining what was captured.
func TestCloseIdempotent(t *testing.T) {
	np := netnstest.New(t)
	testenv.NeedCommand(t, "tc")
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			src, err := ebpf.New(ebpf.Config{Interface: np.Dev[0], Netns: np.Path(0), Attach: mode})
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if err := src.Close(); err != nil {
					t.Fatal(err)
				}
				if n := tcxAttached(t, np); n != 0 {
					t.Fatalf("%d TCX programs attached after Close", n)
				}
				checkClean(t, np)
			}
			out := make(chan *packet.Batch, 64)
			if err := src.Run(context.Background(), packet.NewPool(0, 0), out); err == nil || !strings.Contains(err.Error(), "closed") {
				t.Fatalf("Run after Close: %v", err)
			}

			src, err = ebpf.New(ebpf.Config{Interface: np.Dev[0], Netns: np.Path(0), Attach: mode})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- src.Run(context.Background(), packet.NewPool(0, 0), out) }()
			np.SendUDP(t, 0, np.V4, 1, 10, 100)
			// A batch out means Run is running (a Close before Run makes
			// Run fail).
			var got int
			select {
			case b := <-out:
				got += b.Len()
				b.Release()
			case <-time.After(10 * time.Second): // bound only
				t.Fatal("no batch from Run")
			}
			if err := src.Close(); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second): // bound only: Run has returned when Close does
				t.Fatal("Run did not return after Close")
			}
			checkClean(t, np)
			close(out)
			for b := range out {
				got += b.Len()
				b.Release()
			}
			if got < 10 {
				t.Fatalf("Run sent %d packets before Close returned, want at least the 10 datagrams", got)
			}
			if err := src.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
