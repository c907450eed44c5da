package main

import (
	"fmt"
	"io"
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

	"github.com/pktpipe/pktpipe/internal/kafkatest"
	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/sinks/kafka"
)

// Issue 17 part 1: the Kafka sink's disk spool, end to end. An outage is
// `kafka.sh pause` (SIGSTOP: connections stay open and nothing answers,
// as a hung broker) and `kafka.sh resume`: no 20 s broker restart, so
// each test stays well under a minute.

// ownBroker takes the broker lock and makes sure a broker that kafka.sh
// started answers (these tests pause it); the broker is resumed at the
// end whatever happens.
func ownBroker(t *testing.T) (addr, sh string) {
	t.Helper()
	testenv.NeedCommand(t, "kcat")
	addr = kafkatest.Addr()
	testenv.Need(t, os.Getenv("PKTPIPE_KAFKA") == "", "a broker started by test/kafka/kafka.sh (PKTPIPE_KAFKA is set: not ours to pause)")
	unlock, err := kafkatest.Lock(addr, 10*time.Minute)
	testenv.Need(t, err == nil, fmt.Sprint("the Kafka test lock: ", err))
	t.Cleanup(unlock)
	sh, err = kafkatest.Script()
	testenv.Need(t, err == nil, fmt.Sprint("test/kafka/kafka.sh: ", err))
	err = kafkatest.Up(addr)
	testenv.Need(t, err == nil, fmt.Sprint("a Kafka broker: ", err))
	t.Cleanup(func() { exec.Command("bash", sh, "resume").Run() })
	return addr, sh
}

// kafkaRun is a pktpipe process with a metrics endpoint.
type kafkaRun struct {
	cmd *exec.Cmd
	w   *opsLines
	url string
}

func startKafkaRun(t *testing.T, args ...string) *kafkaRun {
	t.Helper()
	cmd := exec.Command(opsBinary(t), append(args, "--metrics-addr", "127.0.0.1:0")...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	r := &kafkaRun{cmd: cmd, w: opsWatch(stderr)}
	opsWaitFor(t, r.w, "metrics line", func() bool {
		l, ok := r.w.find("msg=metrics url=")
		if ok {
			r.url = strings.Fields(strings.SplitN(l, "url=", 2)[1])[0]
		}
		return ok
	})
	return r
}

// metrics scrapes the run: series name (labels dropped, summed) -> value.
// A run that has just exited gives nil.
func (r *kafkaRun) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	select {
	case <-r.w.done:
		return nil
	default:
	}
	// Not opsScrape: the run may exit between the check above and the
	// request, which is no error here.
	resp, err := http.Get(r.url)
	if err != nil {
		return nil
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil
	}
	body := string(b)
	out := map[string]float64{}
	for k, v := range opsProm(t, body) {
		name, _, _ := strings.Cut(k, "{")
		out[name] += v
	}
	return out
}

// waitMetric polls the run's metrics until cond holds.
func (r *kafkaRun) waitMetric(t *testing.T, what string, cond func(m map[string]float64) bool) map[string]float64 {
	t.Helper()
	var m map[string]float64
	opsWaitFor(t, r.w, what, func() bool {
		m = r.metrics(t)
		return m != nil && cond(m)
	})
	return m
}

// wait ends the run and returns its exit code and log.
func (r *kafkaRun) wait(t *testing.T, limit time.Duration) (int, string) {
	t.Helper()
	select {
	case <-r.w.done:
	case <-time.After(limit):
		t.Fatalf("still running after %v:\n%s", limit, r.w.all())
	}
	r.cmd.Wait()
	return r.cmd.ProcessState.ExitCode(), r.w.all()
}

// kcatValues reads a topic to its end: value -> copies.
func kcatValues(t *testing.T, addr, topic string) map[string]int {
	t.Helper()
	out, err := exec.Command("kcat", "-C", "-b", addr, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\n").Output()
	if err != nil {
		t.Fatalf("kcat -C %s: %v", topic, err)
	}
	got := map[string]int{}
	for _, l := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		if l != "" {
			got[l]++
		}
	}
	return got
}

// kcatEventIDs reads a topic to its end: value -> its event_id headers.
func kcatEventIDs(t *testing.T, addr, topic string) map[string]map[string]bool {
	t.Helper()
	out, err := exec.Command("kcat", "-C", "-b", addr, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%h\t%s\n").Output()
	if err != nil {
		t.Fatalf("kcat -C %s: %v", topic, err)
	}
	re := regexp.MustCompile(`(?:^|,)event_id=([0-9a-f]{16})(?:,|$)`)
	got := map[string]map[string]bool{}
	for _, l := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		h, v, _ := strings.Cut(l, "\t")
		m := re.FindStringSubmatch(h)
		if m == nil {
			t.Fatalf("no event_id header in %q", h)
		}
		if got[v] == nil {
			got[v] = map[string]bool{}
		}
		got[v][m[1]] = true
	}
	return got
}

// fileEvents runs the file sink on path: its event lines.
func fileEvents(t *testing.T, path string) []string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "events.json")
	if code, _, errs := runCmd(t, nil, "-r", path, "--workers", "2", "-o", "file:"+out); code != exitOK {
		t.Fatalf("file run: exit %d\n%s", code, errs)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// paceFor is the --replay-speed that makes a capture spanning span last
// about d.
func paceFor(span, d time.Duration) string {
	return strconv.FormatFloat(max(span.Seconds()/d.Seconds(), 0.01), 'f', 3, 64)
}

// The broker hangs in the middle of a paced replay: the spool grows
// (metrics), Write never waits for budget, and once the broker answers
// again the spool drains back to empty; kcat reads back exactly the file
// sink's events (duplicates counted).
func TestKafkaSpoolBrokerOutage(t *testing.T) {
	addr, sh := ownBroker(t)
	path, span := synthSpan(t, 100_000)
	want := fileEvents(t, path)
	spool := filepath.Join(t.TempDir(), "spool")
	topic := fmt.Sprintf("pktpipe-spool-%d", time.Now().UnixNano())
	r := startKafkaRun(t, "-r", path, "--workers", "2", "--replay-speed", paceFor(span, 15*time.Second),
		"-o", fmt.Sprintf("kafka://%s/%s?max_inflight=1000&retry_backoff_max=500ms", addr, topic),
		"--kafka-spool", spool, "--drain-timeout", "60s", "--kafka-spill", filepath.Join(t.TempDir(), "spill.jsonl"))
	r.waitMetric(t, "first acks", func(m map[string]float64) bool { return m["pktpipe_kafka_delivered_total"] > 0 })
	kafkaSh(t, sh, "pause")
	m := r.waitMetric(t, "the spool to grow", func(m map[string]float64) bool {
		return m["pktpipe_kafka_spool_records_in_total"] >= 3000 && m["pktpipe_kafka_spool_bytes"] > 0
	})
	t.Logf("broker paused: spool %v records in, %v bytes, %v segments, write_waiting %v",
		m["pktpipe_kafka_spool_records_in_total"], m["pktpipe_kafka_spool_bytes"], m["pktpipe_kafka_spool_segments"], m["pktpipe_kafka_write_waiting"])
	if m["pktpipe_kafka_write_waiting"] != 0 {
		t.Fatal("Write waits for budget although the spool has room")
	}
	kafkaSh(t, sh, "resume")
	// The drain, in the metrics while the run lasts (most events come at
	// the end of the capture, when its flows end: the run may be over
	// first), and in the sink's last log line either way.
	for m = r.metrics(t); m != nil; m = r.metrics(t) {
		if m["pktpipe_kafka_spool_bytes"] == 0 && m["pktpipe_kafka_spool_records_out_total"] == m["pktpipe_kafka_spool_records_in_total"] {
			t.Logf("broker back: the metrics show the spool drained: %v records out, %v segments", m["pktpipe_kafka_spool_records_out_total"], m["pktpipe_kafka_spool_segments"])
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, log := r.wait(t, 2*time.Minute)
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, log)
	}
	line, _ := r.w.find("msg=\"kafka: spool\"")
	sm := regexp.MustCompile(`records_in=(\d+) records_out=(\d+) dropped=0 left=0 `).FindStringSubmatch(line)
	if sm == nil || sm[1] != sm[2] {
		t.Fatalf("the spool's summary does not show it drained to empty: %q\n%s", line, log)
	}
	t.Logf("at exit: %s", line)
	if names, _ := filepath.Glob(filepath.Join(spool, "*.seg")); len(names) != 0 {
		t.Fatalf("segments left: %v", names)
	}
	got := kcatValues(t, addr, topic)
	dups := 0
	for _, ev := range want {
		if got[ev] == 0 {
			t.Fatalf("event missing from Kafka: %.200s", ev)
		}
		dups += got[ev] - 1
	}
	if len(got) != len(uniq(want)) {
		t.Fatalf("Kafka holds %d distinct events, the file sink wrote %d", len(got), len(uniq(want)))
	}
	// The event_id header: one id per event, the same on every copy, and
	// no two events share one; so de-duplicating by it leaves exactly the
	// file sink's events.
	ids := kcatEventIDs(t, addr, topic)
	byID := map[string]string{}
	for v, set := range ids {
		if len(set) != 1 {
			t.Fatalf("event with %d event_ids %v: %.200s", len(set), set, v)
		}
		for id := range set {
			if o, dup := byID[id]; dup {
				t.Fatalf("event_id %s on two events:\n%.200s\n%.200s", id, o, v)
			}
			byID[id] = v
		}
	}
	t.Logf("%d events, all in Kafka as the file sink wrote them (%d duplicates); %d distinct event_ids, the duplicates' the same as their originals'",
		len(want), dups, len(byID))
}

func uniq(lines []string) map[string]bool {
	u := map[string]bool{}
	for _, l := range lines {
		u[l] = true
	}
	return u
}

// pktpipe is SIGKILLed while the broker hangs. The spool it leaves is
// read independently (kafka.InspectSpool); the last segment is then cut in
// the middle of a record, as a power loss would leave it. Restarted with
// the same spool once the broker is back, pktpipe cuts the torn tail
// (logging its size), and sends every whole spooled record first.
func TestKafkaSpoolSurvivesSIGKILL(t *testing.T) {
	addr, sh := ownBroker(t)
	path, span := synthSpan(t, 100_000)
	spool := filepath.Join(t.TempDir(), "spool")
	topic := fmt.Sprintf("pktpipe-spool-kill-%d", time.Now().UnixNano())
	url := fmt.Sprintf("kafka://%s/%s?max_inflight=1000&retry_backoff_max=500ms", addr, topic)
	r := startKafkaRun(t, "-r", path, "--workers", "2", "--replay-speed", paceFor(span, 15*time.Second),
		"-o", url, "--kafka-spool", spool, "--kafka-spill", filepath.Join(t.TempDir(), "spill.jsonl"))
	r.waitMetric(t, "first acks", func(m map[string]float64) bool { return m["pktpipe_kafka_delivered_total"] > 0 })
	kafkaSh(t, sh, "pause")
	r.waitMetric(t, "the spool to grow", func(m map[string]float64) bool {
		return m["pktpipe_kafka_spool_records_in_total"] >= 3000
	})
	r.cmd.Process.Signal(syscall.SIGKILL)
	r.wait(t, time.Minute)

	natural, err := kafka.InspectSpool(spool, nil)
	if err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(spool, "*.seg"))
	if len(names) == 0 || natural.Records < 3000 {
		t.Fatalf("spool after SIGKILL: %+v, %v", natural, names)
	}
	// A power loss tears the last write: cut 37 bytes off the end.
	last := names[len(names)-1]
	st, _ := os.Stat(last)
	if err := os.Truncate(last, st.Size()-37); err != nil {
		t.Fatal(err)
	}
	spooled := map[string]bool{}
	info, _ := kafka.InspectSpool(spool, func(r kafka.SpoolRecord) { spooled[string(r.Value)] = true })
	t.Logf("after SIGKILL: %d records in %d segments (%d bytes), torn tail %d bytes; after the cut: %d records, torn tail %d bytes",
		natural.Records, natural.Segments, natural.Bytes, natural.TornBytes, info.Records, info.TornBytes)
	if info.TornBytes == 0 || info.Records != natural.Records-1 {
		t.Fatalf("the cut did not tear the last record: %+v", info)
	}

	kafkaSh(t, sh, "resume")
	r2 := startKafkaRun(t, "-r", synth(t, 100), "-o", url, "--kafka-spool", spool, "--drain-timeout", "60s",
		"--kafka-spill", filepath.Join(t.TempDir(), "spill2.jsonl"))
	code, log := r2.wait(t, 2*time.Minute)
	if code != exitOK {
		t.Fatalf("restart: exit %d\n%s", code, log)
	}
	line, _ := r2.w.find("spool holds events from an earlier run")
	if !strings.Contains(line, fmt.Sprintf("events=%d", info.Records)) || !strings.Contains(line, fmt.Sprintf("torn_bytes=%d", info.TornBytes)) {
		t.Fatalf("the restart does not report %d events and a %d-byte torn tail:\n%s", info.Records, info.TornBytes, log)
	}
	if names, _ := filepath.Glob(filepath.Join(spool, "*.seg")); len(names) != 0 {
		t.Fatalf("segments left after the restart: %v", names)
	}
	got := kcatValues(t, addr, topic)
	dups := 0
	for v := range spooled {
		if got[v] == 0 {
			t.Fatalf("spooled event missing from Kafka: %.200s", v)
		}
		dups += got[v] - 1
	}
	t.Logf("restart: %d spooled events all delivered (%d of them more than once); torn tail %d bytes (1 record) cut; log: %s",
		len(spooled), dups, info.TornBytes, line)
}

// --kafka-spool-max 8M with the broker unreachable: the spool fills, the
// drop policy drops and counts, the run exits 3, and RSS stays flat: under
// the file sink's peak for the same input plus what the Kafka sink may
// hold (below), while four times the spool's size is dropped.
func TestKafkaSpoolMaxDropsExit3(t *testing.T) {
	// 300k packets: ~25k events, ~30 MB of JSON, over 8 s: the spool is
	// full after about a third of them.
	path, span := synthSpan(t, 300_000)
	filePeak := fileRunPeakRSS(t, path)
	spool := filepath.Join(t.TempDir(), "spool")
	r := startKafkaRun(t, "-r", path, "--workers", "2", "--replay-speed", paceFor(span, 8*time.Second),
		"-o", "kafka://"+deadKafka+"/t?max_inflight=1000&max_inflight_bytes=4194304&retry_backoff_max=200ms",
		"--kafka-spool", spool, "--kafka-spool-max", "8M", "--kafka-spool-full", "drop-oldest",
		"--drain-timeout", "1s", "--kafka-spill", filepath.Join(t.TempDir(), "spill.jsonl"))
	pid := r.cmd.Process.Pid
	m := r.waitMetric(t, "the spool to fill and drop", func(m map[string]float64) bool {
		return m["pktpipe_kafka_spool_dropped_total"] > 0
	})
	atFull, _ := vmRSS(pid)
	droppedAtFull := m["pktpipe_kafka_spool_dropped_total"]
	var peak int64
	var last map[string]float64
	for {
		if rss, err := vmRSS(pid); err == nil {
			peak = max(peak, rss)
		}
		if mm := r.metrics(t); mm != nil {
			last = mm
			if b := mm["pktpipe_kafka_spool_bytes"]; b > 8<<20 {
				t.Fatalf("spool %v bytes, over --kafka-spool-max 8M", b)
			}
		} else {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, log := r.wait(t, time.Minute)
	info, _ := kafka.InspectSpool(spool, nil)
	// The file sink's peak, plus twice (GC) the in-flight budget (4 MiB)
	// and 16 MiB for the rest of the sink (records being encoded, the
	// spool's batch buffer, kafka-go). The dropped events (~20 MB of
	// JSON) held in memory would pass it.
	ceiling := max(filePeak, atFull) + 2*(4<<20+16<<20)
	t.Logf("exit %d; dropped %v at full, %v at the end; spool left %d records, %d bytes; RSS %.1f MiB at full, peak after %.1f MiB (file sink's peak %.1f MiB, ceiling %.1f MiB)",
		code, droppedAtFull, last["pktpipe_kafka_spool_dropped_total"], info.Records, info.Bytes, mib(atFull), mib(peak), mib(filePeak), mib(ceiling))
	if code != 3 {
		t.Fatalf("exit %d, want 3 (dropped events are a loss)\n%s", code, log)
	}
	if last["pktpipe_kafka_spool_dropped_total"] <= droppedAtFull || info.Bytes > 8<<20 {
		t.Fatalf("the drops did not go on, or the spool passed its limit")
	}
	if !strings.Contains(log, "dropping the oldest events") || !strings.Contains(log, "spool="+spool) {
		t.Fatalf("no drop log naming the spool:\n%s", log)
	}
	if peak > ceiling {
		t.Fatalf("RSS peak %.1f MiB after the spool was full, over the ceiling %.1f MiB", mib(peak), mib(ceiling))
	}
}

// fileRunPeakRSS runs the file sink on path at full speed and returns its
// peak RSS: the pipeline's own memory for this input.
func fileRunPeakRSS(t *testing.T, path string) int64 {
	t.Helper()
	cmd := exec.Command(opsBinary(t), "-r", path, "--workers", "2", "-o", "file:"+filepath.Join(t.TempDir(), "events.json"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var peak int64
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("file run: %v", err)
			}
			return peak
		case <-time.After(20 * time.Millisecond):
			if rss, err := vmRSS(cmd.Process.Pid); err == nil {
				peak = max(peak, rss)
			}
		}
	}
}

// A 1 MiB tmpfs as the spool: the disk fills long before --kafka-spool-max.
// The log names the spool, the segment and the cause; the drops are
// counted (exit 3) and what the spool holds is whole records.
func TestKafkaSpoolDiskFull(t *testing.T) {
	testenv.NeedRoot(t)
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	path := synth(t, 40_000)
	code, _, log := runCmd(t, nil, "-r", path, "--workers", "2",
		"-o", "kafka://"+deadKafka+"/t?max_inflight=500&retry_backoff_max=200ms",
		"--kafka-spool", dir, "--kafka-spool-full", "drop-newest",
		"--drain-timeout", "1s", "--kafka-spill", filepath.Join(t.TempDir(), "spill.jsonl"))
	line := ""
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "spool write failed") {
			line = l
			break
		}
	}
	t.Logf("exit %d; %s", code, line)
	if code != 3 {
		t.Fatalf("exit %d, want 3\n%s", code, log)
	}
	if !strings.Contains(line, "spool="+dir) || !strings.Contains(line, "no space left on device") ||
		!regexp.MustCompile(regexp.QuoteMeta(dir)+`/\d+\.seg`).MatchString(line) {
		t.Fatalf("no clear disk-full line (spool, segment, cause):\n%s", log)
	}
	info, err := kafka.InspectSpool(dir, nil)
	if err != nil || info.TornBytes != 0 || info.Records == 0 {
		t.Fatalf("spool on the full tmpfs: %+v %v; want whole records only", info, err)
	}
	// What fit stays for the next run, in order.
	var names []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	t.Logf("spool keeps %d records (%d bytes): %v", info.Records, info.Bytes, names)
}
