package icmpfb

import (
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/stages/flow"
)

func init() {
	flow.RegisterAnalyzer(flow.AnalyzerSpec{
		Name:  "icmp_feedback",
		Usage: "ICMP/ICMPv6 errors tied to the flow they quote",
		Order: 30,
		New: func(_ registry.Options, env flow.AnalyzerEnv) (flow.Analyzer, error) {
			return New(Config{
				CommunityIDSeed: env.Flow.CommunityIDSeed, NoCommunityID: env.Flow.NoCommunityID,
				Stats: env.Stats,
			}), nil
		},
	})
}
