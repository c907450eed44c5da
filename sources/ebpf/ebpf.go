// Package ebpf is pktpipe's live capture source built on a TC/TCX eBPF
// program (bpf/capture.c) that copies each packet's metadata and first
// snaplen bytes to a perf event array.
//
// New loads one program instance per attachment (ingress and/or egress of
// one interface), each with its own attach id and direction constants and
// all sharing the events map, and attaches them with TCX links owned by
// this process: nothing is pinned, so the kernel detaches them when the
// links are closed or the process dies (the tc fallback below is the
// exception). Run reads samples with a
// perf.Reader (per-CPU buffers, a wakeup watermark of a quarter buffer and
// a read deadline so that a quiet link still delivers), copies them into
// pooled batches reusing one Record (no allocation per sample), and counts
// samples the kernel could not store per CPU in
// pktpipe_ebpf_lost_samples_total.
//
// A packet's Index (pcap_cnt) counts the packets Run has sent, in the
// order they leave the source (each batch sorted by time), from 1.
//
// Timestamps come from bpf_ktime_get_ns (CLOCK_MONOTONIC) and are moved to
// the wall clock by an offset measured once in New.
//
// What the program sees: at TC egress, locally generated TCP/UDP can be a
// GSO/TSO super-packet (OrigLen up to 64 KiB); AF_PACKET on the sending host
// sees the same. Captured bytes are capped at 65000 per packet, because a
// perf record must stay under 64 KiB.
//
// Attaching: TCX (Linux 6.6+) by default. Config.Attach "tc" (or "auto",
// the default, on a kernel where TCX is not supported) attaches the same
// programs as direct-action cls_bpf filters on a clsact qdisc through
// netlink instead (see tc.go): those are not owned by the process, so Run
// and Close remove them (and the qdisc if the source added it), and a
// crashed run's filters are found by name and removed by the next start.
//
// Lifecycle: New attaches, Run reads until cancelled and then detaches and
// drains, Close releases the reader, programs and map (detaching first if
// Run never ran). The kind "ebpf" (register.go) builds a source from the
// registry's SourceEnv and its own flags (--perf-buffer, --ebpf-attach).
//
// Requirements: Linux 6.6 or later for TCX, or any kernel with clsact and
// cls_bpf direct-action (4.5+) for the tc fallback; CAP_BPF + CAP_PERFMON
// + CAP_NET_ADMIN (or root). In tc mode CAP_NET_ADMIN is needed again at
// exit to remove the filters.
package ebpf

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/pktpipe/pktpipe/internal/netns"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/perf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	pbpf "github.com/pktpipe/pktpipe/bpf"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

// Defaults for Config's zero values.
const (
	DefaultPerCPUBuffer = 1 << 20
	DefaultReadTimeout  = 75 * time.Millisecond
	MaxSnaplen          = 65000 // what bpf/capture.c can copy per packet
)

// Config describes a capture on one interface.
type Config struct {
	Interface string // required
	// Netns, when set, is the path of the network namespace the interface
	// is in (e.g. /var/run/netns/NAME).
	Netns string

	// Ingress and Egress choose the hooks; both false means both.
	Ingress, Egress bool

	Snaplen      int           // bytes copied per packet, default and maximum MaxSnaplen
	PerCPUBuffer int           // perf buffer bytes per CPU, rounded up to pages; default 1 MiB
	Watermark    int           // bytes that wake the reader; default PerCPUBuffer/4
	ReadTimeout  time.Duration // how long a quiet link may hold samples back; default 75ms

	// Attach is AttachAuto (""), AttachTCX or AttachTC.
	Attach string

	Filter KernelFilter

	Stats *stats.Registry // nil: a private registry
}

// Attach modes.
const (
	AttachAuto = "auto" // TCX, or tc when the kernel does not support TCX
	AttachTCX  = "tcx"  // TCX links only
	AttachTC   = "tc"   // clsact qdisc and cls_bpf direct-action filters
)

// KernelFilter is evaluated in the program, before anything is copied.
// Zero fields match anything; set fields must all match. It reads
// Ethernet frames with at most one in-band 802.1Q/802.1ad tag:
//   - Addr (IPv4 or IPv6) matches the source or destination address, and
//     excludes the other IP version and non-IP frames;
//   - Proto matches the IPv4 protocol or the IPv6 first next-header (IPv6
//     extension headers are not walked);
//   - Port matches the TCP, UDP or SCTP source or destination port, for
//     IPv4 first fragments and IPv6 without extension headers.
type KernelFilter struct {
	Addr  netip.Addr
	Proto uint8
	Port  uint16
}

func (c *Config) defaults() error {
	if c.Interface == "" {
		return errors.New("ebpf: no interface")
	}
	if !c.Ingress && !c.Egress {
		c.Ingress, c.Egress = true, true
	}
	if c.Snaplen <= 0 || c.Snaplen > MaxSnaplen {
		c.Snaplen = MaxSnaplen
	}
	if c.PerCPUBuffer <= 0 {
		c.PerCPUBuffer = DefaultPerCPUBuffer
	}
	if c.Watermark <= 0 {
		c.Watermark = c.PerCPUBuffer / 4
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.Stats == nil {
		c.Stats = stats.NewRegistry()
	}
	switch c.Attach {
	case "":
		c.Attach = AttachAuto
	case AttachAuto, AttachTCX, AttachTC:
	default:
		return fmt.Errorf("ebpf: attach mode %q: use auto, tcx or tc", c.Attach)
	}
	return nil
}

// Source is the attached programs and their perf reader.
type Source struct {
	cfg     Config
	name    string
	ifIndex int

	events *ebpf.Map
	colls  []*ebpf.Collection
	links  []link.Link
	tc     *tcAttach // the tc fallback, when in use
	mode   string    // AttachTCX or AttachTC once attached
	rd     *perf.Reader

	monoToWall int64 // add to bpf_ktime_get_ns to get Unix ns

	lost    []*stats.Counter // per CPU
	samples *stats.Counter
	bad     *stats.Counter

	running   atomic.Bool // set by the first Run: a second one fails
	closing   atomic.Bool // set by Close: a running Run detaches, drains and returns
	runMu     sync.Mutex  // held by Run; Close waits for it before releasing
	closed    bool        // under runMu
	closeOnce sync.Once
	closeErr  error
}

const (
	dirIngress = 1 // matches DIR_INGRESS in capture.c
	dirEgress  = 2
)

// metaSize is sizeof(struct meta) in capture.c.
const metaSize = 32

var memlockOnce sync.Once
var memlockErr error

// New loads and attaches the programs. Capture starts when New returns
// (the perf buffers hold samples until Run reads them). Run detaches the
// programs when it stops; Close releases everything, whether or not Run
// ran.
func New(cfg Config) (*Source, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	// On 5.11+ BPF memory is charged to the cgroup and this is a no-op;
	// when it fails the real cause (no CAP_BPF, usually) shows up at the
	// first map or program load, whose error then mentions it.
	memlockOnce.Do(func() { memlockErr = rlimit.RemoveMemlock() })
	s := &Source{cfg: cfg, name: "ebpf:" + cfg.Interface}
	var err error
	if cfg.Netns != "" {
		err = netns.Do(cfg.Netns, s.open)
		if err != nil {
			err = fmt.Errorf("ebpf: %w", err)
		}
	} else {
		err = s.open()
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Source) open() error {
	cfg := &s.cfg
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return fmt.Errorf("ebpf: %w", err)
	}
	s.ifIndex = ifi.Index

	spec, err := pbpf.LoadCapture()
	if err != nil {
		return fmt.Errorf("ebpf: %w", err)
	}
	s.events, err = ebpf.NewMap(spec.Maps[pbpf.CaptureMapEvents])
	if err != nil {
		return fmt.Errorf("ebpf: creating the perf event array: %w", capErr(err, "CAP_BPF"))
	}
	ncpu := s.events.MaxEntries()
	for cpu := range int(ncpu) {
		s.lost = append(s.lost, cfg.Stats.LossCounter("pktpipe_ebpf_lost_samples_total",
			"Samples the eBPF program could not write because the CPU's perf buffer was full.", "cpu", strconv.Itoa(cpu)))
	}
	lbl := []string{"interface", cfg.Interface}
	s.samples = cfg.Stats.Counter("pktpipe_ebpf_samples_total", "Samples read from the perf buffers.", lbl...)
	s.bad = cfg.Stats.LossCounter("pktpipe_ebpf_bad_samples_total", "Samples too short for their own header (dropped).", lbl...)

	if err := s.attach(spec, ifi.Index); err != nil {
		return err
	}

	s.rd, err = perf.NewReaderWithOptions(s.events, cfg.PerCPUBuffer, perf.ReaderOptions{Watermark: cfg.Watermark})
	if err != nil {
		return fmt.Errorf("ebpf: perf reader: %w", capErr(err, "CAP_PERFMON"))
	}
	s.monoToWall = monoToWallOffset()
	return nil
}

// attach loads one program instance per hook, sharing the events map, and
// attaches each with TCX, or with tc filters (AttachTC, or AttachAuto on a
// kernel without TCX).
func (s *Source) attach(spec *ebpf.CollectionSpec, ifIndex int) error {
	cfg := &s.cfg
	type attachment struct {
		dir uint8
		at  ebpf.AttachType
	}
	var atts []attachment
	if cfg.Ingress {
		atts = append(atts, attachment{dirIngress, ebpf.AttachTCXIngress})
	}
	if cfg.Egress {
		atts = append(atts, attachment{dirEgress, ebpf.AttachTCXEgress})
	}
	for id, a := range atts {
		sp := spec.Copy()
		if err := s.setConsts(sp, uint32(id), a.dir); err != nil {
			return err
		}
		coll, err := ebpf.NewCollectionWithOptions(sp, ebpf.CollectionOptions{
			MapReplacements: map[string]*ebpf.Map{pbpf.CaptureMapEvents: s.events},
		})
		if err != nil {
			return fmt.Errorf("ebpf: loading the capture program: %w", capErr(err, "CAP_BPF and CAP_PERFMON"))
		}
		s.colls = append(s.colls, coll)
		prog := coll.Programs[pbpf.CaptureProgCapture]
		if s.mode == "" && cfg.Attach != AttachTC {
			l, err := link.AttachTCX(link.TCXOptions{
				Interface: ifIndex,
				Program:   prog,
				Attach:    a.at,
				Anchor:    link.Tail(),
			})
			switch {
			case err == nil:
				s.links = append(s.links, l)
				continue
			case errors.Is(err, ebpf.ErrNotSupported) && cfg.Attach == AttachAuto && id == 0:
				// Fall back to tc for every attachment.
			case errors.Is(err, ebpf.ErrNotSupported):
				return fmt.Errorf("ebpf: attaching to %s: TCX is not supported by this kernel (needs Linux 6.6+; --ebpf-attach tc or auto uses a clsact qdisc instead): %w", cfg.Interface, err)
			default:
				return fmt.Errorf("ebpf: attaching to %s: %w", cfg.Interface, capErr(err, "CAP_NET_ADMIN"))
			}
		}
		if s.tc == nil {
			s.mode = AttachTC
			if s.tc, err = newTCAttach(ifIndex, cfg.Interface); err != nil {
				return fmt.Errorf("ebpf: %w", err)
			}
		}
		if err := s.tc.attach(prog.FD(), a.dir); err != nil {
			return fmt.Errorf("ebpf: %w", err)
		}
	}
	if s.mode == "" {
		s.mode = AttachTCX
	}
	return nil
}

func (s *Source) setConsts(sp *ebpf.CollectionSpec, id uint32, dir uint8) error {
	f := s.cfg.Filter
	var family uint8
	var addr [16]byte
	if f.Addr.IsValid() {
		a := f.Addr.Unmap()
		if a.Is4() {
			family = 4
			v4 := a.As4()
			copy(addr[:], v4[:])
		} else {
			family = 6
			addr = a.As16()
		}
	}
	for name, v := range map[string]any{
		pbpf.CaptureVarAttachId:     id,
		pbpf.CaptureVarDirection:    dir,
		pbpf.CaptureVarSnaplen:      uint32(s.cfg.Snaplen),
		pbpf.CaptureVarFilterFamily: family,
		pbpf.CaptureVarFilterAddr:   addr,
		pbpf.CaptureVarFilterProto:  f.Proto,
		pbpf.CaptureVarFilterPort:   f.Port,
	} {
		vs, ok := sp.Variables[name]
		if !ok {
			return fmt.Errorf("ebpf: program has no variable %s", name)
		}
		if err := vs.Set(v); err != nil {
			return fmt.Errorf("ebpf: setting %s: %w", name, err)
		}
	}
	return nil
}

// capErr names the missing capability when the kernel said EPERM.
func capErr(err error, caps string) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		if memlockErr != nil {
			return fmt.Errorf("%w (needs %s, or root; raising RLIMIT_MEMLOCK also failed: %v)", err, caps, memlockErr)
		}
		return fmt.Errorf("%w (needs %s, or root)", err, caps)
	}
	return err
}

// monoToWallOffset returns wall - monotonic in ns from the tightest of a
// few paired readings.
func monoToWallOffset() int64 {
	var best, off int64 = 1 << 62, 0
	for range 8 {
		var ts unix.Timespec
		t1 := time.Now().UnixNano()
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			continue
		}
		t2 := time.Now().UnixNano()
		if d := t2 - t1; d < best {
			best, off = d, t1+d/2-ts.Nano()
		}
	}
	return off
}

// Name is ebpf:IFACE.
func (s *Source) Name() string { return s.name }

// IfIndex is the interface's index in its namespace.
func (s *Source) IfIndex() int { return s.ifIndex }

// AttachMode is how the programs were attached: AttachTCX or AttachTC.
func (s *Source) AttachMode() string { return s.mode }

// StaleFilters reports, in tc mode, how many filters of pktpipe processes
// that no longer run were removed at start, and the names of filters of
// live pktpipe processes found on the interface (left alone).
func (s *Source) StaleFilters() (removed int, others []string) {
	if s.tc == nil {
		return 0, nil
	}
	return s.tc.staleFreed, s.tc.staleKept
}

// detach closes the links or removes the tc filters; the programs stop
// running at once. It reports what it could not remove.
func (s *Source) detach() error {
	for _, l := range s.links {
		_ = l.Close()
	}
	s.links = nil
	err := s.tc.detach()
	s.tc = nil
	return err
}

// Close detaches the programs (if Run has not) and releases the perf
// reader, the programs and the map. It is safe to call more than once; the
// first call's error (tc mode only) names the filters or qdisc it could
// not remove and the tc command that removes them. Called while Run runs,
// it stops Run as a cancel does and waits for it to return (which needs
// out to be drained).
func (s *Source) Close() error {
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		s.wake()
		s.runMu.Lock()
		defer s.runMu.Unlock()
		s.closed = true
		s.closeErr = s.detach()
		if s.rd != nil {
			_ = s.rd.Close()
		}
		for _, c := range s.colls {
			c.Close()
		}
		s.colls = nil
		if s.events != nil {
			_ = s.events.Close()
		}
	})
	return s.closeErr
}

// wake interrupts the reader's wait; Run then sees the cancel or Close.
// Safe after Close (Flush then fails).
func (s *Source) wake() {
	if s.rd != nil {
		_ = s.rd.Flush()
	}
}

// sampleRun is the state of one Run: the batch being filled and what its
// packets are numbered and stamped with.
type sampleRun struct {
	s        *Source
	pool     *packet.Pool
	out      chan<- *packet.Batch
	rec      perf.Record // reused: no allocation per sample
	b        *packet.Batch
	lastTS   int64
	maxBytes int
	nSamples uint64 // read since the last flush
	idx      uint64 // packets sent so far: the last one's Index
}

// Run copies samples into batches until ctx is cancelled (or Close is
// called). Then it detaches the programs, drains what the perf buffers
// still hold, sends it and returns; Close releases the rest. Its error
// includes a failure to remove tc filters.
func (s *Source) Run(ctx context.Context, pool *packet.Pool, out chan<- *packet.Batch) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("ebpf: Run called twice")
	}
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.closed || s.rd == nil {
		return errors.New("ebpf: source is closed")
	}
	// Cancel wakes the reader; the loop then detaches and drains.
	stop := context.AfterFunc(ctx, s.wake)
	defer stop()
	r := &sampleRun{s: s, pool: pool, out: out, rec: perf.Record{RawSample: make([]byte, 0, 1<<16)}, maxBytes: pool.MaxPacketBytes()}
	return r.loop(ctx)
}

// loop reads samples until stopped and drained. A read that times out or
// is flushed means every ring has been read to its end: the batch in hand
// goes out then, so a quiet link still delivers.
func (r *sampleRun) loop(ctx context.Context) error {
	s := r.s
	var detachErr error
	draining := false
	s.rd.SetDeadline(time.Now().Add(s.cfg.ReadTimeout))
	for {
		err := s.rd.ReadInto(&r.rec)
		if err == nil {
			r.add()
			continue
		}
		r.flush()
		if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, perf.ErrFlushed) {
			return errors.Join(fmt.Errorf("ebpf %s: reading samples: %w", s.cfg.Interface, err), detachErr)
		}
		switch {
		case draining:
			return detachErr
		case ctx.Err() != nil || s.closing.Load():
			// Stop the programs, then take what they wrote before that
			// without waiting.
			detachErr = s.detach()
			draining = true
			s.rd.SetDeadline(time.Now())
		default:
			s.rd.SetDeadline(time.Now().Add(s.cfg.ReadTimeout))
		}
	}
}

// add copies the sample in r.rec into the batch, or counts it as lost or
// bad.
func (r *sampleRun) add() {
	s, rec := r.s, &r.rec
	if rec.LostSamples > 0 {
		if rec.CPU < len(s.lost) {
			s.lost[rec.CPU].Add(rec.LostSamples)
		}
		return
	}
	raw := rec.RawSample
	if len(raw) < metaSize {
		s.bad.Inc()
		return
	}
	// struct meta, little-endian as the program wrote it (bpfel).
	capLen := int(binary.LittleEndian.Uint32(raw[20:]))
	if metaSize+capLen > len(raw) {
		s.bad.Inc()
		return
	}
	// Trust cap_len, not len(raw): the kernel pads samples.
	data := raw[metaSize : metaSize+min(capLen, r.maxBytes)]
	if r.b != nil && r.b.Full(len(data)) {
		r.send()
	}
	if r.b == nil {
		r.b = r.pool.Get()
	}
	p := r.b.Append(data)
	p.Timestamp = int64(binary.LittleEndian.Uint64(raw[0:])) + s.monoToWall
	p.IfIndex = int32(binary.LittleEndian.Uint32(raw[8:]))
	p.OrigLen = binary.LittleEndian.Uint32(raw[16:])
	p.LinkType = packet.LinkEthernet
	switch raw[24] {
	case dirIngress:
		p.Direction = packet.DirIngress
	case dirEgress:
		p.Direction = packet.DirEgress
	}
	r.lastTS = max(r.lastTS, p.Timestamp)
	r.nSamples++
}

// send sorts the batch by time, numbers its packets and hands it on.
func (r *sampleRun) send() {
	b := r.b
	sortByTime(b.Packets)
	// Index follows the order packets leave the source (after the sort),
	// so it grows along the stream the pipeline sees.
	for i := range b.Packets {
		r.idx++
		b.Packets[i].Index = r.idx
	}
	b.Now = r.lastTS
	r.out <- b
	r.b = nil
}

// flush sends the batch in hand, if it holds anything, and counts the
// samples read.
func (r *sampleRun) flush() {
	if r.b != nil && len(r.b.Packets) > 0 {
		r.send()
	}
	r.s.samples.Add(r.nSamples)
	r.nSamples = 0
}

// sortByTime puts a batch in timestamp order. Each CPU has its own perf
// buffer and the reader drains them one after another, so packets from
// different CPUs arrive interleaved out of order; within a buffer they are
// in order, so the batch is nearly sorted and an insertion sort is cheap
// (and allocates nothing). Batches themselves can still be out of order by
// up to one reader wake-up under load.
func sortByTime(ps []packet.Packet) {
	for i := 1; i < len(ps); i++ {
		if ps[i].Timestamp >= ps[i-1].Timestamp {
			continue
		}
		p := ps[i]
		j := i
		for ; j > 0 && ps[j-1].Timestamp > p.Timestamp; j-- {
			ps[j] = ps[j-1]
		}
		ps[j] = p
	}
}
