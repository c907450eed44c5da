package main

import (
	"errors"
	"flag"
	"fmt"
	"github.com/pktpipe/pktpipe/internal/app"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

var errHelp = errors.New("help requested")

// options is everything the command line can say.
type options struct {
	reads       []string // -r, in order (globs expanded later)
	iface       string   // -i (live capture)
	filter      string   // trailing arguments, tcpdump style
	replaySpeed float64
	noProgress  bool

	output         string // -o
	format         string
	compress       string
	rotateBytes    int64
	rotateInterval time.Duration

	kafkaTopic string
	kafkaDrain time.Duration
	kafkaSpill string

	workers      int
	flowCap      int
	cidSeed      uint
	noCommunity  bool
	timeoutTCP   time.Duration
	timeoutUDP   time.Duration
	timeoutICMP  time.Duration
	timeoutNew   time.Duration
	batchPackets int
	analyzers    string

	logLevel slog.Level

	live liveOptions // live capture flags (live.go)
	ops  opsOptions  // metrics, status line, config (ops.go)
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// byteSize parses "100M", "1G", "65536".
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }
func (b *byteSize) Set(v string) error {
	mult := int64(1)
	s := strings.ToUpper(strings.TrimSpace(v))
	s = strings.TrimSuffix(s, "B")
	s = strings.TrimSuffix(s, "I")
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("not a size: %q (use e.g. 65536, 100M, 1G)", v)
	}
	*b = byteSize(n * mult)
	return nil
}

const usageHead = `pktpipe — streaming packet analysis: flows, TLS fingerprints, ICMP feedback, RTT.

Usage:
  pktpipe [options] -r FILE [-r FILE ...] [filter expression]
  pktpipe [options] -i IFACE [filter expression]
  pktpipe --config FILE [options]
  pktpipe config check FILE
  pktpipe version

Events go to the sink (-o) as JSON lines (default) or msgpack; logs go to
stderr. The schema is in docs/schema.md. The exit code is 0 when everything
read was processed and written, 1 on an error (bad input, failed sink),
2 on a usage error, and 3 when the run finished but something was dropped.

Signals: SIGINT or SIGTERM stops reading and drains everything read to the
sink; a second one exits at once (what was in flight is logged as lost).
SIGHUP completes the current output file and starts a new one (logrotate).

Examples:
  pktpipe -r capture.pcapng.zst
  pktpipe -r 'traces/*.pcap' -o file:events.json --compress zstd --rotate-size 256M
  zcat x.pcap.gz | pktpipe -r - --format msgpack -o file:events.msgpack

Options:
`

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("pktpipe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var reads multiFlag
	var rot byteSize
	var level string
	fs.Var(&reads, "r", "read packets from `FILE` (pcap or pcapng, gzip/zstd detected by content; - = stdin; globs allowed); repeatable, read in order")
	fs.StringVar(&o.iface, "i", "", "capture live on `IFACE` (AF_PACKET)")
	fs.Float64Var(&o.replaySpeed, "replay-speed", 0, "pace file input at `N` times the capture's own timing (0 = as fast as possible)")
	fs.BoolVar(&o.noProgress, "no-progress", false, "no progress bar on stderr (it is shown only when stderr is a terminal)")
	fs.StringVar(&o.output, "o", "-", "event sink: `SINK` is - (stdout), file:PATH, or kafka://HOST:PORT[,HOST:PORT]/TOPIC[?compression=zstd&...] (options: sinks/kafka ParseURL)")
	fs.StringVar(&o.format, "format", "json", "event encoding: json (one object per line) or msgpack")
	fs.StringVar(&o.compress, "compress", "none", "file sink compression: none, gzip or zstd (adds .gz/.zst to the name)")
	fs.Var(&rot, "rotate-size", "file sink: start a new file after `SIZE` bytes (e.g. 256M; 0 = never)")
	fs.DurationVar(&o.rotateInterval, "rotate-interval", 0, "file sink: start a new file every `DURATION` (e.g. 1h; 0 = never)")
	fs.StringVar(&o.kafkaTopic, "kafka-topic-template", "", "Kafka sink: topic, or a template such as 'pktpipe.{event_type}' (overrides the URL's topic)")
	fs.DurationVar(&o.kafkaDrain, "drain-timeout", 0, "Kafka sink: how long to wait at exit for the broker to acknowledge what was sent; the rest goes to the spill file (0 = 10s)")
	fs.StringVar(&o.kafkaSpill, "kafka-spill", "", "Kafka sink: spill file for events not delivered at exit (default pktpipe-kafka-spill-TIME-PID.jsonl)")
	fs.IntVar(&o.workers, "workers", runtime.NumCPU(), "flow workers (each owns the flows that hash to it)")
	fs.IntVar(&o.flowCap, "flow-cap", 1<<20, "most flows tracked at once (all workers together); the least recently seen is ended first")
	fs.UintVar(&o.cidSeed, "community-id-seed", 0, "Community ID seed")
	fs.BoolVar(&o.noCommunity, "no-community-id", false, "leave community_id out of events")
	fs.DurationVar(&o.timeoutTCP, "flow-timeout-tcp", 0, "idle timeout of established TCP flows (0 = the stage's default)")
	fs.DurationVar(&o.timeoutUDP, "flow-timeout-udp", 0, "idle timeout of UDP flows (0 = default)")
	fs.DurationVar(&o.timeoutICMP, "flow-timeout-icmp", 0, "idle timeout of ICMP flows (0 = default)")
	fs.DurationVar(&o.timeoutNew, "flow-timeout-new", 0, "idle timeout of flows seen in one direction only (0 = default)")
	fs.StringVar(&o.analyzers, "analyzers", "all", "per-flow analyzers to run, comma-separated: all, or some of "+strings.Join(app.AnalyzerNames, ","))
	fs.IntVar(&o.batchPackets, "batch-packets", 0, "packets per batch between stages (0 = 256)")
	fs.StringVar(&level, "log-level", "info", "log level on stderr: debug, info, warn, error")
	o.live.register(fs)
	o.ops.register(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, err
	}
	if err := o.ops.applyConfig(fs); err != nil { // --config FILE (ops.go)
		return nil, err
	}
	o.reads = reads
	o.rotateBytes = int64(rot)
	o.filter = strings.Join(fs.Args(), " ")
	if o.filter == "" {
		o.filter = o.ops.fileFilter
	}
	if err := o.logLevel.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level: %v", err)
	}
	switch {
	case len(o.reads) == 0 && o.iface == "":
		return nil, errors.New("nothing to read: give -r FILE or -i IFACE (see --help)")
	case len(o.reads) > 0 && o.iface != "":
		return nil, errors.New("-r and -i cannot be used together")
	case o.workers < 1:
		return nil, errors.New("--workers must be at least 1")
	case o.flowCap < o.workers:
		return nil, errors.New("--flow-cap must be at least the number of workers")
	case o.cidSeed > 0xffff:
		return nil, errors.New("--community-id-seed must fit in 16 bits")
	}
	if err := app.CheckAnalyzers(analyzerList(o.analyzers)); err != nil {
		return nil, fmt.Errorf("--analyzers: %v", err)
	}
	if err := o.live.validate(o); err != nil {
		return nil, err
	}
	if err := o.ops.validate(o); err != nil {
		return nil, err
	}
	if o.format != "json" && o.format != "msgpack" {
		return nil, fmt.Errorf("--format %q: use json or msgpack", o.format)
	}
	if o.compress != "none" && o.compress != "gzip" && o.compress != "zstd" {
		return nil, fmt.Errorf("--compress %q: use none, gzip or zstd", o.compress)
	}
	return o, nil
}
