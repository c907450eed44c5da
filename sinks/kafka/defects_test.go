package kafka

// The failure paths of issue 17 part 0 (A–F): a sink that cannot deliver
// spills or counts, never discards; a stop signal ends every wait; the
// spill path is checked at start; a spill is a loss (exit 3), not a
// failure; the SASL password stays out of messages; bad ports are usage
// errors. Most run against a dead broker (127.0.0.1:1, nothing listens);
// the recovery test needs the real one.

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

const deadBroker = "127.0.0.1:1"

// logBuffer collects a sink's log for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	os.Stderr.Write(p)
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// deadSink is a sink whose broker never answers, with a log to inspect.
func deadSink(t *testing.T, c Config) (*Sink, *logBuffer) {
	t.Helper()
	c.Brokers = []string{deadBroker}
	if c.Stats == nil {
		c.Stats = stats.NewRegistry()
	}
	if c.SpillPath == "" {
		c.SpillPath = filepath.Join(t.TempDir(), "spill.jsonl")
	}
	if c.RetryBackoffMax == 0 {
		c.RetryBackoffMax = 200 * time.Millisecond
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 500 * time.Millisecond
	}
	lb := &logBuffer{}
	c.Log = lb.logger()
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return s, lb
}

// counter reads a counter of reg by name (0 when it is not registered).
func counter(reg *stats.Registry, name string) float64 {
	for _, s := range reg.Snapshot() {
		if s.Name == name {
			return s.Value
		}
	}
	return 0
}

// A and D: the budget stays full past max_block. Before: the Write
// failed (and the engine discarded everything after it), and a spill made
// Close fail (exit 1). Now every event is spilled, Close succeeds, and the
// spill counts as a loss (exit 3).
func TestBudgetFullSpillsInsteadOfFailing(t *testing.T) {
	reg := stats.NewRegistry()
	s, lb := deadSink(t, Config{Stats: reg, MaxInflight: 100, MaxBlock: 200 * time.Millisecond})
	const n, per = 500, 100
	evs := flows(1, n)
	for i := 0; i < n; i += per {
		if err := s.Write(evs[i : i+per]); err != nil {
			t.Fatalf("Write of events %d-%d: %v", i+1, i+per, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v (a spill is a loss, not a failure)", err)
	}
	ids, reasons := spilled(t, s.SpillPath())
	if len(ids) != n {
		t.Fatalf("spill file holds %d of %d events (%v)", len(ids), n, reasons)
	}
	if reasons["undelivered"] != per || reasons["max_block"] != n-per {
		t.Errorf("spill reasons %v: want %d undelivered (the first batch, at Close) and %d max_block", reasons, per, n-per)
	}
	if got := counter(reg, "pktpipe_kafka_spilled_total"); got != n {
		t.Errorf("spilled counter %v, want %d", got, n)
	}
	if len(reg.Losses()) == 0 {
		t.Error("the spill is not a loss: the exit code would be 0")
	}
	if log := lb.String(); !strings.Contains(log, "spilled") || !strings.Contains(log, s.SpillPath()) {
		t.Errorf("the log does not say where the events went:\n%s", log)
	}
}

// C: an unwritable spill path fails at start, as a usage error, instead
// of losing the events at the end.
func TestSpillPathCheckedAtStart(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{
		"no such directory": filepath.Join(dir, "nope", "spill.jsonl"),
		"under a file":      filepath.Join(file, "spill.jsonl"),
		"a directory":       dir,
	} {
		_, err := New(Config{Brokers: []string{deadBroker}, SpillPath: path})
		if err == nil || !registry.IsUsage(err) || !strings.Contains(err.Error(), "spill") {
			t.Errorf("%s (%s): New: %v, want a usage error about the spill file", name, path, err)
		}
	}
	// The probe leaves nothing behind, and an existing file is kept.
	ok := filepath.Join(dir, "spill.jsonl")
	s, err := New(Config{Brokers: []string{deadBroker}, SpillPath: ok})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ok); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the start-up check left %s behind: %v", ok, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// C: a read-only file system, as / is under ProtectSystem=strict.
func TestSpillPathReadOnlyFS(t *testing.T) {
	ro := mountReadOnly(t)
	_, err := New(Config{Brokers: []string{deadBroker}, SpillPath: filepath.Join(ro, "spill.jsonl")})
	if err == nil || !registry.IsUsage(err) || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("New with the spill file on a read-only file system: %v", err)
	}
	t.Log(err)
}

// C: the default spill file lives in $STATE_DIRECTORY (systemd's
// StateDirectory=, the first if several), else in the working directory.
func TestSpillDefaultStateDirectory(t *testing.T) {
	state, other := t.TempDir(), t.TempDir()
	t.Setenv("STATE_DIRECTORY", state+":"+other)
	s, err := New(Config{Brokers: []string{deadBroker}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if d := filepath.Dir(s.SpillPath()); d != state {
		t.Fatalf("spill file %s, want it in $STATE_DIRECTORY %s", s.SpillPath(), state)
	}
	t.Setenv("STATE_DIRECTORY", "")
	s2, err := New(Config{Brokers: []string{deadBroker}})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if d := filepath.Dir(s2.SpillPath()); d != "." {
		t.Fatalf("spill file %s, want it in the working directory", s2.SpillPath())
	}
}

// C: events that can be neither delivered nor spilled (the disk is full:
// /dev/full) are counted lost, so the summary never says lost=0.
func TestUnspillableEventsCountedLost(t *testing.T) {
	reg := stats.NewRegistry()
	s, lb := deadSink(t, Config{Stats: reg, SpillPath: "/dev/full", MaxInflight: 100, MaxBlock: 100 * time.Millisecond})
	const n = 300
	evs := flows(1, n)
	for i := 0; i < n; i += 100 {
		if err := s.Write(evs[i : i+100]); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	err := s.Close()
	if err == nil || !strings.Contains(err.Error(), "lost") {
		t.Fatalf("Close: %v, want an error saying events were lost", err)
	}
	t.Logf("Close: %v", err)
	if got := counter(reg, "pktpipe_kafka_lost_total"); got != n {
		t.Fatalf("lost counter %v, want %d\n%s", got, n, lb.String())
	}
	var loss float64
	for _, l := range reg.Losses() {
		loss += l.Value
	}
	if loss != n {
		t.Fatalf("loss counters add up to %v, want %d (each event counted once): %+v", loss, n, reg.Losses())
	}
}

// A spill file that fails half-way holds only whole lines.
func TestSpillFileFullKeepsWholeLines(t *testing.T) {
	dir := mountTmpfs(t, "size=64k")
	path := filepath.Join(dir, "spill.jsonl")
	reg := stats.NewRegistry()
	s, _ := deadSink(t, Config{Stats: reg, SpillPath: path, MaxInflight: 50, MaxBlock: 50 * time.Millisecond})
	const n = 1000 // ~600 KB of JSON: far more than fits
	evs := flows(1, n)
	for i := 0; i < n; i += 50 {
		if err := s.Write(evs[i : i+50]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err == nil {
		t.Fatal("Close: no error although the spill file filled up")
	}
	ids, _ := spilled(t, path) // fails on a torn line
	sp, lost := counter(reg, "pktpipe_kafka_spilled_total"), counter(reg, "pktpipe_kafka_lost_total")
	t.Logf("spill file: %d events; counters spilled %v lost %v", len(ids), sp, lost)
	if float64(len(ids)) != sp || sp+lost != n {
		t.Fatalf("spill file holds %d, spilled %v + lost %v, want them to add up to %d", len(ids), sp, lost, n)
	}
}

// F: bad ports are usage errors when the URL is read, not brokers retried
// until the drain timeout.
func TestParseURLPorts(t *testing.T) {
	for _, bad := range []string{
		"kafka://h:99999/t", "kafka://h:-1/t", "kafka://h:abc/t", "kafka://h:0/t", "kafka://h:/t",
		"kafka://ok:9092,h:65536/t", "kafka://::1/t", "kafka://:9092/t",
	} {
		_, err := ParseURL(bad)
		if err == nil || !registry.IsUsage(err) {
			t.Errorf("%s: %v, want a usage error", bad, err)
		}
	}
	for raw, want := range map[string]string{
		"kafka://h/t":              "h:9092",
		"kafka://h:1/t":            "h:1",
		"kafka://h:65535/t":        "h:65535",
		"kafka://[::1]/t":          "[::1]:9092",
		"kafka://[::1]:9093/t":     "[::1]:9093",
		"kafka://a:1, b:2/t":       "a:1,b:2",
		"kafka://10.0.0.1:9092,x/": "10.0.0.1:9092,x:9092",
	} {
		c, err := ParseURL(raw)
		if err != nil || strings.Join(c.Brokers, ",") != want {
			t.Errorf("%s: brokers %v, %v; want %s", raw, c.Brokers, err, want)
		}
	}
}

// Issue 19 item 3: what config check must refuse, as usage errors.
func TestParseURLUsageErrors(t *testing.T) {
	for _, bad := range []string{
		"kafka://h:1/t?foo=bar",
		"kafka://u:p@h:1/t",
		"kafka://h:1/t?compression=brotli",
		"kafka://h:1/t?batch_size=-1",
		"kafka:///t",
		"http://h:1/t",
	} {
		if _, err := ParseURL(bad); err == nil || !registry.IsUsage(err) {
			t.Errorf("%s: %v, want a usage error", bad, err)
		}
	}
}

// E: no error message quotes the password, and Redact hides it.
func TestPasswordNotInMessages(t *testing.T) {
	const secret = "Pa55w0rd"
	for _, raw := range []string{
		"kafka://alice:" + secret + "@/t?sasl=plain",               // no broker address
		"kafka://alice:" + secret + "%zz@h:1/t?sasl=plain",         // bad escape in the user info
		"kafka://alice:" + secret + "@h:99999/t?sasl=plain",        // bad port
		"kafka://alice:" + secret + "@h:1/t",                       // no sasl=
		"kafka://h:1/t?sasl=plain&sasl_password=" + secret + "%zz", // bad escape in the query
		"kafka://alice:" + secret + "@h:1/t?sasl=plain&nosuch=1",
		"kafka://alice:" + secret + "@h:1/t?sasl=sha1",
	} {
		c, err := ParseURL(raw)
		if err == nil {
			_, err = c.build()
		}
		if err == nil {
			t.Errorf("%s: no error", raw)
			continue
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "zz") {
			t.Errorf("%s: the error quotes the password: %v", raw, err)
		}
	}
	for raw, want := range map[string]string{
		"kafka://alice:" + secret + "@h:1/t?sasl=plain":                  "kafka://alice:xxxxx@h:1/t?sasl=plain",
		"kafka://alice:a/b@c:" + secret + "@h:1/t?sasl=plain":            "kafka://alice:xxxxx@h:1/t?sasl=plain",
		"kafka://h:1/t?sasl=plain&sasl_user=bob&sasl_password=" + secret: "kafka://h:1/t?sasl=plain&sasl_user=bob&sasl_password=xxxxx",
		"kafka://h:1/t?sasl%5Fpassword=" + secret + "&tls=true":          "kafka://h:1/t?sasl%5Fpassword=xxxxx&tls=true",
		"kafka://alice@h:1/t?sasl=plain":                                 "kafka://alice@h:1/t?sasl=plain",
		"kafka://h:1/t":                                                  "kafka://h:1/t",
	} {
		if got := Redact(raw); got != want {
			t.Errorf("Redact(%s) = %s, want %s", raw, got, want)
		}
	}
	// A password with '/' and '@' in it, unescaped, is read whole.
	c, err := ParseURL("kafka://alice:a/b@c@h:1/t?sasl=plain")
	if err != nil || c.SASL.Password != "a/b@c" || c.Topic != "t" || c.Brokers[0] != "h:1" {
		t.Errorf("password with / and @: %+v %+v %v", c, c.SASL, err)
	}
}

// mountTmpfs mounts a tmpfs with opts on a temporary directory for the
// test's duration (root).
func mountTmpfs(t *testing.T, opts string) string {
	t.Helper()
	testenv.NeedRoot(t)
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// mountReadOnly is a read-only file system (as / under ProtectSystem=strict).
func mountReadOnly(t *testing.T) string {
	t.Helper()
	dir := mountTmpfs(t, "size=64k")
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount %s read-only: %v", dir, err)
	}
	return dir
}

// A: after max_block the sink spills what finds no room, and goes back to
// delivering once the broker answers: nothing after the outage is lost
// or spilled. Before, the first Write past max_block failed and the engine
// discarded every later event, even after the broker came back.
func TestOverflowRecoversWhenBrokerReturns(t *testing.T) {
	needBroker(t)
	topic := uniqueTopic("overflow")
	createTopic(t, topic, 3)
	fd := &faultDialer{}
	fd.setDown(true)
	reg := stats.NewRegistry()
	s := newSink(t, Config{Topic: topic, Stats: reg, MaxInflight: 100, MaxBlock: 5 * time.Second, // long enough for any ack after the outage
		RetryBackoffMax: 200 * time.Millisecond, DrainTimeout: 60 * time.Second, dial: fd.DialContext})
	const n = 1300
	evs := flows(1, n)
	// 1-100 are taken; 101-300 find no room for max_block: spilled.
	for i := 0; i < 300; i += 100 {
		if err := s.Write(evs[i : i+100]); err != nil {
			t.Fatal(err)
		}
	}
	if !s.overflow.Load() {
		t.Fatal("no overflow after max_block")
	}
	fd.setDown(false)
	waitFor(t, "the first 100 events to be delivered after the outage", func() bool { return s.m.delivered.Load() >= 100 })
	for i := 300; i < n; i += 100 {
		if err := s.Write(evs[i : i+100]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ids, reasons := spilled(t, s.SpillPath())
	inKafka := map[int]bool{}
	for _, m := range consume(t, topic, 0) {
		inKafka[flowID(t, []byte(m.value))] = true
	}
	for id := 1; id <= n; id++ {
		wantSpilled := id > 100 && id <= 300
		if ids[id] != wantSpilled || inKafka[id] == wantSpilled {
			t.Fatalf("flow %d: spilled %v, in Kafka %v; want only %s", id, ids[id], inKafka[id], map[bool]string{true: "spilled", false: "in Kafka"}[wantSpilled])
		}
	}
	if reasons["max_block"] != 200 || counter(reg, "pktpipe_kafka_spilled_total") != 200 || counter(reg, "pktpipe_kafka_lost_total") != 0 {
		t.Fatalf("spill reasons %v, counters spilled %v lost %v", reasons, counter(reg, "pktpipe_kafka_spilled_total"), counter(reg, "pktpipe_kafka_lost_total"))
	}
	t.Logf("%d events: 1-100 delivered after the outage, 101-300 spilled (max_block), 301-%d delivered", n, n)
}
