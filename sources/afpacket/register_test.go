package afpacket_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sources/afpacket"
	"github.com/pktpipe/pktpipe/sources/afpacket/netnstest"
)

// TestKindOpen opens the "afpacket" kind through the registry with every
// option of its own and of the shared environment, on a veth end in a
// namespace, and checks that each one took effect.
func TestKindOpen(t *testing.T) {
	np := netnstest.New(t)
	testenv.NeedCommand(t, "tcpdump")
	testenv.NeedCommand(t, "ping")
	spec, _ := pipeline.SourceKind(afpacket.Kind)
	if !spec.Live {
		t.Fatal("the afpacket kind does not say it is live")
	}
	reg := stats.NewRegistry()
	const snap = 100
	op, err := netnstest.OpenKind(t, afpacket.Kind, pipeline.SourceEnv{
		Interface: np.Dev[0], Netns: np.Path(0), Snaplen: snap, Filter: "udp", Stats: reg,
	}, "--fanout", "2", "--ring-blocks", "4", "--ring-block-size", "256K", "--ring-timeout", "10ms")
	if err != nil {
		t.Fatal(err)
	}
	if len(op.Sources) != 2 {
		t.Fatalf("%d sources, want 2 (--fanout 2)", len(op.Sources))
	}
	if op.NewFilter != nil || op.CloseNeedsPrivileges {
		t.Fatalf("opened %+v: the kernel filters, and closing needs nothing", op)
	}
	if got := op.IfName(int32(np.IfIndex[0])); got != np.Dev[0] {
		t.Fatalf("IfName(%d) = %q, want %q", np.IfIndex[0], got, np.Dev[0])
	}
	c := netnstest.Start(t, op.Sources...)
	np.Run(t, 0, "ping", "-c", "2", "-i", "0.2", "-W", "2", np.V4[1].String())
	const n = 20
	np.SendUDP(t, 0, np.V4, 4, n/4, 300)
	np.SendUDP(t, 0, np.V6, 4, n/4, 300)
	total := func(p [][]packet.Packet) int { return len(p[0]) + len(p[1]) }
	c.WaitFor(t, "the UDP datagrams", func(p [][]packet.Packet) bool { return total(p) >= 2*n })
	if err := c.Stop(); err != nil { // runs, then closes, each source
		t.Fatal(err)
	}
	got := [][]packet.Packet{c.Packets(0), c.Packets(1)}
	if total(got) != 2*n {
		t.Fatalf("captured %d packets, want exactly the %d datagrams (filter \"udp\" in the kernel)", total(got), 2*n)
	}
	for _, pkts := range got {
		for _, p := range pkts {
			if in, ok := netnstest.Parse(p.Data); !ok || in.Proto != 17 {
				t.Fatalf("non-UDP packet passed the filter: %+v", in)
			}
			if len(p.Data) != snap {
				t.Fatalf("captured %d bytes, want the snaplen %d", len(p.Data), snap)
			}
		}
	}
	for i := range 2 {
		id := fmt.Sprintf(`pktpipe_afpacket_packets_total{interface="%s",socket="%d"}`, np.Dev[0], i)
		if _, ok := reg.Value(id); !ok {
			t.Errorf("no %s in the env's registry", id)
		}
	}
	for _, s := range op.Sources {
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
}

// TestKindOptionErrors: bad settings are usage errors, found before any
// socket is opened where no interface is needed.
func TestKindOptionErrors(t *testing.T) {
	page := os.Getpagesize()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--fanout", "0"}, "--fanout"},
		{[]string{"--fanout", "5000"}, "--fanout"},
		{[]string{"--ring-blocks", "-1"}, "--ring-blocks"},
		{[]string{"--ring-block-size", fmt.Sprint(page + 1)}, "page size"},
		{[]string{"--ring-timeout", "-1s"}, "--ring-timeout"},
		{[]string{"--ring-timeout", "100us"}, "--ring-timeout"},
	} {
		_, err := netnstest.OpenKind(t, afpacket.Kind, pipeline.SourceEnv{Interface: "lo"}, c.args...)
		if !registry.IsUsage(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want a usage error naming %s", c.args, err, c.want)
		}
	}
	for _, c := range []struct {
		env  pipeline.SourceEnv
		want string
	}{
		{pipeline.SourceEnv{}, "-i"},
		{pipeline.SourceEnv{Interface: "lo", Snaplen: -1}, "--snaplen"},
		{pipeline.SourceEnv{Interface: "pp-no-such-if0"}, "pp-no-such-if0"},
	} {
		_, err := netnstest.OpenKind(t, afpacket.Kind, c.env)
		if !registry.IsUsage(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want a usage error naming %s", c.env, err, c.want)
		}
	}
}

// TestKindFilterError: an expression that does not compile for the
// interface fails Open, leaving nothing open.
func TestKindFilterError(t *testing.T) {
	testenv.NeedCommand(t, "tcpdump")
	testenv.NeedRoot(t)
	fds := openFDs(t)
	_, err := netnstest.OpenKind(t, afpacket.Kind, pipeline.SourceEnv{Interface: "lo", Filter: "tcp port"}, "--fanout", "2")
	if !registry.IsUsage(err) || !strings.Contains(err.Error(), "syntax error") {
		t.Fatalf("error %v, want a usage error with tcpdump's syntax error", err)
	}
	if n := openFDs(t); n != fds {
		t.Fatalf("%d file descriptors open after a failed Open, %d before", n, fds)
	}
}

// openFDs counts the process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestCloseIdempotent: Close releases the socket, the ring and the eventfd
// whether or not Run ran, any number of times; Run after Close fails.
func TestCloseIdempotent(t *testing.T) {
	np := netnstest.New(t)
	fds := openFDs(t)
	srcs, err := afpacket.NewGroup(afpacket.Config{Interface: np.Dev[0], Netns: np.Path(0), Fanout: 2})
	if err != nil {
		t.Fatal(err)
	}
	if openFDs(t) == fds {
		t.Fatal("NewGroup opened no file descriptor")
	}
	// One ran and was cancelled; the other never ran.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out := make(chan *packet.Batch, 8)
	if err := srcs[0].Run(ctx, packet.NewPool(0, 0), out); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		for _, s := range srcs {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := openFDs(t); n != fds {
		t.Fatalf("%d file descriptors open after Close, %d before NewGroup", n, fds)
	}
	if err := srcs[1].Run(context.Background(), packet.NewPool(0, 0), out); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Run after Close: %v", err)
	}
}

// TestCloseStopsRun: Close while Run runs stops it (the engine closes
// after Run, but a Close at any time must not unmap a ring in use).
func TestCloseStopsRun(t *testing.T) {
	np := netnstest.New(t)
	src, err := afpacket.New(afpacket.Config{Interface: np.Dev[0], Netns: np.Path(0), BlockTimeout: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan *packet.Batch, 64)
	done := make(chan error, 1)
	go func() { done <- src.Run(context.Background(), packet.NewPool(0, 0), out) }()
	np.SendUDP(t, 0, np.V4, 1, 10, 100)
	// A batch out means Run is running (a Close before Run makes Run fail).
	select {
	case b := <-out:
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
}
