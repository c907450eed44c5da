package afpacket

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	pbpf "github.com/pktpipe/pktpipe/bpf"
)

// Fanout modes, as FanoutMode reports them.
const (
	// FanoutEBPF: PACKET_FANOUT_EBPF with bpf/fanout.c, a symmetric flow
	// hash that sends an ICMP error to the socket of the flow it quotes.
	FanoutEBPF = "ebpf"
	// FanoutHash: PACKET_FANOUT_HASH, the kernel's flow hash, used when
	// the program cannot be loaded (no CAP_BPF, say). It hashes an ICMP
	// error by its own addresses.
	FanoutHash = "hash"
)

// ebpfFanoutError marks a failure specific to the eBPF fanout mode, after
// which NewGroup opens the group again in hash mode.
type ebpfFanoutError struct{ err error }

func (e *ebpfFanoutError) Error() string { return e.err.Error() }
func (e *ebpfFanoutError) Unwrap() error { return e.err }

var memlockOnce sync.Once

// loadFanoutProg loads bpf/fanout.c as a BPF_PROG_TYPE_SOCKET_FILTER
// program for a device with (ethernet) or without an Ethernet header.
func loadFanoutProg(ethernet bool) (*ebpf.Program, error) {
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later
	// ones to the memory cgroup, where this does nothing.
	memlockOnce.Do(func() { _ = rlimit.RemoveMemlock() })
	spec, err := pbpf.LoadFanout()
	if err != nil {
		return nil, err
	}
	var eth uint8
	if ethernet {
		eth = 1
	}
	v, ok := spec.Variables[pbpf.FanoutVarLinkEthernet]
	if !ok {
		return nil, errors.New("fanout program: no link_ethernet constant")
	}
	if err := v.Set(eth); err != nil {
		return nil, fmt.Errorf("fanout program: %w", err)
	}
	var objs pbpf.FanoutObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, fmt.Errorf("loading the fanout program: %w", err)
	}
	return objs.Fanout, nil
}

// setFanoutProg gives the socket's fanout group its program. The group
// holds its own reference: the caller may close prog afterwards.
func (s *Source) setFanoutProg(prog *ebpf.Program) error {
	if err := unix.SetsockoptInt(s.fd, unix.SOL_PACKET, unix.PACKET_FANOUT_DATA, prog.FD()); err != nil {
		return fmt.Errorf("PACKET_FANOUT_DATA: %w", err)
	}
	return nil
}

// FanoutMode is FanoutEBPF or FanoutHash for a socket in a fanout group,
// "" for a single socket.
func (s *Source) FanoutMode() string { return s.fanoutMode }
