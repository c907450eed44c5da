package kafka

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

func kafkaSpec(t *testing.T) pipeline.SinkSpec {
	t.Helper()
	spec, ok := pipeline.SinkFor("kafka://h:1/t")
	if !ok || spec.Scheme != "kafka" || spec.Open == nil || spec.Check == nil || spec.Redact == nil {
		t.Fatalf("kafka:// is not registered completely: %+v %v", spec, ok)
	}
	return spec
}

// The flags are today's (names, defaults) plus --kafka-password-file.
func TestRegisteredFlags(t *testing.T) {
	spec := kafkaSpec(t)
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	opts := spec.NewOptions()
	opts.RegisterFlags(fs)
	for name, def := range map[string]string{
		"kafka-topic-template": "", "drain-timeout": "0s", "kafka-spill": "", "kafka-password-file": "",
		"kafka-spool": "", "kafka-spool-max": "0", "kafka-spool-full": "", "kafka-spool-sync-interval": "0s", "kafka-spool-sync-bytes": "0",
	} {
		f := fs.Lookup(name)
		if f == nil || f.DefValue != def {
			t.Errorf("flag --%s: %+v, want default %q", name, f, def)
		}
	}
	if err := fs.Parse([]string{"--drain-timeout", "-1s"}); err != nil {
		t.Fatal(err)
	}
	if err := opts.(registry.Validator).Validate(); err == nil || !registry.IsUsage(err) {
		t.Errorf("--drain-timeout -1s: %v, want a usage error", err)
	}
	for _, args := range [][]string{{"--kafka-spool-full", "drop-middle"}, {"--kafka-spool-sync-interval", "-1s"}} {
		opts := spec.NewOptions()
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		opts.RegisterFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		if err := opts.(registry.Validator).Validate(); err == nil || !registry.IsUsage(err) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

// The spool's flags reach the Config; --kafka-spool-full's default is
// block, or drop-oldest for a live source.
func TestSpoolOptions(t *testing.T) {
	spec := kafkaSpec(t)
	dir := t.TempDir()
	env := pipeline.SinkEnv{Ctx: context.Background(), Stats: stats.NewRegistry(), Log: testLogger()}
	opts := &Options{Spill: filepath.Join(dir, "s.jsonl"), SpoolDir: filepath.Join(dir, "spool"), SpoolMax: 8 << 20,
		SpoolSyncInterval: 2 * time.Second, SpoolSyncBytes: 1 << 20}
	sk, err := spec.Open("kafka://"+deadBroker+"/t", opts, env)
	if err != nil {
		t.Fatal(err)
	}
	s := sk.(*Sink)
	if s.spool == nil || s.cfg.SpoolMax != 8<<20 || s.cfg.SpoolFull != SpoolBlock || s.cfg.SpoolSyncInterval != 2*time.Second ||
		s.cfg.SpoolSyncBytes != 1<<20 || s.spool.segMax != 1<<20 {
		t.Errorf("spool options not applied: %+v", s.cfg)
	}
	s.Close()
	if err := spec.Check("kafka://"+deadBroker+"/t", &Options{Spill: opts.Spill, SpoolDir: filepath.Join(opts.Spill, "x")}); err == nil || !registry.IsUsage(err) {
		t.Errorf("Check with a spool under a file: %v, want a usage error", err)
	}
	for _, c := range []struct {
		live bool
		full string
		want string
	}{{false, "", SpoolBlock}, {true, "", SpoolDropOldest}, {true, SpoolBlock, SpoolBlock}, {false, SpoolDropNewest, SpoolDropNewest}} {
		cfg := Config{Live: c.live, SpoolFull: c.full}
		cfg.defaults()
		if cfg.SpoolFull != c.want {
			t.Errorf("live %v, --kafka-spool-full %q: %q, want %q", c.live, c.full, cfg.SpoolFull, c.want)
		}
	}
}

// Open applies the flags and the environment as internal/app did: the
// URL's format, else env's; the flags over the URL's topic, drain_timeout
// and spill; Stats and Log from env.
func TestOpenAppliesOptions(t *testing.T) {
	spec := kafkaSpec(t)
	dir := t.TempDir()
	reg := stats.NewRegistry()
	env := pipeline.SinkEnv{Ctx: context.Background(), Format: "msgpack", Stats: reg, Log: testLogger()}
	opts := &Options{TopicTemplate: "x.{event_type}", DrainTimeout: 3 * time.Second, Spill: filepath.Join(dir, "s.jsonl")}
	sk, err := spec.Open("kafka://"+deadBroker+"/t?drain_timeout=1s&spill=/nonexistent/x", opts, env)
	if err != nil {
		t.Fatal(err)
	}
	s := sk.(*Sink)
	if s.cfg.Topic != "x.{event_type}" || s.cfg.DrainTimeout != 3*time.Second || s.SpillPath() != opts.Spill ||
		s.enc.Format() != "msgpack" || s.Stats() != reg {
		t.Errorf("options not applied: topic %s drain %s spill %s format %s", s.cfg.Topic, s.cfg.DrainTimeout, s.SpillPath(), s.enc.Format())
	}
	s.Close()

	sk, err = spec.Open("kafka://"+deadBroker+"/t?format=json&drain_timeout=1s", &Options{Spill: opts.Spill}, env)
	if err != nil {
		t.Fatal(err)
	}
	s = sk.(*Sink)
	if s.enc.Format() != "json" || s.cfg.Topic != "t" || s.cfg.DrainTimeout != time.Second {
		t.Errorf("URL settings lost: format %s topic %s drain %s", s.enc.Format(), s.cfg.Topic, s.cfg.DrainTimeout)
	}
	s.Close()
}

// Check refuses what Open would, as usage errors, and opens nothing.
func TestCheck(t *testing.T) {
	spec := kafkaSpec(t)
	dir := t.TempDir()
	spill := filepath.Join(dir, "s.jsonl")
	ok := &Options{Spill: spill}
	if err := spec.Check("kafka://h:1/t?compression=lz4", ok); err != nil {
		t.Fatalf("a good URL: %v", err)
	}
	if _, err := os.Stat(spill); !os.IsNotExist(err) {
		t.Errorf("Check left the spill file behind: %v", err)
	}
	for target, opts := range map[string]*Options{
		"kafka://h:1/t?foo=bar":                                 ok,
		"kafka://u:p@h:1/t":                                     ok,
		"kafka://h:99999/t":                                     ok,
		"kafka://h:1/t?format=xml":                              ok,
		"kafka://h:1/t?tls_ca=/nonexistent.pem":                 ok,
		"kafka://h:1/t?sasl=gssapi&sasl_user=u&sasl_password=p": ok,
		"kafka://h:1/t":                                         {Spill: filepath.Join(dir, "no", "s.jsonl")},
		"kafka://u@h:1/t?sasl=plain":                            {Spill: spill, PasswordFile: filepath.Join(dir, "nope")},
		"kafka://h:1/t?sasl=plain&sasl_user=u":                  {Spill: spill, DrainTimeout: -time.Second},
	} {
		if err := spec.Check(target, opts); err == nil || !registry.IsUsage(err) {
			t.Errorf("Check(%s, %+v): %v, want a usage error", target, *opts, err)
		}
	}
}

// E: the password from --kafka-password-file or $PKTPIPE_KAFKA_PASSWORD.
func TestPasswordSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	two := filepath.Join(dir, "two")
	os.WriteFile(two, []byte("a\nb\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	for _, c := range []struct {
		url, file, env, want string // want "" = a usage error
	}{
		{"kafka://u@h/t?sasl=plain", file, "", "from-file"},
		{"kafka://u@h/t?sasl=plain", file, "from-env", "from-file"},
		{"kafka://u@h/t?sasl=plain", "", "from-env", "from-env"},
		{"kafka://u:from-url@h/t?sasl=plain", "", "from-env", "from-url"},
		{"kafka://h/t?sasl=plain&sasl_user=u&sasl_password=q", "", "from-env", "q"},
		{"kafka://u:from-url@h/t?sasl=plain", file, "", ""}, // twice
		{"kafka://u@h/t?sasl=plain", "", "", ""},            // none
		{"kafka://u@h/t?sasl=plain", two, "", ""},
		{"kafka://u@h/t?sasl=plain", empty, "", ""},
		{"kafka://h/t?sasl=plain", file, "", ""}, // no user
		{"kafka://h/t", file, "", ""},            // a file without sasl=
		{"kafka://h/t", "", "from-env", "-"},     // no SASL: the variable is not used
	} {
		t.Setenv(PasswordEnv, c.env)
		cfg, err := configFor(c.url, &Options{PasswordFile: c.file}, pipeline.SinkEnv{})
		switch {
		case c.want == "":
			if err == nil || !registry.IsUsage(err) {
				t.Errorf("%s file=%q env=%q: %v, want a usage error", c.url, c.file, c.env, err)
			}
		case err != nil:
			t.Errorf("%s file=%q env=%q: %v", c.url, c.file, c.env, err)
		case c.want == "-":
			if cfg.SASL != nil {
				t.Errorf("%s: SASL %+v", c.url, cfg.SASL)
			}
		case cfg.SASL.Password != c.want:
			t.Errorf("%s file=%q env=%q: password %q, want %q", c.url, c.file, c.env, cfg.SASL.Password, c.want)
		}
		if err != nil && (strings.Contains(err.Error(), "from-") || strings.Contains(err.Error(), "from-url")) {
			t.Errorf("%s: the error quotes a password: %v", c.url, err)
		}
	}
}

// B: the first SIGTERM (SinkEnv.Ctx) ends a Write that waits for budget
// at once, although max_block is an hour away; the batch is spilled, and
// later batches that find no room are too, so the drain is bounded by
// the drain timeout.
func TestStopInterruptsBudgetWait(t *testing.T) {
	spec := kafkaSpec(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	reg := stats.NewRegistry()
	lb := &logBuffer{}
	env := pipeline.SinkEnv{Ctx: ctx, Format: "json", Stats: reg, Log: lb.logger()}
	spill := filepath.Join(t.TempDir(), "spill.jsonl")
	sk, err := spec.Open("kafka://"+deadBroker+"/t?max_inflight=100&max_block=1h&retry_backoff_max=200ms",
		&Options{Spill: spill, DrainTimeout: 500 * time.Millisecond}, env)
	if err != nil {
		t.Fatal(err)
	}
	s := sk.(*Sink)
	evs := flows(1, 300)
	if err := s.Write(evs[:100]); err != nil {
		t.Fatal(err)
	}
	written := make(chan error, 1)
	go func() { written <- s.Write(evs[100:200]) }()
	waitFor(t, "Write to wait for budget", func() bool { return s.m.waiting.Load() == 1 })
	stop()
	select {
	case err := <-written:
		if err != nil {
			t.Fatalf("Write after the stop signal: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Write still waits for budget 30 s after the stop signal (max_block is 1h)")
	}
	// The drain's events find no room either: spilled without a wait.
	done := make(chan error, 1)
	go func() { done <- s.Write(evs[200:]) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a Write after the stop signal waits for budget")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ids, reasons := spilled(t, spill)
	if len(ids) != 300 || reasons["stopping"] != 200 || reasons["undelivered"] != 100 {
		t.Fatalf("spill file: %d events %v; want 300: 200 stopping, 100 undelivered", len(ids), reasons)
	}
}

// B: the second signal's log can say what the sink held, and Abandon
// spills it without waiting for anything.
func TestAbandonSpillsUnacknowledged(t *testing.T) {
	reg := stats.NewRegistry()
	s, _ := deadSink(t, Config{Stats: reg, DrainTimeout: time.Hour})
	writeAll(t, s, flows(1, 700))
	if n, b := s.Unacknowledged(); n != 700 || b <= 0 {
		t.Fatalf("Unacknowledged %d events %d bytes, want 700", n, b)
	}
	attrs := s.Abandon()
	t.Logf("Abandon: %v", attrs)
	got := map[string]any{}
	for i := 0; i+1 < len(attrs); i += 2 {
		got[attrs[i].(string)] = attrs[i+1]
	}
	if got["kafka_unacknowledged"] != 700 || got["kafka_spilled"] != 700 || got["kafka_spill"] != s.SpillPath() {
		t.Fatalf("Abandon attributes %v", attrs)
	}
	// On disk now, before any Close: the process exits right after.
	if ids, _ := spilled(t, s.SpillPath()); len(ids) != 700 {
		t.Fatalf("spill file holds %d events after Abandon, want 700", len(ids))
	}
	if n, _ := s.Unacknowledged(); n != 0 {
		t.Fatalf("%d still unacknowledged after Abandon", n)
	}
	if err := s.Close(); err != nil { // returns at once: nothing to wait for
		t.Fatal(err)
	}
	if got := counter(reg, "pktpipe_kafka_spilled_total"); got != 700 {
		t.Fatalf("spilled counter %v", got)
	}
}

// waitFor polls cond under a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// The run says whether it captures live; the spool's default policy
// follows: drop-oldest for -i, block for files.
func TestSpoolDefaultFollowsTheSource(t *testing.T) {
	spec, ok := pipeline.SinkFor("kafka://x")
	if !ok {
		t.Fatal("kafka not registered")
	}
	for _, live := range []bool{false, true} {
		o := spec.NewOptions().(*Options)
		o.SpoolDir = t.TempDir()
		c, err := configFor("kafka://127.0.0.1:1/t", o, pipeline.SinkEnv{Live: live, Stats: stats.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		c.defaults()
		want := SpoolBlock
		if live {
			want = SpoolDropOldest
		}
		if c.SpoolFull != want {
			t.Errorf("live=%v: policy %q, want %q", live, c.SpoolFull, want)
		}
	}
}
