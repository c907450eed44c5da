package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/testenv"
)

// eventLines reads every file under dirs (skipping the sink's hidden
// temporary files, which must not remain) and returns their lines sorted.
func eventLines(t *testing.T, dirs ...string) (lines []string, files int) {
	t.Helper()
	for _, d := range dirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") {
				t.Errorf("left behind: %s", e.Name())
				continue
			}
			b, err := os.ReadFile(filepath.Join(d, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			files++
			for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
				if l != "" {
					lines = append(lines, l)
				}
			}
		}
	}
	sort.Strings(lines)
	return lines, files
}

// SIGHUP during a paced replay, with the completed files renamed away
// underneath the sink (as logrotate does): the union of all files holds
// exactly the events of a run without SIGHUP, each once.
func TestSIGHUPDuringReplayLosesAndDuplicatesNothing(t *testing.T) {
	bin := opsBinary(t)
	// 40k synthetic packets span about 1.5 s of capture time: a replay at
	// its own pace lasts at least that on any machine, room for a dozen
	// SIGHUPs 100 ms apart (3 are required).
	path := synth(t, 40_000)
	for _, rot := range []string{"0", "256K"} {
		t.Run("rotate-size="+rot, func(t *testing.T) {
			ref := t.TempDir()
			args := []string{"-r", path, "--workers", "2", "--rotate-size", rot}
			if out, err := exec.Command(bin, append(args, "-o", "file:"+filepath.Join(ref, "events.json"))...).CombinedOutput(); err != nil {
				t.Fatalf("reference run: %v\n%s", err, out)
			}
			want, _ := eventLines(t, ref)

			live, moved := t.TempDir(), t.TempDir()
			cmd := exec.Command(bin, append(args, "--replay-speed", "1", "--status-interval", "50ms",
				"-o", "file:"+filepath.Join(live, "events.json"))...)
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			w := opsWatch(stderr)
			// The first status line comes after the SIGHUP handler is in place.
			opsWaitFor(t, w, "status line", func() bool { _, ok := w.find("msg=status"); return ok })
			hups, renamed := 0, 0
			for running := true; running; {
				ents, _ := os.ReadDir(live)
				for _, e := range ents {
					if !strings.HasPrefix(e.Name(), ".") &&
						os.Rename(filepath.Join(live, e.Name()), filepath.Join(moved, fmt.Sprintf("%03d-%s", renamed, e.Name()))) == nil {
						renamed++
					}
				}
				if cmd.Process.Signal(syscall.SIGHUP) == nil {
					hups++
				}
				select {
				case <-w.done:
					running = false
				case <-time.After(100 * time.Millisecond):
				}
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("exit: %v\n%s", err, w.all())
			}
			reopens := strings.Count(w.all(), "file sink reopened on SIGHUP")
			if reopens < 3 || renamed < 2 {
				t.Fatalf("%d reopens logged, %d files renamed: the test did not exercise SIGHUP\n%s", reopens, renamed, w.all())
			}
			got, files := eventLines(t, live, moved)
			if len(got) != len(want) {
				t.Errorf("%d events in %d files, want %d", len(got), files, len(want))
			}
			for i := range min(len(got), len(want)) {
				if got[i] != want[i] {
					t.Fatalf("first difference (sorted):\ngot:  %s\nwant: %s", got[i], want[i])
				}
			}
			t.Logf("%d SIGHUPs (%d reopens), %d files renamed away, %d files, %d events", hups, reopens, renamed, files, len(got))
		})
	}
}

// systemd accepts the unit (with ExecStart pointed at the test's binary and
// the generated man page on MANPATH, so Documentation= is checked too).
func TestSystemdUnitVerifies(t *testing.T) {
	analyze := testenv.NeedCommand(t, "systemd-analyze")
	bin := opsBinary(t)
	root := testenv.RepoRoot(t)
	unit, err := os.ReadFile(filepath.Join(root, "deploy", "pktpipe.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"AmbientCapabilities=CAP_NET_RAW CAP_BPF CAP_PERFMON CAP_NET_ADMIN\n",
		"CapabilityBoundingSet=CAP_NET_RAW CAP_BPF CAP_PERFMON CAP_NET_ADMIN\n",
		"NoNewPrivileges=yes\n", "DynamicUser=yes\n", "User=pktpipe\n", "ProtectSystem=strict\n",
		"ExecStart=/usr/local/bin/pktpipe --config /etc/pktpipe/pktpipe.yaml\n",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	dir := t.TempDir()
	man1 := filepath.Join(dir, "man", "man1")
	if err := os.MkdirAll(man1, 0o755); err != nil {
		t.Fatal(err)
	}
	page, err := exec.Command("go", "run", filepath.Join(root, "deploy", "genman"), bin).Output()
	if err != nil {
		t.Fatalf("genman: %v", err)
	}
	if err := os.WriteFile(filepath.Join(man1, "pktpipe.1"), page, 0o644); err != nil {
		t.Fatal(err)
	}
	local := strings.Replace(string(unit), "/usr/local/bin/pktpipe", bin, 1)
	path := filepath.Join(dir, "pktpipe.service")
	if err := os.WriteFile(path, []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, "verify", path)
	cmd.Env = append(os.Environ(), "MANPATH="+filepath.Join(dir, "man"), "SYSTEMD_LOG_LEVEL=notice")
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// The binary runs as nobody with only the unit's capabilities (ambient,
// inheritable and bounding set), as systemd would start it.
func TestRunsUnderTheUnitsCapabilitiesWithoutRoot(t *testing.T) {
	testenv.NeedRoot(t)
	setpriv := testenv.NeedCommand(t, "setpriv")
	bin := opsBinary(t)
	// nobody must be able to read the capture: copy it beside the binary.
	capture := filepath.Join(filepath.Dir(bin), "sample.pcap")
	raw, err := os.ReadFile(sample)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(capture, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	const caps = "+net_raw,+bpf,+perfmon,+net_admin"
	cmd := exec.Command(setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups",
		"--inh-caps=-all,"+caps, "--ambient-caps=-all,"+caps, "--bounding-set=-all,"+caps,
		bin, "-r", capture, "--workers", "2")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("setpriv ... pktpipe: %v\n%s", err, stderr.String())
	}
	if n := strings.Count(stdout.String(), "\n"); n == 0 || !strings.Contains(stderr.String(), "msg=done packets=79 ") {
		t.Fatalf("%d events; stderr:\n%s", n, stderr.String())
	}
	// And it really ran as nobody with those capabilities.
	probe := exec.Command(setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups",
		"--inh-caps=-all,"+caps, "--ambient-caps=-all,"+caps, "--bounding-set=-all,"+caps,
		"sh", "-c", "id -u; grep -E '^Cap(Amb|Eff)' /proc/self/status")
	out, err := probe.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "65534\n") || strings.Contains(string(out), "0000000000000000") {
		t.Fatalf("probe: %v\n%s", err, out)
	}
}
