// Package app assembles a pktpipe pipeline from Options: the sources of
// the input's kind, the decoder, per-worker flow processors with the
// analyzers asked for, the taps (-w) and every sink (-o). Everything comes
// from the registries (stages/flow for analyzers, pipeline for sources and
// sinks), which stages/all, sources/all and sinks/all fill. The CLI, the
// benchmarks and the tests build pipelines through Build, so all of them
// run the same thing, for live capture as for files.
//
// Lifecycle: Build checks everything it can before opening anything
// (Check, which `pktpipe config check` runs too), then opens the sources,
// drops privileges (--user), opens the sinks and the taps. If any step
// fails, what was opened is closed. Run runs the engine, which closes the
// sources, taps and sinks as it finishes; Close releases a pipeline that
// was built but never run.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sinks/pcapng"
	"github.com/pktpipe/pktpipe/stages/decode"
	"github.com/pktpipe/pktpipe/stages/flow"

	_ "github.com/pktpipe/pktpipe/sinks/all"   // every sink scheme
	_ "github.com/pktpipe/pktpipe/sources/all" // every source kind
	_ "github.com/pktpipe/pktpipe/stages/all"  // every analyzer
)

// Pipeline is a built pipeline.
type Pipeline struct {
	Engine *pipeline.Engine
	Stats  *stats.Registry
	// Reopeners are the sinks that start a new file on SIGHUP.
	Reopeners []Reopener
	// Outputs names the sinks, as metrics and logs label them, with the
	// target each writes to (passwords redacted).
	Outputs []NamedTarget

	sources []pipeline.Source
	taps    []pipeline.Tap
	sinks   []pipeline.Sink
	ran     bool
}

// Reopener is a sink that can complete its file and start a new one.
type Reopener interface {
	Reopen() error
}

// NamedTarget is a sink's name and its redacted target.
type NamedTarget struct{ Name, Target string }

// Run runs the engine once; it closes everything when it returns.
func (p *Pipeline) Run(ctx context.Context) (pipeline.Result, error) {
	p.ran = true
	return p.Engine.Run(ctx)
}

// Close releases a pipeline that was built and never run.
func (p *Pipeline) Close() error {
	if p.ran {
		return nil
	}
	p.ran = true
	return closeAll(p.sources, p.taps, p.sinks)
}

func closeAll(sources []pipeline.Source, taps []pipeline.Tap, sinks []pipeline.Sink) error {
	var errs []error
	for _, s := range sources {
		errs = append(errs, s.Close())
	}
	for _, t := range taps {
		errs = append(errs, t.Close())
	}
	for _, s := range sinks {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// resolved is what Check works out from Options, before anything opens.
type resolved struct {
	source    pipeline.SourceSpec
	analyzers []flow.AnalyzerSpec
	sinks     []pipeline.SinkSpec
	targets   []string
	names     []string
}

// Check validates o as Build would, opening nothing: the generic settings
// and their bounds, every component's options, the analyzer set and its
// needs, and every -o target by its sink's own checks. Its errors are
// usage errors.
func Check(o *Options) error {
	_, err := o.check()
	return err
}

func (o *Options) check() (*resolved, error) {
	o.defaults()
	if err := o.validate(); err != nil {
		return nil, registry.Usage(err)
	}
	r := &resolved{}
	kind := o.sourceKind()
	spec, ok := pipeline.SourceKind(kind)
	if !ok || spec.Live != (o.Interface != "") {
		return nil, registry.Usagef("--capture %q: use %s", kind, strings.Join(liveKinds(), " or "))
	}
	r.source = spec
	for key, opts := range o.Components {
		if v, ok := opts.(registry.Validator); ok {
			if err := v.Validate(); err != nil {
				return nil, registry.Usage(fmt.Errorf("%s: %w", key, err))
			}
		}
	}
	var err error
	if r.analyzers, err = flow.ResolveAnalyzers(o.Analyzers); err != nil {
		return nil, fmt.Errorf("--analyzers: %w", err)
	}
	if o.Sink != nil {
		return r, nil
	}
	seen := map[string]int{}
	for _, target := range o.Outputs {
		s, ok := pipeline.SinkFor(target)
		if !ok {
			return nil, registry.Usagef("-o %q: use %s", target, sinkUsage())
		}
		if s.Check != nil {
			if err := s.Check(target, o.Components[sinkKey(s.Scheme)]); err != nil {
				return nil, registry.Usage(fmt.Errorf("-o %s: %w", redact(s, target), err))
			}
		}
		name := s.Scheme
		if seen[s.Scheme]++; seen[s.Scheme] > 1 {
			name = fmt.Sprintf("%s%d", s.Scheme, seen[s.Scheme])
		}
		r.sinks, r.targets, r.names = append(r.sinks, s), append(r.targets, target), append(r.names, name)
	}
	return r, nil
}

// Build checks o and assembles the pipeline.
func Build(o Options) (*Pipeline, error) {
	r, err := o.check()
	if err != nil {
		return nil, err
	}
	if o.Shard.Sharded() {
		for _, a := range r.analyzers {
			if sa, ok := o.Components[analyzerKey(a.Name)].(registry.ShardAware); ok {
				if note := sa.ForShards(o.Shard.Count); note != "" {
					o.Log.Info(note, "analyzer", a.Name, "shard", o.Shard.String())
				}
			}
		}
	}
	p := &Pipeline{Stats: o.Stats}
	if err := p.open(&o, r); err != nil {
		_ = closeAll(p.sources, p.taps, p.sinks)
		return nil, err
	}
	return p, nil
}

func (p *Pipeline) open(o *Options, r *resolved) error {
	opened, err := r.source.Open(o.Components[sourceKey(r.source.Kind)], o.sourceEnv())
	p.sources = opened.Sources
	if err != nil {
		if r.source.Live {
			return fmt.Errorf("-i %s: %w", o.Interface, err)
		}
		return err
	}
	if r.source.Live {
		attrs := []any{"interface", o.Interface, "capture", r.source.Kind, "sources", len(opened.Sources), "filter", o.Filter}
		if o.User != "" {
			if opened.CloseNeedsPrivileges {
				return registry.Usagef("-i %s: the %s capture could not be undone at exit after --user gives up its privileges (tc filters need CAP_NET_ADMIN): run without --user, or on a kernel with TCX", o.Interface, r.source.Kind)
			}
			if err := dropPrivileges(o.User); err != nil {
				return err
			}
		}
		o.Log.Info("capturing", append(append(attrs, "uid", os.Getuid()), opened.Attrs...)...)
	}
	event.SetSensor(o.sensor(opened.IfName))
	if o.WritePcap != "" {
		w, err := pcapng.Create(o.WritePcap, pcapng.Config{IfName: opened.IfName, Stats: o.Stats})
		if err != nil {
			return err
		}
		p.taps = append(p.taps, pcapTap{w})
	}
	outputs, err := p.openSinks(o, r)
	if err != nil {
		return err
	}
	workers, stages, err := buildAnalyzers(o, r.analyzers)
	if err != nil {
		return err
	}
	names := make([]string, len(r.analyzers))
	for i, s := range r.analyzers {
		names[i] = s.Name
	}
	eng, err := pipeline.New(pipeline.Config{
		Workers: o.Workers, BatchPackets: o.BatchPackets, Stats: o.Stats, Log: o.Log,
		Shard: o.Shard,
	}, pipeline.Parts{
		Sources:    opened.Sources,
		NewDecoder: func() pipeline.Decoder { return decode.New() },
		NewFilter:  opened.NewFilter,
		Taps:       p.taps,
		Stages:     stages,
		NewProcessor: func(i int) pipeline.Processor {
			return flow.NewProcessor(o.flowConfig(names), workers[i]...)
		},
		Sinks: outputs,
	})
	if err != nil {
		return err
	}
	p.Engine = eng
	return nil
}

func (p *Pipeline) openSinks(o *Options, r *resolved) ([]pipeline.Output, error) {
	if o.Sink != nil {
		p.sinks = append(p.sinks, o.Sink)
		p.Outputs = append(p.Outputs, NamedTarget{Name: "sink", Target: "(in-process)"})
		return []pipeline.Output{{Name: "sink", Sink: o.Sink}}, nil
	}
	env := pipeline.SinkEnv{Ctx: o.Ctx, Format: o.Format, Stdout: o.Stdout, Stats: o.Stats, Log: o.Log, Live: r.source.Live}
	var outputs []pipeline.Output
	for i, s := range r.sinks {
		target := r.targets[i]
		sink, err := s.Open(target, o.Components[sinkKey(s.Scheme)], env)
		if err != nil {
			return nil, fmt.Errorf("-o %s: %w", redact(s, target), err)
		}
		p.sinks = append(p.sinks, sink)
		if ro, ok := sink.(Reopener); ok {
			p.Reopeners = append(p.Reopeners, ro)
		}
		outputs = append(outputs, pipeline.Output{Name: r.names[i], Sink: sink})
		p.Outputs = append(p.Outputs, NamedTarget{Name: r.names[i], Target: redact(s, target)})
	}
	return outputs, nil
}

// buildAnalyzers builds the analyzers' stages and every worker's analyzers
// now, so that an error shows before the run starts.
func buildAnalyzers(o *Options, specs []flow.AnalyzerSpec) ([][]flow.Analyzer, []pipeline.Stage, error) {
	opts := map[string]registry.Options{}
	for _, s := range specs {
		opts[s.Name] = o.Components[analyzerKey(s.Name)]
	}
	byName, err := flow.BuildStages(specs, opts, flow.StageEnv{Workers: o.Workers, Stats: o.Stats, Log: o.Log})
	if err != nil {
		return nil, nil, err
	}
	var stages []pipeline.Stage
	for _, s := range specs { // in run order: deterministic
		if st := byName[s.Name]; st != nil {
			stages = append(stages, st)
		}
	}
	out := make([][]flow.Analyzer, o.Workers)
	for i := range out {
		env := flow.AnalyzerEnv{Worker: i, Workers: o.Workers, Flow: o.flowConfig(nil), Stats: o.Stats, Log: o.Log, Stages: byName}
		o.perWorker(&env)
		as, err := flow.BuildAnalyzers(specs, opts, env)
		if err != nil {
			for _, st := range stages {
				st.Close()
			}
			return nil, nil, err
		}
		out[i] = as
	}
	return out, stages, nil
}

func (o *Options) flowConfig(names []string) flow.Config {
	perWorker := 0
	if o.FlowCap > 0 {
		perWorker = max(1, o.FlowCap/o.Workers)
	}
	return flow.Config{
		MaxFlows: perWorker, Workers: o.Workers, Timeouts: o.Timeouts,
		CommunityIDSeed: o.CommunityIDSeed, NoCommunityID: o.NoCommunityID,
		AnalyzerNames: names, Stats: o.Stats,
	}
}

func (o *Options) sourceEnv() pipeline.SourceEnv {
	return pipeline.SourceEnv{
		Files: o.Files, Stdin: o.Stdin,
		Interface: o.Interface, Netns: o.Netns, Snaplen: o.Snaplen, Promisc: o.Promisc,
		Filter: o.Filter, Progress: o.Progress, Stats: o.Stats, Log: o.Log,
	}
}

func redact(s pipeline.SinkSpec, target string) string {
	if s.Redact != nil {
		return s.Redact(target)
	}
	return target
}

func sinkUsage() string {
	var forms []string
	for _, scheme := range pipeline.SinkSchemes() {
		s, _ := pipeline.SinkFor(scheme + ":")
		forms = append(forms, s.Usage)
	}
	return strings.Join(forms, ", ")
}

func liveKinds() []string {
	var kinds []string
	for _, k := range pipeline.SourceKinds() {
		if s, _ := pipeline.SourceKind(k); s.Live {
			kinds = append(kinds, k)
		}
	}
	return kinds
}

// pcapTap writes what passes the filter to the -w capture.
type pcapTap struct{ w *pcapng.Writer }

func (t pcapTap) NewObserver() pipeline.PacketObserver { return pcapObserver{t.w.NewTap()} }
func (t pcapTap) Close() error                         { return t.w.Close() }

type pcapObserver struct{ t *pcapng.Tap }

func (o pcapObserver) Observe(p *packet.Packet) { o.t.Write(p) }

// The defaults of a zero Options, for tests and benchmarks that fill
// only what they need.
func (o *Options) defaults() {
	if o.Stats == nil {
		o.Stats = stats.NewRegistry()
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Ctx == nil {
		o.Ctx = context.Background()
	}
	if o.Workers <= 0 {
		o.Workers = 1
	}
	if len(o.Outputs) == 0 {
		o.Outputs = []string{"-"}
	}
	if o.Format == "" {
		o.Format = "json"
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Components == nil {
		o.Components = map[string]registry.Options{}
	}
	fillComponentDefaults(o.Components)
}

// Abandon is for a second stop signal, right before the process exits
// without draining: each sink that can (Kafka spills what the broker has
// not acknowledged) does what it can at once; the attributes describe
// what it did, for the exit's log line.
func (p *Pipeline) Abandon() []any {
	var attrs []any
	for i, s := range p.sinks {
		if a, ok := s.(interface{ Abandon() []any }); ok {
			attrs = append(attrs, a.Abandon()...)
		}
		if f, ok := s.(interface{ FinalPath() string }); ok && i < len(p.Outputs) {
			attrs = append(attrs, p.Outputs[i].Name, "the current segment keeps its temporary name ("+f.FinalPath()+" is not completed)")
		}
	}
	return attrs
}

// Target returns the redacted target of the sink named name.
func (p *Pipeline) Target(name string) string {
	for _, o := range p.Outputs {
		if o.Name == name {
			return o.Target
		}
	}
	return ""
}
