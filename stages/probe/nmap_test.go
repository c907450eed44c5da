package probe

import (
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/sinks/encode"
)

// nmapRun is the part of nmap's -oX output the oracle reads.
type nmapRun struct {
	Hosts []nmapHost `xml:"host"`
}

type nmapHost struct {
	Status struct {
		State  string `xml:"state,attr"`
		Reason string `xml:"reason,attr"`
	} `xml:"status"`
	Addrs []nmapAddr `xml:"address"`
	Ports []nmapPort `xml:"ports>port"`
	Extra []struct {
		State string `xml:"state,attr"`
		Count int    `xml:"count,attr"`
	} `xml:"ports>extraports"`
}

type nmapAddr struct {
	Addr string `xml:"addr,attr"`
	Type string `xml:"addrtype,attr"`
}

type nmapPort struct {
	Proto string `xml:"protocol,attr"`
	ID    int    `xml:"portid,attr"`
	State struct {
		State  string `xml:"state,attr"`
		Reason string `xml:"reason,attr"`
	} `xml:"state"`
}

func (r *nmapRun) addr(i int) string {
	for _, a := range r.Hosts[i].Addrs {
		if a.Type == "ipv4" || a.Type == "ipv6" {
			return a.Addr
		}
	}
	return ""
}

// portKey names a probed port the way both sides can: target, proto
// ("TCP"/"UDP"), port.
type portKey struct {
	ip    string
	proto string
	port  int
}

func (k portKey) String() string { return fmt.Sprintf("%s %s/%d", k.ip, k.proto, k.port) }

// rank orders outcomes when a port drew several attempt flows (nmap
// retries from another source port): the strongest answer is the port's,
// as nmap takes any answer over silence.
var rank = map[string]int{"open": 6, "closed": 5, "admin_prohibited": 4, "unreachable": 3, "ttl_exceeded": 2, "filtered": 1}

// ports aggregates our outcomes per probed port, for attempts from src.
func ports(recs []recJSON, src []string) map[portKey]string {
	out := map[portKey]string{}
	for _, r := range recs {
		if !slices.Contains(src, r.SrcIP) || (r.Proto != "TCP" && r.Proto != "UDP") {
			continue
		}
		k := portKey{r.DestIP, r.Proto, r.DestPort}
		if rank[r.Conn.Outcome] > rank[out[k]] {
			out[k] = r.Conn.Outcome
		}
	}
	return out
}

// want says which of our outcomes agree with nmap's verdict: the issue's
// rule (open = open, closed = closed, filtered = filtered or
// admin_prohibited, UDP open|filtered = filtered), and the finer one nmap's
// reason allows (admin-prohibited, host-unreach, time-exceeded...).
func want(state, reason string) (coarse []string, fine string) {
	switch state {
	case "open":
		return []string{"open"}, "open"
	case "closed":
		return []string{"closed"}, "closed"
	case "open|filtered":
		return []string{"filtered"}, "filtered"
	case "filtered":
		coarse = []string{"filtered", "admin_prohibited"}
		switch reason {
		case "admin-prohibited", "host-prohibited", "net-prohibited":
			return coarse, "admin_prohibited"
		case "host-unreach", "net-unreach", "addr-unreach", "no-route":
			// nmap's filtered also covers an unreachable host; the
			// issue's rule did not foresee it, so it is accepted here.
			return append(coarse, "unreachable"), "unreachable"
		case "time-exceeded":
			return append(coarse, "ttl_exceeded"), "ttl_exceeded"
		}
		return coarse, "filtered"
	}
	return nil, ""
}

type scan struct {
	name string
	args []string // nmap's, before -oX
	src  []string // the scanner's addresses
	// tool runs another scanner instead of nmap and returns its verdicts
	// in nmap's form (masscan writes nmap's XML; hping3's lines are
	// translated) and the ports it probed without an answer it reports.
	tool func(l *lab, name string) (nmapRun, []portKey)
	// connect: nmap -sT sees no packet, only connect()'s errno. Linux
	// turns every ICMP unreachable but port-unreachable into EHOSTUNREACH
	// (an admin-prohibited one too), and in SYN-SENT holds it as a soft
	// error (RFC 1122 4.2.3.9) that connect() reports only when its own
	// retries time out: nmap's host-unreach may be ours admin_prohibited,
	// and when nmap's -T5 timeout fires first its no-response may be ours
	// unreachable or admin_prohibited (the error is on the wire).
	connect bool
	kind    string // the scan event's scan.kind
}

func TestNmapOracle(t *testing.T) {
	testenv.NeedRoot(t)
	for _, c := range []string{"ip", "tcpdump", "nft", "nmap", "masscan", "hping3", "ping", "python3", "curl", "dig", "ssh"} {
		testenv.NeedCommand(t, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	l := newLab(t, ctx)
	common := []string{"nmap", "-n", "-T5", "--max-retries", "1", "--host-timeout", "20s"}
	v4, v6 := []string{scanner4}, []string{"fd00:88:1::2"}
	scans := []scan{
		{"sS", []string{"-Pn", "-sS", "-p", scanPorts, target4, absent4}, v4, nil, false, "portscan"},
		{"sT", []string{"-Pn", "-sT", "-p", scanPorts, target4, absent4}, v4, nil, true, "portscan"},
		{"sU", []string{"-Pn", "-sU", "-p", udpPorts, target4, absent4}, v4, nil, false, "portscan"},
		{"6sS", []string{"-6", "-Pn", "-sS", "-p", scanPorts, target6, absent6}, v6, nil, false, "portscan"},
		// -v: down hosts are written too.
		{"sn", []string{"-v", "-sn", target4, absent4}, v4, nil, false, "ping_sweep"},
		{name: "masscan", src: v4, tool: masscan, kind: "portscan"},
		{name: "hping3", src: v4, tool: hping3, kind: "portscan"},
	}
	t.Run("normal", func(t *testing.T) {
		l.t = t
		testNormal(t, l)
	})
	for _, sc := range scans {
		t.Run(sc.name, func(t *testing.T) {
			l.t = t
			var run nmapRun
			var silent []portKey
			var pcap string
			if sc.tool != nil {
				pcap = l.capture(sc.name, func() { run, silent = sc.tool(l, sc.name) })
			} else {
				xmlOut := filepath.Join(l.dir, sc.name+".xml")
				pcap = l.capture(sc.name, func() {
					l.in(l.S, append(append(common, sc.args...), "-oX", xmlOut)...)
				})
				run = readXML(t, xmlOut)
			}
			recs, scans := runScan(t, pcap, 4, &labScanConfig)
			if sc.name == "sn" {
				compareHosts(t, &run, recs, sc.src)
			} else {
				comparePorts(t, &run, recs, sc.src, sc.connect)
				compareSilent(t, silent, recs, sc.src)
			}
			checkScan(t, sc, &run, silent, recs, scans)
			// Workers 1 and 4 write the same outcomes and scan events.
			one, scans1 := runScan(t, pcap, 1, &labScanConfig)
			if a, b := sortedRaw(recs), sortedRaw(one); !slices.Equal(a, b) {
				t.Errorf("workers 4 and 1 differ:\n%s\n---\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
			}
			if a, b := scanJSON(t, scans), scanJSON(t, scans1); !slices.Equal(a, b) {
				t.Errorf("scan events, workers 4 and 1 differ:\n%s\n---\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
			}
		})
	}
}

func readXML(t *testing.T, file string) nmapRun {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("PROBE_KEEP"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, filepath.Base(file)), b, 0o644)
	}
	var run nmapRun
	if err := xml.Unmarshal(b, &run); err != nil {
		t.Fatal(err)
	}
	return run
}

// compareSilent checks ports a scanner probed and reported nothing about
// (masscan reports open and closed ports only): no answer from the target.
func compareSilent(t *testing.T, silent []portKey, recs []recJSON, src []string) {
	t.Helper()
	ours := ports(recs, src)
	for _, k := range silent {
		switch got := ours[k]; got {
		case "filtered", "admin_prohibited", "unreachable", "ttl_exceeded":
			t.Logf("%s: not reported, ours %s", k, got)
		default:
			t.Errorf("%s: not reported, ours %q", k, got)
		}
	}
}

func sortedRaw(recs []recJSON) []string {
	var s []string
	for _, r := range recs {
		s = append(s, r.raw)
	}
	slices.Sort(s)
	return s
}

func comparePorts(t *testing.T, run *nmapRun, recs []recJSON, src []string, connect bool) {
	t.Helper()
	ours := ports(recs, src)
	total, coarseOK, fineOK := 0, 0, 0
	var diffs []string
	for i, h := range run.Hosts {
		ip := run.addr(i)
		for _, e := range h.Extra {
			t.Errorf("%s: nmap folded %d %s ports into extraports; the oracle needs each", ip, e.Count, e.State)
		}
		for _, p := range h.Ports {
			k := portKey{ip, strings.ToUpper(p.Proto), p.ID}
			got := ours[k]
			coarse, fine := want1(p.State.State, p.State.Reason, connect, got)
			total++
			if slices.Contains(coarse, got) {
				coarseOK++
			}
			t.Logf("%s: nmap %s (%s), ours %s", k, p.State.State, p.State.Reason, got)
			if got == fine {
				fineOK++
			} else {
				diffs = append(diffs, fmt.Sprintf("%s: nmap %s (%s), ours %q", k, p.State.State, p.State.Reason, got))
			}
		}
	}
	if total == 0 {
		t.Fatal("nmap reported no port")
	}
	t.Logf("%d ports: %d agree by the issue's rule, %d by nmap's reason", total, coarseOK, fineOK)
	for _, d := range diffs {
		t.Log(d)
	}
	if coarseOK*100 < total*99 {
		t.Errorf("agreement %d/%d below 99%%", coarseOK, total)
	}
	if fineOK != total {
		t.Errorf("%d of %d ports differ from nmap's reason", total-fineOK, total)
	}
}

// compareHosts checks host discovery: nmap's "up" is a host that answered
// one of its probes (echo reply, RST or SYN/ACK to 443...), so ours is a
// host with an attempt that ended open or closed.
func compareHosts(t *testing.T, run *nmapRun, recs []recJSON, src []string) {
	t.Helper()
	up := map[string]bool{}
	seen := map[string]bool{}
	for _, r := range recs {
		if !slices.Contains(src, r.SrcIP) {
			continue
		}
		seen[r.DestIP] = true
		if r.Conn.Outcome == "open" || r.Conn.Outcome == "closed" {
			up[r.DestIP] = true
		}
	}
	n := 0
	for i, h := range run.Hosts {
		ip := run.addr(i)
		n++
		if !seen[ip] {
			t.Errorf("%s: no attempt seen", ip)
		}
		if (h.Status.State == "up") != up[ip] {
			t.Errorf("%s: nmap %s (%s), ours up=%v", ip, h.Status.State, h.Status.Reason, up[ip])
		}
	}
	for _, ip := range []string{target4, absent4} {
		found := false
		for i := range run.Hosts {
			found = found || run.addr(i) == ip
		}
		if !found && up[ip] {
			t.Errorf("%s: up here, not in nmap's output", ip)
		}
	}
	t.Logf("%d hosts compared", n)
}

// masscan at a modest rate. It reports open and (with --show closed)
// closed ports; the rest of the range it probed is silent.
func masscan(l *lab, name string) (nmapRun, []portKey) {
	out := filepath.Join(l.dir, name+".xml")
	l.in(l.S, "masscan", "-e", "p0", "--router-ip", "10.88.1.1", "--rate", "200", "--wait", "1",
		"--show", "closed", "-p", scanPorts, target4, "-oX", out)
	run := readXML(l.t, out)
	var silent []portKey
	for p := 8001; p <= 8006; p++ {
		k := portKey{target4, "TCP", p}
		found := false
		for _, h := range run.Hosts {
			for _, q := range h.Ports {
				found = found || (q.ID == p && q.Proto == "tcp")
			}
		}
		if !found {
			silent = append(silent, k)
		}
	}
	return run, silent
}

// hping3, a slow vertical SYN scan: one probe every 200 ms, destination
// port counting up from 8001. Its lines become nmap verdicts: flags=SA
// open, flags=RA closed, "ICMP Packet filtered" (admin prohibited) filtered
// with nmap's reason admin-prohibited; a port with no line is silent.
func hping3(l *lab, name string) (nmapRun, []portKey) {
	cmd := exec.CommandContext(l.ctx, "ip", "netns", "exec", l.S, "hping3", "-n", "-S", "-p", "++8001", "-c", "6", "-i", "u200000", target4)
	out, _ := cmd.CombinedOutput() // exits non-zero when a probe went unanswered
	l.t.Logf("hping3:\n%s", out)
	var run nmapRun
	run.Hosts = make([]nmapHost, 1)
	run.Hosts[0].Addrs = append(run.Hosts[0].Addrs, nmapAddr{Addr: target4, Type: "ipv4"})
	seen := map[int]bool{}
	add := func(port int, state, reason string) {
		var p nmapPort
		p.Proto, p.ID, p.State.State, p.State.Reason = "tcp", port, state, reason
		run.Hosts[0].Ports = append(run.Hosts[0].Ports, p)
		seen[port] = true
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := map[string]string{}
		for _, w := range strings.Fields(line) {
			if k, v, ok := strings.Cut(w, "="); ok {
				f[k] = v
			}
		}
		switch {
		case strings.HasPrefix(line, "ICMP Packet filtered"):
			// hping3 names no port here; the quoted one is in the
			// capture, and the test's rules put the reject on 8004.
			add(8004, "filtered", "admin-prohibited")
		case f["sport"] != "":
			port, _ := strconv.Atoi(f["sport"])
			switch f["flags"] {
			case "SA":
				add(port, "open", "syn-ack")
			case "RA":
				add(port, "closed", "reset")
			}
		}
	}
	var silent []portKey
	for p := 8001; p <= 8006; p++ {
		if !seen[p] {
			silent = append(silent, portKey{target4, "TCP", p})
		}
	}
	return run, silent
}

// labScanConfig scales the detector's thresholds down to the lab's scans
// (6 TCP or 4 UDP ports on 2 hosts, a ping sweep of 2): a port scan is 4
// ports on one target, a sweep 3 targets on one port (so none here), a
// ping sweep 2 targets.
var labScanConfig = ScanConfig{PortThreshold: 4, TargetThreshold: 3, PingThreshold: 2, MinFailed: 1}

func scanJSON(t *testing.T, scans []*event.Scan) []string {
	t.Helper()
	enc, err := encode.New("json")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range scans {
		out = append(out, string(enc.Append(nil, s)))
	}
	slices.Sort(out)
	return out
}

// checkScan: exactly one scan event, from the scanner, of the right kind,
// whose counts are nmap's totals (its verdicts by reason, the ports it
// left unreported counted as ours).
func checkScan(t *testing.T, sc scan, run *nmapRun, silent []portKey, recs []recJSON, scans []*event.Scan) {
	t.Helper()
	js := scanJSON(t, scans)
	t.Logf("scan events:\n%s", strings.Join(js, "\n"))
	if len(scans) != 1 {
		t.Fatalf("%d scan events, want 1", len(scans))
	}
	s := scans[0]
	if !slices.Contains(sc.src, s.Src.String()) || s.Kind != sc.kind || s.Reason != "shutdown" {
		t.Errorf("scan from %s kind %s reason %s, want from %v kind %s at shutdown", s.Src, s.Kind, s.Reason, sc.src, sc.kind)
	}
	if sc.name == "sn" {
		if s.Targets != 2 {
			t.Errorf("ping sweep of %d targets, want 2", s.Targets)
		}
		return
	}
	var want [NumOutcomes]uint64
	targets, portSet := map[string]bool{}, map[string]bool{}
	for i, h := range run.Hosts {
		for _, p := range h.Ports {
			_, fine := want1(p.State.State, p.State.Reason, sc.connect, ports1(recs, sc.src, portKey{run.addr(i), strings.ToUpper(p.Proto), p.ID}))
			o, _ := ParseOutcome(fine)
			want[o]++
			targets[run.addr(i)] = true
			portSet[fmt.Sprint(p.Proto, p.ID)] = true
		}
	}
	ours := ports(recs, sc.src)
	for _, k := range silent {
		o, _ := ParseOutcome(ours[k])
		want[o]++
		targets[k.ip] = true
		portSet[fmt.Sprint(strings.ToLower(k.proto), k.port)] = true
	}
	if s.Outcomes != want || s.Targets != uint64(len(targets)) || s.Ports != uint64(len(portSet)) {
		t.Errorf("scan outcomes %v targets %d ports %d; nmap's totals %v, %d, %d", s.Outcomes, s.Targets, s.Ports, want, len(targets), len(portSet))
	}
	open := 0
	for _, o := range s.Open {
		if ours[portKey{o.DestIP.String(), event.ProtoName(o.Proto), int(o.DestPort)}] != "open" {
			t.Errorf("scan.open lists %v, not open here", o)
		}
		open++
	}
	if uint64(open)+s.OpenMore != want[Open] {
		t.Errorf("scan.open %d + open_more %d, want %d", open, s.OpenMore, want[Open])
	}
}

// want1 is want with -sT's blind spots (see scan.connect) resolved by
// what the wire showed.
func want1(state, reason string, connect bool, got string) ([]string, string) {
	coarse, fine := want(state, reason)
	if connect && ((fine == "unreachable" && got == "admin_prohibited") ||
		(fine == "filtered" && (got == "unreachable" || got == "admin_prohibited"))) {
		return append(coarse, got), got
	}
	return coarse, fine
}

func ports1(recs []recJSON, src []string, k portKey) string { return ports(recs, src)[k] }

const burstScript = `
import socket, threading, sys
def one():
    s = socket.create_connection((sys.argv[1], 8001), timeout=2)
    s.sendall(b"GET / HTTP/1.1\\r\\n\\r\\n")
    try: s.recv(100)
    except OSError: pass
    s.close()
ts = [threading.Thread(target=one) for _ in range(30)]
for t in ts: t.start()
for t in ts: t.join()
`

// testNormal: a client's everyday traffic (curl, ssh, dig, ping, a
// browser-like burst of 30 parallel connections to one server) with the
// detector's default thresholds gives outcomes but no scan event.
func testNormal(t *testing.T, l *lab) {
	pcap := l.capture("normal", func() {
		// Each may fail (nothing speaks HTTP, SSH or DNS there): what
		// matters is the traffic.
		for _, args := range [][]string{
			{"curl", "-s", "-m", "2", "http://" + target4 + ":8001/"},
			{"curl", "-s", "-m", "2", "http://[" + target6 + "]:8002/"},
			{"ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=2", "-o", "StrictHostKeyChecking=no", target4},
			{"dig", "+tries=1", "+time=1", "@" + target4, "example.com"},
			{"dig", "+tries=1", "+time=1", "@" + target4, "-p", "8001", "example.org"},
			{"ping", "-c", "3", "-i", "0.2", target4},
			{"python3", "-c", burstScript, target4},
		} {
			out, err := exec.CommandContext(l.ctx, "ip", append([]string{"netns", "exec", l.S}, args...)...).CombinedOutput()
			t.Logf("%s: %v %.200s", args[0], err, out)
		}
	})
	recs, scans := runScan(t, pcap, 4, &ScanConfig{})
	counts := map[string]int{}
	for _, r := range recs {
		counts[r.Conn.Outcome]++
	}
	t.Logf("attempts by outcome: %v", counts)
	if counts["open"] < 30 || counts["closed"] == 0 {
		t.Errorf("the normal traffic's attempts: %v", counts)
	}
	if len(scans) != 0 {
		t.Errorf("scan events on normal traffic: %v", scanJSON(t, scans))
	}
}
