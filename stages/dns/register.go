package dns

import (
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/stages/flow"
)

func init() {
	flow.RegisterAnalyzer(flow.AnalyzerSpec{
		Name:  "dns",
		Usage: "DNS messages, and query timings into rtt",
		Needs: []string{"rtt"},
		Order: 50,
		New: func(_ registry.Options, env flow.AnalyzerEnv) (flow.Analyzer, error) {
			t, _ := env.Needed["rtt"].(Timings)
			a := New(t, env.Stats)
			a.SetBudget(env.Reassembly)
			return a, nil
		},
	})
}
