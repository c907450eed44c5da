package decode

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline/packet"
)

// tsharkFields are the columns TestConformanceTshark asks tshark for.
var tsharkFields = []string{
	"frame.number", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
	"tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport",
	"sctp.srcport", "sctp.dstport", "icmp.type", "icmpv6.type",
}

// merge concatenates capture files into one, so that tshark starts once.
func merge(t *testing.T, mergecap string, files []string) string {
	t.Helper()
	all := filepath.Join(t.TempDir(), "all.pcapng")
	if out, err := exec.Command(mergecap, append([]string{"-a", "-w", all}, files...)...).CombinedOutput(); err != nil {
		t.Fatalf("mergecap: %v\n%s", err, out)
	}
	return all
}

// tsharkRows runs tshark on path and returns, per frame, each field's
// values (tshark joins repeated fields — outer and inner headers, or an
// ICMP error and its quote — with commas, outermost first).
func tsharkRows(t *testing.T, tshark, path string, fields []string, extra ...string) [][][]string {
	t.Helper()
	args := []string{"-n", "-r", path, "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE", "-T", "fields"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	args = append(args, extra...)
	out, err := exec.Command(tshark, args...).Output()
	if err != nil {
		t.Fatalf("tshark %s: %v", path, err)
	}
	var rows [][][]string
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		cols := strings.Split(line, "\t")
		row := make([][]string, len(fields))
		for i := range row {
			if i < len(cols) && cols[i] != "" {
				row[i] = strings.Split(cols[i], ",")
			}
		}
		rows = append(rows, row)
	}
	return rows
}

func last(v []string, back int) string {
	if len(v) <= back {
		return ""
	}
	return v[len(v)-1-back]
}

// malformedExpected lists, per conformance file (path relative to the
// conformance root), the packets the decoder is expected to flag, and why.
// Every other file must decode without a single error.
var malformedExpected = map[string]struct {
	counts map[packet.Malformed]int
	why    string
}{}

// TestConformanceTshark decodes every packet of every conformance capture
// and compares addresses, protocol and ports with tshark's dissection. The
// files are concatenated with mergecap so that tshark runs once.
func TestConformanceTshark(t *testing.T) {
	tshark := testenv.NeedCommand(t, "tshark")
	mergecap := testenv.NeedCommand(t, "mergecap")
	root := testenv.Conformance(t)
	// A capture that the reference reader cannot read whole (cut short in a
	// packet, as suricata-verify's http-mime-truncated is on purpose) is
	// left out: mergecap refuses it, and there is no whole dissection to
	// compare with. sources/pcapfile's tests cover cut files.
	var files []string
	for _, f := range conformancePcaps(t, root) {
		if _, err := readPcap(f); err != nil {
			t.Logf("left out, unreadable by pcapgo: %s: %v", f, err)
			continue
		}
		files = append(files, f)
	}
	rows := tsharkRows(t, tshark, merge(t, mergecap, files), tsharkFields)
	var total, compared int
	for _, path := range files {
		rel, _ := filepath.Rel(root, path)
		pkts := decodeFile(t, path)
		if len(rows) < len(pkts) {
			t.Fatalf("%s: tshark has %d frames left, pcapgo read %d", rel, len(rows), len(pkts))
		}
		fileRows := rows[:len(pkts)]
		rows = rows[len(pkts):]
		t.Run(rel, func(t *testing.T) {
			bad := map[packet.Malformed]int{}
			var mismatches int
			for i := range pkts {
				m := &pkts[i].Meta
				if m.Err != packet.MalformedNone {
					bad[m.Err]++
				}
				if diff := compareTshark(m, fileRows[i]); diff != "" {
					mismatches++
					if mismatches <= 5 {
						t.Errorf("frame %d: %s\n\tdecoded: %s", i+1, diff, describe(m))
					}
				}
			}
			if mismatches > 5 {
				t.Errorf("%d frames differ from tshark", mismatches)
			}
			want := malformedExpected[rel].counts
			if want == nil {
				want = map[packet.Malformed]int{}
			}
			if fmt.Sprint(bad) != fmt.Sprint(want) {
				t.Errorf("malformed packets: got %v, want %v", bad, want)
			} else if len(bad) > 0 {
				t.Logf("malformed as expected %v: %s", bad, malformedExpected[rel].why)
			}
			total += len(pkts)
			compared += len(pkts) - mismatches
		})
	}
	if len(rows) != 0 {
		t.Errorf("tshark has %d frames more than pcapgo read", len(rows))
	}
	if total < 10000 {
		t.Errorf("only %d packets compared; the conformance set has over 11000", total)
	}
	t.Logf("%d files, %d packets, %d agree with tshark", len(files), total, compared)
}

// compareTshark checks one decoded packet against tshark's fields and
// returns what differs.
func compareTshark(m *packet.Meta, row [][]string) string {
	const (
		ipSrc = 1 + iota
		ipDst
		ip6Src
		ip6Dst
		tcpSrc
		tcpDst
		udpSrc
		udpDst
		sctpSrc
		sctpDst
		icmpType
		icmp6Type
	)
	var diffs []string
	q := m.Quoted()
	if m.Proto == packet.ProtoICMPv6 && m.ICMPType == 137 {
		// A redirect's Redirected Header option holds part of a packet,
		// which tshark dissects and the decoder leaves alone (it is not
		// an error routed by its quote).
		row = slices.Clone(row)
		for _, c := range []int{ip6Src, ip6Dst, tcpSrc, tcpDst, udpSrc, udpDst} {
			if len(row[c]) > 1 {
				row[c] = row[c][:1]
			} else if c != ip6Src && c != ip6Dst {
				row[c] = nil
			}
		}
	}
	// The innermost addresses tshark lists are the quote's, when it
	// dissected one, then the packet's own.
	if m.IPVersion != 0 {
		s, d := ipSrc, ipDst
		if m.IPVersion == 6 {
			s, d = ip6Src, ip6Dst
		}
		back := 0
		if q.Present && q.IPVersion == m.IPVersion {
			back = 1
			if got := last(row[s], 0) + ">" + last(row[d], 0); got != q.Src.String()+">"+q.Dst.String() {
				diffs = append(diffs, fmt.Sprintf("quote addresses: tshark %s", got))
			}
		}
		if got := last(row[s], back) + ">" + last(row[d], back); got != m.Src.String()+">"+m.Dst.String() {
			diffs = append(diffs, fmt.Sprintf("addresses: tshark %s", got))
		}
	} else if m.Tunnel == packet.TunnelNone && (row[ipSrc] != nil || row[ip6Src] != nil) {
		diffs = append(diffs, fmt.Sprintf("no IP decoded; tshark has %v %v", row[ipSrc], row[ip6Src]))
	}
	ports := func(name string, proto uint8, si, di int) {
		wantPorts := m.Proto == proto && m.Err == packet.MalformedNone && !(m.Frag.Is && !m.Frag.First)
		want, back := "", 0
		if wantPorts {
			want = fmt.Sprintf("%d>%d", m.SrcPort, m.DstPort)
		}
		if q.HasPorts && q.Proto == proto {
			if got, w := last(row[si], 0)+">"+last(row[di], 0), fmt.Sprintf("%d>%d", q.SrcPort, q.DstPort); got != w {
				diffs = append(diffs, fmt.Sprintf("quoted %s ports: tshark %s", name, got))
			}
			back = 1
		}
		got := last(row[si], back) + ">" + last(row[di], back)
		if got == ">" {
			got = ""
		}
		if got != want && !(want == "" && proto == packet.ProtoUDP && tunnelPorts(row[si], row[di])) {
			diffs = append(diffs, fmt.Sprintf("%s ports: tshark %q, decoded %q", name, got, want))
		}
	}
	ports("tcp", packet.ProtoTCP, tcpSrc, tcpDst)
	ports("udp", packet.ProtoUDP, udpSrc, udpDst)
	ports("sctp", packet.ProtoSCTP, sctpSrc, sctpDst)
	icmp := func(proto uint8, col int) {
		var got string
		if len(row[col]) > 0 {
			got = row[col][0]
		}
		want := ""
		if m.Proto == proto && m.HasL4 {
			want = strconv.Itoa(int(m.ICMPType))
		}
		if got != want && !slices.Contains(row[col], want) {
			diffs = append(diffs, fmt.Sprintf("icmp type (proto %d): tshark %q, decoded %q", proto, got, want))
		}
	}
	icmp(packet.ProtoICMP, icmpType)
	icmp(packet.ProtoICMPv6, icmp6Type)
	return strings.Join(diffs, "; ")
}

// tunnelPorts reports whether every UDP port pair tshark lists is a VXLAN
// or Geneve carrier's (the inner packet then is not UDP).
func tunnelPorts(src, dst []string) bool {
	for i := range src {
		if i >= len(dst) {
			return false
		}
		ok := false
		for _, p := range []string{src[i], dst[i]} {
			ok = ok || p == strconv.Itoa(portVXLAN) || p == strconv.Itoa(portGeneve)
		}
		if !ok {
			return false
		}
	}
	return len(src) > 0
}
