package app

import (
	"os"
	"runtime/debug"
)

// GCPercent is the collector's target that TuneGC sets: the heap may grow
// to 1.5× what is live before a collection, instead of Go's 2×.
const GCPercent = 50

// TuneGC sets the collector's target to GCPercent unless the environment
// sets GOGC. pktpipe's large heaps are its flow table's slabs, which hold
// no pointer, so a collection has little to mark and a closer target
// costs little CPU; with 1M concurrent flows it takes the peak RSS from
// about twice the live heap to 1.5×. It is a target, not a limit
// (GOMEMLIMIT): a live heap that outgrows any figure still collects at
// the same pace, with no cliff. The command and the benchmarks call it.
func TuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(GCPercent)
	}
}
