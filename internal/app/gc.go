package app

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// The collector's target that TuneGC keeps: after each collection the
// heap may grow by half of what is live, or by GCHeadroom, whichever is
// more, before the next one.
//
// pktpipe's large heaps are its flow table's slabs, which hold no pointer:
// a collection has little to mark, and a closer target than Go's 2× costs
// little CPU there while it keeps the peak RSS with 1M concurrent flows at
// about 1.5× the live heap instead of 2×. A small heap is the other case:
// its collections come often and each marks the events in flight, so with
// 1.5× alone the collector took 9% of the instructions of a run on the
// bench capture (live heap 31-51 MB, 14 collections); a floor of 64 MiB
// of growth makes them rare (3 collections, under 1%). Both are targets,
// not limits (GOMEMLIMIT): a live heap that outgrows any figure still
// collects at the same pace, with no cliff.
const (
	GCPercent  = 50       // the heap may grow by this share of what is live...
	GCHeadroom = 64 << 20 // ...or by this many bytes, whichever is more
)

// GCTarget is the GOGC percentage that gives a live heap of live bytes
// the growth above. Go collects a heap smaller than 4 MB as if it held 4.
func GCTarget(live uint64) int {
	live = max(live, 4<<20)
	return max(GCPercent, int(GCHeadroom*100/live))
}

// TuneGC keeps the collector's target at GCTarget of the live heap, set
// again after every collection, unless the environment sets GOGC. It
// returns a function that stops it (tests); the command and the
// benchmarks call it once and let it run.
func TuneGC() (stop func()) {
	if _, set := os.LookupEnv("GOGC"); set {
		return func() {}
	}
	t := &gcTuner{}
	t.sample[0].Name = "/gc/heap/live:bytes"
	debug.SetGCPercent(GCTarget(0))
	t.arm()
	return func() { t.stopped.Store(true) }
}

type gcTuner struct {
	stopped atomic.Bool
	sample  [1]metrics.Sample
}

// sentinel is allocated for each cycle and dropped at once: the next
// collection finds it unreachable and runs its cleanup. It holds a
// pointer so that it is never one of the tiny allocations batched
// together, whose cleanups may not run.
type sentinel struct{ _ *byte }

func (t *gcTuner) arm() {
	runtime.AddCleanup(new(sentinel), (*gcTuner).cycle, t)
}

// cycle runs after a collection (on the cleanup goroutine).
func (t *gcTuner) cycle() {
	if t.stopped.Load() {
		return
	}
	metrics.Read(t.sample[:])
	if v := t.sample[0].Value; v.Kind() == metrics.KindUint64 {
		debug.SetGCPercent(GCTarget(v.Uint64()))
	}
	t.arm()
}
