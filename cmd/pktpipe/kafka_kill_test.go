package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/kafkatest"
	"github.com/pktpipe/pktpipe/internal/testenv"
)

// vmRSS reads a process's resident set size (VmRSS) in bytes.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// kafkaSh runs test/kafka/kafka.sh VERB.
func kafkaSh(t *testing.T, sh, verb string) {
	t.Helper()
	start := time.Now()
	out, err := exec.Command("bash", sh, verb).CombinedOutput()
	if err != nil {
		t.Fatalf("kafka.sh %s: %v\n%s", verb, err, out)
	}
	t.Logf("kafka.sh %s (%.1fs): %s", verb, time.Since(start).Seconds(), strings.TrimSpace(string(out)))
}

// The in-flight budget of the run below, and the RSS ceiling it implies:
//
//	ceiling = base + 2 × (budget + fixed)
//
// base is measured: the larger of the RSS just before the broker dies and
// the peak RSS of the file-sink run of the same input at full speed (after
// the restart the paced replay catches up at full speed). budget is
// max_inflight_bytes, which counts the sink's memory per event (buffers
// plus bookkeeping, sinks/kafka recordCost). fixed is what grows during
// an outage besides the budget, measured in heap profiles of this run:
// the blocked pipeline's queued packet buffers (12–15 MiB), kafka-go's
// open batches (at most 4 WriteMessages calls × 3 partitions × 1000 × 152
// B = 1.7 MiB) and zstd encoders (~3.4 MiB per partition being written).
// 2×: Go's default GC target (GOGC=100) lets the heap reach twice what is
// live, an upper bound here (app.TuneGC allows half of it, or 64 MiB,
// which beforeKill and filePeak hold too). Before
// the fix (sinks/kafka: open calls bounded, BatchSize 1000, 1 MiB zstd
// window) this run reached 228 MiB during the outage and 967 MiB in all,
// with the live heap at 2.8 GB of kafka-go batch arrays; after it, 93–110
// MiB during the outage and up to 120 MiB in all. fixed is set to twice
// what the profiles show (48 MiB): on a loaded CI machine the catch-up
// burst after the restart varies, and the test is there to catch growth
// of the 228/967 MiB kind, not to measure the last megabytes.
const (
	killBudgetBytes = 8 << 20
	killFixedBytes  = 48 << 20
)

// TestKafkaBrokerKilledDuringReplay replays a capture into the real broker
// at a paced speed, SIGKILLs the broker midway and starts it again about
// 10 s later. The run must finish with exit 0 (or 3 with a spill file),
// Kafka (de-duplicated) plus the spill file must hold exactly the file
// sink's events for the same input, and the process's RSS, during the
// outage and after it, must stay under the ceiling derived from
// max_inflight_bytes (above).
func TestKafkaBrokerKilledDuringReplay(t *testing.T) {
	testenv.NeedCommand(t, "kcat")
	addr := kafkatest.Addr()
	testenv.Need(t, os.Getenv("PKTPIPE_KAFKA") == "", "a broker started by test/kafka/kafka.sh (PKTPIPE_KAFKA is set: not ours to kill)")
	unlock, err := kafkatest.Lock(addr, 10*time.Minute)
	testenv.Need(t, err == nil, fmt.Sprint("the Kafka test lock: ", err))
	defer unlock()
	sh, err := kafkatest.Script()
	testenv.Need(t, err == nil, fmt.Sprint("test/kafka/kafka.sh: ", err))
	err = kafkatest.Up(addr)
	testenv.Need(t, err == nil, fmt.Sprint("a Kafka broker: ", err))
	// Whatever happens below, leave the broker running for the next test.
	t.Cleanup(func() { exec.Command("bash", sh, "up").Run() })

	bin := opsBinary(t)
	path := synth(t, killPackets)
	dir := t.TempDir()

	// The reference: the file sink on the same input.
	fileOut := filepath.Join(dir, "events.json")
	fileCmd := exec.Command(bin, "-r", path, "--workers", "2", "-o", "file:"+fileOut)
	var fileErr bytes.Buffer
	fileCmd.Stderr = &fileErr
	if err := fileCmd.Start(); err != nil {
		t.Fatal(err)
	}
	var filePeak int64
	fileDone := make(chan error, 1)
	go func() { fileDone <- fileCmd.Wait() }()
	for sampling := true; sampling; {
		select {
		case err := <-fileDone:
			if err != nil {
				t.Fatalf("file run: %v\n%s", err, fileErr.String())
			}
			sampling = false
		case <-time.After(50 * time.Millisecond):
			if rss, err := vmRSS(fileCmd.Process.Pid); err == nil {
				filePeak = max(filePeak, rss)
			}
		}
	}
	wantB, err := os.ReadFile(fileOut)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(wantB)), "\n") {
		if want[l] {
			t.Fatalf("the file sink wrote one event twice: %.100s", l)
		}
		want[l] = true
	}

	topic := fmt.Sprintf("pktpipe-e2e-kill-%d", time.Now().UnixNano())
	spill := filepath.Join(dir, "spill.jsonl")
	url := fmt.Sprintf("kafka://%s/%s?max_inflight_bytes=%d&max_inflight=50000&retry_backoff_max=1s&drain_timeout=180s", addr, topic, killBudgetBytes)
	cmd := exec.Command(bin, "-r", path, "--replay-speed", killSpeed, "--workers", "2", "-o", url, "--kafka-spill", spill)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	// RSS sampler: peak over the whole run and over the outage.
	var mu sync.Mutex
	var peakAll, peakOutage, beforeKill int64
	outage := false
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
			rss, err := vmRSS(cmd.Process.Pid)
			if err != nil {
				continue // exited
			}
			mu.Lock()
			peakAll = max(peakAll, rss)
			if outage {
				peakOutage = max(peakOutage, rss)
			} else if peakOutage == 0 {
				beforeKill = rss
			}
			mu.Unlock()
		}
	}()

	time.Sleep(3 * time.Second) // replaying and producing
	select {
	case err := <-done:
		t.Fatalf("the run ended before the broker was killed: %v\n%s", err, stderr.String())
	default:
	}
	mu.Lock()
	outage = true
	mu.Unlock()
	kafkaSh(t, sh, "kill")
	killedAt := time.Now()
	time.Sleep(10 * time.Second)
	kafkaSh(t, sh, "up")
	mu.Lock()
	outage = false
	mu.Unlock()
	t.Logf("broker down for %.1fs (kill to ready)", time.Since(killedAt).Seconds())

	var runErr error
	select {
	case runErr = <-done:
	case <-time.After(5 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("the run did not finish\n%s", stderr.String())
	}
	close(stopSampling)
	<-sampled
	code := 0
	var ee *exec.ExitError
	if errors.As(runErr, &ee) {
		code = ee.ExitCode()
	} else if runErr != nil {
		t.Fatal(runErr)
	}
	if code != exitOK && code != 3 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}

	// Kafka, de-duplicated, plus the spill file.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "kcat", "-C", "-b", addr, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\n").Output()
	if err != nil {
		t.Fatalf("kcat: %v", err)
	}
	got := map[string]int{}
	read := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 8<<20)
	for sc.Scan() {
		got[sc.Text()]++
		read++
	}
	dups := read - len(got)
	spilled := 0
	if code == 3 {
		f, err := os.Open(spill)
		if err != nil {
			t.Fatalf("exit 3 but no spill file: %v\n%s", err, stderr.String())
		}
		dec := json.NewDecoder(f)
		for {
			var line struct {
				Value json.RawMessage `json:"value"`
			}
			if err := dec.Decode(&line); err != nil {
				break
			}
			got[string(line.Value)]++
			spilled++
		}
		f.Close()
	}
	var missing, extra int
	for l := range want {
		if got[l] == 0 {
			missing++
		}
	}
	for l := range got {
		if !want[l] {
			extra++
		}
	}
	mu.Lock()
	defer mu.Unlock()
	ceiling := max(beforeKill, filePeak) + 2*(killBudgetBytes+killFixedBytes)
	t.Logf("exit %d; file sink %d events (%.1f MB); kcat read %d messages, %d distinct, %d duplicates; spilled %d; "+
		"RSS before kill %.1f MiB, peak during outage %.1f MiB, peak of run %.1f MiB (budget %d MiB, ceiling %.1f MiB); file sink run peak %.1f MiB",
		code, len(want), float64(len(wantB))/1e6, read, read-dups, dups, spilled,
		mib(beforeKill), mib(peakOutage), mib(peakAll), killBudgetBytes>>20, mib(ceiling), mib(filePeak))
	if missing > 0 || extra > 0 {
		t.Fatalf("%d of the file sink's events are neither in Kafka nor spilled; %d events in Kafka/spill that the file sink does not have", missing, extra)
	}
	if !strings.Contains(stderr.String(), "kafka: produce failed") {
		t.Errorf("no produce failure logged: did the outage reach the sink?\n%s", stderr.String())
	}
	// The outage must have produced more than the budget, or the bound
	// proves nothing: the file sink's output is the input's event bytes.
	if int64(len(wantB)) < 3*killBudgetBytes {
		t.Errorf("only %d event bytes in the run: not enough to push past the %d-byte budget", len(wantB), killBudgetBytes)
	}
	if beforeKill == 0 || peakOutage == 0 || filePeak == 0 {
		t.Fatalf("RSS not sampled (before kill %d, outage %d, file run %d)", beforeKill, peakOutage, filePeak)
	}
	if peakAll > ceiling {
		t.Errorf("RSS reached %.1f MiB (%.1f during the outage); ceiling %.1f MiB = max(%.1f before the kill, %.1f file run) + 2 × (%d MiB budget + %d MiB fixed)",
			mib(peakAll), mib(peakOutage), mib(ceiling), mib(beforeKill), mib(filePeak), killBudgetBytes>>20, killFixedBytes>>20)
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// The input: long enough at killSpeed that the replay still runs when
// the broker comes back, with many more event bytes than the budget.
const (
	killPackets = 800_000
	killSpeed   = "1"
)
