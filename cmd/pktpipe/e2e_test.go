package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/bench/gen"
	"github.com/pktpipe/pktpipe/internal/testenv"
)

// These tests run the command as a user does: on the bundled real capture,
// on synthetic captures from bench/gen, through stdin, into files, and
// stopped by SIGTERM in the middle of a replay.

const sample = "../../testdata/sample.pcap"

func runCmd(t *testing.T, stdin []byte, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, bytes.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func parseLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var evs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		d := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			t.Fatalf("invalid JSON line %q: %v", sc.Text(), err)
		}
		evs = append(evs, m)
	}
	return evs
}

func num(v any) int64 {
	n, _ := v.(json.Number).Int64()
	return n
}

// summary reads the run's one-line summary on stderr: the packets read,
// and the counters the accounting below needs, under their metric names.
var doneRE = regexp.MustCompile(`msg=done packets=(\d+) events=(\d+) .*skipped=(\d+) icmp_errors=(\d+)`)

func summary(t *testing.T, stderr string) (packets int64, counters map[string]int64) {
	t.Helper()
	m := doneRE.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no summary line in stderr:\n%s", stderr)
	}
	packets, _ = strconv.ParseInt(m[1], 10, 64)
	skipped, _ := strconv.ParseInt(m[3], 10, 64)
	icmpErrs, _ := strconv.ParseInt(m[4], 10, 64)
	return packets, map[string]int64{
		"pktpipe_dispatch_skipped_total": skipped,
		"pktpipe_flow_icmp_errors_total": icmpErrs,
	}
}

// accounted is how many packets the run's events and counters explain:
// packets in flow records, plus ICMP errors (attached to the flow they
// quote, not counted in it), plus packets that belong to no flow.
func accounted(evs []map[string]any, counters map[string]int64) int64 {
	var n int64
	for _, e := range evs {
		if e["event_type"] == "flow" {
			f := e["flow"].(map[string]any)
			n += num(f["pkts_toserver"]) + num(f["pkts_toclient"])
		}
	}
	for k, v := range counters {
		if strings.HasPrefix(k, "pktpipe_dispatch_skipped_total") || strings.HasPrefix(k, "pktpipe_flow_icmp_errors_total") {
			n += v
		}
	}
	return n
}

func TestSampleCapture(t *testing.T) {
	code, out, errs := runCmd(t, nil, "-r", sample, "--workers", "2")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	evs := parseLines(t, out)
	packets, counters := summary(t, errs)
	if packets != 79 {
		t.Fatalf("read %d packets, want 79", packets)
	}
	if got := accounted(evs, counters); got != packets {
		t.Fatalf("events and counters account for %d packets, want %d\n%s", got, packets, errs)
	}
	// The two TLS connections and the HTTP one close with FIN; the pings are
	// established flows with 3 packets each way.
	var fin, pings int
	for _, e := range evs {
		if e["event_type"] != "flow" {
			continue
		}
		f := e["flow"].(map[string]any)
		if e["proto"] == "TCP" && f["reason"] == "fin" && f["state"] == "closed" && e["src_ip"] == "10.99.1.2" {
			fin++
		}
		if (e["proto"] == "ICMP" || (e["proto"] == "IPv6-ICMP" && e["dest_ip"] == "fd00:99:2::2")) &&
			num(f["pkts_toserver"]) == 3 && num(f["pkts_toclient"]) == 3 {
			pings++
		}
		if e["community_id"] == nil || e["flow_id"] == nil {
			t.Errorf("flow without community_id or flow_id: %v", e)
		}
	}
	if fin != 3 || pings != 2 {
		t.Errorf("found %d FIN-closed TCP flows (want 3) and %d ping flows (want 2)", fin, pings)
	}
}

func TestHelpAndVersion(t *testing.T) {
	code, _, errs := runCmd(t, nil, "--help")
	if code != exitOK || !strings.Contains(errs, "-replay-speed") || !strings.Contains(errs, "Usage:") {
		t.Fatalf("--help: exit %d\n%s", code, errs)
	}
	code, out, _ := runCmd(t, nil, "version")
	if code != exitOK || !strings.HasPrefix(out, "pktpipe ") {
		t.Fatalf("version: exit %d %q", code, out)
	}
	if code, _, errs := runCmd(t, nil, "--format", "xml", "-r", sample); code != exitUsage || !strings.Contains(errs, "xml") {
		t.Fatalf("bad --format: exit %d %s", code, errs)
	}
	if code, _, _ := runCmd(t, nil); code != exitUsage {
		t.Fatalf("no input: exit %d", code)
	}
}

func TestStdinGzip(t *testing.T) {
	raw, err := os.ReadFile(sample)
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(raw)
	w.Close()
	code, out, errs := runCmd(t, gz.Bytes(), "-r", "-")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	_, want, _ := runCmd(t, nil, "-r", sample)
	if sortedLines(out) != sortedLines(want) {
		t.Fatal("gzip on stdin gave other events than the plain file")
	}
}

func TestTruncatedCaptureDeliversWhatWasRead(t *testing.T) {
	raw, err := os.ReadFile(sample)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.pcap")
	if err := os.WriteFile(cut, raw[:len(raw)-30], 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd(t, nil, "-r", cut)
	if code != exitError {
		t.Fatalf("truncated capture: exit %d, want %d", code, exitError)
	}
	if !strings.Contains(errs, "cut.pcap") || !strings.Contains(errs, "offset") {
		t.Fatalf("error does not name the file and offset:\n%s", errs)
	}
	evs := parseLines(t, out)
	packets, counters := summary(t, errs)
	if packets != 78 || accounted(evs, counters) != 78 {
		t.Fatalf("read %d packets, events account for %d; want 78 and 78", packets, accounted(evs, counters))
	}
}

func synth(t *testing.T, packets int) string {
	t.Helper()
	path, _ := synthSpan(t, packets)
	return path
}

// synthSpan writes a synthetic capture and returns its path and the
// capture time it spans.
func synthSpan(t *testing.T, packets int) (string, time.Duration) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "synth.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	sum, err := gen.Write(bw, gen.Config{Seed: 7, Packets: packets}, gen.Format{})
	if err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path, time.Duration(sum.Last - sum.First)
}

func sortedLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestSameEventsWhateverTheWorkerCount(t *testing.T) {
	path := synth(t, 150_000)
	dir := t.TempDir()
	outs := map[int]string{}
	for _, w := range []int{1, 4} {
		out := filepath.Join(dir, fmt.Sprintf("w%d.json", w))
		code, _, errs := runCmd(t, nil, "-r", path, "--workers", strconv.Itoa(w), "-o", "file:"+out)
		if code != exitOK {
			t.Fatalf("workers=%d: exit %d\n%s", w, code, errs)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		outs[w] = sortedLines(string(b))
	}
	n := strings.Count(outs[1], "\n") + 1
	if n < 1000 {
		t.Fatalf("only %d events from 150k packets", n)
	}
	if outs[1] != outs[4] {
		a, b := strings.Split(outs[1], "\n"), strings.Split(outs[4], "\n")
		for i := range min(len(a), len(b)) {
			if a[i] != b[i] {
				t.Fatalf("workers 1 and 4 differ (%d vs %d events); first difference:\n1: %s\n4: %s", len(a), len(b), a[i], b[i])
			}
		}
		t.Fatalf("workers 1 and 4 differ: %d vs %d events", len(a), len(b))
	}
}

// sumSeries adds up the series of one metric in a scrape of url; ok is
// false when the scrape failed.
func sumSeries(url, name string) (sum float64, ok bool) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name+"{") && !strings.HasPrefix(l, name+" ") {
			continue
		}
		v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
		if err != nil {
			return 0, false
		}
		sum += v
	}
	return sum, sc.Err() == nil && resp.StatusCode == http.StatusOK
}

// metricsURL waits for the run's "msg=metrics url=..." line and returns the
// URL of its /metrics.
func metricsURL(t *testing.T, w *opsLines) string {
	t.Helper()
	var url string
	opsWaitFor(t, w, "the metrics line", func() bool {
		l, ok := w.find("msg=metrics url=")
		if ok {
			url = strings.Fields(strings.SplitN(l, "url=", 2)[1])[0]
		}
		return ok
	})
	return url
}

func TestSIGTERMDuringReplayDrainsIntoTheFile(t *testing.T) {
	bin := opsBinary(t)
	const total, speed, started = 300_000, 0.1, 1000
	path, span := synthSpan(t, total)
	// The premise of "midway": paced at this speed the replay lasts minutes,
	// and SIGTERM goes as soon as the first packets are seen.
	if d := time.Duration(float64(span) / speed); d < time.Minute {
		t.Fatalf("the capture spans %v, %v at speed %v: too short to stop it midway", span, d, speed)
	}
	out := filepath.Join(t.TempDir(), "events.json")
	cmd := exec.Command(bin, "-r", path, "--replay-speed", strconv.FormatFloat(speed, 'f', -1, 64), "--workers", "2",
		"-o", "file:"+out, "--metrics-addr", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := opsWatch(stderr)
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-w.done
			cmd.Wait()
		}
	})
	// Under way: the source has read some batches, so flows are open.
	url := metricsURL(t, w)
	var before float64
	opsWaitFor(t, w, fmt.Sprintf("%d packets read", started), func() bool {
		n, ok := sumSeries(url, "pktpipe_source_packets_total")
		before = n
		return ok && n >= started
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.done:
	case <-time.After(60 * time.Second): // bounds a hung drain only
		t.Fatalf("no exit after SIGTERM:\n%s", w.all())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v\n%s", err, w.all())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("no complete output file: %v", err)
	}
	evs := parseLines(t, string(b))
	packets, counters := summary(t, w.all())
	if float64(packets) < before || packets >= total {
		t.Fatalf("read %d packets (%v seen before SIGTERM, %d in the capture): the replay was not interrupted midway", packets, before, total)
	}
	if got := accounted(evs, counters); got != packets {
		t.Fatalf("flow records and counters cover %d packets, %d were read", got, packets)
	}
	reasons := map[string]int{}
	for _, e := range evs {
		if e["event_type"] == "flow" {
			reasons[e["flow"].(map[string]any)["reason"].(string)]++
		}
	}
	if reasons["shutdown"] == 0 {
		t.Errorf("no flow ended with reason shutdown: %v", reasons)
	}
	t.Logf("read %d packets (%v when SIGTERM was sent); %d events; reasons %v", packets, before, len(evs), reasons)
}

// --metrics-addr localhost:PORT where localhost resolves to 0.0.0.0: the
// run must refuse to serve on all interfaces without
// --metrics-allow-remote. The command runs in new mount and network
// namespaces (unshare) with a hosts file bind-mounted over /etc/hosts
// there only, so the machine's own is untouched and nothing is exposed.
func TestMetricsLocalhostResolvingToAllInterfaces(t *testing.T) {
	testenv.NeedRoot(t)
	unshare := testenv.NeedCommand(t, "unshare")
	testenv.NeedCommand(t, "mount")
	bin := opsBinary(t)
	dir := t.TempDir()
	hosts := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hosts, []byte("0.0.0.0 localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	capture, err := filepath.Abs(sample)
	if err != nil {
		t.Fatal(err)
	}
	run := func(out string, extra ...string) (int, string) {
		args := append([]string{"--mount", "--net", "sh", "-c", `mount --bind "$0" /etc/hosts && exec "$@"`, hosts,
			bin, "-r", capture, "-o", "file:" + out, "--metrics-addr", "localhost:9477"}, extra...)
		cmd := exec.Command(unshare, args...)
		b, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("unshare: %v\n%s", err, b)
		}
		return cmd.ProcessState.ExitCode(), string(b)
	}
	refused := filepath.Join(dir, "refused.json")
	code, errs := run(refused)
	if code == exitOK || !strings.Contains(errs, "bound to [::]:9477") || !strings.Contains(errs, "--metrics-allow-remote") {
		t.Fatalf("localhost = 0.0.0.0 without --metrics-allow-remote: exit %d\n%s", code, errs)
	}
	t.Logf("refused with exit %d: %s", code, strings.TrimSpace(errs))
	// Allowed, the same run serves on all interfaces of its namespace and
	// completes: the hosts file was in effect.
	allowed := filepath.Join(dir, "allowed.json")
	code, errs = run(allowed, "--metrics-allow-remote")
	if code != exitOK || !strings.Contains(errs, "url=http://[::]:9477/metrics") {
		t.Fatalf("with --metrics-allow-remote: exit %d\n%s", code, errs)
	}
	if _, err := os.Stat(allowed); err != nil {
		t.Fatal(err)
	}
}
