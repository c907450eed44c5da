// Package app assembles a pktpipe pipeline from a Config: sources, decoder,
// per-worker flow processors with their analyzers, and the sink. The CLI
// and the benchmarks build pipelines through it, so both measure and run
// the same thing.
package app

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sinks/encode"
	"github.com/pktpipe/pktpipe/sinks/file"
	"github.com/pktpipe/pktpipe/sinks/kafka"
	"github.com/pktpipe/pktpipe/sinks/pcapng"
	"github.com/pktpipe/pktpipe/sinks/stdout"
	"github.com/pktpipe/pktpipe/sources/pcapfile"
	"github.com/pktpipe/pktpipe/stages/decode"
	"github.com/pktpipe/pktpipe/stages/dns"
	"github.com/pktpipe/pktpipe/stages/flow"
	"github.com/pktpipe/pktpipe/stages/icmpfb"
	"github.com/pktpipe/pktpipe/stages/quic"
	"github.com/pktpipe/pktpipe/stages/rtt"
	"github.com/pktpipe/pktpipe/stages/tcpstate"
	"github.com/pktpipe/pktpipe/stages/tlsfp"
)

// Config is what a pipeline is built from (the CLI's flags, or a test's).
type Config struct {
	// Input: Sources, when set, are used as they are (live capture);
	// otherwise capture files (globs allowed, "-" = Stdin).
	Sources     []pipeline.Source
	Files       []string
	Stdin       io.Reader
	ReplaySpeed float64
	Progress    io.Writer // nil: no progress bar

	// NewFilter, when set, makes each dispatcher's filter (a tcpdump-style
	// expression run in user space, see stages/bpffilter).
	NewFilter func() pipeline.Filter
	// WritePcap, when set, is a pcapng file that receives every packet
	// that passed the filter (-w), with one interface block per link type
	// and interface; PcapIfName names interfaces in it (optional).
	WritePcap  string
	PcapIfName func(ifIndex int32) string

	// Output: "-" (Stdout), "file:PATH". Sink, when set, is used instead
	// (tests: sinks/memsink).
	Sink           pipeline.Sink
	Output         string
	Stdout         io.Writer
	Format         string // json | msgpack
	Compress       string // none | gzip | zstd (file sink)
	RotateBytes    int64
	RotateInterval time.Duration
	// Kafka sink overrides of what the kafka:// URL says.
	KafkaTopic        string // topic or template with {event_type}
	KafkaDrainTimeout time.Duration
	KafkaSpill        string

	// Processing.
	Workers         int
	BatchPackets    int
	FlowCap         int // all workers together
	Timeouts        flow.Timeouts
	CommunityIDSeed uint16
	NoCommunityID   bool
	// Analyzers names the per-flow analyzers to run (AnalyzerNames); nil
	// runs them all.
	Analyzers []string

	Stats *stats.Registry
	Log   *slog.Logger
}

// Pipeline is a built pipeline and what it writes to.
type Pipeline struct {
	Engine *pipeline.Engine
	Stats  *stats.Registry
	// FileSink is set when the sink is a file (for SIGHUP reopen).
	FileSink *file.Sink
}

// Build checks cfg and assembles the pipeline.
func Build(cfg Config) (*Pipeline, error) {
	if cfg.Stats == nil {
		cfg.Stats = stats.NewRegistry()
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if err := CheckAnalyzers(cfg.Analyzers); err != nil {
		return nil, err
	}
	sources := cfg.Sources
	if len(sources) == 0 {
		files, err := pcapfile.Expand(cfg.Files)
		if err != nil {
			return nil, err
		}
		src, err := pcapfile.New(pcapfile.Config{
			Files: files, ReplaySpeed: cfg.ReplaySpeed, Progress: cfg.Progress,
			Stdin: cfg.Stdin, Stats: cfg.Stats,
		})
		if err != nil {
			return nil, err
		}
		sources = []pipeline.Source{src}
	}
	p := &Pipeline{Stats: cfg.Stats}
	sink, err := p.buildSink(cfg)
	if err != nil {
		return nil, err
	}
	newFilter := cfg.NewFilter
	if cfg.WritePcap != "" {
		w, err := pcapng.Create(cfg.WritePcap, pcapng.Config{IfName: cfg.PcapIfName, Stats: cfg.Stats})
		if err != nil {
			_ = sink.Close()
			return nil, err
		}
		// The sink closes after every dispatcher is done: the capture
		// file is completed then, before the event sink.
		sink = &tapSink{Sink: sink, w: w}
		inner := newFilter
		newFilter = func() pipeline.Filter {
			tf := &tapFilter{tap: w.NewTap()}
			if inner != nil {
				tf.f = inner()
			}
			return tf
		}
	}
	perWorker := 0
	if cfg.FlowCap > 0 {
		perWorker = max(1, cfg.FlowCap/cfg.Workers)
	}
	eng, err := pipeline.New(pipeline.Config{
		Workers: cfg.Workers, BatchPackets: cfg.BatchPackets, Stats: cfg.Stats, Log: cfg.Log,
	}, pipeline.Parts{
		Sources:    sources,
		NewDecoder: func() pipeline.Decoder { return decode.New() },
		NewFilter:  newFilter,
		NewProcessor: func(i int) pipeline.Processor {
			return flow.NewProcessor(flow.Config{
				MaxFlows: perWorker, Workers: cfg.Workers, Worker: i, Timeouts: cfg.Timeouts,
				CommunityIDSeed: cfg.CommunityIDSeed, NoCommunityID: cfg.NoCommunityID, Stats: cfg.Stats,
			}, Analyzers(cfg)...)
		},
		Sink: sink,
	})
	if err != nil {
		_ = sink.Close()
		return nil, err
	}
	p.Engine = eng
	return p, nil
}

// tapFilter writes what its filter passes to the -w capture.
type tapFilter struct {
	f   pipeline.Filter // nil: everything passes
	tap *pcapng.Tap
}

func (t *tapFilter) Match(p *packet.Packet) bool {
	if t.f != nil && !t.f.Match(p) {
		return false
	}
	t.tap.Write(p)
	return true
}

// tapSink closes the -w capture file before the event sink.
type tapSink struct {
	pipeline.Sink
	w *pcapng.Writer
}

func (s *tapSink) Close() error {
	werr := s.w.Close()
	return errors.Join(werr, s.Sink.Close())
}

// AnalyzerNames are the per-flow analyzers, in the order they run.
var AnalyzerNames = []string{"tls", "quic", "icmp_feedback", "tcpstate", "dns", "rtt"}

// Analyzers returns a fresh set of per-flow analyzers for one worker: all
// of them, or those cfg.Analyzers names.
func Analyzers(cfg Config) []flow.Analyzer {
	on := func(name string) bool { return cfg.Analyzers == nil || slices.Contains(cfg.Analyzers, name) }
	var as []flow.Analyzer
	if on("tls") {
		as = append(as, tlsfp.NewAnalyzer())
	}
	if on("quic") {
		as = append(as, quic.New(quic.Config{Stats: cfg.Stats}))
	}
	if on("icmp_feedback") {
		as = append(as, icmpfb.New(icmpfb.Config{CommunityIDSeed: cfg.CommunityIDSeed, NoCommunityID: cfg.NoCommunityID, Stats: cfg.Stats}))
	}
	if on("tcpstate") {
		as = append(as, tcpstate.New())
	}
	// DNS runs before RTT: it reports into rtt's flow summary, so its End
	// must run first.
	var rttA *rtt.Analyzer
	if on("rtt") {
		rttA = rtt.New(rtt.Config{Stats: cfg.Stats})
	}
	if on("dns") {
		as = append(as, dns.New(rttA, cfg.Stats))
	}
	if rttA != nil {
		as = append(as, rttA)
	}
	return as
}

// CheckAnalyzers reports an unknown analyzer name.
func CheckAnalyzers(names []string) error {
	for _, n := range names {
		if !slices.Contains(AnalyzerNames, n) {
			return fmt.Errorf("unknown analyzer %q (choices: %s)", n, strings.Join(AnalyzerNames, ", "))
		}
	}
	return nil
}

func (p *Pipeline) buildSink(cfg Config) (pipeline.Sink, error) {
	if cfg.Sink != nil {
		return cfg.Sink, nil
	}
	format := cfg.Format
	if format == "" {
		format = encode.FormatJSON
	}
	enc, err := encode.New(format)
	if err != nil {
		return nil, err
	}
	switch out := cfg.Output; {
	case out == "" || out == "-":
		w := cfg.Stdout
		if w == nil {
			w = os.Stdout
		}
		return stdout.New(w, enc), nil
	case strings.HasPrefix(out, "file:"):
		compress := cfg.Compress
		if compress == "none" {
			compress = ""
		}
		fs, err := file.New(file.Config{
			Path: strings.TrimPrefix(out, "file:"), Format: enc, Compress: compress,
			RotateBytes: cfg.RotateBytes, RotateEvery: cfg.RotateInterval,
		})
		if err != nil {
			return nil, err
		}
		p.FileSink = fs
		return fs, nil
	case strings.HasPrefix(out, "kafka://"):
		kc, err := kafka.ParseURL(out)
		if err != nil {
			return nil, err
		}
		if kc.Encoder == nil && !strings.Contains(out, "format=") {
			kc.Format = format
		}
		if cfg.KafkaTopic != "" {
			kc.Topic = cfg.KafkaTopic
		}
		if cfg.KafkaDrainTimeout > 0 {
			kc.DrainTimeout = cfg.KafkaDrainTimeout
		}
		if cfg.KafkaSpill != "" {
			kc.SpillPath = cfg.KafkaSpill
		}
		kc.Stats, kc.Log = cfg.Stats, cfg.Log
		return kafka.New(kc)
	default:
		return nil, fmt.Errorf("-o %q: use - (stdout), file:PATH or kafka://HOST:PORT/TOPIC", out)
	}
}
