package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/pktpipe/pktpipe/internal/testenv"
)

// countPackets reads a pcap or pcapng file with gopacket (all link types).
func countPackets(t *testing.T, path string) int {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	if r, err := pcapgo.NewNgReader(bytes.NewReader(raw), pcapgo.NgReaderOptions{WantMixedLinkType: true}); err == nil {
		for {
			if _, _, err := r.ReadPacketData(); err == io.EOF {
				return n
			} else if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			n++
		}
	}
	r, err := pcapgo.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for {
		if _, _, err := r.ReadPacketData(); err == io.EOF {
			return n
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		n++
	}
}

// TestFilterMeansWhatTcpdumpMeans runs `pktpipe -r FILE -w OUT EXPR` and
// `tcpdump -r FILE -w OUT EXPR` on Ethernet, raw-IP and BSD-loopback
// captures and compares how many packets each passed; then replays
// pktpipe's -w output and checks it gives the same events as the filtered
// run.
func TestFilterMeansWhatTcpdumpMeans(t *testing.T) {
	testenv.NeedCommand(t, "tcpdump")
	files := []string{sample}
	for _, f := range []string{
		"suricata-verify/tests/tls-alpn-log-detect-02/input.pcap", // RAW
		"foxio-ja4/pcap/ipv6.pcapng",                              // NULL
	} {
		files = append(files, testenv.Conformance(t, f))
	}
	dir := t.TempDir()
	compared := 0
	for _, f := range files {
		for _, expr := range []string{"tcp", "icmp or icmp6", "tcp port 443", "ip6 and tcp[tcpflags] & tcp-syn != 0", "udp and not port 53", "greater 100"} {
			want := filepath.Join(dir, "tcpdump.pcap")
			if out, err := exec.Command("tcpdump", "-r", f, "-w", want, expr).CombinedOutput(); err != nil {
				t.Logf("tcpdump refuses %q on %s: %s", expr, filepath.Base(f), bytes.TrimSpace(out))
				if code, _, _ := runCmd(t, nil, "-r", f, "-o", "file:"+filepath.Join(dir, "x.json"), expr); code == exitOK {
					t.Errorf("pktpipe accepted %q on %s", expr, filepath.Base(f))
				}
				continue
			}
			got := filepath.Join(dir, "pktpipe.pcapng")
			evFile := filepath.Join(dir, "filtered.json")
			code, _, errs := runCmd(t, nil, "-r", f, "-w", got, "-o", "file:"+evFile, expr)
			if code != exitOK {
				t.Fatalf("%s %q: exit %d\n%s", filepath.Base(f), expr, code, errs)
			}
			if g, w := countPackets(t, got), countPackets(t, want); g != w {
				t.Errorf("%s %q: pktpipe passed %d packets, tcpdump %d", filepath.Base(f), expr, g, w)
			}
			// The -w file replays into the same events, but for pcap_cnt:
			// the filtered run counts the input's records, the replay
			// only those the filter passed.
			replay := filepath.Join(dir, "replay.json")
			if code, _, errs := runCmd(t, nil, "-r", got, "-o", "file:"+replay); code != exitOK {
				t.Fatalf("replay: exit %d\n%s", code, errs)
			}
			a, _ := os.ReadFile(evFile)
			b, _ := os.ReadFile(replay)
			if sortedLines(withoutPcapCnt(string(a))) != sortedLines(withoutPcapCnt(string(b))) {
				t.Errorf("%s %q: replaying -w gives other events than the filtered run", filepath.Base(f), expr)
			}
			compared++
		}
	}
	if compared < 12 {
		t.Fatalf("only %d comparisons", compared)
	}
}

func TestLiveFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-i", "lo", "--capture", "pcap"}, "--capture"},
		{[]string{"-i", "lo", "--capture", "ebpf", "--fanout", "2"}, "--fanout"},
		{[]string{"-r", sample, "--fanout", "2"}, "live capture"},
		{[]string{"-r", sample, "tcp port"}, "syntax error"},
		{[]string{"-i", "pp-no-such-if0"}, "pp-no-such-if0"},
	} {
		code, _, errs := runCmd(t, nil, c.args...)
		if code != exitUsage || !bytes.Contains([]byte(errs), []byte(c.want)) {
			t.Errorf("%v: exit %d, want %d with %q:\n%s", c.args, code, exitUsage, c.want, errs)
		}
	}
}
