package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/kafkatest"
	"github.com/pktpipe/pktpipe/internal/testenv"
)

// lockedBroker holds the Kafka test lock for the test and makes sure the
// broker of test/kafka runs; kcat must be there to read events back.
func lockedBroker(t *testing.T) string {
	t.Helper()
	testenv.NeedCommand(t, "kcat")
	addr := kafkatest.Addr()
	unlock, err := kafkatest.Lock(addr, 10*time.Minute)
	testenv.Need(t, err == nil, fmt.Sprint("the Kafka test lock: ", err))
	t.Cleanup(unlock)
	err = kafkatest.Up(addr)
	testenv.Need(t, err == nil, fmt.Sprint("a Kafka broker: ", err))
	return addr
}

// Two sinks at once (-o file:... -o kafka://...) against the real broker:
// both get every event, and kcat reads Kafka's back.
func TestFileAndKafkaSinksGetTheSameEvents(t *testing.T) {
	addr := lockedBroker(t)

	path := synth(t, 30_000)
	dir := t.TempDir()
	fileOut := filepath.Join(dir, "events.json")
	topic := fmt.Sprintf("pktpipe-two-sinks-%d", time.Now().UnixNano())
	code, _, errs := runCmd(t, nil, "-r", path, "--workers", "2",
		"-o", "file:"+fileOut, "-o", fmt.Sprintf("kafka://%s/%s", addr, topic),
		"--kafka-spill", filepath.Join(dir, "spill.jsonl"))
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	want, err := os.ReadFile(fileOut)
	if err != nil {
		t.Fatal(err)
	}
	n := strings.Count(string(want), "\n")
	out, err := exec.Command("kcat", "-C", "-b", addr, "-t", topic, "-o", "beginning",
		"-c", fmt.Sprint(n), "-e", "-q", "-f", "%s\n").Output()
	if err != nil {
		t.Fatalf("kcat: %v", err)
	}
	if n == 0 || sortedLines(string(out)) != sortedLines(string(want)) {
		t.Fatalf("kcat read %d events, the file holds %d: they differ", strings.Count(string(out), "\n"), n)
	}
	t.Logf("%d events in both sinks", n)
}

// With the broker down, the file sink still gets everything; the exit code
// is 3 and the log names the Kafka sink, its loss and its spill file.
func TestDeadKafkaBesideAFileSink(t *testing.T) {
	path := synth(t, 20_000)
	dir := t.TempDir()
	alone := filepath.Join(dir, "alone.json")
	if code, _, errs := runCmd(t, nil, "-r", path, "--workers", "2", "-o", "file:"+alone); code != exitOK {
		t.Fatalf("file run: exit %d\n%s", code, errs)
	}
	want, _ := os.ReadFile(alone)
	fileOut := filepath.Join(dir, "events.json")
	spill := filepath.Join(dir, "spill.jsonl")
	code, _, errs := runCmd(t, nil, "-r", path, "--workers", "2", "-o", "file:"+fileOut,
		"-o", "kafka://"+deadKafka+"/t?max_inflight=200&max_block=500ms&retry_backoff_max=200ms",
		"--drain-timeout", "1s", "--kafka-spill", spill)
	if code != exitLoss {
		t.Fatalf("exit %d, want 3\n%s", code, errs)
	}
	got, _ := os.ReadFile(fileOut)
	if len(want) == 0 || sortedLines(string(got)) != sortedLines(string(want)) {
		t.Fatal("the file sink beside a dead broker did not get every event")
	}
	n := strings.Count(string(want), "\n")
	if s := spillLines(t, spill); s != n {
		t.Errorf("the spill holds %d events of %d", s, n)
	}
	for _, w := range []string{"kafka", spill} {
		if !strings.Contains(errs, w) {
			t.Errorf("the log does not name %q:\n%s", w, errs)
		}
	}
}
