package main

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pktpipe/pktpipe/bench/gen"
)

func hashFile(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func pktgen(t *testing.T, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	if err := run(args, &bytes.Buffer{}, &stderr); err != nil {
		t.Fatalf("pktgen %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stderr.String()
}

// Two runs with the same flags write byte-identical files.
func TestRunsAreIdentical(t *testing.T) {
	dir := t.TempDir()
	for _, extra := range [][]string{nil, {"-format", "pcapng", "-zstd"}, {"-gzip"}} {
		var hashes [][32]byte
		for i, seed := range []string{"7", "7", "8"} {
			out := filepath.Join(dir, "run"+string(rune('a'+i)))
			pktgen(t, append([]string{"-n", "3000", "-seed", seed, "-o", out, "-summary=false"}, extra...)...)
			hashes = append(hashes, hashFile(t, out))
		}
		if hashes[0] != hashes[1] {
			t.Errorf("%v: two runs with seed 7 differ", extra)
		}
		if hashes[0] == hashes[2] {
			t.Errorf("%v: seeds 7 and 8 wrote the same file", extra)
		}
	}
}

func TestTruthFile(t *testing.T) {
	dir := t.TempDir()
	truth := filepath.Join(dir, "t.json")
	stderr := pktgen(t, "-n", "2000", "-seed", "3", "-o", filepath.Join(dir, "s.pcap"), "-truth", truth)
	if !strings.Contains(stderr, `"packets": 2000`) {
		t.Errorf("summary missing from stderr:\n%s", stderr)
	}
	f, err := os.Open(truth)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr, err := gen.ReadTruth(f)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Seed != 3 || tr.Packets != 2000 || len(tr.Conns) == 0 {
		t.Errorf("truth: seed %d, packets %d, %d flows", tr.Seed, tr.Packets, len(tr.Conns))
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-format", "erf"}, {"-gzip", "-zstd"}, {"-n", "0"}, {"extra"}} {
		if err := run(append(args, "-o", filepath.Join(t.TempDir(), "x")), &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
