package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pktpipe/pktpipe/internal/app"
	"github.com/pktpipe/pktpipe/internal/config"
	"github.com/pktpipe/pktpipe/internal/metrics"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

// defaultLiveStatusInterval is the status-line period of live capture
// (daemon mode) when --status-interval is not given.
const defaultLiveStatusInterval = 10 * time.Second

// opsOptions are the flags of running pktpipe as a service: metrics
// endpoint, status line, config file.
type opsOptions struct {
	configPath     string
	metricsAddr    string
	metricsRemote  bool
	statusInterval time.Duration
	quiet          bool

	// Filled by applyConfig.
	fs         *flag.FlagSet
	fileFilter string
	fileLines  map[string]int // flag name -> line in the config file
	cliSet     map[string]bool

	// The running pipeline, for the second signal's report.
	running atomic.Pointer[app.Pipeline]
}

func (p *opsOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&p.configPath, "config", "", "read settings from the YAML `FILE` (keys are flag names with _ for -, or read/interface/output/filter); flags on the command line win. Check one with: pktpipe config check FILE")
	fs.StringVar(&p.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics and /healthz on `HOST:PORT` (e.g. 127.0.0.1:9477; off when empty; loopback only unless --metrics-allow-remote)")
	fs.BoolVar(&p.metricsRemote, "metrics-allow-remote", false, "let --metrics-addr listen on a non-loopback address (the endpoint has no authentication)")
	fs.DurationVar(&p.statusInterval, "status-interval", 0, "log a status line (rates, drops, queue fill, sink lag) every `DURATION` (0 = every 10s with -i, never with -r)")
	fs.BoolVar(&p.quiet, "quiet", false, "no status line and no progress bar (the summary at exit is still logged)")
}

// configSchema maps config-file keys to this command's flags.
var configSchema = &config.Schema{
	Aliases: map[string]string{"read": "r", "interface": "i", "output": "o", "write": "w"},
	Extras:  []string{"filter"},
	Hidden:  []string{"config"},
	Repeatable: func(f *flag.Flag) bool {
		_, ok := f.Value.(*registry.Strings)
		return ok
	},
}

// applyConfig loads --config, if given, into fs: every key whose flag was
// not set on the command line. Input is one setting: -r or -i on the
// command line replaces both read and interface of the file. Called by
// parseFlags right after fs.Parse.
func (p *opsOptions) applyConfig(fs *flag.FlagSet) error {
	p.fs = fs
	p.cliSet = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { p.cliSet[f.Name] = true })
	if p.configPath == "" {
		return nil
	}
	f, err := config.Load(p.configPath)
	if err != nil {
		return err
	}
	inputOnCLI := p.cliSet["r"] || p.cliSet["i"]
	extras, err := configSchema.Apply(f, fs, func(name string) bool {
		return p.cliSet[name] || ((name == "r" || name == "i") && inputOnCLI)
	})
	if err != nil {
		return err
	}
	p.fileLines = map[string]int{}
	for _, e := range f.Entries {
		if e.Key == "filter" {
			p.fileLines["filter"] = e.Line
		} else if n, ok := configSchema.Aliases[e.Key]; ok {
			p.fileLines[n] = e.Line
		} else {
			p.fileLines[strings.ReplaceAll(e.Key, "_", "-")] = e.Line
		}
	}
	if len(fs.Args()) == 0 {
		p.fileFilter = strings.Join(extras["filter"], " ")
	}
	return nil
}

func (p *opsOptions) validate(o *options) error {
	if p.metricsAddr != "" {
		if err := metrics.CheckAddr(p.metricsAddr, p.metricsRemote); err != nil {
			return err
		}
	}
	if p.statusInterval < 0 {
		return errors.New("--status-interval must not be negative")
	}
	if p.quiet {
		o.noProgress = true
	}
	return nil
}

// isSet reports whether a flag was given on the command line or in the
// config file.
func (p *opsOptions) isSet(name string) bool {
	return p.cliSet[name] || p.fileLines[name] > 0
}

// locate prefixes a check's error with the config file's line when the
// setting it names came from the file ("-o nope:x", "--workers 0").
func (p *opsOptions) locate(err error) error {
	if err == nil || p.configPath == "" {
		return err
	}
	msg := err.Error()
	best, bestAt := "", len(msg)
	for name, line := range p.fileLines {
		if line == 0 || p.cliSet[name] {
			continue
		}
		for _, form := range []string{"--" + name + " ", "--" + name + ":", "-" + name + " ", "-" + name + ":"} {
			if i := strings.Index(msg, form); i >= 0 && i < bestAt {
				best, bestAt = name, i
			}
		}
	}
	if best == "" {
		return err
	}
	return fmt.Errorf("%s:%d: %w", p.configPath, p.fileLines[best], err)
}

// redactOutputs hides passwords in -o targets (sinks that have any).
func redactOutputs(targets []string) []string {
	out := make([]string, len(targets))
	for i, t := range targets {
		out[i] = t
		if s, ok := pipeline.SinkFor(t); ok && s.Redact != nil {
			out[i] = s.Redact(t)
		}
	}
	return out
}

// statusEvery is the status-line period, 0 for none.
func (p *opsOptions) statusEvery(o *options) time.Duration {
	switch {
	case p.quiet:
		return 0
	case p.statusInterval > 0:
		return p.statusInterval
	case o.app.Interface != "":
		return defaultLiveStatusInterval
	}
	return 0
}

// opsTestHooks let the tests scrape the metrics endpoint at known points:
// once it listens, and after the run, before it stops (counters final).
var opsTestHooks struct {
	started, stopping func(addr string)
}

// start begins what runs beside the pipeline (metrics server, status
// line); the returned function stops it after the run.
func (p *opsOptions) start(ctx context.Context, o *options, pl *app.Pipeline, log *slog.Logger) (func(), error) {
	p.running.Store(pl)
	var srv *metrics.Server
	if p.metricsAddr != "" {
		var err error
		srv, err = metrics.Start(metrics.Config{
			Addr: p.metricsAddr, AllowRemote: p.metricsRemote,
			Stats: pl.Stats, Queues: pl.Engine, Log: log,
		})
		if err != nil {
			p.running.Store(nil)
			return nil, err
		}
		srv.SetRunning(true)
		log.Info("metrics", "url", "http://"+srv.Addr()+"/metrics", "health", "http://"+srv.Addr()+"/healthz")
		if opsTestHooks.started != nil {
			opsTestHooks.started(srv.Addr())
		}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	if every := p.statusEvery(o); every > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(every)
			defer t.Stop()
			prev := takeStatus(pl)
			for {
				select {
				case <-quit:
					return
				case <-t.C:
					cur := takeStatus(pl)
					log.Info("status", statusAttrs(prev, cur)...)
					prev = cur
				}
			}
		}()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			wg.Wait()
			p.running.Store(nil)
			if srv == nil {
				return
			}
			if opsTestHooks.stopping != nil {
				opsTestHooks.stopping(srv.Addr())
			}
			srv.SetRunning(false)
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Close(sctx); err != nil {
				log.Warn("metrics server did not stop cleanly", "err", err)
			}
		})
	}, nil
}

// status is what one status line is computed from.
type status struct {
	at                 time.Time
	packets, events    float64 // read by sources; accepted by the sink
	drops              float64 // every loss counter
	flows              float64
	workUsed, workCap  int
	eventUsed, eventCp int
	sinkInflight       float64 // events handed to an async sink, not yet acknowledged
}

func takeStatus(pl *app.Pipeline) status {
	s := status{at: time.Now()}
	for _, smp := range pl.Stats.Snapshot() {
		switch {
		case smp.Name == "pktpipe_source_packets_total":
			s.packets += smp.Value
		case smp.Name == "pktpipe_sink_events_total":
			s.events += smp.Value
		case smp.Name == "pktpipe_flow_table_flows":
			s.flows += smp.Value
		case smp.Name == "pktpipe_kafka_inflight_events":
			s.sinkInflight += smp.Value
		}
		if smp.Loss {
			s.drops += smp.Value
		}
	}
	names, used, capacity := pl.Engine.QueueFill()
	for i, n := range names {
		switch {
		case n == "events":
			s.eventUsed, s.eventCp = used[i], capacity[i]
		case strings.HasPrefix(n, "worker"):
			s.workUsed += used[i]
			s.workCap += capacity[i]
		}
	}
	return s
}

func statusAttrs(prev, cur status) []any {
	dt := cur.at.Sub(prev.at).Seconds()
	rate := func(a, b float64) string {
		if dt <= 0 {
			return "0"
		}
		return strconv.FormatFloat((b-a)/dt, 'f', 0, 64)
	}
	return []any{
		"pkts_per_s", rate(prev.packets, cur.packets),
		"events_per_s", rate(prev.events, cur.events),
		"drops", int64(cur.drops),
		"new_drops", int64(cur.drops - prev.drops),
		"flows", int64(cur.flows),
		"queue_fill", fmt.Sprintf("%d/%d", cur.workUsed, cur.workCap),
		"sink_lag", fmt.Sprintf("%d/%d", cur.eventUsed, cur.eventCp),
		"sink_inflight", int64(cur.sinkInflight),
	}
}

// inFlight describes, for the second signal, what exiting now loses.
func (p *opsOptions) inFlight() []any {
	pl := p.running.Load()
	if pl == nil {
		return nil
	}
	var dispatched, worked, flows float64
	for _, s := range pl.Stats.Snapshot() {
		switch s.Name {
		case "pktpipe_dispatch_packets_total":
			dispatched += s.Value
		case "pktpipe_worker_packets_total":
			worked += s.Value
		case "pktpipe_flow_table_flows":
			flows += s.Value
		}
	}
	var srcBatches, eventBatches int
	names, used, _ := pl.Engine.QueueFill()
	for i, n := range names {
		switch {
		case n == "events":
			eventBatches = used[i]
		case strings.HasPrefix(n, "source"):
			srcBatches += used[i]
		}
	}
	attrs := []any{
		"packets_queued_for_workers", int64(dispatched - worked),
		"source_batches_queued", srcBatches,
		"open_flows_not_emitted", int64(flows),
		"event_batches_not_written", eventBatches,
	}
	return append(attrs, pl.Abandon()...)
}

// summary logs the run as one line; the loss lines follow (execute).
func (p *opsOptions) summary(log *slog.Logger, res pipeline.Result, elapsed time.Duration, reg *stats.Registry) {
	var skipped, icmpErrs, malformed, evicted, filtered, lost float64
	byType := map[string]float64{}
	for _, s := range reg.Snapshot() {
		switch s.Name {
		case "pktpipe_dispatch_skipped_total":
			skipped += s.Value
		case "pktpipe_flow_icmp_errors_total":
			icmpErrs += s.Value
		case "pktpipe_decode_malformed_total":
			malformed += s.Value
		case "pktpipe_flow_evicted_total":
			evicted += s.Value
		case "pktpipe_filter_rejected_total":
			filtered += s.Value
		case "pktpipe_events_total":
			if len(s.Labels) == 2 {
				byType[s.Labels[1]] += s.Value
			}
		}
		if s.Loss {
			lost += s.Value
		}
	}
	types := make([]string, 0, len(byType))
	for t := range byType {
		types = append(types, t)
	}
	sort.Strings(types)
	var bt strings.Builder
	for i, t := range types {
		if i > 0 {
			bt.WriteByte(' ')
		}
		fmt.Fprintf(&bt, "%s=%.0f", t, byType[t])
	}
	secs := elapsed.Seconds()
	pps := 0.0
	if secs > 0 {
		pps = float64(res.Packets) / secs
	}
	log.Info("done",
		"packets", res.Packets, "events", res.Events,
		"seconds", fmt.Sprintf("%.3f", secs), "pkts_per_s", fmt.Sprintf("%.0f", pps),
		"by_type", bt.String(),
		"skipped", int64(skipped), "icmp_errors", int64(icmpErrs), "malformed", int64(malformed),
		"filtered", int64(filtered), "evicted", int64(evicted), "lost", int64(lost))
}

// runConfigCommand is "pktpipe config check FILE": it reads FILE as the
// command would (with every check of the flags), and prints the effective
// configuration with where each value came from.
func runConfigCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 || args[0] != "check" {
		fmt.Fprintln(stderr, "usage: pktpipe config check FILE")
		return exitUsage
	}
	path := args[1]
	// The same parse and checks as a run: every component's options and
	// every -o target are built exactly as the run builds them.
	o, err := parseFlags([]string{"--config", path}, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "pktpipe: %v\n", err)
		return exitUsage
	}
	out, err := o.ops.effective(o)
	if err != nil {
		fmt.Fprintf(stderr, "pktpipe: %v\n", err)
		return exitError
	}
	fmt.Fprintf(stdout, "# %s is valid; the effective configuration:\n", path)
	stdout.Write(out)
	return exitOK
}

// effective formats every setting as config-file YAML.
func (p *opsOptions) effective(o *options) ([]byte, error) {
	var items []config.Item
	origin := func(name string) string {
		switch {
		case p.cliSet[name]:
			return "command line"
		case p.fileLines[name] > 0:
			return fmt.Sprintf("%s line %d", p.configPath, p.fileLines[name])
		}
		return "default"
	}
	p.fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		key := configSchema.Key(f.Name)
		it := config.Item{Key: key, Comment: origin(f.Name)}
		if m, ok := f.Value.(*registry.Strings); ok {
			// One value is written as a scalar, as most files say it.
			it.List, it.String, it.Values = len(*m) != 1, true, []string(*m)
			if f.Name == "o" {
				it.Values = redactOutputs(it.Values)
			}
		} else {
			it.Values = []string{f.Value.String()}
			if g, ok := f.Value.(flag.Getter); ok {
				_, it.String = g.Get().(string)
			}
		}
		items = append(items, it)
	})
	items = append(items, config.Item{Key: "filter", Values: []string{o.app.Filter}, String: true, Comment: origin("filter")})
	sort.Slice(items, func(i, j int) bool { return items[i].Key < items[j].Key })
	return config.Format(items)
}
