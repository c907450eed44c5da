package tlsfp

import (
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/stages/flow"
)

func init() {
	flow.RegisterAnalyzer(flow.AnalyzerSpec{
		Name:  "tls",
		Usage: "TLS handshakes over TCP: JA3/JA3S, JA4, SNI, ALPN, version, cipher, leaf certificate",
		Order: 10,
		New: func(_ registry.Options, env flow.AnalyzerEnv) (flow.Analyzer, error) {
			return New(Config{Budget: env.Reassembly}), nil
		},
	})
}
