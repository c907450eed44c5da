package icmpfb

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/pktpipe/pktpipe/internal/testenv"
)

// zeekError is one ICMP error event printed in a Zeek baseline.
type zeekError struct {
	event        string // icmp_unreachable, icmp_time_exceeded, ...
	sender       string // conn_id orig_h: the ICMP packet's source
	v6           bool
	itype, icode int
	origH, respH string // quoted packet's addresses
	origP, respP string // "30000/udp", "0/unknown"
	qlen         int
	qproto       int // 0 unknown, 1 tcp, 2 udp, 3 icmp
	badHdrLen    bool
	line         string
}

var (
	reEvent = regexp.MustCompile(`^(icmp_unreachable|icmp_time_exceeded|icmp_packet_too_big|icmp_parameter_problem) \(`)
	reConn  = regexp.MustCompile(`conn_id: \[orig_h=([^,]+), `)
	reInfo  = regexp.MustCompile(`icmp_info: \[v6=([TF]), itype=(\d+), icode=(\d+),`)
	reCtx   = regexp.MustCompile(`icmp_context: \[id=\[orig_h=([^,]+), orig_p=([^,]+), resp_h=([^,]+), resp_p=([^,]+), proto=\d+, ctx=\[\]\], len=(\d+), proto=(\d+), frag_offset=\d+, bad_hdr_len=([TF])`)
)

// parseZeek reads the error events of a btest baseline, in order.
func parseZeek(t *testing.T, path string) []zeekError {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []zeekError
	var cur *zeekError
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		if m := reEvent.FindStringSubmatch(l); m != nil {
			out = append(out, zeekError{event: m[1], line: l})
			cur = &out[len(out)-1]
			continue
		}
		if !strings.HasPrefix(l, " ") {
			cur = nil // another event kind (echo, ND...)
			continue
		}
		if cur == nil {
			continue
		}
		if m := reInfo.FindStringSubmatch(l); m != nil {
			cur.v6 = m[1] == "T"
			cur.itype, _ = strconv.Atoi(m[2])
			cur.icode, _ = strconv.Atoi(m[3])
		} else if m := reCtx.FindStringSubmatch(l); m != nil {
			cur.origH, cur.origP, cur.respH, cur.respP = m[1], m[2], m[3], m[4]
			cur.qlen, _ = strconv.Atoi(m[5])
			cur.qproto, _ = strconv.Atoi(m[6])
			cur.badHdrLen = m[7] == "T"
		} else if m := reConn.FindStringSubmatch(l); m != nil {
			cur.sender = m[1]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// zeekClass is the class Zeek's event name and code imply, written out
// independently of Classify for the codes these baselines hold.
func zeekClass(t *testing.T, z zeekError) string {
	type k struct {
		ev   string
		v6   bool
		code int
	}
	m := map[k]string{
		{"icmp_unreachable", false, 0}:       "net-unreachable",
		{"icmp_unreachable", false, 3}:       "port-unreachable",
		{"icmp_unreachable", true, 0}:        "no-route",
		{"icmp_time_exceeded", false, 0}:     "ttl-exceeded",
		{"icmp_time_exceeded", true, 0}:      "ttl-exceeded",
		{"icmp_packet_too_big", true, 0}:     "packet-too-big",
		{"icmp_parameter_problem", true, 0}:  "parameter-problem",
		{"icmp_parameter_problem", false, 0}: "parameter-problem",
	}
	c, ok := m[k{z.event, z.v6, z.icode}]
	if !ok {
		t.Fatalf("no expected class for %s", z.line)
	}
	return c
}

// TestZeekBaselines: for every ICMP error in Zeek's ICMP context/events
// baselines, the pipeline (decode, flow, this analyzer) on the same pcaps
// gives the same type/code, reporter, quoted tuple and length, and the
// class Zeek's event name implies.
func TestZeekBaselines(t *testing.T) {
	root := testenv.Conformance(t, "zeek", "testing", "btest")
	cases := []struct {
		baseline string
		pcaps    []string
	}{
		{"core.icmp.icmp-context/output", []string{"icmp-destunreach-no-context", "icmp-destunreach-ip", "icmp-destunreach-udp"}},
		{"core.icmp.icmp-events/output", []string{"icmp-destunreach-udp", "icmp-timeexceeded", "icmp-ping"}},
		{"core.icmp.icmp6-context/output", []string{"icmp6-destunreach-no-context", "icmp6-destunreach-ip6ext-trunc", "icmp6-destunreach-ip6ext-udp", "icmp6-destunreach-ip6ext"}},
		{"core.icmp.icmp6-events/output", []string{"icmp6-destunreach-ip6ext-udp", "icmp6-toobig", "icmp6-timeexceeded", "icmp6-paramprob", "icmp6-ping", "icmp6-redirect", "icmp6-router-advert", "icmp6-neighbor-advert", "icmp6-router-solicit", "icmp6-neighbor-solicit"}},
		{"core.icmp.icmp_sent/out", []string{"icmp6-mld-query"}},
	}
	total := 0
	for _, c := range cases {
		t.Run(filepath.Dir(c.baseline), func(t *testing.T) {
			want := parseZeek(t, filepath.Join(root, "Baseline", c.baseline))
			var got []lineJSON
			for _, p := range c.pcaps {
				lines, _ := run(t, filepath.Join(root, "Traces", "icmp", p+".pcap"), 1)
				fbs, _ := parse(t, lines)
				got = append(got, fbs...)
			}
			if len(got) != len(want) {
				t.Fatalf("%d icmp_feedback events, Zeek printed %d errors", len(got), len(want))
			}
			for i, z := range want {
				g := got[i]
				fb := g.FB
				ctx := func(format string, args ...any) {
					t.Helper()
					t.Errorf("error %d (%s): "+format+"\n  ours: %s", append([]any{i, z.line}, append(args, g.raw)...)...)
				}
				if *g.ICMPType != z.itype || *g.ICMPCode != z.icode {
					ctx("type/code %d/%d, Zeek %d/%d", *g.ICMPType, *g.ICMPCode, z.itype, z.icode)
				}
				if wc := zeekClass(t, z); fb.Class != wc {
					ctx("class %q, want %q", fb.Class, wc)
				}
				if fb.Reporter != z.sender {
					ctx("reporter %s, Zeek's ICMP sender %s", fb.Reporter, z.sender)
				}
				if z.origH == "::" && z.badHdrLen {
					// No context at all: nothing quoted.
					if fb.Quoted != nil {
						ctx("a quote where Zeek found none")
					}
					continue
				}
				q := fb.Quoted
				if q == nil {
					ctx("no quote; Zeek: %s → %s", z.origH, z.respH)
					continue
				}
				if q.SrcIP != z.origH || q.DestIP != z.respH {
					ctx("quoted %s → %s, Zeek %s → %s", q.SrcIP, q.DestIP, z.origH, z.respH)
				}
				if q.IPLen != z.qlen {
					ctx("quoted ip_len %d, Zeek len %d", q.IPLen, z.qlen)
				}
				// Header: the quoted tuple, as no flow was seen.
				if g.SrcIP != z.origH || g.DestIP != z.respH || fb.Matched {
					ctx("header %s → %s matched=%v, want the quoted tuple, unmatched", g.SrcIP, g.DestIP, fb.Matched)
				}
				if z.badHdrLen {
					// Zeek could not read the transport header: neither may we.
					if q.SrcPort != nil {
						ctx("ports in a quote Zeek found too short")
					}
					continue
				}
				protoName := map[int]string{1: "TCP", 2: "UDP"}[z.qproto]
				sp, _, _ := strings.Cut(z.origP, "/")
				dp, _, _ := strings.Cut(z.respP, "/")
				if q.Proto != protoName || q.SrcPort == nil || strconv.Itoa(*q.SrcPort) != sp || strconv.Itoa(*q.DestPort) != dp {
					ctx("quoted %s %v→%v, Zeek %s %s→%s", q.Proto, q.SrcPort, q.DestPort, protoName, z.origP, z.respP)
				}
				if g.SrcPort != *q.SrcPort || g.DestPort != *q.DestPort || g.Proto != protoName {
					ctx("header ports/proto differ from the quote")
				}
				if fb.Class == "packet-too-big" && (fb.MTU == nil || *fb.MTU != 1280) {
					ctx("packet-too-big without its MTU 1280 (tshark: icmpv6.mtu == 1280)")
				}
				if fb.Class == "parameter-problem" && (fb.Pointer == nil || *fb.Pointer != 6) {
					ctx("parameter-problem pointer %v, tshark: icmpv6.pointer == 6", fb.Pointer)
				}
			}
			total += len(want)
		})
	}
	if total < 12 {
		t.Errorf("compared %d Zeek errors, expected at least 12", total)
	}
}
