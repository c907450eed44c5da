package appproto

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/stages/appproto/svtest"
)

// TestRealAnyPort: real clients and servers on other protocols' ports,
// in a namespace of the test's own: TLS on 53 (openssl s_server, curl),
// SSH on 443 (sshd, ssh) and HTTP on 8443 (python's http.server, curl).
// pktpipe's app_proto must be the protocol; tshark, told to decode the
// port as that protocol, must find its handshake in the bytes (a TLS
// ClientHello, an SSH banner, an HTTP request). nDPI must name SSH and
// HTTP; on TCP port 53 nDPI 6.6 says DNS (its DNS dissector takes the
// port's flow before TLS is tried), which the test logs.
func TestRealAnyPort(t *testing.T) {
	for _, c := range []string{"tshark", "openssl", "curl", "sshd", "ssh", "ssh-keygen", "python3", "ss"} {
		testenv.NeedCommand(t, c)
	}
	lab := svtest.NewLab(t, 90*time.Second)
	d := lab.Dir
	key, cert := filepath.Join(d, "key.pem"), filepath.Join(d, "cert.pem")
	lab.Run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
		"-subj", "/CN=anyport.test", "-days", "1", "-keyout", key, "-out", cert)
	lab.Start("openssl", "s_server", "-accept", "127.0.0.1:53", "-cert", cert, "-key", key, "-www", "-quiet")

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
	lab.Start("/usr/sbin/sshd", "-D", "-e", "-f", "/dev/null", "-p", "443",
		"-o", "HostKey="+filepath.Join(d, "hostkey"), "-o", "AuthorizedKeysFile="+filepath.Join(d, "authorized_keys"),
		"-o", "StrictModes=no", "-o", "PidFile=none", "-o", "ListenAddress=127.0.0.1", "-o", "PermitRootLogin=yes", "-o", "UsePAM=no")

	lab.Start("python3", "-m", "http.server", "8443", "--bind", "127.0.0.1", "--directory", d)
	for _, p := range []int{53, 443, 8443} {
		lab.WaitPort(p)
	}

	capture := lab.StartCapture()
	lab.In("curl", "-sk", "--max-time", "10", "-o", "/dev/null", "https://127.0.0.1:53/")
	lab.In("ssh", "-F", "/dev/null", "-i", filepath.Join(d, "userkey"), "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-p", "443", "root@127.0.0.1", "true")
	lab.In("curl", "-s", "--max-time", "10", "-o", "/dev/null", "http://127.0.0.1:8443/cert.pem")
	file := capture.Stop(t)

	want := map[uint16]string{53: "tls", 443: "ssh", 8443: "http"}
	nd := ndpiFlows(t, []string{file})
	got := map[uint16]bool{}
	for k, apps := range pktpipeFlows(t, file) {
		port := min(k.a.Port(), k.b.Port())
		w, ok := want[port]
		if !ok || k.p != 6 {
			continue
		}
		got[port] = true
		if len(apps) != 1 || apps[0] != w {
			t.Errorf("port %d: pktpipe app_proto %v, want %s", port, apps, w)
		}
		ms := nd[k]
		switch {
		case len(ms) == 1 && ndpiNames[ms[0]] == w:
		case port == 53 && len(ms) == 1 && ms[0] == "DNS":
			t.Logf("port 53: nDPI says DNS for TLS")
		default:
			t.Errorf("port %d: nDPI %v, want %s", port, ms, w)
		}
		decode := map[uint16][2]string{53: {"tls", "tls.handshake.type == 1"}, 443: {"ssh", "ssh.protocol"}, 8443: {"http", "http.request.method == \"GET\""}}[port]
		out, err := exec.Command("tshark", "-r", file, "-d", fmt.Sprintf("tcp.port==%d,%s", port, decode[0]), "-Y", decode[1], "-T", "fields", "-e", "frame.number").Output()
		if err != nil || len(strings.Fields(string(out))) == 0 {
			t.Errorf("port %d: tshark decoding it as %s finds no %s (%v)", port, decode[0], decode[1], err)
		}
		t.Logf("%v-%v: pktpipe %v, nDPI %v", k.a, k.b, apps, ms)
	}
	for p := range want {
		if !got[p] {
			t.Errorf("no flow to port %d in the capture", p)
		}
	}
}
