package ebpf

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The clsact/cls_bpf fallback (Attach "tc", or "auto" on a kernel without
// TCX). Netlink filters are not owned by the process the way TCX links
// are: they stay when the process dies, so each one is made findable:
//
//   - preference TCPref on the clsact ingress/egress hook, protocol all;
//   - a handle the kernel picks (unique within that preference);
//   - the name TCNamePrefix + "PID:SEQ:DIR", which tc shows
//     (`tc filter show dev X ingress` lists "pktpipe-capture:1234:1:ingress").
//
// Cleanup on exit deletes exactly the filters this source added (by
// preference, protocol and handle) and the clsact qdisc if this source
// created it and no filter is left on it. At start, filters with our
// preference and name whose PID is not a live process are removed (a
// crashed run's leftovers). By hand: `tc filter del dev X ingress pref
// 49374` and `... egress pref 49374` remove every pktpipe filter on X,
// `tc qdisc del dev X clsact` the qdisc (and any other tc filter on it).

// TCPref is the tc filter preference (priority) of the fallback's
// filters. Filters with a lower preference run first.
const TCPref = 49374 // 0xc0de

// TCNamePrefix starts the name of every filter the fallback adds.
const TCNamePrefix = "pktpipe-capture:"

var tcSeq atomic.Uint32

// tcAttach is the state of the fallback on one interface.
type tcAttach struct {
	h          *netlink.Handle // opened in the interface's namespace
	link       netlink.Link
	ifName     string
	qdiscAdded bool
	filters    []*netlink.BpfFilter // ours, with their kernel handles
	staleFreed int                  // filters of dead processes removed at start
	staleKept  []string             // ours by name but pid alive: left alone
}

func tcParent(dir uint8) uint32 {
	if dir == dirIngress {
		return netlink.HANDLE_MIN_INGRESS
	}
	return netlink.HANDLE_MIN_EGRESS
}

func dirName(dir uint8) string {
	if dir == dirIngress {
		return "ingress"
	}
	return "egress"
}

// newTCAttach opens a netlink socket in the current (target) namespace,
// removes stale filters and makes sure a clsact qdisc is there.
func newTCAttach(ifIndex int, ifName string) (*tcAttach, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	t := &tcAttach{h: h, ifName: ifName}
	t.link, err = h.LinkByIndex(ifIndex)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("netlink: %s: %w", ifName, err)
	}
	if err := t.ensureClsact(); err != nil {
		h.Close()
		return nil, err
	}
	t.removeStale()
	return t, nil
}

func (t *tcAttach) hasClsact() (bool, error) {
	qs, err := t.h.QdiscList(t.link)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return false, err
	}
	for _, q := range qs {
		if q.Type() == "clsact" {
			return true, nil
		}
	}
	return false, nil
}

func (t *tcAttach) clsact() *netlink.Clsact {
	return &netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: t.link.Attrs().Index,
		Handle:    netlink.MakeHandle(0xffff, 0),
		Parent:    netlink.HANDLE_CLSACT,
	}}
}

func (t *tcAttach) ensureClsact() error {
	ok, err := t.hasClsact()
	if err != nil {
		return fmt.Errorf("listing the qdiscs of %s: %w", t.ifName, capErr(err, "CAP_NET_ADMIN"))
	}
	if ok {
		return nil
	}
	switch err := t.h.QdiscAdd(t.clsact()); {
	case err == nil:
		t.qdiscAdded = true
	case errors.Is(err, unix.EEXIST): // someone else just added it
	default:
		return fmt.Errorf("adding a clsact qdisc to %s: %w", t.ifName, capErr(err, "CAP_NET_ADMIN"))
	}
	return nil
}

// list returns the bpf filters at our preference on one hook.
func (t *tcAttach) list(dir uint8) ([]*netlink.BpfFilter, error) {
	var fs []netlink.Filter
	var err error
	for range 3 { // a dump interrupted by a concurrent change is retried
		fs, err = t.h.FilterList(t.link, tcParent(dir))
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	var out []*netlink.BpfFilter
	for _, f := range fs {
		if b, ok := f.(*netlink.BpfFilter); ok && b.Priority == TCPref {
			out = append(out, b)
		}
	}
	return out, nil
}

// removeStale deletes filters named by a pktpipe process that is gone.
// A name whose PID is alive (or unreadable) is left alone: it may be
// another pktpipe capturing on the same interface.
func (t *tcAttach) removeStale() {
	for _, dir := range []uint8{dirIngress, dirEgress} {
		fs, err := t.list(dir)
		if err != nil {
			continue
		}
		for _, f := range fs {
			rest, ok := strings.CutPrefix(f.Name, TCNamePrefix)
			if !ok {
				continue
			}
			pidStr, _, _ := strings.Cut(rest, ":")
			pid, err := strconv.Atoi(pidStr)
			if err != nil || pid <= 0 {
				continue
			}
			if pid != os.Getpid() && unix.Kill(pid, 0) == unix.ESRCH {
				if t.h.FilterDel(f) == nil {
					t.staleFreed++
				}
				continue
			}
			t.staleKept = append(t.staleKept, f.Name)
		}
	}
}

// attach adds prog as a direct-action filter on one hook and records the
// handle the kernel gave it.
func (t *tcAttach) attach(progFD int, dir uint8) error {
	name := fmt.Sprintf("%s%d:%d:%s", TCNamePrefix, os.Getpid(), tcSeq.Add(1), dirName(dir))
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: t.link.Attrs().Index,
			Parent:    tcParent(dir),
			Priority:  TCPref,
			Protocol:  unix.ETH_P_ALL,
			// Handle 0: the kernel picks one not in use at this preference.
		},
		Fd:           progFD,
		Name:         name,
		DirectAction: true,
	}
	if err := t.h.FilterAdd(f); err != nil {
		return fmt.Errorf("adding tc filter %s on %s %s: %w", name, t.ifName, dirName(dir), capErr(err, "CAP_NET_ADMIN"))
	}
	fs, err := t.list(dir)
	if err != nil {
		return fmt.Errorf("listing tc filters on %s %s: %w", t.ifName, dirName(dir), err)
	}
	for _, g := range fs {
		if g.Name == name {
			t.filters = append(t.filters, g)
			return nil
		}
	}
	return fmt.Errorf("tc filter %s on %s %s was added but is not listed", name, t.ifName, dirName(dir))
}

// detach removes our filters, then the clsact qdisc if we added it and
// nothing else is filtering on it. What it could not remove is named in
// the error with the command that removes it.
func (t *tcAttach) detach() error {
	if t == nil || t.h == nil {
		return nil
	}
	var errs []error
	for _, f := range t.filters {
		if err := t.h.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("removing tc filter %s: %w (run: tc filter del dev %s %s pref %d handle %#x bpf)",
				f.Name, capErr(err, "CAP_NET_ADMIN"), t.ifName, parentName(f.Parent), TCPref, f.Handle))
		}
	}
	t.filters = nil
	if t.qdiscAdded {
		t.qdiscAdded = false
		empty := true
		for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
			fs, err := t.h.FilterList(t.link, parent)
			if err != nil || len(fs) > 0 {
				empty = false
			}
		}
		if empty {
			if err := t.h.QdiscDel(t.clsact()); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("removing the clsact qdisc pktpipe added: %w (run: tc qdisc del dev %s clsact)",
					capErr(err, "CAP_NET_ADMIN"), t.ifName))
			}
		}
	}
	t.h.Close()
	t.h = nil
	if len(errs) > 0 {
		return fmt.Errorf("ebpf: %w", errors.Join(errs...))
	}
	return nil
}

func parentName(p uint32) string {
	if p == netlink.HANDLE_MIN_INGRESS {
		return "ingress"
	}
	return "egress"
}
