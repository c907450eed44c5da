package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/testenv"
)

// TestKafkaSinkMatchesFileSink replays a synthetic capture into a real
// broker and into a file: kcat, an independent client, must read back
// exactly the events the file holds, and all events of one flow
// (community_id) must sit on one partition.
func TestKafkaSinkMatchesFileSink(t *testing.T) {
	addr := lockedBroker(t)

	path := synth(t, 60_000)
	dir := t.TempDir()
	fileOut := filepath.Join(dir, "events.json")
	if code, _, errs := runCmd(t, nil, "-r", path, "--workers", "2", "-o", "file:"+fileOut); code != exitOK {
		t.Fatalf("file run: exit %d\n%s", code, errs)
	}
	want, err := os.ReadFile(fileOut)
	if err != nil {
		t.Fatal(err)
	}
	n := strings.Count(string(want), "\n")

	topic := fmt.Sprintf("pktpipe-e2e-%d", time.Now().UnixNano())
	url := fmt.Sprintf("kafka://%s/%s?compression=zstd", addr, topic)
	code, _, errs := runCmd(t, nil, "-r", path, "--workers", "2", "-o", url,
		"--kafka-spill", filepath.Join(dir, "spill.jsonl"))
	if code != exitOK {
		t.Fatalf("kafka run: exit %d\n%s", code, errs)
	}
	out, err := exec.Command("kcat", "-C", "-b", addr, "-t", topic, "-o", "beginning",
		"-c", fmt.Sprint(n), "-e", "-q", "-f", "%p\t%k\t%s\n").Output()
	if err != nil {
		t.Fatalf("kcat: %v", err)
	}
	var got bytes.Buffer
	partOf := map[string]string{}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	for _, l := range lines {
		p, rest, _ := strings.Cut(l, "\t")
		key, val, _ := strings.Cut(rest, "\t")
		if key != "" {
			if q, ok := partOf[key]; ok && q != p {
				t.Fatalf("flow %s on partitions %s and %s", key, q, p)
			}
			partOf[key] = p
		}
		got.WriteString(val + "\n")
	}
	if len(lines) != n {
		t.Fatalf("kcat read %d events, the file sink wrote %d", len(lines), n)
	}
	if sortedLines(got.String()) != sortedLines(string(want)) {
		t.Fatal("the events in Kafka differ from the file sink's")
	}
	t.Logf("%d events, %d flows (keys), all on one partition each", n, len(partOf))
}

// deadKafka is a broker address where nothing listens.
const deadKafka = "127.0.0.1:1"

// spillLines counts a spill file's events (0 when there is no file).
func spillLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// summaryEvents is the events= of the run's "done" log line.
func summaryEvents(t *testing.T, stderr string) int {
	t.Helper()
	m := regexp.MustCompile(`msg=done .*\bevents=(\d+)`).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no summary line in\n%s", stderr)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// Issue 17 A and D: with the broker unreachable for longer than max_block,
// every event is spilled (none discarded once the budget stays full) and
// the run exits 3, not 1.
func TestKafkaDeadBrokerSpillsEverythingExit3(t *testing.T) {
	path := synth(t, 20_000)
	dir := t.TempDir()
	fileOut := filepath.Join(dir, "events.json")
	if code, _, errs := runCmd(t, nil, "-r", path, "--workers", "2", "-o", "file:"+fileOut); code != exitOK {
		t.Fatalf("file run: exit %d\n%s", code, errs)
	}
	want, err := os.ReadFile(fileOut)
	if err != nil {
		t.Fatal(err)
	}
	n := strings.Count(string(want), "\n")
	spill := filepath.Join(dir, "spill.jsonl")
	code, _, errs := runCmd(t, nil, "-r", path, "--workers", "2",
		"-o", "kafka://"+deadKafka+"/t?max_inflight=200&max_block=500ms&retry_backoff_max=200ms",
		"--drain-timeout", "1s", "--kafka-spill", spill)
	got := spillLines(t, spill)
	t.Logf("exit %d; %d events, %d spilled", code, n, got)
	if code != 3 {
		t.Fatalf("exit %d, want 3 (events spilled)\n%s", code, errs)
	}
	if got != n {
		t.Fatalf("spill file holds %d events, the file sink wrote %d", got, n)
	}
	if !strings.Contains(errs, spill) {
		t.Errorf("the log does not name the spill file\n%s", errs)
	}
}

// Issue 17 F and issue 19 item 3: a bad port, an unknown option, user info
// without sasl=: usage errors (exit 2) before anything runs; and no
// message quotes the password.
func TestKafkaURLUsageErrors(t *testing.T) {
	path := synth(t, 100)
	for _, url := range []string{
		"kafka://h:99999/t", "kafka://h:-1/t", "kafka://h:abc/t",
		"kafka://h:1/t?foo=bar", "kafka://u:Secr3t@h:1/t", "kafka://u:Secr3t@/t?sasl=plain",
		"kafka://u:Secr3t%zz@h:1/t?sasl=plain",
	} {
		code, _, errs := runCmd(t, nil, "-r", path, "-o", url, "--kafka-spill", filepath.Join(t.TempDir(), "s.jsonl"))
		if code != exitUsage {
			t.Errorf("-o %s: exit %d, want %d\n%s", url, code, exitUsage, errs)
		}
		if strings.Contains(errs, "Secr3t") {
			t.Errorf("-o %s: the password is in the output:\n%s", url, errs)
		}
	}
}

// Issue 17 C: the spill file is checked at start. With the default spill
// path and a read-only working directory (/ under ProtectSystem=strict)
// the run refuses to start, instead of losing the events at the end and
// reporting lost=0.
func TestKafkaSpillDirCheckedAtStart(t *testing.T) {
	testenv.NeedRoot(t)
	bin := opsBinary(t)
	path := synth(t, 2000)
	ro := t.TempDir()
	if err := syscall.Mount("tmpfs", ro, "tmpfs", syscall.MS_RDONLY, "size=64k"); err != nil {
		t.Fatalf("mount a read-only tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(ro, syscall.MNT_DETACH) })
	cmd := exec.Command(bin, "-r", path, "-o", "kafka://"+deadKafka+"/t", "--drain-timeout", "1s")
	cmd.Dir = ro
	cmd.Env = append(os.Environ(), "STATE_DIRECTORY=")
	out, err := cmd.CombinedOutput()
	code := cmd.ProcessState.ExitCode()
	t.Logf("exit %d: %s", code, out)
	if err == nil || code != exitUsage || !strings.Contains(string(out), "spill") || strings.Contains(string(out), "msg=done") {
		t.Fatalf("exit %d, want %d with a message about the spill file before the run", code, exitUsage)
	}
	// $STATE_DIRECTORY (systemd's StateDirectory=) is where the default goes.
	state := t.TempDir()
	cmd = exec.Command(bin, "-r", path, "-o", "kafka://"+deadKafka+"/t?max_block=200ms&max_inflight=100", "--drain-timeout", "500ms")
	cmd.Dir = ro
	cmd.Env = append(os.Environ(), "STATE_DIRECTORY="+state)
	out, _ = cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Fatalf("with $STATE_DIRECTORY: exit %d, want 3\n%s", code, out)
	}
	spills, _ := filepath.Glob(filepath.Join(state, "pktpipe-kafka-spill-*.jsonl"))
	if len(spills) != 1 || spillLines(t, spills[0]) != summaryEvents(t, string(out)) {
		t.Fatalf("spill files in $STATE_DIRECTORY: %v\n%s", spills, out)
	}
}

// blockedOnDeadKafka starts a replay into a dead broker with a tiny
// in-flight budget and an hour of max_block, and returns once a Write waits
// for budget (the metrics say so): the state the signal tests start from.
func blockedOnDeadKafka(t *testing.T, drainTimeout string) (*exec.Cmd, *opsLines, string) {
	t.Helper()
	bin := opsBinary(t)
	path := synth(t, 200_000)
	spill := filepath.Join(t.TempDir(), "spill.jsonl")
	cmd := exec.Command(bin, "-r", path, "--replay-speed", "1", "--workers", "2",
		"-o", "kafka://"+deadKafka+"/t?max_inflight=100&max_block=1h&retry_backoff_max=200ms",
		"--drain-timeout", drainTimeout, "--kafka-spill", spill, "--metrics-addr", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	w := opsWatch(stderr)
	var url string
	opsWaitFor(t, w, "metrics line", func() bool {
		l, ok := w.find("msg=metrics url=")
		if ok {
			url = strings.Fields(strings.SplitN(l, "url=", 2)[1])[0]
		}
		return ok
	})
	opsWaitFor(t, w, "a Write waiting for in-flight budget", func() bool {
		_, body := opsScrape(t, url)
		return opsProm(t, body)["pktpipe_kafka_write_waiting"] == 1
	})
	return cmd, w, spill
}

// Issue 17 B: SIGTERM while the sink waits for budget (max_block is an
// hour away, the broker is dead) ends the run within the drain timeout,
// with every event it read spilled and exit 3. Before, the run waited
// max_block (5 min by default) and the unit's TimeoutStopSec SIGKILLed it.
func TestKafkaSIGTERMEndsBudgetWait(t *testing.T) {
	cmd, w, spill := blockedOnDeadKafka(t, "2s")
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(2 * time.Minute):
		t.Fatal("still running 2 minutes after SIGTERM (max_block is 1h)")
	}
	cmd.Wait()
	log := w.all()
	code := cmd.ProcessState.ExitCode()
	events := summaryEvents(t, log)
	got := spillLines(t, spill)
	t.Logf("exit %d; %d events, %d spilled", code, events, got)
	if code != 3 || events <= 100 || got != events {
		t.Fatalf("exit %d (want 3), %d events, %d spilled (want all)\n%s", code, events, got, log)
	}
}

// Issue 17 B: a second signal exits at once, and first spills what the
// Kafka sink holds unacknowledged (Sink.Abandon), saying so in its log
// line. Before, it exited 3 without writing any spill, and its log did
// not count those events.
func TestKafkaSecondSignalSpills(t *testing.T) {
	cmd, w, spill := blockedOnDeadKafka(t, "1h")
	cmd.Process.Signal(syscall.SIGTERM)
	opsWaitFor(t, w, "the first signal's log line", func() bool { _, ok := w.find("stopping"); return ok })
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(2 * time.Minute):
		t.Fatal("still running 2 minutes after the second signal")
	}
	cmd.Wait()
	log := w.all()
	code := cmd.ProcessState.ExitCode()
	line, _ := w.find("second signal")
	m := regexp.MustCompile(`kafka_unacknowledged=(\d+)`).FindStringSubmatch(line)
	got := spillLines(t, spill)
	t.Logf("exit %d; %d spilled; %s", code, got, line)
	if code != 3 || m == nil {
		t.Fatalf("exit %d (want 3); the second signal's line does not count the sink's events\n%s", code, log)
	}
	if n, _ := strconv.Atoi(m[1]); n == 0 || got < n {
		t.Fatalf("%s unacknowledged, %d in the spill file: want them all there\n%s", m[1], got, log)
	}
}
