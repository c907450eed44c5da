package quic

import (
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/stages/flow"
)

func init() {
	flow.RegisterAnalyzer(flow.AnalyzerSpec{
		Name:  "quic",
		Usage: "QUIC Initial packets decrypted: SNI, ALPN, JA3/JA4 of the hellos, version, cipher",
		Order: 20,
		New: func(_ registry.Options, env flow.AnalyzerEnv) (flow.Analyzer, error) {
			return New(Config{Stats: env.Stats, Budget: env.Reassembly}), nil
		},
	})
}
