package main

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// scrape fetches url and returns the status code and body.
func opsScrape(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// promValues parses the text exposition into series -> value.
func opsProm(t *testing.T, body string) map[string]float64 {
	t.Helper()
	vals := map[string]float64{}
	for _, l := range strings.Split(body, "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			t.Fatalf("bad exposition line %q", l)
		}
		vals[l[:i]] = v
	}
	return vals
}

// The metrics of a whole run of the sample capture, scraped after Run has
// returned (every counter final) but before the server stops, against the
// events the run wrote.
func TestMetricsMatchTheRun(t *testing.T) {
	var healthAtStart int
	var body string
	opsTestHooks.started = func(addr string) { healthAtStart, _ = opsScrape(t, "http://"+addr+"/healthz") }
	opsTestHooks.stopping = func(addr string) { _, body = opsScrape(t, "http://"+addr+"/metrics") }
	defer func() { opsTestHooks.started, opsTestHooks.stopping = nil, nil }()

	code, out, errs := runCmd(t, nil, "-r", sample, "--workers", "2", "--metrics-addr", "127.0.0.1:0")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	if healthAtStart != http.StatusOK {
		t.Errorf("/healthz at start: %d, want 200", healthAtStart)
	}
	evs := parseLines(t, out)
	byType := map[string]float64{}
	for _, e := range evs {
		byType[e["event_type"].(string)]++
	}
	m := opsProm(t, body)
	want := map[string]float64{
		`pktpipe_source_packets_total{source="pcapfile"}`: 79,
		`pktpipe_sink_events_total{sink="stdout"}`:        float64(len(evs)),
		`pktpipe_sink_failed_events_total{sink="stdout"}`: 0,
		`pktpipe_queue_capacity_batches{queue="worker1"}`: 8,
		`pktpipe_queue_batches{queue="events"}`:           0,
	}
	for typ, n := range byType {
		want[`pktpipe_events_total{type="`+typ+`"}`] = n
	}
	if byType["flow"] == 0 || byType["tls"] == 0 {
		t.Fatalf("the sample gave no flow or tls events: %v", byType)
	}
	for k, v := range want {
		if got, ok := m[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	var ended, dispatched, worked float64
	for k, v := range m {
		switch {
		case strings.HasPrefix(k, "pktpipe_flow_ended_total{"):
			ended += v
		case k == "pktpipe_dispatch_packets_total":
			dispatched = v
		case strings.HasPrefix(k, "pktpipe_worker_packets_total{"):
			worked += v
		}
	}
	if ended != byType["flow"] {
		t.Errorf("flows ended (all reasons) %v, flow records written %v", ended, byType["flow"])
	}
	if dispatched == 0 || dispatched != worked {
		t.Errorf("packets dispatched %v, processed by workers %v", dispatched, worked)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "pktpipe_flow_table_flows"} {
		if _, ok := m[name]; !ok {
			t.Errorf("no %s in the scrape", name)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", body)
	}
}

var (
	opsBinOnce sync.Once
	opsBinDir  string
	opsBinPath string
	opsBinErr  error
)

// TestMain removes the binary that opsBinary built for the whole package.
func TestMain(m *testing.M) {
	code := m.Run()
	if opsBinDir != "" {
		os.RemoveAll(opsBinDir)
	}
	os.Exit(code)
}

// pktpipeBinary builds the command once per test process, in a directory
// any user may read (for the setpriv test).
func opsBinary(t *testing.T) string {
	t.Helper()
	opsBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pktpipe-bin-")
		if err != nil {
			opsBinErr = err
			return
		}
		opsBinDir = dir
		os.Chmod(dir, 0o755)
		opsBinPath = filepath.Join(dir, "pktpipe")
		if out, err := exec.Command("go", "build", "-o", opsBinPath, ".").CombinedOutput(); err != nil {
			opsBinErr = err
			t.Logf("%s", out)
		}
	})
	if opsBinErr != nil {
		t.Fatalf("build: %v", opsBinErr)
	}
	return opsBinPath
}

// opsLines collects a child's stderr and reports lines matching a test.
type opsLines struct {
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func opsWatch(r io.Reader) *opsLines {
	w := &opsLines{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			w.mu.Lock()
			w.lines = append(w.lines, sc.Text())
			w.mu.Unlock()
		}
	}()
	return w
}

// find returns the first line containing s.
func (w *opsLines) find(s string) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.lines {
		if strings.Contains(l, s) {
			return l, true
		}
	}
	return "", false
}

func (w *opsLines) all() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines, "\n")
}

// waitFor polls cond until it holds or the child has exited; the deadline
// only bounds a broken run.
func opsWaitFor(t *testing.T, w *opsLines, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		select {
		case <-w.done:
			if cond() {
				return
			}
			t.Fatalf("the run ended before %s:\n%s", what, w.all())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 60s:\n%s", what, w.all())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// During a paced replay the endpoint answers, the packet counter grows
// between scrapes, /healthz is 200, and the status line is logged.
func TestMetricsAndStatusDuringReplay(t *testing.T) {
	bin := opsBinary(t)
	path := synth(t, 200_000)
	cmd := exec.Command(bin, "-r", path, "--replay-speed", "1", "--workers", "2", "-o", "file:"+filepath.Join(t.TempDir(), "ev.json"),
		"--metrics-addr", "127.0.0.1:0", "--status-interval", "100ms")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := opsWatch(stderr)
	defer cmd.Process.Kill()
	var url string
	opsWaitFor(t, w, "metrics line", func() bool {
		l, ok := w.find("msg=metrics url=")
		if ok {
			url = strings.Fields(strings.SplitN(l, "url=", 2)[1])[0]
		}
		return ok
	})
	packets := func() float64 {
		_, body := opsScrape(t, url)
		return opsProm(t, body)[`pktpipe_source_packets_total{source="pcapfile"}`]
	}
	var first float64
	opsWaitFor(t, w, "packets counted", func() bool { first = packets(); return first > 0 })
	opsWaitFor(t, w, "the packet counter growing", func() bool { return packets() > first })
	if code, body := opsScrape(t, strings.Replace(url, "/metrics", "/healthz", 1)); code != http.StatusOK {
		t.Errorf("/healthz during the run: %d %q", code, body)
	}
	opsWaitFor(t, w, "status line", func() bool {
		l, ok := w.find("msg=status")
		return ok && strings.Contains(l, "pkts_per_s=") && strings.Contains(l, "queue_fill=") && strings.Contains(l, "sink_lag=")
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-w.done
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v\n%s", err, w.all())
	}
	if _, ok := w.find("msg=done packets="); !ok {
		t.Errorf("no summary line:\n%s", w.all())
	}
	l, _ := w.find("msg=status")
	t.Logf("%s", l)
}

func TestQuietHasNoStatusLine(t *testing.T) {
	code, _, errs := runCmd(t, nil, "-r", sample, "--quiet", "--status-interval", "1ns")
	if code != exitOK || strings.Contains(errs, "msg=status") || !strings.Contains(errs, "msg=done") {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	if code, _, errs := runCmd(t, nil, "-r", sample, "--metrics-addr", "0.0.0.0:9477"); code != exitUsage || !strings.Contains(errs, "metrics-allow-remote") {
		t.Fatalf("non-loopback metrics address: exit %d\n%s", code, errs)
	}
}
