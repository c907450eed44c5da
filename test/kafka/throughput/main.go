// Command throughput measures pktpipe's Kafka sink against kcat -P
// (librdkafka) on the same events and the same local broker, zstd and
// acks=all, side by side (issue 17 part 4):
//
//   - the events are pktpipe's own, from a bench-generator capture (bulk
//     transfers off, so that 900k packets give ~228k events), written
//     once with the file sink;
//   - kcat -P sends those JSON lines keyed by their community_id (-K),
//     with the four headers every pktpipe message carries (-H
//     schema_version, event_type, format, event_id): the same messages,
//     as the issue asks ("on the same events"; it also requires event_id
//     as a header). kcat -P can only add the same headers to every
//     message (it has no per-line header input), so its event_id and
//     event_type are one value on all, where pktpipe's differ per event:
//     if anything that helps kcat (identical bytes compress to nothing).
//     A producer built on librdkafka pays for headers as kcat does: the
//     API takes a fresh rd_kafka_headers_t with each message;
//   - "kcat-bare" is kcat -P without the headers: lighter messages than
//     pktpipe's, shown for reference, not the comparison (-min-ratio is
//     checked against the kcat with headers);
//   - pktpipe -r reads the capture and sends to Kafka: its time includes
//     reading, decoding and every analysis, not the sink alone;
//   - each run gets a fresh topic of 3 partitions (created before the
//     clock starts, deleted after), alternating which goes first; the
//     topic's end offsets must hold every event;
//   - the file sink's run is timed too: what pktpipe costs without Kafka.
//
// It prints medians over -runs and exits 1 when pktpipe's events/s are
// below -min-ratio times kcat's. Run it with `make kafka-throughput`
// (broker from `make kafka-up`); it is not part of `make test`.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/pktpipe/pktpipe/bench/gen"
	"github.com/pktpipe/pktpipe/internal/kafkatest"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sinks/encode"
	"github.com/pktpipe/pktpipe/sinks/kafka"
)

func main() {
	exit := 0
	defer func() { os.Exit(exit) }()
	var (
		packets  = flag.Int("packets", 900_000, "packets in the generated capture")
		capture  = flag.String("capture", "", "use this capture instead of generating one")
		runs     = flag.Int("runs", 3, "runs of each")
		workers  = flag.Int("workers", 2, "pktpipe --workers")
		minRatio = flag.Float64("min-ratio", 1.0, "fail when pktpipe's events/s are below this times kcat's (0: never)")
		minEv    = flag.Int("min-events", 200_000, "fail when the capture gives fewer events")
		cache    = flag.String("cache", filepath.Join(os.TempDir(), "pktpipe-bench"), "where the generated capture is kept")
		sinkOpts = flag.String("kafka-options", "", "query options for pktpipe's kafka:// URL, e.g. batch_size=2000")
		cpuProf  = flag.String("cpuprofile", "", "write a CPU profile of the Kafka sink's first run (alone) to this file")
		child    = flag.String("sink-child", "", "internal: send the events of this JSON-lines file through a Kafka sink to -topic and print the timing")
		topic    = flag.String("topic", "", "internal: the -sink-child's topic")
		only     = flag.String("only", "kcat,kcat-bare,sink,pktpipe,file", "which to run: a comma-separated subset of kcat (with pktpipe's four headers), kcat-bare (without headers), sink (the Kafka sink alone), pktpipe (-r → kafka) and file (-r → file); the ratio needs kcat and sink")
		kcatX    = flag.String("kcat-options", "", "more librdkafka properties for kcat, comma-separated (e.g. compression.level=1)")
		nice     = flag.Int("nice", 0, "run this process, its children and the broker at this nice value (e.g. -10 on a shared machine; restored for the broker at the end)")
	)
	flag.Parse()
	if *nice != 0 {
		if err := kafkatest.Renice(os.Getpid(), *nice); err != nil {
			fmt.Fprintln(os.Stderr, "throughput: renice:", err)
			os.Exit(1)
		}
		if pid, err := kafkatest.BrokerPID(); err == nil {
			if err := kafkatest.Renice(pid, *nice); err != nil {
				fmt.Fprintln(os.Stderr, "throughput: renice the broker:", err)
				os.Exit(1)
			}
			defer kafkatest.Renice(pid, 0)
		}
	}
	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "throughput:", err)
			os.Exit(1)
		}
		profile = f
	}
	if *child != "" {
		if err := sinkChild(*child, *topic, *sinkOpts); err != nil {
			fmt.Fprintln(os.Stderr, "throughput:", err)
			exit = 1
		}
		return
	}
	sel := map[string]bool{}
	for _, w := range strings.Split(*only, ",") {
		sel[strings.TrimSpace(w)] = true
	}
	for _, p := range strings.Split(*kcatX, ",") {
		if p = strings.TrimSpace(p); p != "" {
			kcatArgs = append(kcatArgs, "-X", p)
		}
	}
	if err := run(sel, *packets, *capture, *runs, *workers, *minRatio, *minEv, *cache, *sinkOpts); err != nil {
		fmt.Fprintln(os.Stderr, "throughput:", err)
		exit = 1
	}
}

// kcatArgs are -kcat-options as kcat's -X arguments.
var kcatArgs []string

// kcatHeaders are the headers of a pktpipe message (sinks/kafka: the
// default schema_version, the commonest event type, the JSON format, an
// event_id of 16 hex digits), sent with every message of the kcat run.
var kcatHeaders = []string{"-H", "schema_version=1", "-H", "event_type=flow", "-H", "format=json", "-H", "event_id=0123456789abcdef"}

// profile, when set, receives a CPU profile of the sink's first run.
var profile *os.File

type result struct {
	wall, cpu time.Duration
	rssKB     int64
	messages  int64
	broker    time.Duration // the broker's CPU time meanwhile
	batches   int64         // the Kafka sink's: record batches acknowledged
}

func run(sel map[string]bool, packets int, capture string, runs, workers int, minRatio float64, minEvents int, cache, sinkOpts string) error {
	addr := kafkatest.Addr()
	unlock, err := kafkatest.Lock(addr, 10*time.Minute)
	if err != nil {
		return err
	}
	defer unlock()
	if err := kafkatest.Up(addr); err != nil {
		return err
	}
	if _, err := exec.LookPath("kcat"); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "pktpipe-throughput-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "pktpipe")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/pktpipe").CombinedOutput(); err != nil {
		return fmt.Errorf("go build (run from the repository root): %v\n%s", err, out)
	}
	if capture == "" {
		capture = filepath.Join(cache, fmt.Sprintf("synth-seed1-n%d-nobulk.pcap", packets))
		if err := generate(capture, packets); err != nil {
			return err
		}
	}

	// The events, once, with the file sink; kcat's input from them.
	events := filepath.Join(dir, "events.json")
	fileRun := []string{"-r", capture, "--workers", fmt.Sprint(workers), "--no-progress", "-o", "file:" + events}
	if _, err := timed(bin, fileRun...); err != nil {
		return err
	}
	kcatIn := filepath.Join(dir, "kcat.txt")
	n, err := keyed(events, kcatIn)
	if err != nil {
		return err
	}
	st, _ := os.Stat(events)
	fmt.Printf("capture %s: %d events, %.1f MB of JSON; broker %s, 3 partitions, zstd, acks=all; %d runs each\n",
		filepath.Base(capture), n, float64(st.Size())/1e6, addr, runs)
	if n < int64(minEvents) {
		return fmt.Errorf("%d events, fewer than -min-events %d", n, minEvents)
	}

	self, err := os.Executable()
	if err != nil {
		return err
	}
	var kc, kb, pp, fs, so []result
	for i := range runs {
		doSink := func() error {
			r, err := toTopic(addr, n, func(topic string) (result, error) {
				args := []string{"-sink-child", events, "-topic", topic, "-kafka-options", sinkOpts}
				if profile != nil && i == 0 {
					args = append(args, "-cpuprofile", profile.Name())
				}
				cmd := exec.Command(self, args...)
				cmd.Stderr = os.Stderr
				out, err := cmd.Output()
				if err != nil {
					return result{}, fmt.Errorf("sink child: %v", err)
				}
				var r struct{ WallNS, CPUNS, BrokerNS, Batches int64 }
				if err := json.Unmarshal(out, &r); err != nil {
					return result{}, fmt.Errorf("sink child: %v: %q", err, out)
				}
				return result{wall: time.Duration(r.WallNS), cpu: time.Duration(r.CPUNS), broker: time.Duration(r.BrokerNS), batches: r.Batches}, nil
			})
			so = append(so, r)
			return err
		}
		kcat := func(headers bool, rs *[]result) func() error {
			return func() error {
				r, err := toTopic(addr, n, func(topic string) (result, error) {
					args := append([]string{"-P", "-b", addr, "-t", topic, "-K", "\t", "-z", "zstd", "-X", "acks=all"}, kcatArgs...)
					if headers {
						args = append(args, kcatHeaders...)
					}
					return timed("kcat", append(args, "-l", kcatIn)...)
				})
				*rs = append(*rs, r)
				return err
			}
		}
		doKcat, doBare := kcat(true, &kc), kcat(false, &kb)
		doPktpipe := func() error {
			r, err := toTopic(addr, n, func(topic string) (result, error) {
				url := "kafka://" + addr + "/" + topic
				if sinkOpts != "" {
					url += "?" + sinkOpts
				}
				return timed(bin, "-r", capture, "--workers", fmt.Sprint(workers), "--no-progress", "-o", url)
			})
			pp = append(pp, r)
			return err
		}
		order := []func() error{doKcat, doSink, doBare, doPktpipe}
		if i%2 == 1 {
			order = []func() error{doPktpipe, doBare, doSink, doKcat}
		}
		names := []string{"kcat", "sink", "kcat-bare", "pktpipe"}
		if i%2 == 1 {
			slices.Reverse(names)
		}
		for j, f := range order {
			if !sel[names[j]] {
				continue
			}
			if err := f(); err != nil {
				return err
			}
		}
		if sel["file"] {
			r, err := timed(bin, append(fileRun[:len(fileRun)-1], "file:"+filepath.Join(dir, "again.json"))...)
			if err != nil {
				return err
			}
			fs = append(fs, r)
		}
		last := func(rs []result) string {
			if len(rs) <= i {
				return "-"
			}
			b := ""
			if rs[i].batches > 0 {
				b = fmt.Sprintf(", %d batches", rs[i].batches)
			}
			return fmt.Sprintf("%.2fs (CPU %.2fs, broker %.2fs%s)", rs[i].wall.Seconds(), rs[i].cpu.Seconds(), rs[i].broker.Seconds(), b)
		}
		fmt.Printf("run %d: kcat %s, kcat without headers %s, kafka sink alone %s, pktpipe→kafka %s, pktpipe→file %s (load %s)\n", i+1,
			last(kc), last(kb), last(so), last(pp), last(fs), loadavg())
	}

	fmt.Printf("\n| medians of %d | wall s | events/s | CPU s (user+sys) | broker CPU s | max RSS MiB | messages in topic |\n|---|---|---|---|---|---|---|\n", runs)
	row := func(name string, rs []result) float64 {
		if len(rs) == 0 {
			return 0
		}
		m := median(rs)
		eps := float64(n) / m.wall.Seconds()
		msgs := "-"
		if m.messages > 0 {
			msgs = fmt.Sprint(m.messages)
		}
		rss, broker := "-", "-"
		if m.rssKB > 0 {
			rss = fmt.Sprintf("%.0f", float64(m.rssKB)/1024)
		}
		if m.messages > 0 {
			broker = fmt.Sprintf("%.2f", m.broker.Seconds())
		}
		fmt.Printf("| %s | %.2f | %.0f | %.2f | %s | %s | %s |\n", name, m.wall.Seconds(), eps, m.cpu.Seconds(), broker, rss, msgs)
		return eps
	}
	k := row("kcat -P (JSON lines, -K community_id, pktpipe's four headers)", kc)
	b := row("kcat -P without headers (lighter messages than pktpipe's)", kb)
	a := row("pktpipe's Kafka sink alone (the same events)", so)
	p := row("pktpipe -r → kafka (analysis included)", pp)
	row("pktpipe -r → file (no Kafka)", fs)
	bare := ""
	if b > 0 {
		bare = fmt.Sprintf("; kafka sink / kcat without headers: %.2f×", a/b)
	}
	fmt.Printf("\nkafka sink / kcat: %.2f×; pktpipe -r → kafka / kcat: %.2f×%s (events/s, medians)\n", a/k, p/k, bare)
	if k == 0 || a == 0 {
		return nil // -only left one of them out
	}
	if minRatio > 0 && a/k < minRatio {
		return fmt.Errorf("the Kafka sink at %.2f× kcat, below %.2f×", a/k, minRatio)
	}
	return nil
}

// generate writes the bench generator's capture without bulk transfers.
func generate(path string, packets int) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := gen.Write(w, gen.Config{Seed: 1, Packets: packets, BulkShare: -1}, gen.Format{}); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// keyed writes kcat's input: "community_id<TAB>event" per line, or the
// event alone (a null key) when it has no community_id, as pktpipe keys
// them. It returns the number of events.
func keyed(events, out string) (int64, error) {
	in, err := os.Open(events)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	o, err := os.Create(out)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(o, 1<<20)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var n int64
	for sc.Scan() {
		var ev struct {
			CommunityID string `json:"community_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return 0, err
		}
		if ev.CommunityID != "" {
			w.WriteString(ev.CommunityID)
			w.WriteByte('\t')
		}
		w.Write(sc.Bytes())
		w.WriteByte('\n')
		n++
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	return n, o.Close()
}

// sinkChild is the Kafka sink's run in a process of its own: it reads
// the events, checks that they encode back to the file's size, and
// prints sinkAlone's figures as JSON. The events are a static heap the
// real process does not have: GOGC is set so that a collection starts
// after 64 MiB of allocation, as in a pktpipe whose live heap is the
// sink's default in-flight budget.
func sinkChild(events, topic, opts string) error {
	evs, err := readEvents(events)
	if err != nil {
		return err
	}
	st, err := os.Stat(events)
	if err != nil {
		return err
	}
	// The replayed events encode to what pktpipe wrote (key order inside
	// objects and float digits aside): the sink gets the same bytes' worth.
	var size int64
	enc := encode.NewJSON()
	var buf []byte
	var r replayed
	var ids event.IDStamper
	for i := range evs.evs {
		evs.fill(&r, i)
		ids.Stamp(&r)
		buf = append(enc.Append(buf[:0], &r), '\n')
		size += int64(len(buf))
	}
	if d := float64(size-st.Size()) / float64(st.Size()); d > 0.001 || d < -0.001 {
		return fmt.Errorf("replayed events encode to %d bytes, pktpipe wrote %d", size, st.Size())
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	debug.SetGCPercent(max(1, int(64<<20*100/max(ms.HeapAlloc, 1))))
	addr := kafkatest.Addr()
	res, err := sinkAlone(addr, topic, opts, evs)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(struct{ WallNS, CPUNS, BrokerNS, Batches int64 }{int64(res.wall), int64(res.cpu), int64(res.broker), res.batches})
}

// sinkAlone sends evs through a Kafka sink made as the CLI makes it and
// times it from the first Write until Close has every ack; CPU is the
// process's over that time (it does nothing else meanwhile).
func sinkAlone(addr, topic, opts string, evs *store) (result, error) {
	url := "kafka://" + addr + "/" + topic
	if opts != "" {
		url += "?" + opts
	}
	cfg, err := kafka.ParseURL(url)
	if err != nil {
		return result{}, err
	}
	reg := stats.NewRegistry()
	cfg.Stats, cfg.Log = reg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg.SpillPath = filepath.Join(os.TempDir(), fmt.Sprintf("pktpipe-throughput-spill-%d.jsonl", os.Getpid()))
	if profile != nil {
		pprof.StartCPUProfile(profile)
		defer func() {
			pprof.StopCPUProfile()
			profile.Close()
			profile = nil
		}()
	}
	var ru0, ru1 syscall.Rusage
	b0 := brokerCPU()
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	start := time.Now()
	s, err := kafka.New(cfg)
	if err != nil {
		return result{}, err
	}
	// Batches as the pipeline hands them over: new events (stamped by
	// an emitter) in a slice the sink must not keep.
	var ids event.IDStamper
	rs := make([]replayed, event.MaxBatchEvents)
	batch := make([]event.Event, event.MaxBatchEvents)
	n := len(evs.evs)
	for i := 0; i < n; i += event.MaxBatchEvents {
		b := batch[:min(event.MaxBatchEvents, n-i)]
		for j := range b {
			evs.fill(&rs[j], i+j)
			ids.Stamp(&rs[j])
			b[j] = &rs[j]
		}
		if err := s.Write(b); err != nil {
			return result{}, err
		}
	}
	if err := s.Close(); err != nil {
		return result{}, err
	}
	wall := time.Since(start)
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	broker := brokerCPU() - b0
	cpu := time.Duration(ru1.Utime.Nano() - ru0.Utime.Nano() + ru1.Stime.Nano() - ru0.Stime.Nano())
	var delivered, batches float64
	for _, x := range reg.Snapshot() {
		switch x.Name {
		case "pktpipe_kafka_delivered_total":
			delivered = x.Value
		case "pktpipe_kafka_batches_total":
			batches = x.Value
		}
	}
	if int(delivered) != n {
		return result{}, fmt.Errorf("the sink delivered %.0f of %d events", delivered, n)
	}
	return result{wall: wall, cpu: cpu, broker: broker, batches: int64(batches)}, nil
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// timed runs a command and returns its wall time, CPU time and peak RSS.
// The peak is the child's VmHWM, read every 10 ms until it exits: its
// rusage's maxrss counts this process's RSS at the fork too.
func timed(name string, args ...string) (result, error) {
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var hwm int64
	var err error
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case err = <-done:
			break wait
		case <-tick.C:
			hwm = max(hwm, vmHWM(cmd.Process.Pid))
		}
	}
	wall := time.Since(start)
	if err != nil {
		return result{}, fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return result{wall: wall, cpu: cpu, rssKB: hwm}, nil
}

// vmHWM is a process's peak RSS in KiB (0 once it is gone).
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// toTopic gives send a fresh topic, then checks that its partitions hold
// at least want messages (more: duplicates from retries) and deletes it.
func toTopic(addr string, want int64, send func(topic string) (result, error)) (result, error) {
	topic := fmt.Sprintf("pktpipe-throughput-%d", time.Now().UnixNano())
	c := &kafkago.Client{Addr: kafkago.TCP(addr), Timeout: 30 * time.Second}
	ctx := context.Background()
	res, err := c.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{
		{Topic: topic, NumPartitions: 3, ReplicationFactor: 1},
	}})
	if err == nil {
		err = res.Errors[topic]
	}
	if err != nil {
		return result{}, fmt.Errorf("create topic %s: %w", topic, err)
	}
	defer c.DeleteTopics(ctx, &kafkago.DeleteTopicsRequest{Topics: []string{topic}})
	// The new topic's leaders must be known before the clock starts.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if n, err := endOffsets(c, topic); err == nil && n == 0 {
			break
		} else if time.Now().After(deadline) {
			return result{}, fmt.Errorf("topic %s not ready: %v", topic, err)
		}
	}
	b0 := brokerCPU()
	r, err := send(topic)
	if err != nil {
		return r, err
	}
	if r.broker == 0 {
		// (The sink child measures the broker over its own timed part,
		// without the seconds it spends reading the events first.)
		r.broker = brokerCPU() - b0
	}
	if r.messages, err = endOffsets(c, topic); err != nil {
		return r, err
	}
	if r.messages < want {
		return r, fmt.Errorf("topic %s holds %d messages, want %d", topic, r.messages, want)
	}
	return r, nil
}

// brokerCPU is the broker's user+system time so far (0 if unknown).
func brokerCPU() time.Duration {
	pid, err := kafkatest.BrokerPID()
	if err != nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command's closing parenthesis; utime and
	// stime are the 14th and 15th of the line, in clock ticks (100/s).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond
}

// endOffsets sums the topic's end offsets over its 3 partitions.
func endOffsets(c *kafkago.Client, topic string) (int64, error) {
	req := &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{
		topic: {kafkago.LastOffsetOf(0), kafkago.LastOffsetOf(1), kafkago.LastOffsetOf(2)},
	}}
	res, err := c.ListOffsets(context.Background(), req)
	if err != nil {
		return 0, err
	}
	parts := res.Topics[topic]
	if len(parts) != 3 {
		return 0, fmt.Errorf("%d partitions answered", len(parts))
	}
	var n int64
	for _, p := range parts {
		if p.Error != nil {
			return 0, p.Error
		}
		n += p.LastOffset
	}
	return n, nil
}

// median is the run with the median wall time (CPU and RSS are its
// medians too, taken separately).
func median(rs []result) result {
	if len(rs) == 0 {
		return result{}
	}
	med := func(f func(r result) int64) int64 {
		v := make([]int64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return result{
		wall:     time.Duration(med(func(r result) int64 { return int64(r.wall) })),
		cpu:      time.Duration(med(func(r result) int64 { return int64(r.cpu) })),
		rssKB:    med(func(r result) int64 { return r.rssKB }),
		messages: med(func(r result) int64 { return r.messages }),
		broker:   time.Duration(med(func(r result) int64 { return int64(r.broker) })),
	}
}
