package rtt_test

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline/event"
)

// The oracle is tshark: on every flow of every capture, our handshake RTT
// must equal tcp.analysis.initial_rtt, our echo RTTs icmp.resptime /
// icmpv6.resptime, our DNS times dns.time, within 1 µs, and every one of
// tshark's must be found (initial_rtt of a stream without a SYN/ACK is
// ours only when we report the connection refused).

// oracleFiles are the real captures checked against tshark.
func oracleFiles(t *testing.T) []string {
	root := testenv.RepoRoot(t)
	files := []string{filepath.Join(root, "testdata", "sample.pcap")}
	for _, g := range []string{
		"community-id-spec/pcaps/*.pcap*",
		"zeek/testing/btest/Traces/icmp/*.pcap",
		"zeek/testing/btest/Traces/communityid/*.pcap",
		"foxio-ja4/pcap/*.pcap*",
	} {
		m, _ := filepath.Glob(filepath.Join(testenv.Conformance(t), g))
		if len(m) == 0 {
			testenv.Need(t, false, "conformance captures "+g)
		}
		files = append(files, m...)
	}
	return files
}

const usTol = 1000 // ns

type conv struct{ a, b string } // endpoints "addr|port", a < b

func mkConv(ip1, p1, ip2, p2 string) conv {
	x, y := ip1+"|"+p1, ip2+"|"+p2
	if y < x {
		x, y = y, x
	}
	return conv{x, y}
}

type oracle struct {
	tcp  map[conv][]*tstream // in stream order
	echo map[string][]int64  // "client>server id seq" -> resptime ns
	dns  map[string][]int64  // "client|port>server|port id" -> ns
}

type tstream struct {
	rtt    int64
	hasRTT bool
	synack bool
	used   bool

	// Wireshark ends initial_rtt at the first ACK-without-SYN of either
	// side; when that was the server's (serverFirst), ours ends at the
	// client's first ACK instead: alt is that time minus the latest SYN's,
	// from tshark's timestamps.
	serverFirst bool
	alt         int64
	hasAlt      bool
	synSrc      string
	synTS       int64
	sawFirstAck bool
}

func last(v string) string {
	if i := strings.LastIndexByte(v, ','); i >= 0 {
		return v[i+1:]
	}
	return v
}

func secToNS(s string) int64 { f, _ := strconv.ParseFloat(s, 64); return int64(math.Round(f * 1e9)) }
func msToNS(s string) int64  { f, _ := strconv.ParseFloat(s, 64); return int64(math.Round(f * 1e6)) }

func num(s string) string {
	v, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return s
	}
	return strconv.FormatUint(v, 10)
}

func runOracle(t *testing.T, bin, file string) *oracle {
	fields := []string{"tcp.stream", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport", "tcp.dstport",
		"udp.srcport", "udp.dstport", "tcp.flags.syn", "tcp.flags.ack", "tcp.analysis.initial_rtt",
		"icmp.ident", "icmp.seq", "icmp.resptime", "icmpv6.echo.identifier", "icmpv6.echo.sequence_number", "icmpv6.resptime",
		"dns.id", "dns.time", "frame.time_epoch", "tcp.flags.reset"}
	args := []string{"-r", file, "-n", "-T", "fields", "-E", "occurrence=a",
		"-Y", "(tcp && !icmp && !icmpv6) || icmp.resptime || icmpv6.resptime || (dns.time && !icmp && !icmpv6)"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		t.Fatalf("tshark %s: %v", file, err)
	}
	o := &oracle{tcp: map[conv][]*tstream{}, echo: map[string][]int64{}, dns: map[string][]int64{}}
	streams := map[string]*tstream{}
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if l == "" {
			continue
		}
		r := map[string]string{}
		for i, v := range strings.Split(l, "\t") {
			r[fields[i]] = last(v)
		}
		src, dst := r["ip.src"]+r["ipv6.src"], r["ip.dst"]+r["ipv6.dst"]
		switch {
		case r["icmp.resptime"] != "":
			k := fmt.Sprintf("%s>%s %s %s", dst, src, num(r["icmp.ident"]), num(r["icmp.seq"]))
			o.echo[k] = append(o.echo[k], msToNS(r["icmp.resptime"]))
		case r["icmpv6.resptime"] != "":
			k := fmt.Sprintf("%s>%s %s %s", dst, src, num(r["icmpv6.echo.identifier"]), num(r["icmpv6.echo.sequence_number"]))
			o.echo[k] = append(o.echo[k], msToNS(r["icmpv6.resptime"]))
		case r["dns.time"] != "":
			sp, dp := r["udp.srcport"]+r["tcp.srcport"], r["udp.dstport"]+r["tcp.dstport"]
			k := fmt.Sprintf("%s|%s>%s|%s %s", dst, dp, src, sp, num(r["dns.id"]))
			o.dns[k] = append(o.dns[k], secToNS(r["dns.time"]))
		}
		if r["tcp.stream"] == "" || r["tcp.srcport"] == "" {
			continue
		}
		s := streams[r["tcp.stream"]]
		if s == nil {
			s = &tstream{}
			streams[r["tcp.stream"]] = s
			c := mkConv(src, r["tcp.srcport"], dst, r["tcp.dstport"])
			o.tcp[c] = append(o.tcp[c], s)
		}
		ts := secToNS(r["frame.time_epoch"])
		from := src + "|" + r["tcp.srcport"]
		syn, ack, rst := r["tcp.flags.syn"] == "1", r["tcp.flags.ack"] == "1", r["tcp.flags.reset"] == "1"
		switch {
		case syn && ack:
			s.synack = true
		case syn:
			s.synSrc, s.synTS = from, ts
		case ack && s.synSrc != "":
			if !s.sawFirstAck {
				s.sawFirstAck, s.serverFirst = true, from != s.synSrc
			}
			if from == s.synSrc && !rst && s.synack && !s.hasAlt {
				s.alt, s.hasAlt = ts-s.synTS, true
			}
		}
		if v := r["tcp.analysis.initial_rtt"]; v != "" && !s.hasRTT {
			s.rtt, s.hasRTT = secToNS(v), true
		}
	}
	return o
}

func near(a, b int64) bool { return a-b <= usTol && b-a <= usTol }

// take removes from vs a value within 1 µs of v.
func take(vs []int64, v int64) ([]int64, bool) {
	for i, x := range vs {
		if near(x, v) {
			return append(vs[:i], vs[i+1:]...), true
		}
	}
	return vs, false
}

type oracleCount struct{ handshakes, refused, echoes, dns, serverFirst int }

func checkOracle(t *testing.T, bin, file string) oracleCount {
	o := runOracle(t, bin, file)
	evs, _ := runPcap(t, file, 2)
	var n oracleCount
	name := filepath.Base(file)
	for _, e := range ofType(evs, event.TypeRTT) {
		r := obj(e, "rtt")
		src, dst := str(e["src_ip"]), str(e["dest_ip"])
		switch str(r["kind"]) {
		case event.RTTTCPHandshake:
			c := mkConv(src, fmt.Sprint(e["src_port"]), dst, fmt.Sprint(e["dest_port"]))
			want := i64(r["handshake_ns"])
			if r["refused"] == true {
				want = i64(r["rst_ns"])
				n.refused++
			} else {
				n.handshakes++
			}
			found := false
			for _, s := range o.tcp[c] {
				ref, ok := s.rtt, s.hasRTT
				if s.serverFirst && r["refused"] != true {
					ref, ok = s.alt, s.hasAlt
				}
				if !s.used && ok && near(ref, want) {
					s.used, found = true, true
					if s.serverFirst && r["refused"] != true {
						n.serverFirst++
					}
					break
				}
			}
			if !found {
				t.Errorf("%s: %v %s→%s: %d ns has no equal tcp.analysis.initial_rtt (tshark streams: %v)", name, r["kind"], src, dst, want, streamsString(o.tcp[c]))
			}
		case event.RTTICMPEcho:
			n.echoes++
			k := fmt.Sprintf("%s>%s %v %v", src, dst, r["id"], r["seq"])
			var ok bool
			if o.echo[k], ok = take(o.echo[k], i64(r["rtt_ns"])); !ok {
				t.Errorf("%s: echo %s: %v ns, tshark icmp resptime %v", name, k, r["rtt_ns"], o.echo[k])
			}
		case event.RTTDNS:
			n.dns++
			k := fmt.Sprintf("%s|%v>%s|%v %v", src, e["src_port"], dst, e["dest_port"], r["id"])
			var ok bool
			if o.dns[k], ok = take(o.dns[k], i64(r["rtt_ns"])); !ok {
				t.Errorf("%s: dns %s: %v ns, tshark dns.time %v", name, k, r["rtt_ns"], o.dns[k])
			}
		}
	}
	for c, ss := range o.tcp {
		for _, s := range ss {
			if s.hasRTT && s.synack && !s.used {
				t.Errorf("%s: %v: tshark initial_rtt %d ns with a SYN/ACK, we have no handshake", name, c, s.rtt)
			}
		}
	}
	for k, vs := range o.echo {
		if len(vs) > 0 {
			t.Errorf("%s: echo %s: tshark resptime %v ns not found", name, k, vs)
		}
	}
	for k, vs := range o.dns {
		if len(vs) > 0 {
			t.Errorf("%s: dns %s: tshark dns.time %v ns not found", name, k, vs)
		}
	}
	return n
}

func streamsString(ss []*tstream) string {
	var b []string
	for _, s := range ss {
		b = append(b, fmt.Sprintf("{rtt %d has %v synack %v used %v}", s.rtt, s.hasRTT, s.synack, s.used))
	}
	return strings.Join(b, " ")
}

// TestTsharkOracle compares every correlation on the repository's sample
// capture and the conformance captures with tshark's.
func TestTsharkOracle(t *testing.T) {
	bin := testenv.NeedCommand(t, "tshark")
	files := oracleFiles(t)
	sort.Strings(files)
	var (
		mu    sync.Mutex
		total oracleCount
	)
	t.Run("files", func(t *testing.T) {
		for _, f := range files {
			t.Run(filepath.Base(f), func(t *testing.T) {
				t.Parallel() // tshark's start-up dominates
				if _, err := os.Stat(f); err != nil {
					t.Fatal(err)
				}
				n := checkOracle(t, bin, f)
				mu.Lock()
				defer mu.Unlock()
				total.handshakes += n.handshakes
				total.refused += n.refused
				total.echoes += n.echoes
				total.dns += n.dns
				total.serverFirst += n.serverFirst
			})
		}
	})
	t.Logf("%d files: %d handshakes (%d where tshark's initial_rtt ends at a server segment), %d refused, %d echoes, %d DNS matched tshark",
		len(files), total.handshakes, total.serverFirst, total.refused, total.echoes, total.dns)
	if total.handshakes == 0 || total.echoes == 0 || total.dns == 0 {
		t.Errorf("nothing compared: %+v", total)
	}
}
