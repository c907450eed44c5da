package ebpf

import (
	"flag"
	"fmt"
	"log/slog"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/stages/bpffilter"
)

// Kind is the source kind of eBPF capture (-i, --capture ebpf).
const Kind = "ebpf"

func init() {
	pipeline.RegisterSource(pipeline.SourceSpec{
		Kind:       Kind,
		Usage:      "live capture (-i) with a TCX program (tc filters where TCX is missing) copying packets to perf buffers",
		Live:       true,
		NewOptions: func() registry.Options { return &Options{Attach: AttachAuto} },
		Open:       openKind,
	})
}

// Options are the eBPF settings; the interface, netns, snaplen and filter
// every live kind shares come in pipeline.SourceEnv (promiscuous mode does
// not apply: the program sees what the interface's stack sees).
type Options struct {
	PerfBuffer registry.ByteSize // --perf-buffer, per CPU (0: DefaultPerCPUBuffer)
	Attach     string            // --ebpf-attach: AttachAuto, AttachTCX or AttachTC
}

// RegisterFlags declares --perf-buffer and --ebpf-attach.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.Var(&o.PerfBuffer, "perf-buffer", "eBPF: perf buffer `SIZE` per CPU (0 = 1M)")
	fs.StringVar(&o.Attach, "ebpf-attach", AttachAuto, "eBPF: attach with `MODE` tcx (Linux 6.6+), tc (clsact qdisc and cls_bpf filters, removed on exit) or auto (tcx, else tc)")
}

// Validate checks the attach mode and the buffer size.
func (o *Options) Validate() error {
	switch o.Attach {
	case AttachAuto, AttachTCX, AttachTC:
	default:
		return registry.Usagef("--ebpf-attach %q: use auto, tcx or tc", o.Attach)
	}
	if o.PerfBuffer > 1<<30 {
		return registry.Usagef("--perf-buffer %d: at most 1G per CPU", o.PerfBuffer)
	}
	return nil
}

// openKind attaches to env.Interface. A filter expression runs whole in
// user space (Opened.NewFilter, on the Ethernet frames the program
// delivers); the part the program understands (bpffilter.KernelSubset) is
// also set in the kernel, to copy less. Every error is a usage error: the
// command exits 2 on a wrong interface, a filter that does not compile and
// missing privileges alike, as it did before sources were registered.
func openKind(opts registry.Options, env pipeline.SourceEnv) (pipeline.Opened, error) {
	o, _ := opts.(*Options)
	if o == nil {
		o = &Options{Attach: AttachAuto}
	}
	if err := o.Validate(); err != nil {
		return pipeline.Opened{}, err
	}
	switch {
	case env.Interface == "":
		return pipeline.Opened{}, registry.Usagef("the %s source needs an interface (-i)", Kind)
	case env.Snaplen < 0:
		return pipeline.Opened{}, registry.Usagef("--snaplen must not be negative")
	case env.Snaplen > MaxSnaplen:
		return pipeline.Opened{}, registry.Usagef("--snaplen %d: the eBPF source copies at most %d bytes", env.Snaplen, MaxSnaplen)
	}
	log := env.Log
	if log == nil {
		log = slog.Default()
	}
	cfg := Config{
		Interface: env.Interface, Netns: env.Netns, Snaplen: env.Snaplen,
		PerCPUBuffer: int(o.PerfBuffer), Attach: o.Attach, Stats: env.Stats,
	}
	var newFilter func() pipeline.Filter
	if env.Filter != "" {
		expr, err := bpffilter.New(env.Filter, []packet.LinkType{packet.LinkEthernet}, 0, env.Stats, log)
		if err != nil {
			return pipeline.Opened{}, registry.Usage(err)
		}
		newFilter = func() pipeline.Filter { return expr.NewFilter() }
		cfg.Filter.Addr, cfg.Filter.Proto, cfg.Filter.Port = bpffilter.KernelSubset(env.Filter)
	}
	// New detaches and closes what it opened when it fails.
	s, err := New(cfg)
	if err != nil {
		return pipeline.Opened{}, registry.Usage(fmt.Errorf("-i %s: %w", env.Interface, err))
	}
	tc := s.AttachMode() == AttachTC
	if tc {
		removed, others := s.StaleFilters()
		if removed > 0 {
			log.Warn("removed tc filters left by pktpipe processes that no longer run", "interface", env.Interface, "filters", removed)
		}
		if len(others) > 0 {
			log.Info("other pktpipe tc filters on the interface (processes still running)", "interface", env.Interface, "filters", others)
		}
	}
	ifIndex, name := int32(s.IfIndex()), env.Interface
	return pipeline.Opened{
		Sources:   []pipeline.Source{s},
		NewFilter: newFilter,
		IfName: func(i int32) string {
			if i == ifIndex {
				return name
			}
			return ""
		},
		Attrs: []any{"attach", s.AttachMode()},
		// tc filters are removed at Close, with CAP_NET_ADMIN; TCX links
		// go with the process.
		CloseNeedsPrivileges: tc,
	}, nil
}
