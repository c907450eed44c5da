// Package afpacket is pktpipe's live capture source on Linux AF_PACKET
// sockets with a TPACKET_V3 memory-mapped receive ring.
//
// The kernel fills whole blocks of the ring (default 8 blocks of 1 MiB) and
// hands a block to user space when it is full or when the block timeout
// (default 64 ms) retires it. Run walks one block at a time, copies each
// packet once into a pooled batch and gives the block back: no lock and no
// syscall per packet, and poll(2) only when no block is ready. The ring
// absorbs bursts while the pipeline pushes back; what does not fit is
// dropped by the kernel and counted (PACKET_STATISTICS), never silently.
//
// The ring reader is written on x/sys/unix rather than gopacket/afpacket:
// gopacket's reader takes a mutex and does per-packet interface work in
// ZeroCopyReadPacketData, where this one does a block-at-a-time walk; see
// the Flood benchmark in this package for the measured difference.
//
// With Config.Fanout = N, NewGroup opens N sockets in one PACKET_FANOUT
// group; each is its own pipeline.Source and so gets its own dispatcher.
// The group runs bpf/fanout.c (PACKET_FANOUT_EBPF, with defragmentation):
// a symmetric flow hash, so both directions of a flow and all fragments of
// a datagram reach the same socket, that hashes an ICMP or ICMPv6 error by
// the packet it quotes, so the error reaches the socket, and so the
// dispatcher, of the flow it is about, in order behind that flow's packet.
// If the program cannot be loaded (no CAP_BPF, say) the group falls back
// to PACKET_FANOUT_HASH, which hashes an error by its own addresses, and
// logs a warning. A packet's Index
// (pcap_cnt) counts the packets its socket delivered since Run started, so
// with fanout it is per socket, not per interface.
//
// Lifecycle: NewGroup opens, Run reads until cancelled, Close releases
// the ring, the socket and the group's program; Run never closes. The kind
// "afpacket" (register.go) builds a group from the registry's SourceEnv
// and its own flags (--fanout, --ring-*), and compiles a filter
// expression for the kernel.
package afpacket

import (
	"context"
	"errors"
	"fmt"
	"github.com/pktpipe/pktpipe/internal/netns"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

// Defaults for Config's zero values.
const (
	DefaultBlockSize     = 1 << 20
	DefaultBlockCount    = 8
	DefaultFrameSize     = 2048
	DefaultBlockTimeout  = 64 * time.Millisecond
	DefaultSnaplen       = 262144
	DefaultStatsInterval = time.Second
)

// Config describes a capture. Zero values take the defaults above.
type Config struct {
	Interface string // required
	// Netns, when set, is the path of a network namespace to open the
	// sockets in (e.g. /var/run/netns/NAME); the interface is looked up
	// there.
	Netns string

	BlockSize    int           // bytes per ring block, a multiple of the page size
	BlockCount   int           // blocks in the ring
	FrameSize    int           // TPACKET_V3 only uses it to size tp_frame_nr; a multiple of 16
	BlockTimeout time.Duration // the kernel retires a partly filled block after this (ms resolution)
	Snaplen      int           // bytes kept per packet; also capped by the batch arena and the block

	Promisc bool // PACKET_MR_PROMISC on the interface while capturing

	// Fanout is the number of sockets in the fanout group; 0 or 1 means a
	// single socket without fanout.
	Fanout int
	// FanoutID joins (or creates) this group id, for sharing a group with
	// other processes. 0 lets the kernel pick an unused id. The first
	// socket sets the group's eBPF program (the other processes' must be
	// pktpipe's too); a group already in hash mode makes this one fall
	// back to hash mode.
	FanoutID uint16
	// FanoutHash forces PACKET_FANOUT_HASH instead of the eBPF program.
	FanoutHash bool

	// Filter is a classic BPF program attached with SO_ATTACH_FILTER. Its
	// accept returns larger than Snaplen are lowered to Snaplen. When nil
	// and Snaplen is set, a one-instruction "accept Snaplen bytes" filter
	// truncates in the kernel.
	Filter []bpf.RawInstruction

	Stats         *stats.Registry // where ring statistics go; nil: a private registry
	StatsInterval time.Duration   // how often PACKET_STATISTICS is read while running

	Log *slog.Logger // the fallback to hash mode is logged here; nil: slog.Default()
}

func (c *Config) defaults() error {
	if c.Interface == "" {
		return errors.New("afpacket: no interface")
	}
	if c.BlockSize <= 0 {
		c.BlockSize = DefaultBlockSize
	}
	if c.BlockCount <= 0 {
		c.BlockCount = DefaultBlockCount
	}
	if c.FrameSize <= 0 {
		c.FrameSize = DefaultFrameSize
	}
	if c.BlockTimeout <= 0 {
		c.BlockTimeout = DefaultBlockTimeout
	}
	if c.Snaplen <= 0 {
		c.Snaplen = DefaultSnaplen
	}
	if c.StatsInterval <= 0 {
		c.StatsInterval = DefaultStatsInterval
	}
	if c.Stats == nil {
		c.Stats = stats.NewRegistry()
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	page := os.Getpagesize()
	switch {
	case c.BlockSize%page != 0:
		return fmt.Errorf("afpacket: block size %d is not a multiple of the page size %d", c.BlockSize, page)
	case c.FrameSize%unix.TPACKET_ALIGNMENT != 0 || c.FrameSize < 128 || c.BlockSize%c.FrameSize != 0:
		return fmt.Errorf("afpacket: frame size %d must be a multiple of %d, at least 128, and divide the block size", c.FrameSize, unix.TPACKET_ALIGNMENT)
	case c.BlockTimeout < time.Millisecond:
		return fmt.Errorf("afpacket: block timeout %v is below 1ms", c.BlockTimeout)
	case c.Fanout > 1<<12:
		return fmt.Errorf("afpacket: fanout %d is too large", c.Fanout)
	}
	return nil
}

// Source is one AF_PACKET socket and its ring.
type Source struct {
	name     string
	index    int // socket index in the group
	fd       int
	wakeFd   int // eventfd that interrupts poll on cancel
	ring     []byte
	cfg      Config
	ifIndex  int32
	linkType packet.LinkType

	fanoutMode string // FanoutEBPF, FanoutHash, or "" without fanout

	packets, drops, freezes *stats.Counter

	running   atomic.Bool // set by the first Run: a second one fails
	closing   atomic.Bool // set by Close: a running Run stops
	runMu     sync.Mutex  // held by Run: Close waits for it before unmapping
	wakeMu    sync.Mutex  // orders wake against Close of wakeFd
	closeOnce sync.Once
}

// New opens a single socket (cfg.Fanout is ignored above 1: use NewGroup).
func New(cfg Config) (*Source, error) {
	cfg.Fanout = 1
	g, err := NewGroup(cfg)
	if err != nil {
		return nil, err
	}
	return g[0], nil
}

// NewGroup opens max(cfg.Fanout, 1) sockets on cfg.Interface; with more
// than one they share a fanout group. The sockets capture from the moment
// NewGroup returns (the rings buffer until Run starts). Close each Source
// once its Run has returned, or when it never runs: Run does not close.
func NewGroup(cfg Config) ([]*Source, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	n := max(cfg.Fanout, 1)
	var group []*Source
	closeAll := func() {
		for _, s := range group {
			s.Close()
		}
		group = nil
	}
	open := func(mode string) error {
		fanoutID := uint32(cfg.FanoutID)
		for i := range n {
			s, err := open(cfg, i)
			if err != nil {
				return err
			}
			group = append(group, s)
			if n == 1 {
				break
			}
			s.fanoutMode = mode
			if mode == FanoutEBPF && i == 0 {
				// Loaded before the group exists, so that a failure
				// leaves nothing behind to undo.
				prog, err := loadFanoutProg(s.linkType == packet.LinkEthernet)
				if err != nil {
					return &ebpfFanoutError{err}
				}
				defer prog.Close() // the group keeps its own reference
				id, err := s.joinFanout(fanoutID, cfg.FanoutID == 0, mode)
				if err != nil {
					return &ebpfFanoutError{err}
				}
				fanoutID = id
				if err := s.setFanoutProg(prog); err != nil {
					return &ebpfFanoutError{fmt.Errorf("afpacket %s: %w", cfg.Interface, err)}
				}
				continue
			}
			id, err := s.joinFanout(fanoutID, i == 0 && cfg.FanoutID == 0, mode)
			if err != nil {
				return err
			}
			fanoutID = id
		}
		return nil
	}
	try := func(mode string) error {
		var err error
		if cfg.Netns != "" {
			err = netns.Do(cfg.Netns, func() error { return open(mode) })
			if err != nil {
				err = fmt.Errorf("afpacket: %w", err)
			}
		} else {
			err = open(mode)
		}
		if err != nil {
			closeAll()
		}
		return err
	}
	mode := FanoutEBPF
	if cfg.FanoutHash {
		mode = FanoutHash
	}
	err := try(mode)
	if ee := (*ebpfFanoutError)(nil); errors.As(err, &ee) {
		cfg.Log.Warn("afpacket: PACKET_FANOUT_EBPF unavailable, using PACKET_FANOUT_HASH: an ICMP error may reach another socket than the flow it quotes, and be reported unmatched",
			"interface", cfg.Interface, "err", ee.err)
		err = try(FanoutHash)
	}
	if err != nil {
		return nil, err
	}
	return group, nil
}

func open(cfg Config, index int) (*Source, error) {
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("afpacket: %w", err)
	}
	s := &Source{
		name:    fmt.Sprintf("afpacket:%s#%d", cfg.Interface, index),
		index:   index,
		fd:      -1,
		wakeFd:  -1,
		cfg:     cfg,
		ifIndex: int32(ifi.Index),
	}
	lbl := []string{"interface", cfg.Interface, "socket", strconv.Itoa(index)}
	s.packets = cfg.Stats.Counter("pktpipe_afpacket_packets_total", "Packets the kernel passed to the AF_PACKET socket's filter and ring, including those it dropped (tp_packets).", lbl...)
	s.drops = cfg.Stats.LossCounter("pktpipe_afpacket_drops_total", "Packets the kernel dropped because the ring was full (tp_drops).", lbl...)
	s.freezes = cfg.Stats.Counter("pktpipe_afpacket_freezes_total", "Times the kernel froze the ring's queue because no block was free (tp_freeze_q_cnt).", lbl...)

	// Protocol 0 on socket(): nothing is queued until bind, so the ring
	// never sees packets of another interface.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("afpacket: socket(AF_PACKET): %w: capturing needs CAP_NET_RAW (run as root or grant cap_net_raw)", err)
		}
		return nil, fmt.Errorf("afpacket: socket(AF_PACKET): %w", err)
	}
	s.fd = fd
	if err := s.setup(ifi); err != nil {
		s.Close()
		return nil, fmt.Errorf("afpacket %s: %w", cfg.Interface, err)
	}
	return s, nil
}

// linkTypeOf is what the sockets deliver from ifi.
func linkTypeOf(ifi *net.Interface) packet.LinkType {
	switch {
	case ifi.Flags&net.FlagLoopback != 0:
		return packet.LinkEthernet // lo carries zeroed Ethernet headers
	case len(ifi.HardwareAddr) == 6:
		return packet.LinkEthernet
	default:
		// Point-to-point devices without a link header (tun, wireguard):
		// the kernel hands over the IP packet.
		return packet.LinkRaw
	}
}

// InterfaceLinkType is the link type a capture on iface (in the network
// namespace at netnsPath, when set) delivers, known before any socket is
// opened: a filter expression compiles for it (Config.Filter).
func InterfaceLinkType(iface, netnsPath string) (packet.LinkType, error) {
	var ifi *net.Interface
	look := func() (err error) {
		ifi, err = net.InterfaceByName(iface)
		return err
	}
	if netnsPath != "" {
		if err := netns.Do(netnsPath, look); err != nil {
			return 0, fmt.Errorf("--netns: %w", err)
		}
	} else if err := look(); err != nil {
		return 0, err
	}
	return linkTypeOf(ifi), nil
}

func (s *Source) setup(ifi *net.Interface) error {
	cfg := &s.cfg
	s.linkType = linkTypeOf(ifi)
	if err := unix.SetsockoptInt(s.fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return fmt.Errorf("PACKET_VERSION TPACKET_V3: %w", err)
	}
	// The filter goes on before the ring and bind, so nothing unfiltered
	// is ever queued.
	if err := s.attachFilter(); err != nil {
		return err
	}
	req := unix.TpacketReq3{
		Block_size:     uint32(cfg.BlockSize),
		Block_nr:       uint32(cfg.BlockCount),
		Frame_size:     uint32(cfg.FrameSize),
		Frame_nr:       uint32(cfg.BlockSize / cfg.FrameSize * cfg.BlockCount),
		Retire_blk_tov: uint32(cfg.BlockTimeout / time.Millisecond),
	}
	if err := unix.SetsockoptTpacketReq3(s.fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return fmt.Errorf("PACKET_RX_RING (%d blocks of %d bytes): %w", cfg.BlockCount, cfg.BlockSize, err)
	}
	ring, err := unix.Mmap(s.fd, 0, cfg.BlockSize*cfg.BlockCount, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_LOCKED|unix.MAP_POPULATE)
	if err != nil {
		// MAP_LOCKED can fail under a low RLIMIT_MEMLOCK; the ring works
		// without it, only page faults are possible on first touch.
		ring, err = unix.Mmap(s.fd, 0, cfg.BlockSize*cfg.BlockCount, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			return fmt.Errorf("mmap ring: %w", err)
		}
	}
	s.ring = ring
	sll := unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}
	if err := unix.Bind(s.fd, &sll); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if cfg.Promisc {
		mr := unix.PacketMreq{Ifindex: int32(ifi.Index), Type: unix.PACKET_MR_PROMISC}
		if err := unix.SetsockoptPacketMreq(s.fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mr); err != nil {
			return fmt.Errorf("PACKET_MR_PROMISC: %w", err)
		}
	}
	// Reading the statistics resets them: start from zero.
	if _, err := unix.GetsockoptTpacketStatsV3(s.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err != nil {
		return fmt.Errorf("PACKET_STATISTICS: %w", err)
	}
	wfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	s.wakeFd = wfd
	return nil
}

// attachFilter installs cfg.Filter, or a snaplen-only filter, with accept
// lengths capped at Snaplen.
func (s *Source) attachFilter() error {
	prog := s.cfg.Filter
	if prog == nil {
		if s.cfg.Snaplen >= DefaultSnaplen {
			return nil
		}
		prog = []bpf.RawInstruction{{Op: bpfRetK, K: uint32(s.cfg.Snaplen)}}
	}
	if len(prog) == 0 || len(prog) > 4096 {
		return fmt.Errorf("filter: %d instructions (want 1..4096)", len(prog))
	}
	ins := make([]unix.SockFilter, len(prog))
	for i, r := range prog {
		k := r.K
		if r.Op == bpfRetK && k > uint32(s.cfg.Snaplen) {
			k = uint32(s.cfg.Snaplen)
		}
		ins[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: k}
	}
	fp := unix.SockFprog{Len: uint16(len(ins)), Filter: &ins[0]}
	if err := unix.SetsockoptSockFprog(s.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fp); err != nil {
		return fmt.Errorf("SO_ATTACH_FILTER: %w", err)
	}
	return nil
}

// BPF_RET|BPF_K: return a constant (the accepted length, 0 drops).
const bpfRetK = 0x06

// joinFanout puts the socket in group id (with unique, the kernel picks a
// free id) in FanoutEBPF or FanoutHash mode, both with
// PACKET_FANOUT_FLAG_DEFRAG (the kernel reassembles IPv4 fragments before
// either mode looks at them), and returns the group's id.
func (s *Source) joinFanout(id uint32, unique bool, fanoutMode string) (uint32, error) {
	mode := uint32(unix.PACKET_FANOUT_HASH | unix.PACKET_FANOUT_FLAG_DEFRAG)
	if fanoutMode == FanoutEBPF {
		mode = unix.PACKET_FANOUT_EBPF | unix.PACKET_FANOUT_FLAG_DEFRAG
	}
	if unique {
		mode |= unix.PACKET_FANOUT_FLAG_UNIQUEID
		id = 0
	}
	if err := unix.SetsockoptInt(s.fd, unix.SOL_PACKET, unix.PACKET_FANOUT, int(id|mode<<16)); err != nil {
		return 0, fmt.Errorf("afpacket %s: PACKET_FANOUT (%s) group %d: %w", s.cfg.Interface, fanoutMode, id, err)
	}
	if unique {
		v, err := unix.GetsockoptInt(s.fd, unix.SOL_PACKET, unix.PACKET_FANOUT)
		if err != nil {
			return 0, fmt.Errorf("afpacket %s: reading the fanout group id: %w", s.cfg.Interface, err)
		}
		id = uint32(v) & 0xffff
	}
	return id, nil
}

// Name identifies the socket: afpacket:IFACE#INDEX.
func (s *Source) Name() string { return s.name }

// IfIndex is the captured interface's index in its namespace.
func (s *Source) IfIndex() int { return int(s.ifIndex) }

// Close releases the ring, the socket and with it the fanout group's
// program. It is safe to call more than once. Called while Run runs, it
// stops Run and waits for it to return (which needs out to be drained).
func (s *Source) Close() error {
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		s.wake()
		s.runMu.Lock()
		defer s.runMu.Unlock()
		if s.ring != nil {
			_ = unix.Munmap(s.ring)
			s.ring = nil
		}
		if s.fd >= 0 {
			_ = unix.Close(s.fd)
			s.fd = -1
		}
		s.wakeMu.Lock()
		if s.wakeFd >= 0 {
			_ = unix.Close(s.wakeFd)
			s.wakeFd = -1
		}
		s.wakeMu.Unlock()
	})
	return nil
}

// wake interrupts Run's poll.
func (s *Source) wake() {
	s.wakeMu.Lock()
	defer s.wakeMu.Unlock()
	if s.wakeFd >= 0 {
		one := [8]byte{1}
		_, _ = unix.Write(s.wakeFd, one[:])
	}
}

// ringRun is the state of one Run: the batch being filled and what its
// packets are numbered and stamped with.
type ringRun struct {
	s       *Source
	pool    *packet.Pool
	out     chan<- *packet.Batch
	snap    int
	b       *packet.Batch
	lastTS  int64
	idx     uint64 // packets copied out so far: the last one's Index
	vlanBuf []byte // a frame with its 802.1Q tag put back
}

// Run reads the ring into batches until ctx is cancelled (or Close is
// called), then sends what it has and records the final ring statistics.
// It leaves the socket open: Close releases it.
func (s *Source) Run(ctx context.Context, pool *packet.Pool, out chan<- *packet.Batch) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("afpacket: Run called twice")
	}
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.ring == nil {
		return errors.New("afpacket: source is closed")
	}
	stop := context.AfterFunc(ctx, s.wake)
	defer stop()
	snap := min(s.cfg.Snaplen, pool.MaxPacketBytes())
	r := &ringRun{s: s, pool: pool, out: out, snap: snap, vlanBuf: make([]byte, snap+4)}
	err := r.loop(ctx)
	r.flush()
	s.readStats()
	runtime.KeepAlive(s)
	return err
}

// loop hands each block the kernel has retired to copyBlock, in ring
// order, and gives it back; between blocks it polls.
func (r *ringRun) loop(ctx context.Context) error {
	s := r.s
	blockSize := s.cfg.BlockSize
	pfd := [2]unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN | unix.POLLERR}, {Fd: int32(s.wakeFd), Events: unix.POLLIN}}
	nextStats := time.Now().Add(s.cfg.StatsInterval)
	for cur := 0; ctx.Err() == nil && !s.closing.Load(); {
		bd := (*blockDesc)(unsafe.Pointer(&s.ring[cur*blockSize]))
		if atomic.LoadUint32(&bd.status)&unix.TP_STATUS_USER == 0 {
			// Nothing ready: hand on the partial batch so a quiet link
			// still delivers, then sleep until the kernel retires a block.
			r.flush()
			if time.Now().After(nextStats) {
				s.readStats()
				nextStats = time.Now().Add(s.cfg.StatsInterval)
			}
			if err := s.poll(&pfd); err != nil {
				return err
			}
			continue
		}
		r.copyBlock(bd, s.ring[cur*blockSize:(cur+1)*blockSize])
		// Give the block back only after every packet is copied out.
		atomic.StoreUint32(&bd.status, unix.TP_STATUS_KERNEL)
		cur = (cur + 1) % s.cfg.BlockCount
	}
	return nil
}

// poll waits for a retired block, the wake-up eventfd or the stats
// interval, and reports a socket error (e.g. the interface went away).
func (s *Source) poll(pfd *[2]unix.PollFd) error {
	_, err := unix.Poll(pfd[:], int(s.cfg.StatsInterval/time.Millisecond))
	if err != nil && err != unix.EINTR {
		return fmt.Errorf("afpacket %s: poll: %w", s.cfg.Interface, err)
	}
	if pfd[0].Revents&unix.POLLERR != 0 {
		if serr, gerr := unix.GetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_ERROR); gerr == nil && serr != 0 {
			return fmt.Errorf("afpacket %s: %w", s.cfg.Interface, unix.Errno(serr))
		}
	}
	return nil
}

// copyBlock copies every packet of a retired block into batches.
func (r *ringRun) copyBlock(bd *blockDesc, block []byte) {
	s := r.s
	off := int(bd.offsetToFirstPkt)
	for range bd.numPkts {
		if off <= 0 || off+int(unsafe.Sizeof(unix.Tpacket3Hdr{})) > len(block) {
			return // a corrupt block would be a kernel bug; don't read past it
		}
		h := (*unix.Tpacket3Hdr)(unsafe.Pointer(&block[off]))
		data := block[off+int(h.Mac):]
		data = data[:min(int(h.Snaplen), len(data), r.snap)]
		origLen := h.Len
		if h.Status&unix.TP_STATUS_VLAN_VALID != 0 && len(data) >= 12 {
			data = r.restoreVLAN(h, data)
			origLen += 4
		}
		if r.b != nil && r.b.Full(len(data)) {
			r.send()
		}
		if r.b == nil {
			r.b = r.pool.Get()
		}
		p := r.b.Append(data)
		p.OrigLen = origLen
		p.Timestamp = int64(h.Sec)*1e9 + int64(h.Nsec)
		p.LinkType = s.linkType
		r.idx++
		p.Index = r.idx
		sll := (*sockaddrLL)(unsafe.Pointer(&block[off+tpacketAlignedHdrLen]))
		p.IfIndex = sll.ifindex
		if sll.pkttype == unix.PACKET_OUTGOING {
			p.Direction = packet.DirEgress
		} else {
			p.Direction = packet.DirIngress
		}
		r.lastTS = max(r.lastTS, p.Timestamp)
		if h.Next_offset == 0 {
			return
		}
		off += int(h.Next_offset)
	}
}

// restoreVLAN puts back the 802.1Q tag that the kernel took off into the
// header, so that the bytes are what was on the wire.
func (r *ringRun) restoreVLAN(h *unix.Tpacket3Hdr, data []byte) []byte {
	tpid := uint16(0x8100)
	if h.Status&unix.TP_STATUS_VLAN_TPID_VALID != 0 && h.Hv1.Vlan_tpid != 0 {
		tpid = h.Hv1.Vlan_tpid
	}
	m := min(len(data)+4, r.snap)
	buf := r.vlanBuf
	copy(buf[:12], data[:12])
	buf[12], buf[13] = byte(tpid>>8), byte(tpid)
	buf[14], buf[15] = byte(h.Hv1.Vlan_tci>>8), byte(h.Hv1.Vlan_tci)
	copy(buf[16:m], data[12:])
	return buf[:m]
}

// send hands the batch on.
func (r *ringRun) send() {
	r.b.Now = r.lastTS
	r.out <- r.b
	r.b = nil
}

// flush sends the batch in hand, if it holds anything.
func (r *ringRun) flush() {
	if r.b != nil && len(r.b.Packets) > 0 {
		r.send()
	}
}

// readStats adds the kernel's counts since the last read (reading resets
// them). tp_packets already includes tp_drops.
func (s *Source) readStats() {
	st, err := unix.GetsockoptTpacketStatsV3(s.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return
	}
	s.packets.Add(uint64(st.Packets))
	s.drops.Add(uint64(st.Drops))
	s.freezes.Add(uint64(st.Freeze_q_cnt))
}

// blockDesc is struct tpacket_block_desc with its tpacket_hdr_v1 inlined.
type blockDesc struct {
	version          uint32
	offsetToPriv     uint32
	status           uint32
	numPkts          uint32
	offsetToFirstPkt uint32
	blkLen           uint32
	seqNum           uint64
	tsFirst, tsLast  [2]uint32
}

// sockaddrLL is struct sockaddr_ll as the kernel writes it after each
// tpacket3_hdr.
type sockaddrLL struct {
	family   uint16
	protocol uint16
	ifindex  int32
	hatype   uint16
	pkttype  uint8
	halen    uint8
	addr     [8]byte
}

// TPACKET_ALIGN(sizeof(struct tpacket3_hdr)): where sockaddr_ll starts.
const tpacketAlignedHdrLen = (int(unsafe.Sizeof(unix.Tpacket3Hdr{})) + unix.TPACKET_ALIGNMENT - 1) &^ (unix.TPACKET_ALIGNMENT - 1)

func htons(v uint16) uint16 { return v<<8 | v>>8 }
