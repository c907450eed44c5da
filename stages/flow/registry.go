package flow

import (
	"cmp"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/reassembly"
)

// AnalyzerSpec declares a per-flow analyzer to the registry. An analyzer
// package registers its spec in init; stages/all imports every one.
type AnalyzerSpec struct {
	Name  string // --analyzers name, metric label
	Usage string // one line for --help
	// Needs are the analyzers this one reports into (dns needs rtt): they
	// are turned on with it, built before it (its constructor gets their
	// instances in AnalyzerEnv.Needed) and run after it, so that its End
	// precedes theirs.
	Needs []string
	// Order places the analyzer among those that do not depend on each
	// other: lower runs first. It decides the order of events a flow's end
	// emits, so it is part of the output.
	Order int
	// OptIn analyzers run only when named (--analyzers all,features):
	// "all" and the default mean every analyzer that is not opt-in. For
	// analyzers whose output most users do not want on every record.
	OptIn bool
	// NewOptions returns the analyzer's settings with their defaults; nil
	// when it has none. One value is shared by all workers' instances.
	NewOptions func() registry.Options
	// New builds one worker's instance.
	New func(opts registry.Options, env AnalyzerEnv) (Analyzer, error)
	// Stage, when set, builds the analyzer's stage beside the workers,
	// once per run (a keyed aggregation, such as the scan detector by
	// source): each worker's instance gets it in AnalyzerEnv.Stage.
	Stage func(opts registry.Options, env StageEnv) (pipeline.Stage, error)
}

// StageEnv is what an analyzer's stage is built with.
type StageEnv struct {
	Workers int
	Stats   *stats.Registry
	Log     *slog.Logger
}

// AnalyzerEnv is what every analyzer instance is built with.
type AnalyzerEnv struct {
	Worker  int // this worker's index
	Workers int
	// Flow is the flow table's configuration (Community ID seed, timeouts).
	Flow  Config
	Stats *stats.Registry
	Log   *slog.Logger
	// Reassembly is this worker's reassembly byte budget, shared by its
	// analyzers (nil: unlimited).
	Reassembly *reassembly.Budget
	// Needed holds this worker's instances of the spec's Needs, by name.
	Needed map[string]Analyzer
	// Stage is the run's stage of this analyzer (AnalyzerSpec.Stage), and
	// Stages every analyzer's, by name (set by the app).
	Stage  pipeline.Stage
	Stages map[string]pipeline.Stage
}

var analyzers = registry.NewSet[AnalyzerSpec]("analyzer")

// RegisterAnalyzer adds an analyzer; a duplicate name panics.
func RegisterAnalyzer(s AnalyzerSpec) { analyzers.Add(s.Name, s) }

// UnregisterAnalyzer removes an analyzer (tests' throw-away analyzers).
func UnregisterAnalyzer(name string) { analyzers.Remove(name) }

// LookupAnalyzer returns the spec registered under name.
func LookupAnalyzer(name string) (AnalyzerSpec, bool) { return analyzers.Get(name) }

// AnalyzerNames lists every registered analyzer in run order, opt-in ones
// included.
func AnalyzerNames() []string {
	specs, err := ResolveAnalyzers(analyzers.Names())
	if err != nil {
		return analyzers.Names()
	}
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	return names
}

// ResolveAnalyzers returns the specs of names and of everything they need,
// in run order; nil names, or the name "all" among them, means every
// registered analyzer that is not opt-in. An unknown name, a need that is
// not registered, or a cycle of needs is a usage error.
func ResolveAnalyzers(names []string) ([]AnalyzerSpec, error) {
	if names == nil {
		names = []string{"all"}
	}
	if slices.Contains(names, "all") {
		var expanded []string
		for _, n := range names {
			if n != "all" {
				expanded = append(expanded, n)
			}
		}
		for _, n := range analyzers.Names() {
			if s, _ := analyzers.Get(n); !s.OptIn {
				expanded = append(expanded, n)
			}
		}
		names = expanded
	}
	on := map[string]AnalyzerSpec{}
	var add func(name, by string) error
	add = func(name, by string) error {
		if _, ok := on[name]; ok {
			return nil
		}
		s, ok := analyzers.Get(name)
		if !ok {
			if by != "" {
				return registry.Usagef("analyzer %q needs %q, which is not registered", by, name)
			}
			return registry.Usagef("unknown analyzer %q (choices: %s)", name, strings.Join(analyzers.Names(), ", "))
		}
		on[name] = s
		for _, n := range s.Needs {
			if err := add(n, name); err != nil {
				return err
			}
		}
		return nil
	}
	for _, n := range names {
		if err := add(n, ""); err != nil {
			return nil, err
		}
	}
	// Kahn's algorithm on "runs before" edges (an analyzer runs before
	// what it needs), taking the lowest Order among the ready ones.
	blockers := map[string]int{} // analyzers that must run before this one
	for _, s := range on {
		for _, n := range s.Needs {
			blockers[n]++
		}
	}
	var ready, order []AnalyzerSpec
	for _, s := range on {
		if blockers[s.Name] == 0 {
			ready = append(ready, s)
		}
	}
	for len(ready) > 0 {
		slices.SortFunc(ready, func(a, b AnalyzerSpec) int {
			return cmp.Or(cmp.Compare(a.Order, b.Order), strings.Compare(a.Name, b.Name))
		})
		s := ready[0]
		ready = ready[1:]
		order = append(order, s)
		for _, n := range s.Needs {
			if blockers[n]--; blockers[n] == 0 {
				ready = append(ready, on[n])
			}
		}
	}
	if len(order) < len(on) {
		var stuck []string
		for name := range on {
			if blockers[name] > 0 {
				stuck = append(stuck, name)
			}
		}
		slices.Sort(stuck)
		return nil, registry.Usagef("analyzers %s need each other in a cycle", strings.Join(stuck, ", "))
	}
	return order, nil
}

// BuildStages builds the stages of the specs that have one, once per run.
func BuildStages(specs []AnalyzerSpec, opts map[string]registry.Options, env StageEnv) (map[string]pipeline.Stage, error) {
	out := map[string]pipeline.Stage{}
	for _, s := range specs {
		if s.Stage == nil {
			continue
		}
		st, err := s.Stage(optionsOf(s, opts), env)
		if err != nil {
			return nil, fmt.Errorf("analyzer %s: stage: %w", s.Name, err)
		}
		out[s.Name] = st
	}
	return out, nil
}

func optionsOf(s AnalyzerSpec, opts map[string]registry.Options) registry.Options {
	if o := opts[s.Name]; o != nil {
		return o
	}
	if s.NewOptions != nil {
		return s.NewOptions()
	}
	return registry.NoOptions{}
}

// BuildAnalyzers builds one worker's instances of specs (in run order, as
// ResolveAnalyzers returns them), each with its options from opts (by
// name; a missing entry takes the spec's defaults). What an analyzer needs
// is built before it.
func BuildAnalyzers(specs []AnalyzerSpec, opts map[string]registry.Options, env AnalyzerEnv) ([]Analyzer, error) {
	built := make(map[string]Analyzer, len(specs))
	out := make([]Analyzer, len(specs))
	for i := len(specs) - 1; i >= 0; i-- { // needs run later, so build from the end
		s := specs[i]
		o := optionsOf(s, opts)
		e := env
		e.Stage = env.Stages[s.Name]
		e.Needed = make(map[string]Analyzer, len(s.Needs))
		for _, n := range s.Needs {
			e.Needed[n] = built[n]
		}
		a, err := s.New(o, e)
		if err != nil {
			return nil, fmt.Errorf("analyzer %s: %w", s.Name, err)
		}
		built[s.Name], out[i] = a, a
	}
	return out, nil
}
