package tcpstate

import (
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/stages/flow"
)

func init() {
	flow.RegisterAnalyzer(flow.AnalyzerSpec{
		Name:  "tcpstate",
		Usage: "TCP connection state and history (Zeek conn_state)",
		Order: 40,
		New: func(registry.Options, flow.AnalyzerEnv) (flow.Analyzer, error) {
			return New(), nil
		},
	})
}
