package decode

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline/packet"
)

var quoteFields = []string{
	"frame.number",
	"ip.src", "ip.dst", "ip.ttl", "ip.len", "ip.proto", "ip.flags.mf", "ip.flags.df", "ip.frag_offset",
	"ipv6.src", "ipv6.dst", "ipv6.hlim", "ipv6.plen", "ipv6.fraghdr.offset", "ipv6.fraghdr.more",
	"tcp.srcport", "tcp.dstport", "tcp.seq_raw", "udp.srcport", "udp.dstport",
	"icmp.ident", "icmp.seq", "icmpv6.echo.identifier", "icmpv6.echo.sequence_number",
	"icmp.mtu", "icmpv6.mtu", "icmp.redir_gw", "icmp.pointer", "icmpv6.pointer",
}

// TestQuoteTshark compares the decoded quote of every ICMP error in the
// ICMP conformance captures with tshark's dissection of it.
func TestQuoteTshark(t *testing.T) {
	tshark := testenv.NeedCommand(t, "tshark")
	mergecap := testenv.NeedCommand(t, "mergecap")
	root := testenv.Conformance(t)
	var files []string
	for _, glob := range []string{
		"zeek/testing/btest/Traces/icmp/*.pcap",
		"zeek/testing/btest/Traces/communityid/icmp*.pcap",
		"community-id-spec/pcaps/icmp*.pcap",
		"suricata-verify/tests/icmp-hdr-02/input.pcap",
	} {
		m, _ := filepath.Glob(filepath.Join(root, glob))
		files = append(files, m...)
	}
	col := map[string]int{}
	for i, f := range quoteFields {
		col[f] = i
	}
	var errorsSeen, quotes int
	allRows := tsharkRows(t, tshark, merge(t, mergecap, files), quoteFields)
	for _, path := range files {
		rel, _ := filepath.Rel(root, path)
		pkts := decodeFile(t, path)
		if len(allRows) < len(pkts) {
			t.Fatalf("%s: tshark has %d frames left, pcapgo read %d", rel, len(allRows), len(pkts))
		}
		rows := allRows[:len(pkts)]
		allRows = allRows[len(pkts):]
		for i := range pkts {
			m := &pkts[i].Meta
			if !packet.IsICMPError(m.Proto, m.ICMPType) || !m.HasL4 {
				continue
			}
			errorsSeen++
			row := rows[i]
			get := func(f string, back int) string { return last(row[col[f]], back) }
			var diffs []string
			check := func(what, tshark, decoded string) {
				if tshark != decoded {
					diffs = append(diffs, fmt.Sprintf("%s: tshark %q, decoded %q", what, tshark, decoded))
				}
			}
			q := m.Quoted()
			v6 := m.IPVersion == 6
			src, dst := "ip.src", "ip.dst"
			if v6 {
				src, dst = "ipv6.src", "ipv6.dst"
			}
			tsharkHasQuote := len(row[col[src]]) >= 2
			check("quote present", strconv.FormatBool(tsharkHasQuote), strconv.FormatBool(q.Present))
			if q.Present && tsharkHasQuote {
				quotes++
				check("quote src", get(src, 0), q.Src.String())
				check("quote dst", get(dst, 0), q.Dst.String())
				if v6 {
					check("quote hop limit", get("ipv6.hlim", 0), strconv.Itoa(int(q.TTL)))
					plen, _ := strconv.Atoi(get("ipv6.plen", 0))
					check("quote length", strconv.Itoa(40+plen), strconv.Itoa(int(q.IPLen)))
					if off := get("ipv6.fraghdr.offset", 0); off != "" {
						o, _ := strconv.Atoi(off)
						check("quote fragment offset", strconv.Itoa(o*8), strconv.Itoa(int(q.FragOff)))
					}
				} else {
					check("quote ttl", get("ip.ttl", 0), strconv.Itoa(int(q.TTL)))
					check("quote length", get("ip.len", 0), strconv.Itoa(int(q.IPLen)))
					check("quote proto", get("ip.proto", 0), strconv.Itoa(int(q.Proto)))
					check("quote MF", get("ip.flags.mf", 0), b01(q.MF))
					check("quote DF", get("ip.flags.df", 0), b01(q.DF))
					o, _ := strconv.Atoi(get("ip.frag_offset", 0))
					check("quote fragment offset", strconv.Itoa(o), strconv.Itoa(int(q.FragOff)))
				}
				switch {
				case q.HasPorts && q.Proto == packet.ProtoUDP:
					check("quote ports", get("udp.srcport", 0)+">"+get("udp.dstport", 0), fmt.Sprintf("%d>%d", q.SrcPort, q.DstPort))
				case q.HasPorts && q.Proto == packet.ProtoTCP:
					check("quote ports", get("tcp.srcport", 0)+">"+get("tcp.dstport", 0), fmt.Sprintf("%d>%d", q.SrcPort, q.DstPort))
					check("quote seq", get("tcp.seq_raw", 0), strconv.FormatUint(uint64(q.Seq), 10))
				case q.HasEcho && !v6:
					check("quote echo", get("icmp.ident", 0)+"/"+get("icmp.seq", 0), fmt.Sprintf("%d/%d", q.ICMPID, q.ICMPSeq))
				case q.HasEcho && v6:
					check("quote echo", get("icmpv6.echo.identifier", 0)+"/"+get("icmpv6.echo.sequence_number", 0), fmt.Sprintf("0x%04x/%d", q.ICMPID, q.ICMPSeq))
				}
			}
			// The 4 bytes after the checksum, as each type reads them.
			switch {
			case !v6 && m.ICMPType == 3 && m.ICMPCode == 4:
				check("mtu", get("icmp.mtu", 0), strconv.Itoa(int(m.ICMPRest&0xffff)))
			case !v6 && m.ICMPType == 5:
				check("gateway", get("icmp.redir_gw", 0), netip.AddrFrom4([4]byte{byte(m.ICMPRest >> 24), byte(m.ICMPRest >> 16), byte(m.ICMPRest >> 8), byte(m.ICMPRest)}).String())
			case !v6 && m.ICMPType == 12:
				check("pointer", get("icmp.pointer", 0), strconv.Itoa(int(m.ICMPRest>>24)))
			case v6 && m.ICMPType == 2:
				check("mtu", get("icmpv6.mtu", 0), strconv.Itoa(int(m.ICMPRest)))
			case v6 && m.ICMPType == 4:
				check("pointer", get("icmpv6.pointer", 0), strconv.Itoa(int(m.ICMPRest)))
			}
			for _, d := range diffs {
				t.Errorf("%s frame %d: %s (%s)", rel, i+1, d, describe(m))
			}
		}
	}
	if errorsSeen < 15 || quotes < 12 {
		t.Errorf("only %d ICMP errors and %d quotes compared", errorsSeen, quotes)
	}
	t.Logf("%d ICMP errors, %d quotes compared with tshark", errorsSeen, quotes)
}

func b01(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
