package probe

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sinks/memsink"
	"github.com/pktpipe/pktpipe/sources/pcapfile"
	"github.com/pktpipe/pktpipe/stages/decode"
	"github.com/pktpipe/pktpipe/stages/flow"
	"github.com/pktpipe/pktpipe/stages/tcpstate"
)

// The lab: three namespaces, scanner — router — target.
//
//	scanner p0 10.88.1.2 fd00:88:1::2 ── q0 10.88.1.1 fd00:88:1::1 [router] q1 10.88.2.1 fd00:88:2::1 ── t0 10.88.2.2 fd00:88:2::2
//
// The target listens on TCP 8001 and 8002 and answers UDP 8001 (an echo);
// nothing listens on 8005 and 8006 (closed); nftables on the target drops
// TCP/UDP 8003 (filtered) and rejects TCP/UDP 8004 with ICMP/ICMPv6
// administratively prohibited. 10.88.2.99 and fd00:88:2::99 are absent:
// the router's neighbour resolution gives up after one 100 ms probe and it
// answers host (address) unreachable. ICMP rate limits are off everywhere,
// so every probe that draws an error gets it.
const (
	target4, absent4 = "10.88.2.2", "10.88.2.99"
	target6, absent6 = "fd00:88:2::2", "fd00:88:2::99"
	scanner4         = "10.88.1.2"
	markerSrc        = "10.88.1.3" // the capture's end marker comes from here, not from the scanner
	scanPorts        = "8001-8006"
	udpPorts         = "8001,8003,8004,8005"
)

const listenScript = `
import socket, threading, sys
socks = []
for port in (8001, 8002):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port)); s.listen(128); socks.append(s)
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
u.bind(("::", 8001))
def echo():
    while True:
        b, a = u.recvfrom(2048)
        u.sendto(b"pong" + b, a)
def accept(s):
    while True:
        c, _ = s.accept(); c.close()
threading.Thread(target=echo, daemon=True).start()
for s in socks: threading.Thread(target=accept, args=(s,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
`

const targetRules = `table inet probetest {
	chain input {
		type filter hook input priority 0; policy accept;
		tcp dport 8003 drop
		udp dport 8003 drop
		meta nfproto ipv4 meta l4proto { tcp, udp } th dport 8004 reject with icmp type admin-prohibited
		meta nfproto ipv6 meta l4proto { tcp, udp } th dport 8004 reject with icmpv6 type admin-prohibited
	}
}
`

const routerRules = `table inet probetest {
	chain input {
		type filter hook input priority 0; policy accept;
		udp dport 5999 drop
	}
}
`

type lab struct {
	t       *testing.T
	ctx     context.Context
	S, R, T string // namespace names
	dir     string
}

func (l *lab) run(args ...string) string {
	l.t.Helper()
	out, err := exec.CommandContext(l.ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (l *lab) in(ns string, args ...string) string {
	l.t.Helper()
	return l.run(append([]string{"ip", "netns", "exec", ns}, args...)...)
}

func newLab(t *testing.T, ctx context.Context) *lab {
	tag := fmt.Sprintf("probe%d-%d", os.Getpid(), rand.IntN(1e6))
	l := &lab{t: t, ctx: ctx, S: tag + "s", R: tag + "r", T: tag + "t", dir: t.TempDir()}
	for _, ns := range []string{l.S, l.R, l.T} {
		l.run("ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		l.in(ns, "ip", "link", "set", "lo", "up")
		l.in(ns, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0",
			"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	}
	l.run("ip", "link", "add", "p0", "netns", l.S, "type", "veth", "peer", "name", "q0", "netns", l.R)
	l.run("ip", "link", "add", "t0", "netns", l.T, "type", "veth", "peer", "name", "q1", "netns", l.R)
	for _, a := range [][3]string{
		{l.S, "p0", scanner4 + "/24"}, {l.S, "p0", "fd00:88:1::2/64"}, {l.S, "p0", markerSrc + "/24"},
		{l.R, "q0", "10.88.1.1/24"}, {l.R, "q0", "fd00:88:1::1/64"},
		{l.R, "q1", "10.88.2.1/24"}, {l.R, "q1", "fd00:88:2::1/64"},
		{l.T, "t0", target4 + "/24"}, {l.T, "t0", target6 + "/64"},
	} {
		args := []string{"ip", "addr", "add", a[2], "dev", a[1]}
		if strings.Contains(a[2], ":") {
			args = append(args, "nodad")
		}
		l.in(a[0], args...)
	}
	for _, k := range [][2]string{{l.S, "p0"}, {l.R, "q0"}, {l.R, "q1"}, {l.T, "t0"}} {
		l.in(k[0], "ip", "link", "set", k[1], "up")
	}
	l.in(l.S, "ip", "route", "add", "default", "via", "10.88.1.1")
	l.in(l.S, "ip", "-6", "route", "add", "default", "via", "fd00:88:1::1")
	l.in(l.T, "ip", "route", "add", "default", "via", "10.88.2.1")
	l.in(l.T, "ip", "-6", "route", "add", "default", "via", "fd00:88:2::1")
	l.in(l.R, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
		"net.ipv4.neigh.q1.mcast_solicit=1", "net.ipv4.neigh.q1.retrans_time_ms=100",
		"net.ipv6.neigh.q1.mcast_solicit=1", "net.ipv6.neigh.q1.retrans_time_ms=100")
	for ns, rules := range map[string]string{l.T: targetRules, l.R: routerRules} {
		f := filepath.Join(l.dir, ns+".nft")
		if err := os.WriteFile(f, []byte(rules), 0o644); err != nil {
			t.Fatal(err)
		}
		l.in(ns, "nft", "-f", f)
	}

	// Listeners, up before any scan.
	py := exec.CommandContext(ctx, "ip", "netns", "exec", l.T, "python3", "-c", listenScript)
	stdin, _ := py.StdinPipe()
	stdout, _ := py.StdoutPipe()
	py.Stderr = os.Stderr
	if err := py.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stdin.Close(); _ = py.Process.Kill(); _ = py.Wait() })
	if s := bufio.NewScanner(stdout); !s.Scan() || s.Text() != "ready" {
		t.Fatalf("listeners did not start: %q", s.Text())
	}
	// Links take a moment to come up; the target's neighbours get
	// resolved here, so only the absent hosts fail later.
	for _, dst := range []string{target4, target6} {
		testenv.WaitFor(t, 10*time.Second, "ping "+dst, func() bool {
			return exec.CommandContext(ctx, "ip", "netns", "exec", l.S, "ping", "-c1", "-W1", dst).Run() == nil
		})
	}
	return l
}

// capture runs fn with tcpdump on the scanner's link and returns the
// capture, complete: a datagram the router drops without a word marks the
// end, and tcpdump writes each packet as it captures it (-U), in order.
func (l *lab) capture(name string, fn func()) string {
	t := l.t
	t.Helper()
	pcap := filepath.Join(l.dir, name+".pcap")
	td := exec.CommandContext(l.ctx, "ip", "netns", "exec", l.S, "tcpdump", "--immediate-mode", "-i", "p0", "-s", "0", "-U", "-n", "-w", pcap, "ip or ip6")
	stderr, err := td.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := td.Start(); err != nil {
		t.Fatal(err)
	}
	done := false
	defer func() {
		if !done {
			_ = td.Process.Kill()
			_ = td.Wait()
		}
	}()
	sc := bufio.NewScanner(stderr)
	for sc.Scan() && !strings.Contains(sc.Text(), "listening on") {
	}
	go func() {
		for sc.Scan() {
		}
	}()
	fn()
	marker := fmt.Sprintf("probe-end-%d-%d", os.Getpid(), rand.Uint64())
	l.in(l.S, "python3", "-c", `import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[2], 0))
s.sendto(sys.argv[1].encode(), ("10.88.1.1", 5999))`, marker, markerSrc)
	testenv.WaitFor(t, 20*time.Second, "tcpdump to write the end marker", func() bool {
		b, _ := os.ReadFile(pcap)
		return bytes.Contains(b, []byte(marker))
	})
	_ = td.Process.Signal(syscall.SIGINT)
	_ = td.Wait()
	done = true
	if dir := os.Getenv("PROBE_KEEP"); dir != "" {
		b, _ := os.ReadFile(pcap)
		_ = os.WriteFile(filepath.Join(dir, name+".pcap"), b, 0o644)
	}
	return pcap
}

// runScan runs the real engine on a capture: pcapfile → decode → flow
// with tcpstate and probe → memsink, and returns the flow records that
// carry an outcome; with the scan detector behind the workers (when cfg
// is not nil): each worker's probe analyzer sends its ended attempts
// into a pipeline.Keyed stage of 2 shards, whose scan events are
// returned.
func runScan(t *testing.T, file string, workers int, cfg *ScanConfig) ([]recJSON, []*event.Scan) {
	t.Helper()
	var keyed *pipeline.Keyed[Record, SourceState]
	scanCh := make(chan *event.Batch, 16)
	var scans []*event.Scan
	scanDone := make(chan struct{})
	go func() {
		defer close(scanDone)
		for b := range scanCh {
			for _, e := range b.Events {
				scans = append(scans, e.(*event.Scan))
			}
			b.Release()
		}
	}()
	if cfg != nil {
		d := NewDetector(*cfg)
		kc := d.KeyedConfig(2, 1024)
		keyed = pipeline.NewKeyed(kc, func(int) pipeline.KeyedHandler[Record, SourceState] { return NewDetector(*cfg) })
		keyed.Start(func() *pipeline.Emitter { return pipeline.NewEmitter(scanCh) })
	}
	var probes []*Analyzer
	reg := stats.NewRegistry()
	src, err := pcapfile.New(pcapfile.Config{Files: []string{file}, Stats: reg})
	if err != nil {
		t.Fatal(err)
	}
	sink := memsink.New(nil)
	eng, err := pipeline.New(pipeline.Config{Workers: workers, Stats: reg}, pipeline.Parts{
		Sources:    []pipeline.Source{src},
		NewDecoder: func() pipeline.Decoder { return decode.New() },
		NewProcessor: func(w int) pipeline.Processor {
			pr := New(reg)
			if keyed != nil {
				pr.SetScanSender(keyed.NewSender())
				probes = append(probes, pr)
			}
			return flow.NewProcessor(flow.Config{Workers: workers, Stats: reg}, tcpstate.New(), pr)
		},
		Sink: sink,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The workers are done (the engine would call FlushWorker at the end
	// of each worker): what they sent goes in, then the rest ends.
	if keyed != nil {
		for _, pr := range probes {
			pr.FlushWorker()
		}
		keyed.Close()
	}
	close(scanCh)
	<-scanDone
	var out []recJSON
	for _, b := range sink.Lines() {
		var r recJSON
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		r.raw = string(b)
		if r.EventType == "flow" && r.Conn != nil && r.Conn.Outcome != "" {
			out = append(out, r)
		}
	}
	return out, scans
}
