package appproto

import (
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/stages/flow"
)

func init() {
	flow.RegisterAnalyzer(flow.AnalyzerSpec{
		Name:  "app_proto",
		Usage: "application protocol by content on any port (Suricata's names), as app_proto on flow records",
		Order: 5,
		New: func(_ registry.Options, env flow.AnalyzerEnv) (flow.Analyzer, error) {
			return New(env.Stats), nil
		},
	})
}
