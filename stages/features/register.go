package features

import (
	"flag"

	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/stages/flow"
)

func init() {
	flow.RegisterAnalyzer(flow.AnalyzerSpec{
		Name:  "features",
		Usage: "NFStream-compatible flow statistics (sizes, inter-arrival times, TCP flag counts; SPLT with --splt)",
		// After rtt (60): the largest object comes last in the record.
		Order: 70,
		// It makes every flow record about 4.5 times larger: anomaly
		// feeds ask for it (--analyzers all,features), SIEM feeds are
		// spared it.
		OptIn:      true,
		NewOptions: func() registry.Options { return NewOptions() },
		New: func(opts registry.Options, _ flow.AnalyzerEnv) (flow.Analyzer, error) {
			o, _ := opts.(*Options)
			if o == nil {
				o = NewOptions()
			}
			if err := o.Validate(); err != nil {
				return nil, err
			}
			return New(o.SPLT), nil
		},
	})
}

// Options are the features analyzer's flags (and config keys).
type Options struct {
	SPLT int // first packets listed in splt_*; 0 = off
}

// NewOptions returns the defaults (SPLT off).
func NewOptions() *Options { return &Options{} }

// RegisterFlags declares --splt.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&o.SPLT, "splt", 0, "features: list the direction, size and inter-arrival time of a flow's first `N` packets (splt_*, NFStream's encoding; 0 = off)")
}

// Validate bounds --splt.
func (o *Options) Validate() error {
	if o.SPLT < 0 || o.SPLT > MaxSPLT {
		return registry.Usagef("--splt %d: must be between 0 and %d", o.SPLT, MaxSPLT)
	}
	return nil
}
