package pcapfile

import (
	"flag"
	"math"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/stages/bpffilter"
)

// Kind is the source kind of capture files (-r).
const Kind = "pcap"

func init() {
	pipeline.RegisterSource(pipeline.SourceSpec{
		Kind:       Kind,
		Usage:      "capture files (-r): pcap or pcapng, plain, gzip or zstd; \"-\" is stdin",
		Live:       false,
		NewOptions: func() registry.Options { return &Options{} },
		Open:       openKind,
	})
}

// Options are the settings of file input.
type Options struct {
	ReplaySpeed float64 // --replay-speed
}

// RegisterFlags declares --replay-speed.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.Float64Var(&o.ReplaySpeed, "replay-speed", 0, "pace file input at `N` times the capture's own timing (0 = as fast as possible)")
}

// Validate refuses a negative or non-finite replay speed.
func (o *Options) Validate() error {
	if o.ReplaySpeed < 0 || math.IsNaN(o.ReplaySpeed) || math.IsInf(o.ReplaySpeed, 0) {
		return registry.Usagef("--replay-speed %v: want 0 (as fast as possible) or a positive factor", o.ReplaySpeed)
	}
	return nil
}

// filterCheckLinks are the link types a filter expression is checked
// against before any file is read: the files' own link types are known only
// while reading, where the expression compiles per link type on first sight.
var filterCheckLinks = []packet.LinkType{packet.LinkEthernet, packet.LinkSLL, packet.LinkRaw}

func openKind(opts registry.Options, env pipeline.SourceEnv) (pipeline.Opened, error) {
	o, _ := opts.(*Options)
	if o == nil {
		o = &Options{}
	}
	if err := o.Validate(); err != nil {
		return pipeline.Opened{}, err
	}
	var newFilter func() pipeline.Filter
	if env.Filter != "" {
		// Checked first, so that a typo fails at once.
		expr, err := userFilter(env)
		if err != nil {
			return pipeline.Opened{}, registry.Usage(err)
		}
		newFilter = func() pipeline.Filter { return expr.NewFilter() }
	}
	files, err := Expand(env.Files)
	if err != nil {
		return pipeline.Opened{}, err
	}
	src, err := New(Config{
		Files: files, ReplaySpeed: o.ReplaySpeed, Progress: env.Progress,
		Stdin: env.Stdin, Stats: env.Stats, Log: env.Log,
	})
	if err != nil {
		return pipeline.Opened{}, err
	}
	return pipeline.Opened{Sources: []pipeline.Source{src}, NewFilter: newFilter, IfName: src.IfName}, nil
}

// userFilter compiles env.Filter for user space, after checking that it
// compiles for at least one of the common link types.
func userFilter(env pipeline.SourceEnv) (*bpffilter.Expr, error) {
	var firstErr error
	for _, lt := range filterCheckLinks {
		_, err := bpffilter.Compile(env.Filter, lt, 0)
		if err == nil {
			firstErr = nil
			break
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return bpffilter.New(env.Filter, nil, 0, env.Stats, env.Log)
}
