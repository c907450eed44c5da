package rtt

import (
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/stages/flow"
)

func init() {
	flow.RegisterAnalyzer(flow.AnalyzerSpec{
		Name:  "rtt",
		Usage: "round-trip times: TCP handshake, ICMP echo, TLS hello (and DNS with dns)",
		Order: 60,
		New: func(_ registry.Options, env flow.AnalyzerEnv) (flow.Analyzer, error) {
			return New(Config{Stats: env.Stats}), nil
		},
	})
}
