package icmpfb

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/testenv"
)

// The real-capture test: three namespaces, client — router — server, real
// kernels producing the errors, tcpdump on the client's link, then the
// pipeline on that capture, checked against tshark field by field.
//
//	client c0 10.77.1.2 fd00:77:1::2 ── r0 10.77.1.1 fd00:77:1::1 [router] r1 10.77.2.1 fd00:77:2::1 (MTU 1300) ── s0 10.77.2.2 fd00:77:2::2
//
// Router: nftables rejects udp/7777 (admin-prohibited) and tcp/7778
// (host-prohibited, v6 admin-prohibited), and drops udp/5999 to itself
// without an answer (the capture's end marker); no route to 10.77.9.0/24 and
// fd00:77:9::/64; prohibit routes to 10.77.8.0/24 and fd00:77:8::/64;
// neighbour resolution gives up after one 100 ms probe, so the absent
// hosts 10.77.2.99 and fd00:77:2::99 are unreachable quickly. ICMP rate
// limits are off in every namespace so each probe gets its error. The
// router's unreachable/prohibit routes answer through ip_error, which has
// its own per-source limit (one per second, a token bucket that every
// other ICMP error to the same source empties), so those two probes come
// from source addresses of their own.

const sendScript = `
import socket, time
def udp(fam, dst, port, ttl=None, size=32, df=False, wait=0.1, src=None):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if src: s.bind((src, 0))
    if ttl and fam == socket.AF_INET: s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    if ttl and fam == socket.AF_INET6: s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
    if df: s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO
    try: s.sendto(b"x" * size, (dst, port))
    except OSError as e: print("send", dst, port, e)
    time.sleep(wait); s.close()
def tcp(fam, dst, port, ttl=None):
    s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(0.5)
    if ttl: s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    try: s.connect((dst, port))
    except OSError: pass
    s.close(); time.sleep(0.1)
A, B = socket.AF_INET, socket.AF_INET6
T0 = time.time()
def mark(s): print("%.2f %s" % (time.time() - T0, s))
udp(A, "10.77.2.2", 9999); mark("udp A, '10.77.2.2', 9999")
udp(B, "fd00:77:2::2", 9999); mark("udp B, 'fd00:77:2::2', 9999")
udp(A, "10.77.2.2", 7777); mark("udp A, '10.77.2.2', 7777")
udp(B, "fd00:77:2::2", 7777); mark("udp B, 'fd00:77:2::2', 7777")
tcp(A, "10.77.2.2", 7778); mark("tcp A, '10.77.2.2', 7778")
tcp(B, "fd00:77:2::2", 7778); mark("tcp B, 'fd00:77:2::2', 7778")
udp(B, "fd00:77:2::2", 9998, ttl=1); mark("udp B, 'fd00:77:2::2', 9998, ttl=1")
tcp(A, "10.77.2.2", 80, ttl=1); mark("tcp A, '10.77.2.2', 80, ttl=1")
udp(A, "10.77.2.99", 9, wait=0.3); mark("udp A, '10.77.2.99', 9, wait=0.3")
udp(B, "fd00:77:2::99", 9, wait=0.3); mark("udp B, 'fd00:77:2::99', 9, wait=0.3")
udp(A, "10.77.9.1", 9, src="10.77.1.3"); mark("udp A, '10.77.9.1', 9")
udp(A, "10.77.8.1", 9, src="10.77.1.4"); mark("udp A, '10.77.8.1', 9")
udp(B, "fd00:77:9::1", 9); mark("udp B, 'fd00:77:9::1', 9")
udp(B, "fd00:77:8::1", 9); mark("udp B, 'fd00:77:8::1', 9")
udp(A, "10.77.2.2", 9997, size=1400, df=True); mark("udp A, '10.77.2.2', 9997, size=1400, df=True")
`

type netns struct {
	t   *testing.T
	ctx context.Context
}

func (n *netns) run(args ...string) string {
	n.t.Helper()
	out, err := exec.CommandContext(n.ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		n.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (n *netns) in(ns string, args ...string) string {
	n.t.Helper()
	return n.run(append([]string{"ip", "netns", "exec", ns}, args...)...)
}

func TestRealCapture(t *testing.T) {
	testenv.NeedRoot(t)
	for _, c := range []string{"ip", "tcpdump", "tshark", "nft", "traceroute", "ping", "python3"} {
		testenv.NeedCommand(t, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	n := &netns{t: t, ctx: ctx}
	tag := fmt.Sprintf("icmpfb%d-%d", os.Getpid(), rand.IntN(1e6))
	C, R, S := tag+"c", tag+"r", tag+"s"
	for _, ns := range []string{C, R, S} {
		n.run("ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		n.in(ns, "ip", "link", "set", "lo", "up")
		n.in(ns, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0",
			"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	}
	n.run("ip", "link", "add", "c0", "netns", C, "type", "veth", "peer", "name", "r0", "netns", R)
	n.run("ip", "link", "add", "s0", "netns", S, "type", "veth", "peer", "name", "r1", "netns", R)
	for _, a := range [][3]string{
		{C, "c0", "10.77.1.2/24"}, {C, "c0", "fd00:77:1::2/64"},
		{C, "c0", "10.77.1.3/24"}, {C, "c0", "10.77.1.4/24"},
		{R, "r0", "10.77.1.1/24"}, {R, "r0", "fd00:77:1::1/64"},
		{R, "r1", "10.77.2.1/24"}, {R, "r1", "fd00:77:2::1/64"},
		{S, "s0", "10.77.2.2/24"}, {S, "s0", "fd00:77:2::2/64"},
	} {
		args := []string{"ip", "addr", "add", a[2], "dev", a[1]}
		if strings.Contains(a[2], ":") {
			args = append(args, "nodad")
		}
		n.in(a[0], args...)
	}
	n.in(R, "ip", "link", "set", "r1", "mtu", "1300")
	n.in(S, "ip", "link", "set", "s0", "mtu", "1300")
	for _, l := range [][2]string{{C, "c0"}, {R, "r0"}, {R, "r1"}, {S, "s0"}} {
		n.in(l[0], "ip", "link", "set", l[1], "up")
	}
	n.in(C, "ip", "route", "add", "default", "via", "10.77.1.1")
	n.in(C, "ip", "-6", "route", "add", "default", "via", "fd00:77:1::1")
	n.in(S, "ip", "route", "add", "default", "via", "10.77.2.1")
	n.in(S, "ip", "-6", "route", "add", "default", "via", "fd00:77:2::1")
	n.in(R, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
		"net.ipv4.neigh.r1.mcast_solicit=1", "net.ipv4.neigh.r1.retrans_time_ms=100",
		"net.ipv6.neigh.r1.mcast_solicit=1", "net.ipv6.neigh.r1.retrans_time_ms=100")
	n.in(R, "ip", "route", "add", "prohibit", "10.77.8.0/24")
	n.in(R, "ip", "-6", "route", "add", "prohibit", "fd00:77:8::/64")
	rules := filepath.Join(t.TempDir(), "rules.nft")
	if err := os.WriteFile(rules, []byte(`table inet icmpfb {
	chain forward_filter {
		type filter hook forward priority 0; policy accept;
		meta nfproto ipv4 udp dport 7777 reject with icmp type admin-prohibited
		meta nfproto ipv6 udp dport 7777 reject with icmpv6 type admin-prohibited
		meta nfproto ipv4 tcp dport 7778 reject with icmp type host-prohibited
		meta nfproto ipv6 tcp dport 7778 reject with icmpv6 type admin-prohibited
	}
	chain input_filter {
		type filter hook input priority 0; policy accept;
		udp dport 5999 drop
	}
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	n.in(R, "nft", "-f", rules)
	// Neighbours of the real hosts resolved up front, so only the absent
	// ones fail.
	// (Links take a moment to come up: a few tries, bounded.)
	for _, dst := range []string{"10.77.2.2", "fd00:77:2::2"} {
		for try := 0; ; try++ {
			err := exec.CommandContext(ctx, "ip", "netns", "exec", C, "ping", "-c1", "-W1", dst).Run()
			if err == nil {
				break
			}
			if try == 5 {
				t.Fatalf("ping %s: %v", dst, err)
			}
		}
	}

	pcap := filepath.Join(t.TempDir(), "client.pcap")
	td := exec.CommandContext(ctx, "ip", "netns", "exec", C, "tcpdump", "--immediate-mode", "-i", "c0", "-s", "0", "-U", "-n", "-w", pcap, "icmp or icmp6 or udp or tcp")
	stderr, err := td.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := td.Start(); err != nil {
		t.Fatal(err)
	}
	tdDone := false
	t.Cleanup(func() {
		if !tdDone {
			_ = td.Process.Kill()
			_ = td.Wait()
		}
	})
	sc := bufio.NewScanner(stderr)
	for sc.Scan() && !strings.Contains(sc.Text(), "listening on") {
	}
	go func() {
		for sc.Scan() {
		}
	}()

	t.Logf("sends (seconds since start):\n%s", n.in(C, "python3", "-c", sendScript))
	// Traceroute's probes: hop 1 is the router (ttl-exceeded), hop 2 the
	// server (port-unreachable).
	n.in(C, "traceroute", "-n", "-q1", "-w1", "-m2", "10.77.2.2")
	// Packet too big for a ping over the 1300-byte link.
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", C, "ping", "-6", "-c1", "-W1", "-s", "1400", "fd00:77:2::2").CombinedOutput()
	t.Logf("ping: %v %s", err, out)
	// Every error above has arrived (each sender waited for its own). A
	// last datagram, which the router drops without a word, marks the end:
	// tcpdump writes each packet as it captures it (-U), in capture order,
	// so once the marker is in the file so is everything before it.
	marker := fmt.Sprintf("icmpfb-end-%d-%d", os.Getpid(), rand.Uint64())
	n.in(C, "python3", "-c", `import socket, sys
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(sys.argv[1].encode(), ("10.77.1.1", 5999))`, marker)
	testenv.WaitFor(t, 20*time.Second, "tcpdump to write the end marker", func() bool {
		b, _ := os.ReadFile(pcap)
		return bytes.Contains(b, []byte(marker))
	})
	_ = td.Process.Signal(syscall.SIGINT)
	_ = td.Wait()
	tdDone = true

	if dir := os.Getenv("ICMPFB_KEEP"); dir != "" {
		b, _ := os.ReadFile(pcap)
		_ = os.WriteFile(filepath.Join(dir, "icmpfb-client.pcap"), b, 0o644)
	}
	oracle := tsharkErrors(t, ctx, pcap)
	lines, _ := run(t, pcap, 4)
	fbs, flows := parse(t, lines)
	if len(fbs) != len(oracle) {
		for _, f := range fbs {
			t.Log(f.raw)
		}
		t.Fatalf("%d icmp_feedback events, tshark sees %d ICMP errors", len(fbs), len(oracle))
	}
	for i, o := range oracle {
		g, fb := fbs[i], fbs[i].FB
		bad := func(what string, got, want any) {
			t.Helper()
			t.Errorf("error %d (tshark frame %d) %s: ours %v, tshark %v\n  %s", i, o.frame, what, got, want, g.raw)
		}
		if *g.ICMPType != o.typ || *g.ICMPCode != o.code {
			bad("type/code", fmt.Sprint(*g.ICMPType, "/", *g.ICMPCode), fmt.Sprint(o.typ, "/", o.code))
		}
		if fb.Reporter != o.reporter {
			bad("reporter", fb.Reporter, o.reporter)
		}
		if q := fb.Quoted; q == nil || q.SrcIP != o.qsrc || q.DestIP != o.qdst {
			bad("quoted addresses", q, o.qsrc+" → "+o.qdst)
			continue
		}
		q := fb.Quoted
		if o.qsport != 0 && (q.SrcPort == nil || *q.SrcPort != o.qsport || *q.DestPort != o.qdport) {
			bad("quoted ports", fmt.Sprint(q.SrcPort, q.DestPort), fmt.Sprint(o.qsport, o.qdport))
		}
		if o.hasSeq && (q.Seq == nil || *q.Seq != o.seq) {
			bad("quoted seq", q.Seq, o.seq)
		}
		if o.mtu != 0 && (fb.MTU == nil || *fb.MTU != o.mtu) {
			bad("mtu", fb.MTU, o.mtu)
		}
		if !fb.Matched {
			bad("matched", false, "the client-side capture holds every quoted packet")
		}
		if fb.Verified != nil && !*fb.Verified {
			bad("verified", false, "real errors")
		}
		if o.hasSeq && fb.Verified == nil {
			bad("verified", nil, "a TCP quote is checkable")
		}
	}

	// What each scenario must have produced, by (reporter, type/code) → class.
	want := []struct {
		reporter   string
		typ, code  int
		class, det string
	}{
		{"10.77.2.2", 3, 3, "port-unreachable", ""},
		{"fd00:77:2::2", 1, 4, "port-unreachable", ""},
		{"10.77.1.1", 3, 13, "admin-prohibited", "communication-prohibited"},
		{"fd00:77:1::1", 1, 1, "admin-prohibited", "communication-prohibited"},
		{"10.77.1.1", 3, 10, "admin-prohibited", "host-prohibited"},
		{"fd00:77:1::1", 3, 0, "ttl-exceeded", ""},
		{"10.77.1.1", 11, 0, "ttl-exceeded", ""},
		{"10.77.1.1", 3, 1, "host-unreachable", ""},
		{"fd00:77:1::1", 1, 3, "address-unreachable", ""},
		{"10.77.1.1", 3, 0, "net-unreachable", ""},
		{"fd00:77:1::1", 1, 0, "no-route", ""},
		{"10.77.1.1", 3, 4, "frag-needed", ""},
		{"fd00:77:1::1", 2, 0, "packet-too-big", ""},
	}
	for _, w := range want {
		found := false
		for _, g := range fbs {
			if g.FB.Reporter == w.reporter && *g.ICMPType == w.typ && *g.ICMPCode == w.code {
				found = true
				if g.FB.Class != w.class || g.FB.Detail != w.det {
					t.Errorf("%s %d/%d: class %s/%s, want %s/%s", w.reporter, w.typ, w.code, g.FB.Class, g.FB.Detail, w.class, w.det)
				}
			}
		}
		if !found {
			t.Errorf("no %d/%d error from %s (%s) in the capture", w.typ, w.code, w.reporter, w.class)
		}
	}

	// Flow records.
	check := func(dst string, dport int, proto string, f func(x *flowFBJSON) bool, what string) {
		t.Helper()
		for _, r := range flows {
			if r.DestIP == dst && r.DestPort == dport && r.Proto == proto {
				if r.FlowFB == nil || !f(r.FlowFB) {
					t.Errorf("flow to %s:%d %s: want %s: %s", dst, dport, proto, what, r.raw)
				}
				return
			}
		}
		t.Errorf("no %s flow to %s:%d", proto, dst, dport)
	}
	check("10.77.2.2", 9999, "UDP", func(x *flowFBJSON) bool { return x.Summary == "rejected" }, "rejected")
	check("fd00:77:2::2", 9999, "UDP", func(x *flowFBJSON) bool { return x.Summary == "rejected" }, "rejected")
	check("10.77.2.2", 7778, "TCP", func(x *flowFBJSON) bool {
		return x.Summary == "filtered" && x.Items[0].Verified != nil && *x.Items[0].Verified
	}, "filtered, verified")
	check("fd00:77:2::2", 7778, "TCP", func(x *flowFBJSON) bool { return x.Summary == "filtered" }, "filtered")
	check("10.77.2.2", 9997, "UDP", func(x *flowFBJSON) bool { return x.PathMTU == 1300 }, "path_mtu 1300")
	check("10.77.2.99", 9, "UDP", func(x *flowFBJSON) bool { return x.Summary == "unreachable" }, "unreachable")
	pingPTB := false
	for _, r := range flows {
		if r.Proto == "IPv6-ICMP" && r.FlowFB != nil && r.FlowFB.PathMTU == 1300 {
			pingPTB = true
		}
	}
	if !pingPTB {
		t.Error("the v6 ping flow has no path_mtu 1300")
	}
	t.Logf("%d ICMP errors agree with tshark", len(oracle))
}

// tsharkError is one ICMP error as tshark decodes it.
type tsharkError struct {
	frame          int
	typ, code      int
	reporter       string
	qsrc, qdst     string
	qsport, qdport int
	seq            uint32
	hasSeq         bool
	mtu            int
}

// tsharkErrors lists the capture's ICMP errors in frame order. tshark
// prints a field found in the outer and the quoted header as "outer,inner".
func tsharkErrors(t *testing.T, ctx context.Context, pcap string) []tsharkError {
	t.Helper()
	fields := []string{"frame.number", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "icmp.type", "icmp.code", "icmpv6.type", "icmpv6.code",
		"udp.srcport", "udp.dstport", "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "icmp.mtu", "icmpv6.mtu"}
	args := []string{"-r", pcap, "-n", "-Y", "icmp.type in {3,4,5,11,12} || icmpv6.type in {1,2,3,4}", "-T", "fields", "-E", "occurrence=a", "-E", "separator=/t"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.CommandContext(ctx, "tshark", args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("tshark: %v\n%s", err, stderr)
	}
	var res []tsharkError
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if l == "" {
			continue
		}
		c := strings.Split(l, "\t")
		v := func(name string) []string {
			for i, f := range fields {
				if f == name && c[i] != "" {
					return strings.Split(c[i], ",")
				}
			}
			return nil
		}
		num := func(s []string, i int) int {
			if len(s) <= i {
				return 0
			}
			x, _ := strconv.Atoi(s[i])
			return x
		}
		var e tsharkError
		e.frame = num(v("frame.number"), 0)
		src, dst, typ, code, mtu := v("ip.src"), v("ip.dst"), v("icmp.type"), v("icmp.code"), v("icmp.mtu")
		if v("icmpv6.type") != nil {
			src, dst, typ, code, mtu = v("ipv6.src"), v("ipv6.dst"), v("icmpv6.type"), v("icmpv6.code"), v("icmpv6.mtu")
		}
		if len(src) < 2 || len(dst) < 2 {
			t.Fatalf("tshark line without a quoted header: %q", l)
		}
		e.reporter, e.qsrc, e.qdst = src[0], src[1], dst[1]
		e.typ, e.code, e.mtu = num(typ, 0), num(code, 0), num(mtu, 0)
		if p := v("udp.srcport"); p != nil {
			e.qsport, e.qdport = num(p, 0), num(v("udp.dstport"), 0)
		}
		if p := v("tcp.srcport"); p != nil {
			e.qsport, e.qdport = num(p, 0), num(v("tcp.dstport"), 0)
			if s := v("tcp.seq_raw"); s != nil {
				x, _ := strconv.ParseUint(s[0], 10, 32)
				e.seq, e.hasSeq = uint32(x), true
			}
		}
		res = append(res, e)
	}
	return res
}
