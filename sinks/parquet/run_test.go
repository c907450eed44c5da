package parquet_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/bench/gen"
	"github.com/pktpipe/pktpipe/internal/testenv"
)

// synth writes a synthetic capture of n packets and returns its path and
// the capture time it spans.
func synth(t testing.TB, n int) (string, time.Duration) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "synth.pcap")
	f, err := os.Create(path)
	must(t, err)
	bw := bufio.NewWriterSize(f, 1<<20)
	sum, err := gen.Write(bw, gen.Config{Seed: 3, Packets: n}, gen.Format{})
	must(t, err)
	must(t, bw.Flush())
	must(t, f.Close())
	return path, time.Duration(sum.Last - sum.First)
}

// TestRotationBySize: with a small rotation size and row groups, a run
// leaves many complete files per event type and no temporary file, and
// DuckDB reads them all, row for row equal to the JSON sink of the run.
func TestRotationBySize(t *testing.T) {
	duckdb(t)
	capture, _ := synth(t, 60_000)
	dir := t.TempDir()
	js := filepath.Join(t.TempDir(), "events.json")
	const rotate = 128 << 10
	must(t, runApp(t, "-r", capture, "--workers", "2", "--analyzers", "all,features", "--splt", "10",
		"--parquet-rotate-size", "128K", "--parquet-row-group-size", "64K",
		"-o", "parquet:"+dir, "-o", "file:"+js))
	final, temp := listing(t, dir)
	if len(temp) != 0 {
		t.Errorf("temporary files left: %v", temp)
	}
	flows, big := 0, 0
	for _, n := range final {
		if strings.HasPrefix(n, "flow-") {
			flows++
		}
		fi, err := os.Stat(filepath.Join(dir, n))
		must(t, err)
		if fi.Size() >= rotate {
			big++
		}
	}
	if flows < 3 || big < 2 {
		t.Errorf("%d flow files, %d of all files at the rotation size: %v", flows, big, final)
	}
	rows, values := compareRuns(t, "synth", dump(t, dir)[dir], js)
	lastHasAll(t, dir)
	t.Logf("%d files (%d of flows): %d rows, %d values equal", len(final), flows, rows, values)
}

// lastHasAll checks what the README tells readers: the last file of each
// event type (in name order) has every column of the type's earlier
// files, so its schema reads them all.
func lastHasAll(t *testing.T, dir string) {
	t.Helper()
	files := dumpFiles(t, dir)
	byType := map[string][]string{}
	for name := range files {
		ty := name[:strings.LastIndex(name[:strings.LastIndex(name, "-")], "-")]
		byType[ty] = append(byType[ty], name)
	}
	for ty, names := range byType {
		slices.Sort(names)
		last := files[names[len(names)-1]]
		for _, n := range names[:len(names)-1] {
			for c := range files[n].columns {
				if _, ok := last.columns[c]; !ok {
					t.Errorf("%s: column %s of %s is not in the last file %s", ty, c, n, names[len(names)-1])
				}
			}
		}
	}
}

// binDir holds the command pktpipeBin built; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// pktpipeBin builds the command once for the tests that signal it.
var pktpipeBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "pktpipe-parquet-test-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "pktpipe")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/pktpipe/pktpipe/cmd/pktpipe").CombinedOutput()
	if err != nil {
		return "", &buildError{err, out}
	}
	return bin, nil
})

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + string(e.out) }

// TestSIGTERMLeavesCompleteFiles stops a paced run with SIGTERM once some
// files are complete: the command exits cleanly, no temporary file is
// left, and every file reads back, row for row equal to the JSON sink's
// output of the same run (the events of flows still open at the signal
// included, flushed with reason shutdown).
func TestSIGTERMLeavesCompleteFiles(t *testing.T) {
	duckdb(t)
	testenv.NeedCommand(t, "go")
	bin, err := pktpipeBin()
	must(t, err)
	capture, span := synth(t, 100_000)
	// Paced to last about a minute: SIGTERM comes long before the end.
	speed := float64(span) / float64(time.Minute)
	dir := t.TempDir()
	js := filepath.Join(t.TempDir(), "events.json")
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "-r", capture, "--replay-speed", strconv.FormatFloat(speed, 'f', 3, 64), "--workers", "2", "--parquet-rotate-size", "64K",
		"--parquet-row-group-size", "64K", "-o", "parquet:"+dir, "-o", "file:"+js)
	cmd.Stderr = &stderr
	must(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	testenv.WaitFor(t, 2*time.Minute, "a complete Parquet file", func() bool {
		final, _ := listing(t, dir)
		return len(final) > 0
	})
	must(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.Bytes())
		}
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("still running 2 minutes after SIGTERM\n%s", stderr.Bytes())
	}
	final, temp := listing(t, dir)
	if len(temp) != 0 {
		t.Errorf("temporary files left after SIGTERM: %v", temp)
	}
	rows, _ := compareRuns(t, "sigterm", dump(t, dir)[dir], js)
	if rows == 0 {
		t.Fatal("no rows")
	}
	t.Logf("stopped with %d files, %d rows equal to the JSON sink's", len(final), rows)
}
