// Package testenv gives tests one rule for what they need from the machine:
// outside CI a missing requirement skips the test; under PKTPIPE_CI=1 it
// fails it, so CI can never pass by skipping.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// InCI reports whether PKTPIPE_CI=1 is set (.ci/run sets it).
func InCI() bool { return os.Getenv("PKTPIPE_CI") == "1" }

// Need skips the test (or fails it in CI) when ok is false.
func Need(t testing.TB, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if InCI() {
		t.Fatalf("requirement missing in CI: %s", what)
	}
	t.Skipf("requirement missing: %s", what)
}

// NeedRoot requires uid 0 (network namespaces, AF_PACKET, eBPF).
func NeedRoot(t testing.TB) { t.Helper(); Need(t, os.Geteuid() == 0, "root") }

// NeedCommand requires an executable on PATH and returns its path.
func NeedCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Need(t, err == nil, "command "+name)
	return p
}

// WaitFor polls cond until it holds and fails the test, naming what it
// waited for, if it does not hold within timeout. Tests wait this way on
// something they can observe (a file's content, a counter, a socket's
// state), never on a fixed sleep: a slow machine then costs time, not a
// wrong verdict. Call it from the test's goroutine (it may call Fatalf).
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(timeout, cond) {
		t.Fatalf("gave up after %v waiting for %s", timeout, what)
	}
}

// Poll calls cond every 10 ms until it returns true (Poll returns true)
// or timeout has passed (false). cond is called at least once.
func Poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// RepoRoot returns the directory holding go.mod, found upwards from the
// test's working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// Conformance returns the path of ../shared/conformance/<sub> beside the
// repository (where CI puts shared/), skipping or failing if it is absent.
func Conformance(t testing.TB, sub ...string) string {
	t.Helper()
	p := filepath.Join(append([]string{RepoRoot(t), "..", "shared", "conformance"}, sub...)...)
	_, err := os.Stat(p)
	Need(t, err == nil, "conformance data at "+p)
	return p
}

// childEnv marks the copy of a test binary that WithoutCaps started.
const childEnv = "PKTPIPE_TEST_CHILD"

// InCapsChild reports whether this process is the copy of the test binary
// that WithoutCaps started; the test then runs its checks and returns.
func InCapsChild() bool { return os.Getenv(childEnv) == "nocaps" }

// WithoutCaps re-runs the test named name in a copy of the test binary
// whose capability bounding set lacks drop (setpriv syntax, e.g.
// "-net_raw" or "-bpf,-perfmon"), with extra environment variables, and
// fails t unless the copy's test passed. It returns the copy's output.
func WithoutCaps(t testing.TB, name, drop string, env ...string) string {
	t.Helper()
	NeedRoot(t)
	setpriv := NeedCommand(t, "setpriv")
	cmd := exec.Command(setpriv, "--bounding-set="+drop, os.Args[0], "-test.run=^"+name+"$", "-test.v")
	cmd.Env = append(append(os.Environ(), childEnv+"=nocaps"), env...)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("%s without capabilities %s: %v\n%s", name, drop, err, out)
	}
	return string(out)
}

// ConformanceCaptures returns every capture file under
// ../shared/conformance (pcap, pcapng, their gzip/zstd forms, .cap),
// sorted, failing when there is none.
func ConformanceCaptures(t testing.TB) []string {
	t.Helper()
	root := Conformance(t)
	var files []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		for _, ext := range []string{".pcap", ".pcapng", ".pcap.gz", ".pcapng.gz", ".cap", ".pcap.zst"} {
			if !d.IsDir() && strings.HasSuffix(p, ext) {
				files = append(files, p)
				break
			}
		}
		return nil
	})
	if err != nil || len(files) == 0 {
		t.Fatalf("no conformance captures under %s: %v", root, err)
	}
	return files
}
