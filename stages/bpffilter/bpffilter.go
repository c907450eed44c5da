// Package bpffilter turns a tcpdump-style filter expression into classic BPF
// and runs it on packets in user space.
//
// Compiling: there is no maintained pure-Go compiler of the whole
// pcap-filter(7) language (the Go ones found implement subsets), so the
// expression is compiled by the system's libpcap through tcpdump:
// `tcpdump -ddd -r EMPTY.pcap EXPR` (file semantics, for user space) or
// `tcpdump -ddd -y DLT -s SNAPLEN EXPR` (live semantics, for the kernel)
// prints the optimised program in decimal, which Compile parses. tcpdump is therefore a runtime dependency
// of filter expressions only (not of pktpipe without a filter); when it is
// missing, Compile returns ErrNoTcpdump, which says so. A program is
// compiled for one link type: the same expression reads different offsets
// on Ethernet, Linux SLL, SLL2 and raw IP.
//
// Running: Filter implements pipeline.Filter with golang.org/x/net/bpf's VM
// (one per link type seen; VM.Run allocates nothing, checked by a test).
// Programs for link types other than the first one are compiled on first
// sight of that link type (pcapng files can mix link types per interface)
// and cached; an expression that does not compile for a link type rejects
// that link type's packets, logs why once, and counts them in the loss
// counter pktpipe_filter_uncompilable_total, so the exit code says so.
//
// One caveat of user space: BPF's packet length (`len`, `greater`, `less`)
// is the captured length in x/net/bpf's VM, where libpcap on a file uses
// the original length; they differ only for packets cut by a snaplen.
package bpffilter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/bpf"

	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

// ErrNoTcpdump is returned when the tcpdump binary that compiles filter
// expressions is not installed.
var ErrNoTcpdump = errors.New("filter expressions are compiled by tcpdump (libpcap), which is not installed: install tcpdump, or run without a filter expression")

// Tcpdump is the compiler command (a variable so tests can point it
// elsewhere).
var Tcpdump = "tcpdump"

// DLTName is the name tcpdump -y takes for a link type, "" if none.
func DLTName(l packet.LinkType) string {
	switch l {
	case packet.LinkNull:
		return "NULL"
	case packet.LinkEthernet:
		return "EN10MB"
	case packet.LinkRaw:
		return "RAW"
	case packet.LinkLoop:
		return "LOOP"
	case packet.LinkSLL:
		return "LINUX_SLL"
	case packet.LinkIPv4:
		return "IPV4"
	case packet.LinkIPv6:
		return "IPV6"
	case packet.LinkSLL2:
		return "LINUX_SLL2"
	}
	return ""
}

// Compile compiles expr for packets of link type l read from a capture
// file, as `tcpdump -r FILE EXPR` would: libpcap compiles some primitives
// differently for a file than for a live handle (on a NULL/loopback file
// "ip6" tests the BSD address-family values, on a live Linux handle
// Linux's), so the program is compiled against an empty capture file of
// that link type. snaplen is what accepting returns (0: 262144).
func Compile(expr string, l packet.LinkType, snaplen int) ([]bpf.RawInstruction, error) {
	return compile(expr, l, snaplen, false)
}

// CompileLive compiles expr for a live Linux capture of link type l (as
// `tcpdump -ddd -y DLT`): the program to attach to an AF_PACKET socket.
func CompileLive(expr string, l packet.LinkType, snaplen int) ([]bpf.RawInstruction, error) {
	return compile(expr, l, snaplen, true)
}

func compile(expr string, l packet.LinkType, snaplen int, live bool) ([]bpf.RawInstruction, error) {
	dlt := DLTName(l)
	if dlt == "" {
		return nil, fmt.Errorf("filter: link type %d is not supported", l)
	}
	if snaplen <= 0 {
		snaplen = 262144
	}
	path, err := exec.LookPath(Tcpdump)
	if err != nil {
		return nil, ErrNoTcpdump
	}
	args := []string{"-ddd", "-y", dlt, "-s", strconv.Itoa(snaplen)}
	if !live {
		f, err := os.CreateTemp("", "pktpipe-filter-*.pcap")
		if err != nil {
			return nil, fmt.Errorf("filter: %w", err)
		}
		defer os.Remove(f.Name())
		// An empty classic pcap file (native byte order) of link type l.
		var h [24]byte
		binary.NativeEndian.PutUint32(h[0:], 0xa1b2c3d4)
		binary.NativeEndian.PutUint16(h[4:], 2)
		binary.NativeEndian.PutUint16(h[6:], 4)
		binary.NativeEndian.PutUint32(h[16:], uint32(snaplen))
		binary.NativeEndian.PutUint32(h[20:], uint32(l))
		_, werr := f.Write(h[:])
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, fmt.Errorf("filter: %w", werr)
		}
		args = []string{"-ddd", "-r", f.Name()}
	}
	var out, errb bytes.Buffer
	// "--" so an expression starting with "-" is not read as a flag.
	cmd := exec.Command(path, append(args, "--", expr)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := ""
		for _, ln := range strings.Split(errb.String(), "\n") {
			if ln = strings.TrimSpace(ln); ln != "" && !strings.HasPrefix(ln, "reading from file") && !strings.HasPrefix(ln, "Warning:") {
				msg = strings.TrimPrefix(ln, "tcpdump: ")
			}
		}
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("filter %q (link type %s): %s", expr, dlt, msg)
	}
	prog, err := ParseDDD(out.String())
	if err != nil {
		return nil, fmt.Errorf("filter %q: %w", expr, err)
	}
	return prog, nil
}

// ParseDDD reads `tcpdump -ddd` output: a count, then one "code jt jf k"
// line per instruction.
func ParseDDD(s string) ([]bpf.RawInstruction, error) {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	n, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || n <= 0 || n != len(lines)-1 {
		return nil, fmt.Errorf("unexpected tcpdump -ddd output (%d lines): %.80q", len(lines), s)
	}
	prog := make([]bpf.RawInstruction, 0, n)
	for _, ln := range lines[1:] {
		f := strings.Fields(ln)
		if len(f) != 4 {
			return nil, fmt.Errorf("unexpected tcpdump -ddd line %q", ln)
		}
		var v [4]uint64
		for i, x := range f {
			if v[i], err = strconv.ParseUint(x, 10, 32); err != nil {
				return nil, fmt.Errorf("unexpected tcpdump -ddd line %q", ln)
			}
		}
		if v[0] > 0xffff || v[1] > 0xff || v[2] > 0xff {
			return nil, fmt.Errorf("unexpected tcpdump -ddd line %q", ln)
		}
		prog = append(prog, bpf.RawInstruction{Op: uint16(v[0]), Jt: uint8(v[1]), Jf: uint8(v[2]), K: uint32(v[3])})
	}
	return prog, nil
}

// NewVM checks a raw program and returns x/net/bpf's VM for it.
func NewVM(prog []bpf.RawInstruction) (*bpf.VM, error) {
	ins, ok := bpf.Disassemble(prog)
	if !ok {
		return nil, errors.New("filter: the program uses instructions x/net/bpf cannot run")
	}
	return bpf.NewVM(ins)
}

// Expr is a compiled expression shared by every dispatcher's Filter: it
// caches one program per link type, compiling on first use.
type Expr struct {
	text    string
	snaplen int
	log     *slog.Logger

	mu    sync.Mutex
	progs map[packet.LinkType]compiled

	uncompilable *stats.Counter
}

type compiled struct {
	prog []bpf.RawInstruction
	err  error
}

// New compiles text for each link type in check (so a bad expression fails
// before anything runs) and returns it; other link types compile on first
// use.
func New(text string, check []packet.LinkType, snaplen int, reg *stats.Registry, log *slog.Logger) (*Expr, error) {
	if reg == nil {
		reg = stats.NewRegistry()
	}
	if log == nil {
		log = slog.Default()
	}
	e := &Expr{text: text, snaplen: snaplen, log: log, progs: map[packet.LinkType]compiled{},
		uncompilable: reg.LossCounter("pktpipe_filter_uncompilable_total", "Packets rejected because the filter expression does not compile for their link type.")}
	for _, l := range check {
		e.mu.Lock()
		c := compiled{}
		c.prog, c.err = Compile(e.text, l, e.snaplen)
		if c.err == nil {
			if _, err := NewVM(c.prog); err != nil {
				c.err = err
			}
		}
		e.mu.Unlock()
		if c.err != nil {
			return nil, c.err
		}
		e.progs[l] = c
	}
	return e, nil
}

// String is the expression's text.
func (e *Expr) String() string { return e.text }

// Program returns the program for link type l, compiling it once.
func (e *Expr) Program(l packet.LinkType) ([]bpf.RawInstruction, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.progs[l]
	if !ok {
		c.prog, c.err = Compile(e.text, l, e.snaplen)
		if c.err == nil {
			if _, err := NewVM(c.prog); err != nil {
				c.prog, c.err = nil, fmt.Errorf("filter %q (link type %s): %w", e.text, DLTName(l), err)
			}
		}
		e.progs[l] = c
		if c.err != nil {
			e.log.Error("filter does not compile for a link type in the input; its packets are rejected and counted", "link_type", int(l), "err", c.err)
		}
	}
	return c.prog, c.err
}

// NewFilter returns a pipeline.Filter for one dispatcher.
func (e *Expr) NewFilter() *Filter { return &Filter{e: e} }

// Filter runs Expr on packets of one dispatcher. Not safe for concurrent
// use; the per-link-type VMs are its own.
type Filter struct {
	e      *Expr
	last   packet.LinkType
	lastVM *bpf.VM // VM of last; nil when last's program failed
	valid  bool
	vms    map[packet.LinkType]*bpf.VM
}

// Match runs the program for p's link type on p's bytes.
func (f *Filter) Match(p *packet.Packet) bool {
	if !f.valid || p.LinkType != f.last {
		f.switchTo(p.LinkType)
	}
	if f.lastVM == nil {
		f.e.uncompilable.Inc()
		return false
	}
	n, err := f.lastVM.Run(p.Data)
	return err == nil && n > 0
}

func (f *Filter) switchTo(l packet.LinkType) {
	if f.vms == nil {
		f.vms = map[packet.LinkType]*bpf.VM{}
	}
	vm, ok := f.vms[l]
	if !ok {
		if prog, err := f.e.Program(l); err == nil {
			vm, _ = NewVM(prog) // checked in Program
		}
		f.vms[l] = vm
	}
	f.last, f.lastVM, f.valid = l, vm, true
}
