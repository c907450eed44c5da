package appproto

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/appproto/svtest"
	"github.com/pktpipe/pktpipe/stages/flow"
)

// ndpiPy prints one JSON line per flow nDPI (through NFStream) finds in
// each capture: endpoints, IP protocol, application_name.
const ndpiPy = `
import sys, json
from nfstream import NFStreamer
for path in sys.argv[1:]:
    try:
        for f in NFStreamer(source=path, statistical_analysis=False, n_dissections=255,
                            idle_timeout=10**6, active_timeout=10**7, decode_tunnels=True):
            print(json.dumps({"file": path, "src": f.src_ip, "sport": f.src_port, "dst": f.dst_ip,
                              "dport": f.dst_port, "proto": f.protocol, "app": f.application_name,
                              "guessed": f.application_is_guessed}))
    except Exception as e:
        print(json.dumps({"file": path, "error": str(e)}))
`

// ndpiNames maps nDPI's master protocols to Suricata's app_proto names.
// mDNS and LLMNR are DNS messages, and pktpipe names them dns; SMTPS,
// IMAPS and POPS are TLS from the first byte, as Suricata sees them.
var ndpiNames = map[string]string{
	"TLS": "tls", "HTTP": "http", "HTTP_Proxy": "http", "HTTP_Connect": "http", "DNS": "dns",
	"MDNS": "dns", "LLMNR": "dns", "SSH": "ssh", "SMTP": "smtp", "SMTPS": "tls", "FTP_CONTROL": "ftp",
	"IMAP": "imap", "IMAPS": "tls", "POP3": "pop3", "POPS": "tls", "DHCP": "dhcp", "NTP": "ntp",
	"SNMP": "snmp", "SIP": "sip", "RDP": "rdp", "SMBv1": "smb", "SMBv23": "smb", "Kerberos": "krb5",
	"LDAP": "ldap", "MQTT": "mqtt", "BitTorrent": "bittorrent-dht", "VNC": "rfb", "TFTP": "tftp",
	"QUIC": "quic", "DCERPC": "dcerpc", "IPsec": "ike", "IPSec": "ike", "NFS": "nfs", "HTTP2": "http2",
	// nDPI names SMB carried in a NetBIOS session (TCP 139/445) NetBIOS.
	"NetBIOS/6": "smb",
}

type flowKey struct {
	file string
	a, b netip.AddrPort
	p    uint8
}

func canon(file string, a, b netip.AddrPort, p uint8) flowKey {
	if b.Compare(a) < 0 {
		a, b = b, a
	}
	return flowKey{file, a, b, p}
}

// ndpiFlows runs NFStream over files.
func ndpiFlows(t *testing.T, files []string) map[flowKey][]string {
	t.Helper()
	py := testenv.NeedCommand(t, "python3")
	testenv.Need(t, exec.Command(py, "-c", "import nfstream").Run() == nil, "python module nfstream (pip install nfstream==6.6.0)")
	script := filepath.Join(t.TempDir(), "ndpi.py")
	if err := os.WriteFile(script, []byte(ndpiPy), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, append([]string{script}, files...)...).Output()
	if err != nil {
		t.Fatalf("nfstream: %v", err)
	}
	flows := map[flowKey][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r struct {
			File, Src, Dst, App, Error string
			Sport, Dport               uint16
			Proto                      uint8
			Guessed                    int
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if r.Error != "" {
			continue // a capture NFStream cannot open
		}
		a, err1 := netip.ParseAddr(r.Src)
		b, err2 := netip.ParseAddr(r.Dst)
		if err1 != nil || err2 != nil {
			continue
		}
		master, _, _ := strings.Cut(r.App, ".")
		if r.Guessed != 0 {
			// nDPI did not dissect the flow and named it by its port:
			// not a detection to compare with.
			master = "guessed:" + master
		}
		k := canon(r.File, netip.AddrPortFrom(a, r.Sport), netip.AddrPortFrom(b, r.Dport), r.Proto)
		flows[k] = append(flows[k], master)
	}
	return flows
}

func pktpipeFlows(t *testing.T, file string) map[flowKey][]string {
	flows := map[flowKey][]string{}
	evs, err := svtest.RunErr(file, func(reg *stats.Registry) []flow.Analyzer { return []flow.Analyzer{New(reg)} })
	if err != nil {
		t.Logf("%s: not compared: %v", file, err) // a truncated capture
		return nil
	}
	for _, ev := range evs {
		if ev["event_type"] != "flow" {
			continue
		}
		var sp, dp uint16
		fmt.Sscan(fmt.Sprint(ev["src_port"]), &sp)
		fmt.Sscan(fmt.Sprint(ev["dest_port"]), &dp)
		a, err1 := netip.ParseAddr(fmt.Sprint(ev["src_ip"]))
		b, err2 := netip.ParseAddr(fmt.Sprint(ev["dest_ip"]))
		if err1 != nil || err2 != nil {
			continue
		}
		p := uint8(0)
		switch ev["proto"] {
		case "TCP":
			p = 6
		case "UDP":
			p = 17
		default:
			continue
		}
		app, _ := ev["app_proto"].(string)
		k := canon(file, netip.AddrPortFrom(a, sp), netip.AddrPortFrom(b, dp), p)
		flows[k] = append(flows[k], app)
	}
	return flows
}

// compareNDPI compares app_proto with nDPI's master protocol on the flows
// where either names a protocol pktpipe detects, and returns the count
// compared and the disagreements.
func compareNDPI(t *testing.T, files []string) (n int, diffs []string, agreed map[string]string) {
	agreed = map[string]string{}
	t.Helper()
	nd := ndpiFlows(t, files)
	for _, f := range files {
		for k, apps := range pktpipeFlows(t, f) {
			ms, ok := nd[k]
			if !ok {
				continue // a flow nDPI did not make (not IP, a tunnel it did not open)
			}
			if len(apps) != len(ms) {
				// The flow table split a connection nDPI kept whole (time
				// going backwards, a late retransmission): compare what
				// the flow with a protocol says.
				best := ""
				for _, a := range apps {
					if best == "" || best == "failed" {
						best = a
					}
				}
				apps, ms = []string{best}, ms[:1]
			}
			for i, app := range apps {
				if strings.HasPrefix(ms[i], "guessed:") {
					continue
				}
				want, known := ndpiNames[ms[i]+"/"+fmt.Sprint(k.p)]
				if !known {
					want, known = ndpiNames[ms[i]]
				}
				if !known && !inScope(app) || app == "failed" && !known {
					continue
				}
				n++
				if app == want {
					agreed[fmt.Sprintf("%v-%v/%d", k.a, k.b, k.p)] = app
				}
				if app != want {
					diffs = append(diffs, fmt.Sprintf("%s %v-%v/%d: pktpipe %q, nDPI %s", filepath.Base(filepath.Dir(k.file))+"/"+filepath.Base(k.file), k.a, k.b, k.p, app, ms[i]))
				}
			}
		}
	}
	sort.Strings(diffs)
	return n, diffs, agreed
}

// TestNDPIAnyPort: nDPI and pktpipe agree on the built sessions of
// protocols on other protocols' ports (TLS on 53, SSH on 443, HTTP on
// 8443, ...).
func TestNDPIAnyPort(t *testing.T) {
	file := anyPortCapture(t)
	n, diffs, agreed := compareNDPI(t, []string{file})
	for _, d := range diffs {
		t.Errorf("disagree: %s", d)
	}
	for k, want := range map[string]string{
		"10.1.0.1:40001-10.1.0.2:53/6":   "tls",  // TLS on 53
		"10.1.0.1:40002-10.1.0.2:443/6":  "ssh",  // SSH on 443
		"10.1.0.1:40003-10.1.0.2:8443/6": "http", // HTTP on 8443
	} {
		if agreed[k] != want {
			t.Errorf("%s: nDPI and pktpipe do not both say %s (agreed: %v)", k, want, agreed)
		}
	}
	t.Logf("%d flows compared (nDPI's port guesses left out), %d disagree", n, len(diffs))
}

// TestNDPIConformance compares app_proto with nDPI on every
// suricata-verify capture (PKTPIPE_NDPI_ALL=1: minutes) or on a sample of
// them, and lists every disagreement.
func TestNDPIConformance(t *testing.T) {
	root := testenv.Conformance(t, "suricata-verify", "tests")
	var files []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".pcap") || strings.HasSuffix(p, ".pcapng")) {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	if os.Getenv("PKTPIPE_NDPI_ALL") != "1" {
		var sample []string
		for i, f := range files {
			if i%24 == 0 {
				sample = append(sample, f)
			}
		}
		files = sample
	}
	n, diffs, _ := compareNDPI(t, files)
	explained := 0
	for _, d := range diffs {
		if why := ndpiExplained(d); why != "" {
			explained++
			t.Logf("%s (%s)", d, why)
		} else {
			t.Errorf("unexplained: %s", d)
		}
	}
	t.Logf("%d captures, %d flows in scope, %d disagree (%d explained): %.1f%% agreement",
		len(files), n, len(diffs), explained, 100*float64(n-len(diffs))/float64(max(n, 1)))
}

// ndpiExplained gives the reason of a known kind of disagreement, or "".
func ndpiExplained(d string) string {
	_, pair, _ := strings.Cut(d, ": pktpipe ")
	switch {
	case pair == `"failed", nDPI NFS`:
		return "RPC calls that are not NFS (portmap, mountd) or NFS NULL pings: Suricata says failed (nfs3-01), nDPI names the RPC family NFS"
	case pair == `"failed", nDPI BitTorrent`:
		return "Teredo relay traffic that Suricata reports failed (decode-teredo-01)"
	case pair == `"failed", nDPI TFTP`:
		return "TFTP data on ephemeral ports (DATA/ACK only): no signature; Suricata ties it to the request by expectation"
	case pair == `"ldap", nDPI MQTT`:
		return "LDAP on 389 (tshark: LDAP); nDPI's MQTT guess is wrong"
	case pair == `"dcerpc", nDPI Blizzard`:
		return "DCE/RPC bind (Suricata says dcerpc: dcerpc-request-http-response); nDPI's Blizzard is wrong"
	case pair == `"smtp", nDPI Protobuf`:
		return "SMTP on 587 (220 ESMTP greeting, EHLO); nDPI's Protobuf is wrong"
	case strings.HasSuffix(pair, ", nDPI Unknown") && pair != `"failed", nDPI Unknown`:
		return "nDPI names nothing: SMTP on 2525, DNS on 12345, DCE/RPC, HTTP/2 prior knowledge (tshark agrees with pktpipe)"
	case pair == `"", nDPI HTTP`:
		return "only the server's side of a response body: no start line to detect"
	}
	return ""
}
