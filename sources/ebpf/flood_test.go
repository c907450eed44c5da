package ebpf_test

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sources/afpacket/netnstest"
	"github.com/pktpipe/pktpipe/sources/ebpf"
)

// TestFlood blasts 64-byte frames through the veth pair and reports the
// rate the eBPF source sustained and the share of samples lost, with 256
// KiB and 1 MiB per-CPU buffers. It runs only with PKTPIPE_FLOOD=1.
func TestFlood(t *testing.T) {
	if os.Getenv("PKTPIPE_FLOOD") != "1" {
		t.Skip("flood test: set PKTPIPE_FLOOD=1 (PKTPIPE_FLOOD_COUNT, default 2000000)")
	}
	count := 2_000_000
	if v, err := strconv.Atoi(os.Getenv("PKTPIPE_FLOOD_COUNT")); err == nil && v > 0 {
		count = v
	}
	np := netnstest.New(t)
	for _, buf := range []int{256 << 10, 1 << 20} {
		t.Run(fmt.Sprintf("buffer%dKiB", buf>>10), func(t *testing.T) {
			reg := stats.NewRegistry()
			src, err := ebpf.New(ebpf.Config{Interface: np.Dev[1], Netns: np.Path(1), Ingress: true, PerCPUBuffer: buf, Stats: reg})
			if err != nil {
				t.Fatal(err)
			}
			res := netnstest.RunFlood(t, np, count, src)
			var lost float64
			for _, s := range reg.Snapshot() {
				if s.Name == "pktpipe_ebpf_lost_samples_total" {
					lost += s.Value
				}
			}
			t.Logf("ebpf %d KiB/CPU: %v; lost samples %.0f (%.2f%% of delivered)", buf>>10, res, lost, 100*lost/float64(max(res.Delivered, 1)))
		})
	}
}
