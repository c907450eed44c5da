package main

import (
	"fmt"
	"io"
	"os/exec"
	"slices"
	"syscall"
	"time"
)

// The -compare summary (make bench-compare): pktpipe's whole pipeline
// against the bare single-goroutine gopacket decode loop on the same
// capture, medians of the runs. The engine alone (no analyzer) runs
// between them, so that the summary shows how much of the gap is the
// engine and how much the analyzers and their events.
var compareModes = []string{modeGopacket, modeEngine, modeFile}

// medianOf returns the median of f over mode's successful results, and
// how many there were.
func medianOf(results []Result, mode string, f func(Result) float64) (float64, int) {
	var v []float64
	for _, r := range results {
		if r.Mode == mode && r.Err == "" {
			v = append(v, f(r))
		}
	}
	if len(v) == 0 {
		return 0, 0
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2], len(v)
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2, len(v)
}

// tsharkRun is tshark on the capture with the JA3 fields, once: the
// figure for the record.
type tsharkRun struct {
	Wall, CPU float64 // seconds
	Err       string
}

func runTshark(capture string) tsharkRun {
	cmd := exec.Command("tshark", "-n", "-r", capture, "-T", "fields", "-e", "frame.number", "-e", "tls.handshake.ja3", "-e", "tls.handshake.ja3s")
	cmd.Stdout = io.Discard
	t := time.Now()
	err := cmd.Run()
	r := tsharkRun{Wall: time.Since(t).Seconds()}
	if err != nil {
		r.Err = err.Error()
	}
	if u, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && cmd.ProcessState != nil {
		r.CPU = time.Duration(u.Utime.Nano() + u.Stime.Nano()).Seconds()
	}
	return r
}

func printCompare(w io.Writer, c *Conditions, results []Result, ts *tsharkRun) {
	wall := func(r Result) float64 { return r.Wall }
	cpu := func(r Result) float64 { return r.CPUNsPkt }
	allocs := func(r Result) float64 { return r.AllocsPkt }
	rss := func(r Result) float64 { return r.PeakRSSMiB }
	bareWall, nb := medianOf(results, modeGopacket, wall)
	pipeWall, np := medianOf(results, modeFile, wall)
	fmt.Fprintf(w, "\ncompare (medians of %d and %d runs; %d workers; load avg %s at start, %s at end):\n", nb, np, c.Workers, c.LoadAvgStart, c.LoadAvgEnd)
	fmt.Fprintf(w, "  %-44s %8s %12s %11s %13s\n", "", "wall s", "CPU ns/pkt", "allocs/pkt", "peak RSS MiB")
	for _, m := range []struct{ name, mode string }{
		{"bare loop (gopacket, 1 goroutine, decode)", modeGopacket},
		{"pktpipe -o file:, no analyzer (the engine)", modeEngine},
		{"pktpipe -o file: (analyzers as above)", modeFile},
	} {
		wl, n := medianOf(results, m.mode, wall)
		if n == 0 {
			continue
		}
		cp, _ := medianOf(results, m.mode, cpu)
		al, _ := medianOf(results, m.mode, allocs)
		rs, _ := medianOf(results, m.mode, rss)
		fmt.Fprintf(w, "  %-44s %8.2f %12.0f %11.3f %13.1f\n", m.name, wl, cp, al, rs)
	}
	if ts != nil {
		if ts.Err != "" {
			fmt.Fprintf(w, "  tshark (JA3 fields): failed: %s\n", ts.Err)
		} else {
			fmt.Fprintf(w, "  %-44s %8.2f %12.0f\n", "tshark -T fields JA3/JA3S (1 run)", ts.Wall, ts.CPU*1e9/float64(c.Packets))
		}
	}
	if engWall, ne := medianOf(results, modeEngine, wall); nb > 0 && ne > 0 && engWall > 0 {
		fmt.Fprintf(w, "  engine speed / bare loop speed (wall): %.2fx\n", bareWall/engWall)
	}
	if nb > 0 && np > 0 && pipeWall > 0 {
		fmt.Fprintf(w, "  pktpipe speed / bare loop speed (wall): %.2fx\n", bareWall/pipeWall)
		if ts != nil && ts.Err == "" {
			fmt.Fprintf(w, "  pktpipe speed / tshark speed (wall): %.1fx\n", ts.Wall/pipeWall)
		}
	}
}
