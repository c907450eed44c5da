package quic

import (
	"bufio"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pktpipe/pktpipe/internal/testenv"
)

// tuple is a flow's client and server endpoints.
type tuple struct{ src, dst netip.AddrPort }

func (t tuple) String() string { return t.src.String() + "->" + t.dst.String() }

func eventTuple(e quicEvent) tuple {
	return tuple{netip.AddrPortFrom(e.SrcIP, e.SrcPort), netip.AddrPortFrom(e.DestIP, e.DestPort)}
}

// readSnapshot returns the top-level keys of each item of a FoxIO insta
// snapshot (ja4__insta@NAME.snap).
func readSnapshot(t *testing.T, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var items []map[string]string
	seps := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if seps < 2 {
			if line == "---" {
				seps++
			}
			continue
		}
		if strings.HasPrefix(line, "- ") {
			items = append(items, map[string]string{})
			line = "  " + line[2:]
		} else if !strings.HasPrefix(line, "  ") || strings.HasPrefix(line, "   ") {
			continue
		}
		if len(items) == 0 {
			continue
		}
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			items[len(items)-1][k] = strings.Trim(strings.TrimSpace(v), `"'`)
		}
	}
	return items
}

func mustAddrPort(t *testing.T, ip, port string) netip.AddrPort {
	t.Helper()
	a, err := netip.ParseAddr(ip)
	if err != nil {
		t.Fatalf("address %q: %v", ip, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		t.Fatalf("port %q: %v", port, err)
	}
	return netip.AddrPortFrom(a, uint16(p))
}

// TestFoxIOJA4 compares the JA4 and SNI of every UDP (QUIC) stream of
// FoxIO's Rust snapshots with the quic events of the same capture, and
// requires every quic client event to be one of those streams.
func TestFoxIOJA4(t *testing.T) {
	root := testenv.Conformance(t, "foxio-ja4")
	snaps, _ := filepath.Glob(filepath.Join(root, "rust", "ja4", "src", "snapshots", "ja4__insta@*.snap"))
	if len(snaps) < 30 {
		t.Fatalf("%d FoxIO snapshots", len(snaps))
	}
	streams := 0
	for _, snap := range snaps {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(snap), "ja4__insta@"), ".snap")
		want := map[tuple]map[string]string{}
		for _, it := range readSnapshot(t, snap) {
			if it["transport"] == "udp" && it["ja4"] != "" {
				want[tuple{mustAddrPort(t, it["src"], it["src_port"]), mustAddrPort(t, it["dst"], it["dst_port"])}] = it
			}
		}
		pcap := filepath.Join(root, "pcap", name)
		if _, err := os.Stat(pcap); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Run(name, func(t *testing.T) {
			res := runCapture(t, pcap)
			got := map[tuple]quicEvent{}
			for _, e := range res.clientEvents() {
				tu := eventTuple(e)
				if _, dup := got[tu]; dup {
					t.Errorf("%s: two client hellos", tu)
				}
				got[tu] = e
			}
			for tu, w := range want {
				streams++
				e, ok := got[tu]
				switch {
				case !ok:
					t.Errorf("stream %s %s: no quic event (want ja4 %s)", w["stream"], tu, w["ja4"])
				case e.JA4 != w["ja4"]:
					t.Errorf("stream %s %s: ja4 %s, want %s", w["stream"], tu, e.JA4, w["ja4"])
				case e.SNI != w["tls_server_name"]:
					t.Errorf("stream %s %s: sni %q, want %q", w["stream"], tu, e.SNI, w["tls_server_name"])
				}
			}
			for tu, e := range got {
				if _, ok := want[tu]; !ok {
					t.Errorf("%s: quic event (sni %q ja4 %s) that FoxIO does not list", tu, e.SNI, e.JA4)
				}
			}
		})
	}
	t.Logf("%d FoxIO QUIC streams compared", streams)
	if streams < 20 {
		t.Errorf("only %d QUIC streams in the FoxIO snapshots", streams)
	}
}

// readCut reads a Zeek btest baseline (.cut: a comment line, a header of
// tab-separated column names, rows).
func readCut(t *testing.T, path string) []map[string]string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cols []string
	var rows []map[string]string
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if cols == nil {
			cols = f
			continue
		}
		r := map[string]string{}
		for i, c := range cols {
			if i < len(f) {
				r[c] = f[i]
			}
		}
		rows = append(rows, r)
	}
	return rows
}

// TestZeekFragmented checks the SNI of Zeek's fragmented-CRYPTO QUIC
// captures against its baselines (quic.log or ssl.log server_name), and
// the ServerHello's version and cipher where ssl.log has them.
func TestZeekFragmented(t *testing.T) {
	root := testenv.Conformance(t, "zeek", "testing", "btest")
	for _, tc := range []struct{ baseline, pcap string }{
		{"scripts.base.protocols.quic.fragmented-crypto", "chromium-115.0.5790.110-google-de-fragmented.pcap"},
		{"scripts.base.protocols.quic.multiple-initial-fragmented-crypto", "quic-multiple-initial-fragmented-crypto.pcap"},
		{"scripts.base.protocols.quic.multiple-initial-fragmented-crypto-only-initial", "quic-multiple-initial-fragmented-crypto-only-initial.pcap"},
	} {
		t.Run(tc.pcap, func(t *testing.T) {
			base := filepath.Join(root, "Baseline", tc.baseline)
			ssl := readCut(t, filepath.Join(base, "ssl.log.cut"))
			var quicLog []map[string]string
			if _, err := os.Stat(filepath.Join(base, "quic.log.cut")); err == nil {
				quicLog = readCut(t, filepath.Join(base, "quic.log.cut"))
			}
			res := runCapture(t, filepath.Join(root, "Traces", "quic", tc.pcap))
			ce := res.clientEvents()
			if len(ce) != len(ssl) {
				t.Fatalf("%d client hellos, ssl.log has %d rows", len(ce), len(ssl))
			}
			for i, row := range ssl {
				if ce[i].SNI != row["server_name"] {
					t.Errorf("sni %q, ssl.log %q", ce[i].SNI, row["server_name"])
				}
				if i < len(quicLog) && ce[i].SNI != quicLog[i]["server_name"] {
					t.Errorf("sni %q, quic.log %q", ce[i].SNI, quicLog[i]["server_name"])
				}
				se := res.serverEvents()
				if row["cipher"] == "-" {
					if len(se) != 0 {
						t.Errorf("server hello %+v; ssl.log has none", se[0].QUIC)
					}
					continue
				}
				if len(se) != 1 {
					t.Fatalf("%d server hellos, want 1", len(se))
				}
				if v := strings.ReplaceAll(se[0].TLSVersion, " ", ""); "TLSv"+strings.TrimPrefix(strings.ReplaceAll(v, ".", ""), "TLS") != row["version"] {
					t.Errorf("tls version %q, ssl.log %q", se[0].TLSVersion, row["version"])
				}
				if se[0].Cipher != row["cipher"] {
					t.Errorf("cipher %q, ssl.log %q", se[0].Cipher, row["cipher"])
				}
			}
		})
	}
}
