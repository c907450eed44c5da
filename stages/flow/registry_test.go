package flow_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/stages/flow"
)

// noop is a throw-away analyzer registered only by these tests.
type noop struct{ needed map[string]flow.Analyzer }

func (noop) Packet(*flow.Flow, *packet.Packet, flow.Dir, *pipeline.Emitter) {}
func (noop) ICMPError(*flow.Flow, *packet.Packet, *pipeline.Emitter)        {}
func (noop) End(*flow.Flow, *event.Flow, *pipeline.Emitter)                 {}

func register(t *testing.T, name string, order int, needs ...string) {
	t.Helper()
	flow.RegisterAnalyzer(flow.AnalyzerSpec{
		Name: name, Needs: needs, Order: order,
		New: func(_ registry.Options, env flow.AnalyzerEnv) (flow.Analyzer, error) {
			for _, n := range needs {
				if env.Needed[n] == nil {
					t.Errorf("%s built before its need %s", name, n)
				}
			}
			return &noop{needed: env.Needed}, nil
		},
	})
	t.Cleanup(func() { flow.UnregisterAnalyzer(name) })
}

func names(specs []flow.AnalyzerSpec) []string {
	var out []string
	for _, s := range specs {
		out = append(out, s.Name)
	}
	return out
}

func TestNeedsComeAlongAndRunAfter(t *testing.T) {
	register(t, "t_base", 90)
	register(t, "t_user", 10, "t_base")
	register(t, "t_other", 50)
	specs, err := flow.ResolveAnalyzers([]string{"t_user", "t_other"})
	if err != nil {
		t.Fatal(err)
	}
	// t_user reports into t_base: it runs first although t_other's Order is
	// lower than t_base's, and t_base comes along without being named.
	if got := names(specs); !slices.Equal(got, []string{"t_user", "t_other", "t_base"}) {
		t.Fatalf("order %v", got)
	}
	as, err := flow.BuildAnalyzers(specs, nil, flow.AnalyzerEnv{})
	if err != nil || len(as) != 3 || as[0].(*noop).needed["t_base"] != as[2] {
		t.Fatalf("built %v, %v: t_user must get this worker's t_base", as, err)
	}
}

func TestUnknownAnalyzerAndCycleAreUsageErrors(t *testing.T) {
	_, err := flow.ResolveAnalyzers([]string{"t_nope"})
	if !registry.IsUsage(err) || !strings.Contains(err.Error(), `unknown analyzer "t_nope"`) {
		t.Fatalf("unknown name: %v", err)
	}
	register(t, "t_a", 1, "t_b")
	register(t, "t_b", 2, "t_c")
	register(t, "t_c", 3, "t_a")
	_, err = flow.ResolveAnalyzers([]string{"t_a"})
	if !registry.IsUsage(err) || !strings.Contains(err.Error(), "t_a, t_b, t_c need each other in a cycle") {
		t.Fatalf("cycle: %v", err)
	}
	register(t, "t_lonely", 1, "t_missing")
	if _, err = flow.ResolveAnalyzers([]string{"t_lonely"}); !registry.IsUsage(err) || !strings.Contains(err.Error(), `needs "t_missing"`) {
		t.Fatalf("missing need: %v", err)
	}
}

func TestDuplicateNamePanics(t *testing.T) {
	register(t, "t_dup", 1)
	defer func() {
		if recover() == nil {
			t.Fatal("registering a name twice did not panic")
		}
	}()
	register(t, "t_dup", 1)
}

func TestOptInRunsOnlyWhenNamed(t *testing.T) {
	flow.RegisterAnalyzer(flow.AnalyzerSpec{Name: "t_optin", OptIn: true,
		New: func(registry.Options, flow.AnalyzerEnv) (flow.Analyzer, error) { return &noop{}, nil }})
	t.Cleanup(func() { flow.UnregisterAnalyzer("t_optin") })
	all, err := flow.ResolveAnalyzers(nil)
	if err != nil || slices.Contains(names(all), "t_optin") {
		t.Fatalf("default set %v (%v) holds the opt-in analyzer", names(all), err)
	}
	with, err := flow.ResolveAnalyzers([]string{"all", "t_optin"})
	if err != nil || len(with) != len(all)+1 || !slices.Contains(names(with), "t_optin") {
		t.Fatalf("all,t_optin gave %v (%v)", names(with), err)
	}
}
