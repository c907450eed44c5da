package probe

import (
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/stages/flow"
)

func init() {
	flow.RegisterAnalyzer(flow.AnalyzerSpec{
		Name:  "probe",
		Usage: "outcome of every connection attempt (open, closed, filtered, admin_prohibited, unreachable, ttl_exceeded) in conn",
		// After tcpstate (40): its End finds tcpstate's conn object on the
		// record and joins it.
		Order: 45,
		New: func(_ registry.Options, env flow.AnalyzerEnv) (flow.Analyzer, error) {
			return New(env.Stats), nil
		},
	})
}
