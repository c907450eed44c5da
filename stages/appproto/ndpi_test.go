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
                              "dport": f.dst_port, "proto": f.protocol, "app": f.application_name}))
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
	"QUIC": "quic", "DCERPC": "dcerpc", "IPsec": "ike", "NFS": "nfs", "HTTP2": "http2",
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
		k := canon(r.File, netip.AddrPortFrom(a, r.Sport), netip.AddrPortFrom(b, r.Dport), r.Proto)
		flows[k] = append(flows[k], master)
	}
	return flows
}

func pktpipeFlows(t *testing.T, file string) map[flowKey][]string {
	flows := map[flowKey][]string{}
	for _, ev := range runApp(t, file) {
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
func compareNDPI(t *testing.T, files []string) (n int, diffs []string) {
	t.Helper()
	nd := ndpiFlows(t, files)
	for _, f := range files {
		for k, apps := range pktpipeFlows(t, f) {
			ms, ok := nd[k]
			if !ok {
				continue // a flow nDPI did not make (not IP, a tunnel it did not open)
			}
			for i, app := range apps {
				if i >= len(ms) {
					break
				}
				want, known := ndpiNames[ms[i]]
				if !known && !inScope(app) || app == "failed" && !known {
					continue
				}
				n++
				if app != want {
					diffs = append(diffs, fmt.Sprintf("%s %v-%v/%d: pktpipe %q, nDPI %s", filepath.Base(filepath.Dir(k.file))+"/"+filepath.Base(k.file), k.a, k.b, k.p, app, ms[i]))
				}
			}
		}
	}
	sort.Strings(diffs)
	return n, diffs
}

// TestNDPIAnyPort: nDPI and pktpipe agree on the built sessions of
// protocols on other protocols' ports (TLS on 53, SSH on 443, HTTP on
// 8443, ...).
func TestNDPIAnyPort(t *testing.T) {
	file := anyPortCapture(t)
	n, diffs := compareNDPI(t, []string{file})
	// nDPI names a flow it cannot dissect by its port; pktpipe does not.
	explained := map[string]bool{
		"built.pcap 10.1.0.1:40101-10.1.0.2:53/17": true, // junk to UDP 53: nDPI DNS by port, pktpipe failed
	}
	for _, d := range diffs {
		f := strings.Fields(d)
		if len(f) < 2 || !explained[strings.TrimPrefix(f[0], "001/")+" "+f[1][:len(f[1])-1]] {
			t.Errorf("unexplained: %s", d)
		} else {
			t.Logf("explained: %s", d)
		}
	}
	t.Logf("%d flows compared, %d disagree", n, len(diffs))
	if n < 10 {
		t.Fatalf("%d flows compared", n)
	}
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
			if i%12 == 0 {
				sample = append(sample, f)
			}
		}
		files = sample
	}
	n, diffs := compareNDPI(t, files)
	for _, d := range diffs {
		t.Log(d)
	}
	agree := float64(n-len(diffs)) / float64(max(n, 1))
	t.Logf("%d captures, %d flows in scope, %d disagree: %.1f%% agreement", len(files), n, len(diffs), 100*agree)
}
