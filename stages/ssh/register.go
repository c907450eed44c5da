package ssh

import (
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/stages/flow"
)

func init() {
	flow.RegisterAnalyzer(flow.AnalyzerSpec{
		Name:  "ssh",
		Usage: "SSH banners and KEXINIT on any TCP port: software versions, HASSH and HASSHServer",
		Order: 12,
		New: func(_ registry.Options, env flow.AnalyzerEnv) (flow.Analyzer, error) {
			return New(env.Reassembly, env.Stats), nil
		},
	})
}
