package probe

import (
	"flag"
	"time"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/stages/flow"
)

func init() {
	flow.RegisterAnalyzer(flow.AnalyzerSpec{
		Name:  "probe",
		Usage: "outcome of every connection attempt (open, closed, filtered, admin_prohibited, unreachable, ttl_exceeded) in conn, and scan events by source",
		// After tcpstate (40): its End finds tcpstate's conn object on the
		// record and joins it.
		Order:      45,
		NewOptions: func() registry.Options { return NewOptions() },
		Stage: func(opts registry.Options, env flow.StageEnv) (pipeline.Stage, error) {
			o := opts.(*Options)
			if !o.Scan {
				return nil, nil
			}
			d := NewDetector(o.Config)
			kc := d.KeyedConfig(min(env.Workers, 4), o.MaxSources)
			kc.Stats = env.Stats
			return pipeline.NewKeyed(kc, func(int) pipeline.KeyedHandler[Record, SourceState] {
				return NewDetector(o.Config)
			}), nil
		},
		New: func(_ registry.Options, env flow.AnalyzerEnv) (flow.Analyzer, error) {
			a := New(env.Stats)
			if k, ok := env.Stage.(*pipeline.Keyed[Record, SourceState]); ok {
				a.SetScanSender(k.NewSender())
			}
			return a, nil
		},
	})
}

// Options are the probe analyzer's flags: the scan detector's thresholds,
// window and caps (defaults in DefaultScanConfig, justified there).
type Options struct {
	Scan       bool
	MaxSources int
	Config     ScanConfig
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{Scan: true, MaxSources: 16384, Config: DefaultScanConfig}
}

// RegisterFlags declares the scan detector's settings.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	c := &o.Config
	fs.BoolVar(&o.Scan, "scan", o.Scan, "probe: detect scans by source (scan events); needs the probe analyzer")
	fs.IntVar(&c.PortThreshold, "scan-port-threshold", c.PortThreshold, "probe: distinct ports on one target that make a portscan")
	fs.IntVar(&c.TargetThreshold, "scan-target-threshold", c.TargetThreshold, "probe: distinct targets on one port that make a portsweep")
	fs.IntVar(&c.PingThreshold, "scan-ping-threshold", c.PingThreshold, "probe: distinct targets of echo requests that make a ping sweep")
	fs.IntVar(&c.MinFailed, "scan-min-failed", c.MinFailed, "probe: negative answers a portsweep needs")
	fs.DurationVar(&c.Idle, "scan-idle", c.Idle, "probe: a source quiet this long (packet time) ends its scan record; more than --flow-timeout-new")
	fs.IntVar(&o.MaxSources, "scan-max-sources", o.MaxSources, "probe: sources tracked per detector shard; the least recently seen is ended first (counted)")
	fs.IntVar(&c.MaxPairs, "scan-max-pairs", c.MaxPairs, "probe: distinct (target, port) kept per source")
}

// Validate refuses values that would disable the detector by accident.
func (o *Options) Validate() error {
	c := o.Config
	switch {
	case c.PortThreshold < 1 || c.TargetThreshold < 1 || c.PingThreshold < 1 || c.MinFailed < 0:
		return registry.Usagef("--scan-*-threshold must be at least 1")
	case c.Idle < time.Second:
		return registry.Usagef("--scan-idle %v: at least 1s", c.Idle)
	case o.MaxSources < 1 || o.MaxSources > 1<<24 || c.MaxPairs < 1 || c.MaxPairs > 1<<16:
		return registry.Usagef("--scan-max-sources 1..%d, --scan-max-pairs 1..%d", 1<<24, 1<<16)
	}
	return nil
}

// ForShards turns scan detection off under --shard: a scan is an aggregate
// of one source's attempts across many flows, and a shard keeps only its
// share of those flows, so per-shard scan events would be neither the
// union nor a subset of one run's. The flows' conn.outcome, which every
// shard writes, still carries each attempt for a downstream aggregate.
func (o *Options) ForShards(n int) string {
	if n <= 1 || !o.Scan {
		return ""
	}
	o.Scan = false
	return "scan detection is off under --shard: a source's attempts are split across shards (each flow record keeps its conn.outcome)"
}
