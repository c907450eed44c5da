package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/flow"
	"github.com/pktpipe/pktpipe/stages/reassembly"
)

// Options are what a pipeline is built from: the generic settings below,
// and every registered component's own Options in Components. The CLI
// fills them from flags (RegisterFlags) and the config file; tests and
// benchmarks set the fields they need, and zero values take the defaults.
type Options struct {
	// Input: capture files (-r; globs; "-" = Stdin), or a live interface
	// (-i) captured by the Capture kind.
	Files     []string
	Stdin     io.Reader
	Interface string
	Capture   string // live source kind: afpacket (default) or ebpf
	Netns     string
	Snaplen   int
	Promisc   bool
	User      string // drop to this user once the capture is open
	Filter    string // tcpdump-style expression
	WritePcap string // -w: a pcapng copy of what passed the filter
	Progress  io.Writer

	// Output: -o targets ("-", "file:PATH", "kafka://..."), each a sink of
	// the scheme's kind. Sink, when set, replaces them (tests).
	Outputs []string
	Format  string // json | msgpack
	Stdout  io.Writer
	Sink    pipeline.Sink
	// SensorName is every event's host ("" = none; the CLI's default is
	// the hostname).
	SensorName string

	// Processing.
	Workers         int
	BatchPackets    int
	Shard           pipeline.Shard // --shard I/N: keep one shard's flows
	FlowCap         int            // all workers together
	Timeouts        flow.Timeouts
	CommunityIDSeed uint16
	NoCommunityID   bool
	// Analyzers names the per-flow analyzers to run (with what they need);
	// nil runs them all.
	Analyzers []string
	// ReassemblyBytes is the process's reassembly budget, split evenly
	// between workers (reassembly.DefaultProcessBytes when 0).
	ReassemblyBytes int64

	// Components holds every component's options by key ("source:pcap",
	// "sink:file", "analyzer:dns"); missing ones take their defaults.
	Components map[string]registry.Options

	Ctx   context.Context // cancelled on the first stop signal (sinks stop waiting)
	Stats *stats.Registry
	Log   *slog.Logger

	cidSeed   uint   // --community-id-seed before its range check
	analyzers string // --analyzers before it is split
}

// Bounds of the resource settings: beyond them a typo would exhaust the
// machine (100000 workers, a batch of 10^8 packets) instead of failing.
const (
	MaxWorkers      = 1024
	MaxBatchPackets = 1 << 16
	MaxFlowCap      = 1 << 30
)

// Component keys.
func sourceKey(kind string) string   { return "source:" + kind }
func sinkKey(scheme string) string   { return "sink:" + scheme }
func analyzerKey(name string) string { return "analyzer:" + name }
func (o *Options) sourceKind() string {
	if o.Interface == "" {
		return "pcap"
	}
	if o.Capture == "" {
		return "afpacket"
	}
	return o.Capture
}

// fillComponentDefaults adds every registered component's default options
// that c lacks.
func fillComponentDefaults(c map[string]registry.Options) {
	add := func(key string, newOpts func() registry.Options) {
		if _, ok := c[key]; !ok && newOpts != nil {
			c[key] = newOpts()
		}
	}
	for _, k := range pipeline.SourceKinds() {
		s, _ := pipeline.SourceKind(k)
		add(sourceKey(k), s.NewOptions)
	}
	for _, scheme := range pipeline.SinkSchemes() {
		s, _ := pipeline.SinkFor(scheme + ":")
		add(sinkKey(scheme), s.NewOptions)
	}
	for _, n := range flow.AnalyzerNames() {
		s, _ := flow.LookupAnalyzer(n)
		add(analyzerKey(n), s.NewOptions)
	}
}

// Flags records which component declared each flag, so that a flag of a
// component the run does not use can be refused (--fanout without -i).
type Flags struct {
	owner map[string]string // flag name -> component key
}

// RegisterFlags declares the generic flags and every registered
// component's flags on fs, bound to o (whose Components it fills).
func (o *Options) RegisterFlags(fs *flag.FlagSet) *Flags {
	fs.Var((*registry.Strings)(&o.Files), "r", "read packets from `FILE` (pcap or pcapng, gzip/zstd detected by content; - = stdin; globs allowed); repeatable, read in order")
	fs.StringVar(&o.Interface, "i", "", "capture live on `IFACE` (AF_PACKET)")
	fs.Var((*registry.Strings)(&o.Outputs), "o", "event sink `SINK`, one of: "+sinkUsage()+"; repeatable: every event goes to each (default -)")
	fs.StringVar(&o.Format, "format", "json", "event encoding: json (one object per line) or msgpack")
	host, _ := os.Hostname()
	fs.StringVar(&o.SensorName, "sensor-name", host, "`NAME` of this sensor, every event's host field (\"\" = none)")
	fs.IntVar(&o.Workers, "workers", runtime.NumCPU(), fmt.Sprintf("flow workers (each owns the flows that hash to it; at most %d)", MaxWorkers))
	fs.Var(&o.Shard, "shard", "keep only the flows of shard `I/N` (0 <= I < N): N processes reading the same input with I = 0..N-1 write between them the events of one run")
	fs.IntVar(&o.FlowCap, "flow-cap", flow.DefaultProcessFlows, "most flows tracked at once (all workers together); the least recently seen is ended first")
	fs.UintVar(&o.cidSeed, "community-id-seed", 0, "Community ID seed")
	fs.BoolVar(&o.NoCommunityID, "no-community-id", false, "leave community_id out of events")
	fs.DurationVar(&o.Timeouts.TCP, "flow-timeout-tcp", 0, "idle timeout of established TCP flows (0 = the stage's default)")
	fs.DurationVar(&o.Timeouts.UDP, "flow-timeout-udp", 0, "idle timeout of UDP flows (0 = default)")
	fs.DurationVar(&o.Timeouts.ICMP, "flow-timeout-icmp", 0, "idle timeout of ICMP flows (0 = default)")
	fs.DurationVar(&o.Timeouts.New, "flow-timeout-new", 0, "idle timeout of flows seen in one direction only (0 = default)")
	fs.DurationVar(&o.Timeouts.Linger, "flow-timeout-closed", 0, "how long a TCP flow closed by FINs or an RST stays open for late packets before its record is written (0 = default 2s; NFStream, which does not end flows on FIN, splits flows as 120s does)")
	fs.DurationVar(&o.Timeouts.Active, "flow-active-timeout", 0, "also write a flow's record each time it has been open this long (packet time), reason active_timeout, counters for that interval (0 = off)")
	fs.StringVar(&o.analyzers, "analyzers", "all", "per-flow analyzers to run, comma-separated (what one needs comes along): all (every one not opt-in), or some of "+strings.Join(flow.AnalyzerNames(), ",")+"; opt-in ones run only when named (all,features)")
	fs.IntVar(&o.BatchPackets, "batch-packets", 0, fmt.Sprintf("packets per batch between stages (0 = 256; at most %d)", MaxBatchPackets))
	fs.Var((*registry.ByteSize)(&o.ReassemblyBytes), "reassembly-memcap", "bytes of stream reassembly buffers (TLS, QUIC CRYPTO) all workers may hold; the oldest buffers are given up first when it is full (0 = 256M)")
	fs.StringVar(&o.Capture, "capture", "afpacket", "live capture method: "+strings.Join(liveKinds(), " or ")+" (see each kind's flags)")
	fs.IntVar(&o.Snaplen, "snaplen", 0, "bytes kept per packet (0 = 262144 for afpacket, 65000 for ebpf)")
	fs.BoolVar(&o.Promisc, "promisc", false, "put the interface in promiscuous mode while capturing")
	fs.StringVar(&o.Netns, "netns", "", "capture on -i inside the network namespace at `PATH` (e.g. /var/run/netns/NAME)")
	fs.StringVar(&o.WritePcap, "w", "", "also write the packets read (after the filter) to `FILE` as pcapng, for replay with -r")
	fs.StringVar(&o.User, "user", "", "after opening the capture, drop root privileges to user `NAME` (uid, gid and groups)")

	if o.Components == nil {
		o.Components = map[string]registry.Options{}
	}
	fillComponentDefaults(o.Components)
	f := &Flags{owner: map[string]string{}}
	for key, opts := range o.Components {
		own := flag.NewFlagSet(key, flag.ContinueOnError)
		opts.RegisterFlags(own)
		own.VisitAll(func(fl *flag.Flag) {
			fs.Var(fl.Value, fl.Name, fl.Usage) // panics on a duplicate name: caught by the tests
			f.owner[fl.Name] = key
		})
	}
	return f
}

// CheckUse refuses a source kind's flag, or a live capture flag, given
// with a value other than its default when the run does not capture with
// that kind; given says which flags were given (command line or config
// file). A default value is let through: `config check` prints every
// setting, and its output must check again.
func (f *Flags) CheckUse(o *Options, fs *flag.FlagSet, given func(name string) bool) error {
	set := func(name string) bool {
		fl := fs.Lookup(name)
		return given(name) && fl != nil && fl.Value.String() != fl.DefValue
	}
	live := o.Interface != ""
	for _, name := range []string{"capture", "snaplen", "promisc", "netns", "user"} {
		if set(name) && !live {
			return registry.Usagef("--%s applies to live capture (-i)", name)
		}
	}
	kind := sourceKey(o.sourceKind())
	for name, key := range f.owner {
		if !strings.HasPrefix(key, "source:") || key == kind || !set(name) {
			continue
		}
		k := strings.TrimPrefix(key, "source:")
		if s, _ := pipeline.SourceKind(k); s.Live {
			return registry.Usagef("--%s applies to live capture with --capture %s (-i)", name, k)
		}
		return registry.Usagef("--%s applies to capture files (-r)", name)
	}
	return nil
}

// validate checks the generic settings (Check runs it).
func (o *Options) validate() error {
	if o.analyzers != "" {
		o.Analyzers = analyzerList(o.analyzers)
		o.analyzers = ""
	}
	switch {
	case len(o.Files) == 0 && o.Interface == "":
		return errors.New("nothing to read: give -r FILE or -i IFACE (see --help)")
	case len(o.Files) > 0 && o.Interface != "":
		return errors.New("-r and -i cannot be used together")
	case o.Workers < 1 || o.Workers > MaxWorkers:
		return fmt.Errorf("--workers %d: use 1 to %d", o.Workers, MaxWorkers)
	case o.FlowCap != 0 && (o.FlowCap < o.Workers || o.FlowCap > MaxFlowCap):
		return fmt.Errorf("--flow-cap %d: use at least the number of workers and at most %d", o.FlowCap, MaxFlowCap)
	case o.BatchPackets < 0 || o.BatchPackets > MaxBatchPackets:
		return fmt.Errorf("--batch-packets %d: use 0 (the default, 256) to %d", o.BatchPackets, MaxBatchPackets)
	case o.cidSeed > 0xffff:
		return errors.New("--community-id-seed must fit in 16 bits")
	case o.Snaplen < 0:
		return errors.New("--snaplen must not be negative")
	case o.ReassemblyBytes < 0:
		return errors.New("--reassembly-memcap must not be negative")
	case o.Format != "json" && o.Format != "msgpack":
		return fmt.Errorf("--format %q: use json or msgpack", o.Format)
	}
	if o.cidSeed != 0 {
		o.CommunityIDSeed = uint16(o.cidSeed)
	}
	for _, t := range []struct {
		name string
		d    time.Duration
	}{{"tcp", o.Timeouts.TCP}, {"udp", o.Timeouts.UDP}, {"icmp", o.Timeouts.ICMP}, {"new", o.Timeouts.New}, {"closed", o.Timeouts.Linger}, {"active", o.Timeouts.Active}} {
		if t.d < 0 {
			if t.name == "active" {
				return errors.New("--flow-active-timeout must not be negative")
			}
			return fmt.Errorf("--flow-timeout-%s must not be negative", t.name)
		}
	}
	return nil
}

// sensor is what events say about where they were seen: the sensor name
// and the source's interface names.
func (o *Options) sensor(ifName func(int32) string) *event.Sensor {
	return &event.Sensor{Host: o.SensorName, IfName: ifName}
}

// perWorker gives an analyzer environment its worker's share of what the
// analyzers of one worker share.
func (o *Options) perWorker(env *flow.AnalyzerEnv) {
	total := o.ReassemblyBytes
	if total == 0 {
		total = reassembly.DefaultProcessBytes
	}
	env.Reassembly = reassembly.NewBudget(reassembly.PerWorker(total, o.Workers), o.Stats)
}

// analyzerList turns --analyzers into Options.Analyzers ("all" = nil).
func analyzerList(s string) []string {
	if s == "" || s == "all" {
		return nil
	}
	out := []string{} // "--analyzers ," = none
	for _, n := range strings.Split(s, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}
