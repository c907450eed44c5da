package http

import (
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/stages/flow"
)

func init() {
	flow.RegisterAnalyzer(flow.AnalyzerSpec{
		Name:  "http",
		Usage: "HTTP/1.x transactions on any TCP port: host, URL, method, user agent, status, length",
		Order: 14,
		New: func(_ registry.Options, env flow.AnalyzerEnv) (flow.Analyzer, error) {
			return New(env.Reassembly, env.Stats), nil
		},
	})
}
