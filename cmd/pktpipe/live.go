package main

import (
	"errors"
	"flag"
	"fmt"
	"github.com/pktpipe/pktpipe/internal/netns"
	"net"
	"os"
	"os/user"
	"strconv"
	"syscall"
	"time"

	"github.com/pktpipe/pktpipe/internal/app"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/sources/afpacket"
	"github.com/pktpipe/pktpipe/sources/ebpf"
	"github.com/pktpipe/pktpipe/stages/bpffilter"
)

// liveOptions are the flags of live capture (-i), of filter expressions
// and of -w.
//
// Where a filter expression runs (it always means what tcpdump means):
//   - AF_PACKET: compiled for the live interface (tcpdump -ddd -y) and
//     attached to every socket in the kernel; nothing else is filtered.
//   - eBPF: the part of the expression the capture program understands
//     (bpffilter.KernelSubset: address, protocol, port of a plain
//     conjunction) is set as its kernel filter, to copy less; the whole
//     expression then runs in user space on what arrives.
//   - files (-r): compiled per link type in the input and run in user
//     space, one VM per dispatcher.
type liveOptions struct {
	capture     string
	fanout      int
	snaplen     int
	promisc     bool
	ringBlocks  int
	ringBlock   byteSize
	ringTimeout time.Duration
	perfBuffer  byteSize
	ebpfAttach  string
	netns       string
	write       string
	user        string
}

func (l *liveOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&l.capture, "capture", "afpacket", "live capture method: afpacket (TPACKET_V3 ring) or ebpf (TCX program; tc filters where TCX is missing)")
	fs.IntVar(&l.fanout, "fanout", 1, "AF_PACKET: `N` sockets in one fanout group (flow hash), each with its own dispatcher")
	fs.IntVar(&l.snaplen, "snaplen", 0, "bytes kept per packet (0 = 262144 for afpacket, 65000 for ebpf)")
	fs.BoolVar(&l.promisc, "promisc", false, "put the interface in promiscuous mode while capturing")
	fs.IntVar(&l.ringBlocks, "ring-blocks", 0, "AF_PACKET: blocks in each socket's ring (0 = 8)")
	fs.Var(&l.ringBlock, "ring-block-size", "AF_PACKET: bytes per ring block, a multiple of the page size (0 = 1M)")
	fs.DurationVar(&l.ringTimeout, "ring-timeout", 0, "AF_PACKET: the kernel hands over a partly filled block after this (0 = 64ms)")
	fs.Var(&l.perfBuffer, "perf-buffer", "eBPF: perf buffer `SIZE` per CPU (0 = 1M)")
	fs.StringVar(&l.ebpfAttach, "ebpf-attach", "auto", "eBPF: attach with `MODE` tcx (Linux 6.6+), tc (clsact qdisc and cls_bpf filters, removed on exit) or auto (tcx, else tc)")
	fs.StringVar(&l.netns, "netns", "", "capture on -i inside the network namespace at `PATH` (e.g. /var/run/netns/NAME)")
	fs.StringVar(&l.write, "w", "", "also write the packets read (after the filter) to `FILE` as pcapng, for replay with -r")
	fs.StringVar(&l.user, "user", "", "after opening the capture, drop root privileges to user `NAME` (uid, gid and groups)")
}

func (l *liveOptions) validate(o *options) error {
	switch l.capture {
	case "afpacket", "ebpf":
	default:
		return fmt.Errorf("--capture %q: use afpacket or ebpf", l.capture)
	}
	switch l.ebpfAttach {
	case ebpf.AttachAuto, ebpf.AttachTCX, ebpf.AttachTC:
	default:
		return fmt.Errorf("--ebpf-attach %q: use auto, tcx or tc", l.ebpfAttach)
	}
	live := o.iface != ""
	switch {
	case l.fanout < 1:
		return errors.New("--fanout must be at least 1")
	case l.fanout > 1 && l.capture == "ebpf":
		return errors.New("--fanout is an AF_PACKET option: the eBPF source has one perf reader (use --workers to spread flows)")
	case l.snaplen < 0:
		return errors.New("--snaplen must not be negative")
	case !live && (l.fanout > 1 || l.promisc || l.ringBlocks != 0 || l.ringBlock != 0 || l.ringTimeout != 0 ||
		l.perfBuffer != 0 || l.netns != "" || l.snaplen != 0 || l.user != "" || l.capture != "afpacket" || l.ebpfAttach != ebpf.AttachAuto):
		return errors.New("--capture, --fanout, --snaplen, --promisc, --ring-*, --perf-buffer, --ebpf-attach, --netns and --user apply to live capture (-i)")
	case l.ebpfAttach != ebpf.AttachAuto && l.capture != "ebpf":
		return errors.New("--ebpf-attach applies to --capture ebpf")
	case l.ebpfAttach == ebpf.AttachTC && l.user != "":
		return errors.New("--ebpf-attach tc with --user: removing the tc filters at exit needs CAP_NET_ADMIN, which --user gives up (use tcx, whose links go with the process)")
	case l.capture == "ebpf" && l.snaplen > ebpf.MaxSnaplen:
		return fmt.Errorf("--snaplen %d: the eBPF source copies at most %d bytes", l.snaplen, ebpf.MaxSnaplen)
	}
	return nil
}

// configure turns the live flags into sources on cfg (cfg.Sources), the
// filter expression into a kernel and/or user-space filter, and -w into
// cfg.WritePcap; then drops privileges if --user says so.
func (l *liveOptions) configure(o *options, cfg *app.Config) error {
	cfg.WritePcap = l.write
	if o.iface == "" {
		if o.filter == "" {
			return nil
		}
		// The link types of the files are known only while reading: the
		// expression compiles per link type on first sight. Check it here
		// against the common ones so that a typo fails at once.
		var firstErr error
		for _, lt := range []packet.LinkType{packet.LinkEthernet, packet.LinkSLL, packet.LinkRaw} {
			if _, err := bpffilter.Compile(o.filter, lt, 0); err == nil {
				firstErr = nil
				break
			} else if firstErr == nil {
				firstErr = err
			}
		}
		if firstErr != nil {
			return firstErr
		}
		expr, err := bpffilter.New(o.filter, nil, 0, cfg.Stats, cfg.Log)
		if err != nil {
			return err
		}
		cfg.NewFilter = func() pipeline.Filter { return expr.NewFilter() }
		return nil
	}

	var srcs []pipeline.Source
	attachMode := ""
	switch l.capture {
	case "afpacket":
		acfg := afpacket.Config{
			Interface: o.iface, Netns: l.netns,
			BlockSize: int(l.ringBlock), BlockCount: l.ringBlocks, BlockTimeout: l.ringTimeout,
			Snaplen: l.snaplen, Promisc: l.promisc, Fanout: l.fanout, Stats: cfg.Stats, Log: cfg.Log,
		}
		if o.filter != "" {
			lt, err := l.linkType(o.iface)
			if err != nil {
				return fmt.Errorf("-i %s: %w", o.iface, err)
			}
			prog, err := bpffilter.CompileLive(o.filter, lt, l.snaplen)
			if err != nil {
				return err
			}
			acfg.Filter = prog
		}
		group, err := afpacket.NewGroup(acfg)
		if err != nil {
			return fmt.Errorf("-i %s: %w", o.iface, err)
		}
		for _, s := range group {
			srcs = append(srcs, s)
		}
		ifName := map[int32]string{int32(group[0].IfIndex()): o.iface}
		cfg.PcapIfName = func(i int32) string { return ifName[i] }
	case "ebpf":
		ecfg := ebpf.Config{
			Interface: o.iface, Netns: l.netns, Snaplen: l.snaplen,
			PerCPUBuffer: int(l.perfBuffer), Attach: l.ebpfAttach, Stats: cfg.Stats,
		}
		if o.filter != "" {
			// The source delivers Ethernet frames; the whole expression
			// runs in user space, the kernel subset only copies less.
			expr, err := bpffilter.New(o.filter, []packet.LinkType{packet.LinkEthernet}, 0, cfg.Stats, cfg.Log)
			if err != nil {
				return err
			}
			cfg.NewFilter = func() pipeline.Filter { return expr.NewFilter() }
			ecfg.Filter.Addr, ecfg.Filter.Proto, ecfg.Filter.Port = bpffilter.KernelSubset(o.filter)
		}
		s, err := ebpf.New(ecfg)
		if err != nil {
			return fmt.Errorf("-i %s: %w", o.iface, err)
		}
		if s.AttachMode() == ebpf.AttachTC {
			if l.user != "" {
				// auto fell back to tc (no TCX on this kernel).
				_ = s.Close()
				return fmt.Errorf("-i %s: this kernel has no TCX, and the tc filters used instead could not be removed at exit after --user drops CAP_NET_ADMIN: run without --user", o.iface)
			}
			removed, others := s.StaleFilters()
			if removed > 0 {
				cfg.Log.Warn("removed tc filters left by pktpipe processes that no longer run", "interface", o.iface, "filters", removed)
			}
			if len(others) > 0 {
				cfg.Log.Info("other pktpipe tc filters on the interface (processes still running)", "interface", o.iface, "filters", others)
			}
		}
		attachMode = s.AttachMode()
		srcs = append(srcs, s)
		ifName := map[int32]string{int32(s.IfIndex()): o.iface}
		cfg.PcapIfName = func(i int32) string { return ifName[i] }
	}
	cfg.Sources = srcs
	if l.user != "" {
		if err := dropPrivileges(l.user); err != nil {
			for _, s := range srcs {
				if c, ok := s.(interface{ Close() error }); ok {
					_ = c.Close()
				}
			}
			return err
		}
	}
	attrs := []any{"interface", o.iface, "capture", l.capture, "sources", len(srcs), "filter", o.filter, "uid", os.Getuid()}
	if attachMode != "" {
		attrs = append(attrs, "attach", attachMode)
	}
	cfg.Log.Info("capturing", attrs...)
	return nil
}

// linkType is what the AF_PACKET source will call the interface's frames
// (the same rule as sources/afpacket): Ethernet for loopback and 6-byte
// hardware addresses, raw IP otherwise.
func (l *liveOptions) linkType(iface string) (packet.LinkType, error) {
	var ifi *net.Interface
	look := func() error {
		var err error
		ifi, err = net.InterfaceByName(iface)
		return err
	}
	var err error
	if l.netns != "" {
		err = netns.Do(l.netns, look)
		if err != nil {
			err = fmt.Errorf("--netns: %w", err)
		}
	} else {
		err = look()
	}
	if err != nil {
		return 0, err
	}
	if ifi.Flags&net.FlagLoopback != 0 || len(ifi.HardwareAddr) == 6 {
		return packet.LinkEthernet, nil
	}
	return packet.LinkRaw, nil
}

// dropPrivileges switches every thread of the process to name's uid, gid
// and supplementary groups (Go's syscall.Set* apply to all threads on
// Linux). Open sockets, rings, perf buffers and attached programs stay
// usable; output files are created afterwards, as the user.
func dropPrivileges(name string) error {
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("--user: %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("--user %s: uid %q gid %q are not numbers", name, u.Uid, u.Gid)
	}
	groups := []int{gid}
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.Atoi(g); err == nil && n != gid {
				groups = append(groups, n)
			}
		}
	}
	// Groups and gid first: after setuid there is no permission left.
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("--user %s: setgroups: %w", name, err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("--user %s: setgid: %w", name, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("--user %s: setuid: %w", name, err)
	}
	if uid != 0 && (syscall.Setuid(0) == nil || os.Geteuid() != uid) {
		return fmt.Errorf("--user %s: privileges were not dropped", name)
	}
	return nil
}
