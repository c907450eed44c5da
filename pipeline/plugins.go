package pipeline

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"

	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

// The source and sink registries. Components add themselves in init
// (sources/all and sinks/all import them all); internal/app builds a
// pipeline from them by kind and by the -o URL's scheme.
var (
	sourceKinds = registry.NewSet[SourceSpec]("source")
	sinkSchemes = registry.NewSet[SinkSpec]("sink")
)

// SourceSpec declares a kind of source.
type SourceSpec struct {
	Kind  string // "pcap", "afpacket", "ebpf"
	Usage string // one line for --help
	// Live kinds capture from an interface (-i); the others read files (-r).
	Live bool
	// NewOptions returns the kind's settings with their defaults (nil: none).
	NewOptions func() registry.Options
	// Open opens the kind's sources. Whatever it returns is closed by the
	// engine after Run, or by the app if the build fails later; on error
	// Open closes what it opened itself.
	Open func(opts registry.Options, env SourceEnv) (Opened, error)
}

// SourceEnv is what every source kind is opened with.
type SourceEnv struct {
	// Files are the -r arguments (pcap), globs not yet expanded; "-" is Stdin.
	Files []string
	Stdin io.Reader
	// Interface is -i for live kinds, with the settings every live kind
	// shares.
	Interface string
	Netns     string // capture inside the network namespace at this path
	Snaplen   int    // 0: the kind's default
	Promisc   bool
	// Filter is the tcpdump-style expression ("" = none). A kind runs it in
	// the kernel, or returns Opened.NewFilter to run it in user space.
	Filter   string
	Progress io.Writer // nil: no progress bar
	Stats    *stats.Registry
	Log      *slog.Logger
}

// Opened is what a source kind opened.
type Opened struct {
	Sources []Source
	// NewFilter, when set, makes each dispatcher's user-space filter.
	NewFilter func() Filter
	// IfName names the capture's interfaces by index (-w's interface
	// blocks); nil when the kind knows none.
	IfName func(ifIndex int32) string
	// Attrs describe the capture for the start-up log line.
	Attrs []any
	// CloseNeedsPrivileges is set when Close needs privileges that --user
	// would give up (tc filters are removed with CAP_NET_ADMIN): the app
	// then refuses --user rather than leave them behind.
	CloseNeedsPrivileges bool
}

// RegisterSource adds a source kind; a duplicate kind panics.
func RegisterSource(s SourceSpec) { sourceKinds.Add(s.Kind, s) }

// SourceKind returns the spec of a registered kind.
func SourceKind(kind string) (SourceSpec, bool) { return sourceKinds.Get(kind) }

// SourceKinds lists the registered kinds, sorted.
func SourceKinds() []string { return sourceKinds.Names() }

// SinkSpec declares a kind of sink, chosen by the scheme of -o.
type SinkSpec struct {
	// Scheme is the part of -o before the first ':' ("file" for
	// file:PATH, "kafka" for kafka://...); "-" is an alias of "stdout".
	Scheme string
	Usage  string // "file:PATH", for messages and --help
	// NewOptions returns the kind's settings with their defaults (nil: none).
	NewOptions func() registry.Options
	// Check validates target and options as Open does, opening nothing
	// (config check). Nil: Open's own checks are the only ones.
	Check func(target string, opts registry.Options) error
	// Open creates the sink for target, the whole -o value.
	Open func(target string, opts registry.Options, env SinkEnv) (Sink, error)
	// Redact returns target fit for logs, metrics and config check (no
	// password). Nil: target is shown as it is.
	Redact func(target string) string
}

// SinkEnv is what every sink is opened with.
type SinkEnv struct {
	// Ctx is cancelled when the run is told to stop (the first SIGINT or
	// SIGTERM): a sink stops every wait then (for a broker, for room) and
	// spills or counts instead of blocking the drain.
	Ctx    context.Context
	Format string // --format: json or msgpack
	// Live is true when the source is a live capture (-i): it cannot be
	// slowed down, so a sink may drop rather than push back (the Kafka
	// spool's default --kafka-spool-full).
	Live   bool
	Stdout io.Writer // for "-"
	Stats  *stats.Registry
	Log    *slog.Logger
}

// RegisterSink adds a sink scheme; a duplicate scheme panics.
func RegisterSink(s SinkSpec) { sinkSchemes.Add(s.Scheme, s) }

// SinkFor returns the spec whose scheme target uses.
func SinkFor(target string) (SinkSpec, bool) { return sinkSchemes.Get(SinkScheme(target)) }

// SinkSchemes lists the registered schemes, sorted.
func SinkSchemes() []string { return sinkSchemes.Names() }

// SinkScheme is the scheme of an -o value: "stdout" for "-", else what
// precedes the first ':' ("" when there is none).
func SinkScheme(target string) string {
	if target == "-" || target == "" {
		return "stdout"
	}
	scheme, _, ok := strings.Cut(target, ":")
	if !ok {
		return ""
	}
	return scheme
}

// Output is a sink with the name that metrics and logs use for it.
type Output struct {
	Name string // e.g. "file", "kafka", "stdout"; unique in a pipeline
	Sink Sink
}

// Tap sees every packet that passed the filter, once, in the dispatcher
// that read it (before decoding): the -w capture writer is one.
type Tap interface {
	// NewObserver returns the observer of one dispatcher goroutine: it is
	// called from that goroutine only.
	NewObserver() PacketObserver
	// Close is called once every dispatcher is done, before the workers
	// flush and the sinks close.
	Close() error
}

// PacketObserver is one dispatcher's view of a Tap.
type PacketObserver interface {
	Observe(p *packet.Packet)
}

// ErrReaderGone is wrapped by a sink error that means the reader of the
// output went away on purpose (`pktpipe ... | head`): the run stops
// reading and exits quietly instead of reporting a failure.
var ErrReaderGone = errors.New("the reader of the output went away")

// LostError is a sink error that also reports events the sink had accepted
// in earlier Writes but could not deliver (they were in its buffer when
// the output failed). The engine counts them as lost with the batch.
type LostError struct {
	Accepted uint64
	Err      error
}

func (e *LostError) Error() string { return e.Err.Error() }
func (e *LostError) Unwrap() error { return e.Err }
