package dns_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pktpipe/pktpipe/internal/testenv"
)

// tsharkFields are the dns.* fields the oracle reads, one column each;
// a field that occurs several times in a frame is joined with "|".
var tsharkFields = []string{
	"frame.number", "dns.id", "dns.flags.response", "dns.flags.rcode", "dns.qry.name", "dns.qry.type",
	"dns.resp.name", "dns.resp.type", "dns.resp.ttl", "dns.resp.len",
	"dns.a", "dns.aaaa", "dns.cname", "dns.ptr.domain_name", "dns.ns", "dns.mx.mail_exchange",
	"dns.txt", "dns.txt.length",
	"dns.soa.mname", "dns.soa.rname", "dns.soa.serial_number", "dns.soa.refresh_interval",
	"dns.soa.retry_interval", "dns.soa.expire_limit", "dns.soa.minimum_ttl",
	"dns.srv.service", "dns.srv.proto", "dns.srv.name", "dns.srv.priority", "dns.srv.weight", "dns.srv.port", "dns.srv.target",
	"dns.svcb.svcpriority", "dns.svcb.targetname", "dns.svcb.svcparam.alpn", "dns.svcb.svcparam.port",
}

// rec is one record as both sides are brought to compare: owner name,
// type, ttl and the rdata as text ("k=v" pairs for SOA, SRV, HTTPS).
type rec struct {
	name, typ, ttl, rdata string
}

// tsharkRecords reads every DNS message tshark dissects in pcap, by frame
// (several messages in one TCP segment are concatenated, as pktpipe's
// events of one pcap_cnt are). OPT records are left out: EDNS is not an
// answer. A TXT record becomes one rec per string, as Suricata logs it.
func tsharkRecords(t *testing.T, bin, pcap string) map[int][]rec {
	t.Helper()
	args := []string{"-n", "-r", pcap, "-Y", "dns", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|", "-E", "separator=/t"}
	for _, f := range tsharkFields {
		args = append(args, "-e", f)
	}
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, stderr.String())
	}
	res := map[int][]rec{}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		cols := strings.Split(line, "\t")
		if len(cols) != len(tsharkFields) {
			t.Fatalf("tshark row %q", line)
		}
		col := map[string]*queue{}
		for i, f := range tsharkFields {
			q := &queue{}
			if cols[i] != "" {
				q.v = strings.Split(cols[i], "|")
			}
			col[f] = q
		}
		frame, _ := strconv.Atoi(cols[0])
		var rs []rec
		// Questions first, as "?name type".
		for _, n := range col["dns.qry.name"].v {
			rs = append(rs, rec{name: "?" + root(n), typ: typeName(col["dns.qry.type"].next())})
		}
		ttls := col["dns.resp.ttl"]
		for _, typ := range col["dns.resp.type"].v {
			rdlen, _ := strconv.Atoi(col["dns.resp.len"].next())
			var name string
			if typ == "33" { // tshark splits an SRV owner into service, proto, name
				name = col["dns.srv.service"].next() + "." + col["dns.srv.proto"].next() + "." + col["dns.srv.name"].next()
			} else {
				name = root(col["dns.resp.name"].next())
			}
			if typ == "41" {
				continue
			}
			r := rec{name: name, typ: typeName(typ), ttl: ttls.next()}
			switch typ {
			case "1":
				r.rdata = col["dns.a"].next()
			case "28":
				r.rdata = col["dns.aaaa"].next()
			case "5":
				r.rdata = col["dns.cname"].next()
			case "12":
				r.rdata = col["dns.ptr.domain_name"].next()
			case "2":
				r.rdata = col["dns.ns"].next()
			case "15":
				r.rdata = col["dns.mx.mail_exchange"].next()
			case "6":
				r.rdata = fmt.Sprintf("mname=%s rname=%s serial=%s refresh=%s retry=%s expire=%s minimum=%s",
					root(col["dns.soa.mname"].next()), root(col["dns.soa.rname"].next()), col["dns.soa.serial_number"].next(),
					col["dns.soa.refresh_interval"].next(), col["dns.soa.retry_interval"].next(),
					col["dns.soa.expire_limit"].next(), col["dns.soa.minimum_ttl"].next())
			case "33":
				r.rdata = fmt.Sprintf("priority=%s weight=%s port=%s name=%s", col["dns.srv.priority"].next(),
					col["dns.srv.weight"].next(), col["dns.srv.port"].next(), root(col["dns.srv.target"].next()))
			case "64", "65":
				// alpn ids of this record: the capture has one HTTPS record
				// per message at most, so all of them are its.
				r.rdata = fmt.Sprintf("priority=%s target=%s alpn=%s port=%s", col["dns.svcb.svcpriority"].next(),
					root(col["dns.svcb.targetname"].next()), strings.Join(col["dns.svcb.svcparam.alpn"].v, ","), col["dns.svcb.svcparam.port"].next())
			case "16":
				for used := 0; used < rdlen; {
					l, _ := strconv.Atoi(col["dns.txt.length"].next())
					r.rdata = col["dns.txt"].next()
					rs = append(rs, r)
					used += 1 + l
				}
				continue
			}
			rs = append(rs, r)
		}
		res[frame] = append(res[frame], rs...)
	}
	return res
}

type queue struct {
	v []string
	i int
}

func (q *queue) next() string {
	if q.i >= len(q.v) {
		return ""
	}
	q.i++
	return q.v[q.i-1]
}

func root(n string) string {
	if n == "<Root>" {
		return ""
	}
	return n
}

var tsTypes = map[string]string{"1": "A", "2": "NS", "5": "CNAME", "6": "SOA", "12": "PTR", "15": "MX", "16": "TXT",
	"28": "AAAA", "33": "SRV", "41": "OPT", "64": "SVCB", "65": "HTTPS"}

func typeName(n string) string {
	if s, ok := tsTypes[n]; ok {
		return s
	}
	return n
}

// pktpipeRecords are the same records from pktpipe's dns events, by
// pcap_cnt.
func pktpipeRecords(evs []map[string]any) map[int][]rec {
	res := map[int][]rec{}
	for _, e := range ofType(evs, "dns") {
		n, _ := strconv.Atoi(fmt.Sprint(e["pcap_cnt"]))
		d := e["dns"].(map[string]any)
		var rs []rec
		qs, _ := d["queries"].([]any)
		for _, q := range qs {
			q := q.(map[string]any)
			rs = append(rs, rec{name: "?" + q["rrname"].(string), typ: q["rrtype"].(string)})
		}
		for _, sec := range []string{"answers", "authorities", "additionals"} {
			l, _ := d[sec].([]any)
			for _, x := range l {
				x := x.(map[string]any)
				r := rec{name: x["rrname"].(string), typ: x["rrtype"].(string), ttl: fmt.Sprint(x["ttl"])}
				if r.typ == "OPT" {
					continue
				}
				if s, ok := x["rdata"].(string); ok {
					r.rdata = s
					if a, err := netip.ParseAddr(s); err == nil && a.Is6() {
						r.rdata = a.String() // tshark compresses, Suricata does not
					}
				}
				if o, ok := x["soa"].(map[string]any); ok {
					r.rdata = fmt.Sprintf("mname=%s rname=%s serial=%v refresh=%v retry=%v expire=%v minimum=%v",
						o["mname"], o["rname"], o["serial"], o["refresh"], o["retry"], o["expire"], o["minimum"])
				}
				if o, ok := x["srv"].(map[string]any); ok {
					r.rdata = fmt.Sprintf("priority=%v weight=%v port=%v name=%v", o["priority"], o["weight"], o["port"], o["name"])
				}
				if o, ok := x["svcb"].(map[string]any); ok {
					var alpn []string
					l, _ := o["alpn"].([]any)
					for _, a := range l {
						alpn = append(alpn, a.(string))
					}
					port := ""
					if p, ok := o["port"]; ok {
						port = fmt.Sprint(p)
					}
					r.rdata = fmt.Sprintf("priority=%v target=%v alpn=%s port=%s", o["priority"], o["target"], strings.Join(alpn, ","), port)
				}
				rs = append(rs, r)
			}
		}
		res[n] = append(res[n], rs...)
	}
	return res
}

// compareTshark checks that pktpipe wrote a dns event for every message
// tshark dissects in pcap, stamped with the same frame, with the same
// questions and the same records: owner name, type, ttl and rdata. It
// returns the events.
func compareTshark(t *testing.T, pcap string) []map[string]any {
	t.Helper()
	bin := testenv.NeedCommand(t, "tshark")
	want := tsharkRecords(t, bin, pcap)
	evs, _ := runPcap(t, pcap, 0)
	got := pktpipeRecords(evs)
	if len(want) == 0 {
		t.Fatal("tshark found no DNS")
	}
	nrec := 0
	for frame, w := range want {
		g := got[frame]
		if fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("frame %d:\n pktpipe %q\n tshark  %q", frame, g, w)
		}
		nrec += len(w)
	}
	for frame := range got {
		if _, ok := want[frame]; !ok {
			t.Errorf("frame %d: pktpipe wrote dns events, tshark found no DNS", frame)
		}
	}
	t.Logf("%d frames, %d questions and records equal to tshark's", len(want), nrec)
	return evs
}

// TestTsharkDnsmasq compares with tshark on testdata/dnsmasq.pcap, made by
// testdata/mkcapture.sh (dig and python against dnsmasq), and checks the
// cases it was made for.
func TestTsharkDnsmasq(t *testing.T) {
	evs := compareTshark(t, filepath.Join("testdata", "dnsmasq.pcap"))
	checkCapture(t, evs)
}

// TestTsharkLive makes a new capture with testdata/mkcapture.sh (root,
// network namespaces, dnsmasq, dig, tcpdump; ~3 s) and compares it too.
func TestTsharkLive(t *testing.T) {
	testenv.NeedRoot(t)
	for _, c := range []string{"ip", "dnsmasq", "dig", "tcpdump", "ethtool", "python3", "tshark"} {
		testenv.NeedCommand(t, c)
	}
	pcap := filepath.Join(t.TempDir(), "live.pcap")
	if out, err := exec.Command("sh", filepath.Join("testdata", "mkcapture.sh"), pcap).CombinedOutput(); err != nil {
		t.Fatalf("mkcapture.sh: %v\n%s", err, out)
	}
	checkCapture(t, compareTshark(t, pcap))
}

// checkCapture asserts what mkcapture.sh's traffic must show beyond
// agreeing with tshark: the truncated UDP answer and its TCP retry in
// three segments, two queries in one segment, NXDOMAIN with its SOA,
// HTTPS alpn, and EDNS kept out of the answers.
func checkCapture(t *testing.T, evs []map[string]any) {
	t.Helper()
	var tc, bigTCP, nx, https, pair int
	byCnt := map[string]int{}
	for _, e := range ofType(evs, "dns") {
		d := e["dns"].(map[string]any)
		byCnt[fmt.Sprint(e["pcap_cnt"])]++
		q, _ := get(e, "dns.queries[0].rrname")
		if d["type"] == "response" && q == "big.test" {
			if d["tc"] == true {
				tc++
			} else if e["proto"] == "TCP" {
				if n, _ := d["answers"].([]any); len(n) == 9 {
					bigTCP++
				}
			}
		}
		if d["rcode"] == "NXDOMAIN" {
			if v, _ := get(e, "dns.authorities[0].rrtype"); v == "SOA" {
				nx++
			}
		}
		if v, _ := get(e, "dns.answers[0].svcb.alpn[1]"); v == "h3" {
			https++
		}
		for _, sec := range []string{"answers", "authorities"} {
			l, _ := d[sec].([]any)
			for _, r := range l {
				if r.(map[string]any)["rrtype"] == "OPT" {
					t.Errorf("OPT in %s: %v", sec, e)
				}
			}
		}
	}
	for _, n := range byCnt {
		if n == 2 {
			pair++
		}
	}
	if tc < 1 || bigTCP != 1 || nx < 2 || https != 1 || pair < 1 {
		t.Errorf("truncated UDP %d, 9-string TXT over TCP %d, NXDOMAIN with SOA %d, HTTPS h2,h3 %d, two messages in a segment %d",
			tc, bigTCP, nx, https, pair)
	}
}

// TestTsharkSuricataVerify compares with tshark on the suricata-verify
// DNS captures too: real resolvers' answers (a CNAME chain with its
// addresses, MX lists, SOA authorities, DNS over TCP). Two by default
// (tshark takes seconds to start); all with PKTPIPE_DNS_ORACLE_ALL=1.
func TestTsharkSuricataVerify(t *testing.T) {
	base := testenv.Conformance(t, "suricata-verify", "tests")
	pcaps := []string{"cond-log-dns-dig/input.pcap", "dns-eve-type-filtering/test.pcap"}
	if os.Getenv("PKTPIPE_DNS_ORACLE_ALL") == "1" {
		pcaps = append(pcaps, "dns-eve-v2-udp-nxdomain-soa/dns-udp-nxdomain-soa.pcap", "dns-reversed-tcp-1/dns.pcap",
			"dns-reversed-udp-1/input.pcap", "dns-tcp-ts-gap/input.pcap", "dns-udp-junkrequest-first/input.pcap")
	}
	for _, p := range pcaps {
		t.Run(filepath.Dir(p), func(t *testing.T) { compareTshark(t, filepath.Join(base, p)) })
	}
}
