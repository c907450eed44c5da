package afpacket

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/stages/bpffilter"
)

// Kind is the source kind of AF_PACKET capture (-i, --capture afpacket).
const Kind = "afpacket"

// maxFanout is the most sockets NewGroup opens in one group.
const maxFanout = 1 << 12

func init() {
	pipeline.RegisterSource(pipeline.SourceSpec{
		Kind:       Kind,
		Usage:      "live capture (-i) on AF_PACKET sockets with a TPACKET_V3 ring; --fanout N spreads flows over N sockets",
		Live:       true,
		NewOptions: func() registry.Options { return &Options{Fanout: 1} },
		Open:       openKind,
	})
}

// Options are the AF_PACKET settings; the interface, netns, snaplen,
// promisc and filter every live kind shares come in pipeline.SourceEnv.
type Options struct {
	Fanout        int               // --fanout: sockets in the group
	RingBlocks    int               // --ring-blocks (0: DefaultBlockCount)
	RingBlockSize registry.ByteSize // --ring-block-size (0: DefaultBlockSize)
	RingTimeout   time.Duration     // --ring-timeout (0: DefaultBlockTimeout)
}

// RegisterFlags declares --fanout and --ring-*.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&o.Fanout, "fanout", 1, "AF_PACKET: `N` sockets in one fanout group (flow hash), each with its own dispatcher")
	fs.IntVar(&o.RingBlocks, "ring-blocks", 0, "AF_PACKET: blocks in each socket's ring (0 = 8)")
	fs.Var(&o.RingBlockSize, "ring-block-size", "AF_PACKET: bytes per ring block, a multiple of the page size (0 = 1M)")
	fs.DurationVar(&o.RingTimeout, "ring-timeout", 0, "AF_PACKET: the kernel hands over a partly filled block after this (0 = 64ms)")
}

// Validate checks the settings that need no interface.
func (o *Options) Validate() error {
	page := int64(os.Getpagesize())
	switch {
	case o.Fanout < 1:
		return registry.Usagef("--fanout must be at least 1")
	case o.Fanout > maxFanout:
		return registry.Usagef("--fanout %d: at most %d sockets", o.Fanout, maxFanout)
	case o.RingBlocks < 0:
		return registry.Usagef("--ring-blocks must not be negative")
	case int64(o.RingBlockSize)%page != 0:
		return registry.Usagef("--ring-block-size %d: not a multiple of the page size (%d)", o.RingBlockSize, page)
	case int64(o.RingBlockSize) > 1<<30:
		return registry.Usagef("--ring-block-size %d: at most 1G", o.RingBlockSize)
	case o.RingTimeout < 0:
		return registry.Usagef("--ring-timeout must not be negative")
	case o.RingTimeout > 0 && o.RingTimeout < time.Millisecond:
		return registry.Usagef("--ring-timeout %v: the kernel counts whole milliseconds (use 0 for the default, 64ms)", o.RingTimeout)
	}
	return nil
}

// openKind opens the group on env.Interface. A filter expression is
// compiled for the interface's link type (tcpdump -ddd -y) and attached to
// every socket: the kernel filters, nothing runs in user space. Every
// error is a usage error: the command exits 2 on a wrong interface, a
// filter that does not compile and missing privileges alike, as it did
// before sources were registered.
func openKind(opts registry.Options, env pipeline.SourceEnv) (pipeline.Opened, error) {
	o, _ := opts.(*Options)
	if o == nil {
		o = &Options{Fanout: 1}
	}
	if err := o.Validate(); err != nil {
		return pipeline.Opened{}, err
	}
	switch {
	case env.Interface == "":
		return pipeline.Opened{}, registry.Usagef("the %s source needs an interface (-i)", Kind)
	case env.Snaplen < 0:
		return pipeline.Opened{}, registry.Usagef("--snaplen must not be negative")
	}
	cfg := Config{
		Interface: env.Interface, Netns: env.Netns,
		BlockSize: int(o.RingBlockSize), BlockCount: o.RingBlocks, BlockTimeout: o.RingTimeout,
		Snaplen: env.Snaplen, Promisc: env.Promisc, Fanout: o.Fanout, Stats: env.Stats, Log: env.Log,
	}
	if env.Filter != "" {
		lt, err := InterfaceLinkType(env.Interface, env.Netns)
		if err != nil {
			return pipeline.Opened{}, registry.Usage(fmt.Errorf("-i %s: %w", env.Interface, err))
		}
		prog, err := bpffilter.CompileLive(env.Filter, lt, env.Snaplen)
		if err != nil {
			return pipeline.Opened{}, registry.Usage(err)
		}
		cfg.Filter = prog
	}
	// NewGroup closes what it opened when it fails.
	group, err := NewGroup(cfg)
	if err != nil {
		return pipeline.Opened{}, registry.Usage(fmt.Errorf("-i %s: %w", env.Interface, err))
	}
	srcs := make([]pipeline.Source, len(group))
	for i, s := range group {
		srcs[i] = s
	}
	ifIndex, name := int32(group[0].IfIndex()), env.Interface
	return pipeline.Opened{
		Sources: srcs,
		IfName: func(i int32) string {
			if i == ifIndex {
				return name
			}
			return ""
		},
	}, nil
}
