package metrics

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

type fakeQueues struct{}

func (fakeQueues) QueueFill() ([]string, []int, []int) {
	return []string{"source0", "worker0", "events"}, []int{1, 7, 0}, []int{8, 8, 16}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestScrapeExportsTheRegistry(t *testing.T) {
	reg := stats.NewRegistry()
	reg.Counter("pktpipe_source_packets_total", "Packets read by a source.", "source", "pcapfile").Add(79)
	reg.Counter("pktpipe_events_total", "Events emitted, by event_type.", "type", "flow").Add(20)
	reg.Counter("pktpipe_events_total", "Events emitted, by event_type.", "type", "tls").Add(4)
	reg.Gauge("pktpipe_flow_table_flows", "Flows in the table.", "worker", "0").Set(12)
	reg.LossCounter("pktpipe_sink_failed_events_total", "Events the sink failed to write.")
	// A name registered once with a label and once without: one family.
	reg.Counter("pktpipe_odd_total", "Odd.").Add(1)
	reg.Counter("pktpipe_odd_total", "Odd.", "k", "v").Add(2)

	s, err := Start(Config{Addr: "127.0.0.1:0", Stats: reg, Queues: fakeQueues{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	// A series registered after start appears at the next scrape.
	reg.Counter("pktpipe_events_total", "Events emitted, by event_type.", "type", "dns").Add(3)

	code, body := get(t, "http://"+s.Addr()+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	for _, want := range []string{
		"# TYPE pktpipe_source_packets_total counter",
		`pktpipe_source_packets_total{source="pcapfile"} 79`,
		"# HELP pktpipe_events_total Events emitted, by event_type.",
		`pktpipe_events_total{type="flow"} 20`,
		`pktpipe_events_total{type="tls"} 4`,
		`pktpipe_events_total{type="dns"} 3`,
		"# TYPE pktpipe_flow_table_flows gauge",
		`pktpipe_flow_table_flows{worker="0"} 12`,
		"pktpipe_sink_failed_events_total 0",
		`pktpipe_odd_total{k=""} 1`, // empty = absent to Prometheus
		`pktpipe_odd_total{k="v"} 2`,
		"# TYPE pktpipe_queue_batches gauge",
		`pktpipe_queue_batches{queue="worker0"} 7`,
		`pktpipe_queue_capacity_batches{queue="events"} 16`,
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", body)
	}
}

func TestHealthz(t *testing.T) {
	reg := stats.NewRegistry()
	failed := reg.LossCounter("pktpipe_sink_failed_events_total", "Events the sink failed to write.")
	s, err := Start(Config{Addr: "127.0.0.1:0", Stats: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	url := "http://" + s.Addr() + "/healthz"
	if code, body := get(t, url); code != 503 || !strings.Contains(body, "not running") {
		t.Errorf("before start: %d %q, want 503", code, body)
	}
	s.SetRunning(true)
	if code, body := get(t, url); code != 200 {
		t.Errorf("running: %d %q, want 200", code, body)
	}
	failed.Add(5)
	if code, body := get(t, url); code != 503 || !strings.Contains(body, "pktpipe_sink_failed_events_total") {
		t.Errorf("after sink failure: %d %q, want 503 naming the counter", code, body)
	}
	s.SetRunning(false)
}

func TestCheckAddr(t *testing.T) {
	for _, c := range []struct {
		addr   string
		remote bool
		ok     bool
	}{
		{"127.0.0.1:9477", false, true},
		{"[::1]:9477", false, true},
		{"localhost:9477", false, true},
		{"127.0.0.2:9477", false, true},
		{"0.0.0.0:9477", false, false},
		{":9477", false, false},
		{"192.0.2.1:9477", false, false},
		{"0.0.0.0:9477", true, true},
		{":9477", true, true},
		{"9477", false, false},
		{"127.0.0.1:", false, false},
	} {
		err := CheckAddr(c.addr, c.remote)
		if err != nil && !registry.IsUsage(err) {
			t.Errorf("CheckAddr(%q): %v is not a usage error", c.addr, err)
		}
		if (err == nil) != c.ok {
			t.Errorf("CheckAddr(%q, remote=%v) = %v, want ok=%v", c.addr, c.remote, err, c.ok)
		}
	}
}

// hostsEnv carries, to the copy of the test binary that
// TestBoundAddressMustBeLoopback starts, the hosts file to mount.
const hostsEnv = "PKTPIPE_METRICS_TEST_HOSTS"

// A name is resolved only when the server listens, so the address to check
// is the one bound. The test re-runs itself in new mount and network
// namespaces, bind-mounts there a hosts file that maps localhost to
// 0.0.0.0 (the machine's /etc/hosts is untouched), and asks for
// localhost: the resolver then really returns 0.0.0.0. The new network
// namespace holds only a loopback device that is down, so listening on
// all its interfaces exposes nothing, and a fixed port cannot clash.
func TestBoundAddressMustBeLoopback(t *testing.T) {
	if hosts := os.Getenv(hostsEnv); hosts != "" {
		boundAddressChild(t, hosts)
		return
	}
	testenv.NeedRoot(t)
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte("0.0.0.0 localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestBoundAddressMustBeLoopback$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), hostsEnv+"="+hosts)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("in namespaces with localhost = 0.0.0.0: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

func boundAddressChild(t *testing.T, hosts string) {
	// Go's exec made this mount namespace's mounts private, so the bind
	// mount stays here.
	if err := syscall.Mount(hosts, "/etc/hosts", "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mount %s on /etc/hosts: %v", hosts, err)
	}
	reg := stats.NewRegistry()
	const addr = "localhost:9477"
	s, err := Start(Config{Addr: addr, Stats: reg})
	if err == nil {
		bound := s.Addr()
		s.Close(context.Background())
		t.Fatalf("Start(%s) without AllowRemote listened on %s", addr, bound)
	}
	// Go binds 0.0.0.0 as a dual-stack socket and reports it as [::].
	if !strings.Contains(err.Error(), "[::]:9477") || !strings.Contains(err.Error(), "--metrics-allow-remote") {
		t.Errorf("error does not name the bound address and the flag: %v", err)
	}
	if !registry.IsUsage(err) {
		t.Errorf("refusal is not a usage error (exit 2): %v", err)
	}
	t.Logf("refused: %v", err)
	// The refused listener was closed: the port is free again.
	ln, err := net.Listen("tcp", "0.0.0.0:9477")
	if err != nil {
		t.Fatalf("port still held after the refusal: %v", err)
	}
	ln.Close()
	// Allowed, the same name binds all interfaces: the hosts file is in
	// effect, so the refusal above was about the address bound.
	s, err = Start(Config{Addr: addr, AllowRemote: true, Stats: reg})
	if err != nil {
		t.Fatalf("with AllowRemote: %v", err)
	}
	defer s.Close(context.Background())
	if got := s.Addr(); got != "[::]:9477" {
		t.Fatalf("with AllowRemote bound %s, want [::]:9477, all interfaces (hosts file not in effect?)", got)
	}
}

func TestCheckBound(t *testing.T) {
	for _, c := range []struct {
		addr   string
		remote bool
		ok     bool
	}{
		{"127.0.0.1:9477", false, true},
		{"127.3.2.1:9477", false, true},
		{"[::1]:9477", false, true},
		{"[::ffff:127.0.0.1]:9477", false, true},
		{"0.0.0.0:9477", false, false},
		{"[::]:9477", false, false},
		{"10.1.2.3:9477", false, false},
		{"0.0.0.0:9477", true, true},
		{"10.1.2.3:9477", true, true},
	} {
		a, err := net.ResolveTCPAddr("tcp", c.addr)
		if err != nil {
			t.Fatal(err)
		}
		err = checkBound("name:9477", a, c.remote)
		if (err == nil) != c.ok {
			t.Errorf("checkBound(%s, remote=%v) = %v, want ok=%v", c.addr, c.remote, err, c.ok)
		}
	}
}
