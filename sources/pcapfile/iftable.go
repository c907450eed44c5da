package pcapfile

import (
	"strconv"
	"sync/atomic"

	"github.com/pktpipe/pktpipe/pipeline/stats"
)

// maxNamedIfaces bounds the source-wide interface table (interfaces of
// every file and section read): past it, an interface that does not
// repeat a known one gets no index (-1) and no name.
const maxNamedIfaces = 1 << 16

// ifTable numbers a source's interfaces source-wide and keeps their names
// (pcapng if_name; "" for classic pcap and unnamed interfaces), for
// in_iface and -w. An interface keeps its number in its section (its
// pcapng id; 0 for classic pcap) when the table has the same name there,
// which is every single-section file; another gets the next free number,
// so that a later file or section cannot rename the flows of an earlier
// one. The reading goroutine appends; encoders read Name at any time.
type ifTable struct {
	names atomic.Pointer[[]string]
	over  *stats.Counter // interfaces past maxNamedIfaces
}

func newIfTable(r *stats.Registry) *ifTable {
	return &ifTable{over: r.LossCounter("pktpipe_pcapfile_interfaces_unnumbered_total",
		"Capture file interfaces past the source's table of "+strconv.Itoa(maxNamedIfaces)+": their packets have no interface index or name.")}
}

// index returns the source-wide number of interface raw of the current
// section, named name. A nil table numbers as the section does.
func (t *ifTable) index(raw int32, name string) int32 {
	if t == nil {
		return raw
	}
	var cur []string
	if p := t.names.Load(); p != nil {
		cur = *p
	}
	if int(raw) < len(cur) && cur[raw] == name {
		return raw
	}
	if len(cur) >= maxNamedIfaces {
		t.over.Inc()
		return -1
	}
	// Appending past the readers' length is invisible to them; a grown
	// array is a copy. The atomic store publishes the new element.
	cur = append(cur, name)
	t.names.Store(&cur)
	return int32(len(cur) - 1)
}

// Name returns the name of interface i ("" when unknown or unnamed).
func (t *ifTable) Name(i int32) string {
	p := t.names.Load()
	if p == nil || i < 0 || int(i) >= len(*p) {
		return ""
	}
	return (*p)[i]
}
