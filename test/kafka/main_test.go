// Package kafkae2e runs pktpipe processes against the real broker of
// test/kafka/kafka.sh (issue 17): two sensors on one topic, and a live
// capture through a broker outage (in short here; `make
// kafka-outage-demo` runs it at full length). Everything read back is
// read by kcat. The broker lock (internal/kafkatest) is held for the
// whole package: the outage test kills the broker.
package kafkae2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/pktpipe/pktpipe/bench/gen"
	"github.com/pktpipe/pktpipe/internal/kafkatest"
	"github.com/pktpipe/pktpipe/internal/testenv"
)

var (
	brokerAddr string
	pktpipeBin string // pktpipe, built once
	setupErr   error  // why the broker or the binary is missing
)

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	brokerAddr = kafkatest.Addr()
	unlock, err := kafkatest.Lock(brokerAddr, 20*time.Minute)
	if err != nil {
		setupErr = err
		return m.Run()
	}
	defer unlock()
	if err := kafkatest.Up(brokerAddr); err != nil {
		setupErr = err
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "pktpipe-kafkae2e-")
	if err != nil {
		setupErr = err
		return m.Run()
	}
	defer os.RemoveAll(dir)
	pktpipeBin = filepath.Join(dir, "pktpipe")
	if out, err := exec.Command("go", "build", "-o", pktpipeBin, "../../cmd/pktpipe").CombinedOutput(); err != nil {
		setupErr = fmt.Errorf("go build: %v\n%s", err, out)
	}
	return m.Run()
}

// needBroker skips (fails under PKTPIPE_CI=1) without the broker, the
// binary or kcat.
func needBroker(t *testing.T) {
	t.Helper()
	testenv.Need(t, setupErr == nil, fmt.Sprint("a Kafka broker and the pktpipe binary: ", setupErr))
	testenv.NeedCommand(t, "kcat")
}

// capture writes a bench-generator capture of n packets.
func capture(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "synth.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	if _, err := gen.Write(w, gen.Config{Seed: 7, Packets: n}, gen.Format{}); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path
}

// createTopic makes a topic with the given partitions.
func createTopic(t *testing.T, name string, partitions int) {
	t.Helper()
	c := &kafkago.Client{Addr: kafkago.TCP(brokerAddr), Timeout: 20 * time.Second}
	var err error
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		var res *kafkago.CreateTopicsResponse
		res, err = c.CreateTopics(context.Background(), &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{
			{Topic: name, NumPartitions: partitions, ReplicationFactor: 1},
		}})
		if err == nil {
			err = res.Errors[name]
		}
		if err == nil || errors.Is(err, kafkago.TopicAlreadyExists) {
			return
		}
	}
	t.Fatalf("create topic %s: %v", name, err)
}

// deleteTopic removes a test's topic so the broker's data stays small.
func deleteTopic(name string) {
	c := &kafkago.Client{Addr: kafkago.TCP(brokerAddr), Timeout: 20 * time.Second}
	c.DeleteTopics(context.Background(), &kafkago.DeleteTopicsRequest{Topics: []string{name}})
}

// message is one Kafka message as kcat reads it.
type message struct {
	partition int
	key       string // "" for a null key
	headers   string
	value     string
}

// consume reads a topic to its end with kcat.
func consume(t *testing.T, topic string) []message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "kcat", "-C", "-b", brokerAddr, "-t", topic, "-o", "beginning", "-e", "-q",
		"-f", "%p\t%k\t%h\t%s\n").Output()
	if err != nil {
		t.Fatalf("kcat -C %s: %v", topic, err)
	}
	var msgs []message
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), "\t", 4)
		if len(f) != 4 {
			t.Fatalf("kcat line %q", sc.Text())
		}
		p, _ := strconv.Atoi(f[0])
		msgs = append(msgs, message{p, f[1], f[2], f[3]})
	}
	return msgs
}

// run is a pktpipe process whose stderr is kept line by line.
type run struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	done  chan struct{}
	url   string // metrics, when asked for
}

// start runs pktpipe with args; with metrics, it waits for the metrics
// endpoint's address.
func start(t *testing.T, metrics bool, args ...string) *run {
	t.Helper()
	if metrics { // before a trailing filter expression
		args = append([]string{"--metrics-addr", "127.0.0.1:0"}, args...)
	}
	r := &run{cmd: exec.Command(pktpipeBin, args...), done: make(chan struct{})}
	stderr, err := r.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(r.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			r.mu.Lock()
			r.lines = append(r.lines, sc.Text())
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			r.cmd.Process.Kill()
			<-r.done
			r.cmd.Wait()
		}
	})
	if metrics {
		testenv.WaitFor(t, 2*time.Minute, "the metrics endpoint", func() bool {
			l, ok := r.find("msg=metrics url=")
			if ok {
				r.url = strings.Fields(strings.SplitN(l, "url=", 2)[1])[0]
			}
			return ok || r.exited()
		})
		if r.url == "" {
			t.Fatalf("pktpipe exited before serving metrics:\n%s", r.log())
		}
	}
	return r
}

func (r *run) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// find returns the first log line containing s.
func (r *run) find(s string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.lines {
		if strings.Contains(l, s) {
			return l, true
		}
	}
	return "", false
}

func (r *run) log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

// wait waits for the process to exit and returns its exit code.
func (r *run) wait(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(limit):
		t.Fatalf("pktpipe still running after %v:\n%s", limit, r.log())
	}
	r.cmd.Wait()
	return r.cmd.ProcessState.ExitCode()
}

// metrics scrapes the run: series name (labels dropped, summed) ->
// value; nil once the run is gone.
func (r *run) metrics() map[string]float64 {
	if r.exited() {
		return nil
	}
	resp, err := http.Get(r.url)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil
	}
	m := map[string]float64{}
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			continue
		}
		name, _, _ := strings.Cut(l[:i], "{")
		m[name] += v
	}
	return m
}

// waitMetric polls the run's metrics until cond holds.
func (r *run) waitMetric(t *testing.T, limit time.Duration, what string, cond func(m map[string]float64) bool) map[string]float64 {
	t.Helper()
	var m map[string]float64
	testenv.WaitFor(t, limit, what, func() bool {
		m = r.metrics()
		return m != nil && cond(m)
	})
	return m
}

// fileEvents runs pktpipe with the file sink on path and returns its
// event lines.
func fileEvents(t *testing.T, path string, args ...string) []string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "events.json")
	cmd := exec.Command(pktpipeBin, append([]string{"-r", path, "--no-progress", "-o", "file:" + out}, args...)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("file run: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
