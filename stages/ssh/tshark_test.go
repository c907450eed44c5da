package ssh

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/stages/appproto/svtest"
)

// sshView is what both tools say about one connection, keyed by
// "client -> server" address:port.
type sshView struct {
	hassh, hasshServer string
	clientBanner       string // tshark: the whole line; pktpipe: proto-software
	serverBanner       string
}

func conn(ip, port, dip, dport string) string { return ip + ":" + port + " -> " + dip + ":" + dport }

// tsharkSSH reads tshark's ssh.kex.hassh, ssh.kex.hasshserver and
// ssh.protocol by connection (the client is the sender of the SYN, or of
// the client KEXINIT).
func tsharkSSH(t *testing.T, file string, extra ...string) map[string]*sshView {
	t.Helper()
	out, err := tsharkOut(file, extra...)
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	return parseTshark(out)
}

func tsharkOut(file string, extra ...string) ([]byte, error) {
	args := append([]string{"-r", file, "-o", "tcp.desegment_tcp_streams:TRUE"}, extra...)
	return exec.Command("tshark", append(args, "-Y", "ssh.protocol or ssh.kex.hassh or ssh.kex.hasshserver",
		"-T", "fields", "-E", "separator=|", "-E", "occurrence=l", "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "ipv6.dst", "-e", "tcp.dstport",
		"-e", "ssh.protocol", "-e", "ssh.kex.hassh", "-e", "ssh.kex.hasshserver", "-e", "tcp.stream")...).Output()
}

func parseTshark(out []byte) map[string]*sshView {
	// First pass: the client of each stream is whoever sent a hassh or
	// the lower... decided per stream below.
	type row struct{ src, sp, dst, dp, proto, h, hs, stream string }
	var rows []row
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "|")
		if len(f) < 10 {
			continue
		}
		src, dst := f[0]+f[1], f[3]+f[4]
		rows = append(rows, row{src, f[2], dst, f[5], f[6], f[7], f[8], f[9]})
	}
	client := map[string][2]string{} // stream -> client ip, port
	for _, r := range rows {
		if r.h != "" {
			client[r.stream] = [2]string{r.src, r.sp}
		}
		if r.hs != "" {
			client[r.stream] = [2]string{r.dst, r.dp}
		}
	}
	views := map[string]*sshView{}
	for _, r := range rows {
		c, ok := client[r.stream]
		if !ok { // banners only: the server port is the lower one
			c = [2]string{r.src, r.sp}
			if r.sp < r.dp {
				c = [2]string{r.dst, r.dp}
			}
		}
		fromClient := r.src == c[0] && r.sp == c[1]
		k := conn(r.src, r.sp, r.dst, r.dp)
		if !fromClient {
			k = conn(r.dst, r.dp, r.src, r.sp)
		}
		v := views[k]
		if v == nil {
			v = &sshView{}
			views[k] = v
		}
		if r.h != "" {
			v.hassh = r.h
		}
		if r.hs != "" {
			v.hasshServer = r.hs
		}
		if r.proto != "" {
			if fromClient {
				v.clientBanner = r.proto
			} else {
				v.serverBanner = r.proto
			}
		}
	}
	return views
}

func pktpipeSSH(t *testing.T, file string) map[string]*sshView {
	t.Helper()
	views := map[string]*sshView{}
	str := func(ev map[string]any, k string) string {
		v, _ := svtest.Lookup(ev, k)
		s, _ := v.(string)
		return s
	}
	for _, ev := range runSSH(t, file) {
		if ev["event_type"] != "ssh" {
			continue
		}
		k := conn(fmt.Sprint(ev["src_ip"]), fmt.Sprint(ev["src_port"]), fmt.Sprint(ev["dest_ip"]), fmt.Sprint(ev["dest_port"]))
		banner := func(side string) string {
			if p := str(ev, "ssh."+side+".proto_version"); p != "" {
				return "SSH-" + p + "-" + str(ev, "ssh."+side+".software_version")
			}
			return ""
		}
		views[k] = &sshView{
			hassh: str(ev, "ssh.client.hassh.hash"), hasshServer: str(ev, "ssh.server.hassh.hash"),
			clientBanner: banner("client"), serverBanner: banner("server"),
		}
	}
	return views
}

// sameBanner: pktpipe's software_version stops at the first space, as
// Suricata's; tshark's ssh.protocol is the whole line.
func sameBanner(tshark, ours string) bool {
	if tshark == ours {
		return true
	}
	return ours != "" && strings.HasPrefix(tshark, ours+" ")
}

// compareTshark asserts that every connection tshark reports has
// pktpipe's values, and returns how many values were compared.
func compareTshark(t *testing.T, file string, tsharkArgs ...string) int {
	t.Helper()
	return compareViews(t, file, tsharkSSH(t, file, tsharkArgs...))
}

func compareViews(t *testing.T, file string, want map[string]*sshView) int {
	t.Helper()
	got := pktpipeSSH(t, file)
	n := 0
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		w, g := want[k], got[k]
		if g == nil {
			t.Errorf("%s: %s: tshark %+v, no pktpipe ssh event", filepath.Base(file), k, *w)
			continue
		}
		for _, c := range []struct {
			name        string
			tshark, our string
			eq          func(a, b string) bool
		}{
			{"hassh", w.hassh, g.hassh, nil},
			{"hasshServer", w.hasshServer, g.hasshServer, nil},
			{"client banner", w.clientBanner, g.clientBanner, sameBanner},
			{"server banner", w.serverBanner, g.serverBanner, sameBanner},
		} {
			if c.tshark == "" {
				continue
			}
			n++
			ok := c.tshark == c.our
			if c.eq != nil {
				ok = c.eq(c.tshark, c.our)
			}
			if !ok {
				t.Errorf("%s: %s: %s: tshark %q, pktpipe %q", filepath.Base(file), k, c.name, c.tshark, c.our)
			}
		}
	}
	return n
}

// TestTsharkConformance: on every suricata-verify capture with SSH,
// tshark's HASSH, HASSHServer and banners equal pktpipe's.
func TestTsharkConformance(t *testing.T) {
	testenv.NeedCommand(t, "tshark")
	root := testenv.Conformance(t, "suricata-verify", "tests")
	files := map[string]bool{}
	tests, err := svtest.Load(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		has := strings.Contains(tc.Name, "ssh")
		for _, c := range tc.Check {
			has = has || c.Match["event_type"] == "ssh"
		}
		if has && tc.Pcap != "" {
			if _, err := os.Stat(tc.Pcap); err == nil {
				files[filepath.Clean(tc.Pcap)] = true
			}
		}
	}
	// tshark takes seconds to start on a busy machine: it reads the
	// captures merged in batches whose connections have distinct
	// addresses and ports (some captures hold the same connection cut
	// differently), pktpipe reads each.
	var list []string
	for f := range files {
		list = append(list, f)
	}
	slices.Sort(list)
	got := map[string]map[string]*sshView{}
	var batches [][]string
	var batchKeys []map[string]bool
	for _, f := range list {
		got[f] = pktpipeSSH(t, f)
		placed := false
		for i, keys := range batchKeys {
			clash := false
			for k := range got[f] {
				clash = clash || keys[k]
			}
			if !clash {
				batches[i] = append(batches[i], f)
				for k := range got[f] {
					keys[k] = true
				}
				placed = true
				break
			}
		}
		if !placed {
			keys := map[string]bool{}
			for k := range got[f] {
				keys[k] = true
			}
			batches, batchKeys = append(batches, []string{f}), append(batchKeys, keys)
		}
	}
	total := 0
	for i, b := range batches {
		merged := filepath.Join(t.TempDir(), fmt.Sprintf("merged%d.pcapng", i))
		if out, err := exec.Command(testenv.NeedCommand(t, "mergecap"), append([]string{"-a", "-w", merged}, b...)...).CombinedOutput(); err != nil {
			t.Fatalf("mergecap: %v\n%s", err, out)
		}
		want := tsharkSSH(t, merged)
		for _, f := range b {
			sub := map[string]*sshView{}
			for k := range got[f] {
				if w, ok := want[k]; ok {
					sub[k] = w
					delete(want, k)
				}
			}
			total += compareViews(t, f, sub)
		}
		for k, w := range want {
			t.Errorf("%s: tshark %+v, no pktpipe ssh event", k, *w)
		}
	}
	if total == 0 {
		t.Fatal("no SSH value compared")
	}
	t.Logf("%d captures, %d values equal to tshark's", len(files), total)
}

// TestRealSSH: OpenSSH's client against sshd in a namespace of the test's
// own, with the default algorithms, with a restricted KEX/cipher/MAC set
// on both sides, and with sshd on port 443; tshark's values on the
// capture must be pktpipe's, and the HASSH strings are OpenSSH's own
// lists (ssh -G / sshd -T).
func TestRealSSH(t *testing.T) {
	for _, c := range []string{"sshd", "ssh", "ssh-keygen", "tshark", "ss"} {
		testenv.NeedCommand(t, c)
	}
	lab := svtest.NewLab(t, 60*time.Second)
	d := lab.Dir
	lab.Run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(d, "hostkey"))
	lab.Run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(d, "userkey"))
	pub, err := os.ReadFile(filepath.Join(d, "userkey.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "authorized_keys"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	restricted := []string{"KexAlgorithms=diffie-hellman-group14-sha256", "Ciphers=aes128-ctr", "MACs=hmac-sha1", "Compression=no"}
	type server struct {
		port  int
		extra []string
	}
	servers := []server{{2222, nil}, {2223, restricted}, {443, nil}}
	for _, s := range servers {
		args := []string{"/usr/sbin/sshd", "-D", "-e", "-f", "/dev/null", "-p", fmt.Sprint(s.port),
			"-o", "HostKey=" + filepath.Join(d, "hostkey"), "-o", "AuthorizedKeysFile=" + filepath.Join(d, "authorized_keys"),
			"-o", "StrictModes=no", "-o", "PidFile=none", "-o", "ListenAddress=127.0.0.1", "-o", "PermitRootLogin=yes", "-o", "UsePAM=no"}
		for _, e := range s.extra {
			args = append(args, "-o", e)
		}
		lab.Start(args...)
	}
	for _, s := range servers {
		lab.WaitPort(s.port)
	}
	cap := lab.StartCapture()
	client := func(port int, extra ...string) {
		args := []string{"ssh", "-F", "/dev/null", "-i", filepath.Join(d, "userkey"), "-o", "StrictHostKeyChecking=no",
			"-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-p", fmt.Sprint(port)}
		for _, e := range extra {
			args = append(args, "-o", e)
		}
		lab.In(append(args, "root@127.0.0.1", "true")...)
	}
	client(2222)
	client(2223, restricted...)
	client(443)
	file := cap.Stop(t)
	n := compareTshark(t, file, "-d", "tcp.port==2222,ssh", "-d", "tcp.port==2223,ssh", "-d", "tcp.port==443,ssh")
	if n != 12 {
		t.Errorf("%d values compared with tshark's, want 12 (4 per connection)", n)
	}
	got := pktpipeSSH(t, file)
	if len(got) != 3 {
		t.Fatalf("%d ssh events, want 3: %v", len(got), got)
	}
	for k, v := range got {
		if v.hassh == "" || v.hasshServer == "" || !strings.HasPrefix(v.clientBanner, "SSH-2.0-OpenSSH_") || !strings.HasPrefix(v.serverBanner, "SSH-2.0-OpenSSH_") {
			t.Errorf("%s: incomplete %+v", k, *v)
		}
	}
	// The restricted pair: HASSH strings are the configured lists
	// (OpenSSH appends its ext-info/kex-strict pseudo-algorithms to kex,
	// and its client offers zlib whatever Compression says).
	evs := runSSH(t, file)
	for _, ev := range evs {
		if ev["event_type"] != "ssh" || fmt.Sprint(ev["dest_port"]) != "2223" {
			continue
		}
		cs, _ := svtest.Lookup(ev, "ssh.client.hassh.string")
		ss, _ := svtest.Lookup(ev, "ssh.server.hassh.string")
		if s, _ := cs.(string); !strings.HasPrefix(s, "diffie-hellman-group14-sha256,") || !strings.Contains(s, ";aes128-ctr;hmac-sha1;none") {
			t.Errorf("client hassh string %q", s)
		}
		if s, _ := ss.(string); !strings.HasPrefix(s, "diffie-hellman-group14-sha256,") || !strings.HasSuffix(s, ";aes128-ctr;hmac-sha1;none") {
			t.Errorf("server hassh string %q", s)
		}
	}
	t.Logf("3 connections, %d values equal to tshark's", n)
}
