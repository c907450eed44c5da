// Command benchrun is `make bench`: it measures pktpipe end to end on a
// deterministic synthetic capture and prints one table, with the
// conditions the figures were taken under.
//
//	go run ./bench/cmd/benchrun [-packets 2000000] [-seed 1] [-workers N] [-count 1] [-json]
//
// The capture is written once by bench/gen and kept in a cache directory
// ($TMPDIR/pktpipe-bench by default), keyed by seed, packet count and bulk
// share; -regen rewrites it (do that after bench/gen changes: the key does
// not know the generator's version). Before measuring, the file is read once
// so that every measurement finds it in the page cache.
//
// Each measurement runs in a child process of its own (this binary again,
// with -mode), so that its peak RSS (VmHWM) is its own and nothing warmed
// by one measurement helps the next:
//
//	pcapgo-read       gopacket's pcapgo reader, ZeroCopyReadPacketData loop
//	pcapfile-read     our source alone, into a channel drained and released
//	decode            our source + the decoder on every packet, no engine
//	pipeline-file     the whole pipeline as `pktpipe -r F -o file:OUT --workers W`
//	                  builds it (internal/app), into a file in a temp dir
//	pipeline-discard  the same, but the sink encodes JSON and drops the bytes
//	                  (the stdout sink over io.Discard), to separate sink I/O
//	engine-file       pipeline-file with no analyzer whatever -analyzers says:
//	                  the engine's own cost (not in the default -modes; -compare
//	                  runs it between the bare loop and the whole pipeline)
//
// Columns: wall time and what follows from it (packets/s, ns/packet), CPU
// time (user+sys of the child, getrusage) per packet, allocations per
// packet (runtime.MemStats.Mallocs delta), peak RSS, events the sink took.
// The machine this runs on is usually shared: wall-time figures move with
// the load average, CPU ns/packet much less, so compare CPU figures and
// read wall figures together with the load printed beside them.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pktpipe/pktpipe/bench/gen"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "benchrun:", err)
		os.Exit(1)
	}
}

type options struct {
	packets int
	seed    int64
	bulk    float64
	workers int
	count   int
	modes   []string
	cache   string
	regen   bool
	json    bool
	profile string
	compare bool // -compare: print the bare loop against the pipeline
	tshark  bool // -tshark: time tshark once too
}

// cliAnalyzers is -analyzers: passed to each child, used by the pipeline modes.
var cliAnalyzers string

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("benchrun", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var modes string
	fs.IntVar(&o.packets, "packets", 2_000_000, "packets in the synthetic capture")
	fs.Int64Var(&o.seed, "seed", 1, "generator seed")
	fs.Float64Var(&o.bulk, "bulk", 0, "share of TCP connections with a bulk transfer, passed to bench/gen (0: its default 0.04; negative: none)")
	fs.IntVar(&o.workers, "workers", runtime.NumCPU(), "flow workers in the pipeline modes (pktpipe's --workers)")
	fs.IntVar(&o.count, "count", 1, "run each measurement this many times (one row each)")
	fs.StringVar(&modes, "modes", strings.Join(allModes, ","), "measurements to run, comma-separated")
	fs.StringVar(&o.cache, "cache", filepath.Join(os.TempDir(), "pktpipe-bench"), "directory where generated captures are kept")
	fs.BoolVar(&o.regen, "regen", false, "rewrite the capture even if the cache holds it")
	fs.BoolVar(&o.json, "json", false, "print the conditions and results as JSON instead of a table")
	fs.StringVar(&cliAnalyzers, "analyzers", "", "per-flow analyzers of the pipeline modes, comma-separated (default: all; \"none\" for none)")
	fs.StringVar(&o.profile, "cpuprofile", "", "write a CPU profile of each measurement into `DIR` (MODE-RUN.pprof)")
	// A child: one measurement.
	compare := fs.Bool("compare", false, "print the bare gopacket loop against the pipeline with the file sink (medians); -modes defaults to those two")
	tshark := fs.Bool("tshark", false, "with -compare: also time tshark once on the capture (JA3 fields), for the record")
	mode := fs.String("mode", "", "internal: run one measurement `MODE` on -file and print its result as JSON")
	file := fs.String("file", "", "internal: the capture a -mode child reads")
	prof := fs.String("profile", "", "internal: where a -mode child writes its CPU profile")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *mode != "" {
		return child(*mode, *file, o.workers, *prof, stdout)
	}
	switch {
	case o.packets <= 0:
		return errors.New("-packets must be positive")
	case o.workers < 1:
		return errors.New("-workers must be at least 1")
	case o.count < 1:
		return errors.New("-count must be at least 1")
	}
	o.compare, o.tshark = *compare, *tshark
	if o.compare && !given(fs, "modes") {
		modes = strings.Join(compareModes, ",")
	}
	for _, m := range strings.Split(modes, ",") {
		if m = strings.TrimSpace(m); m == "" {
			continue
		}
		if !known(m) {
			return fmt.Errorf("-modes: unknown %q (choices: %s)", m, strings.Join(append(allModes[:len(allModes):len(allModes)], modeEngine, modeFlows), ", "))
		}
		o.modes = append(o.modes, m)
	}
	return parent(&o, stdout, stderr)
}

// given reports whether the flag name was set on the command line.
func given(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func known(m string) bool {
	if m == modeFlows || m == modeEngine {
		return true
	}
	for _, k := range allModes {
		if k == m {
			return true
		}
	}
	return false
}

// Conditions are what the figures depend on besides the code.
type Conditions struct {
	Started      time.Time `json:"started"`
	CPU          string    `json:"cpu"`
	Cores        int       `json:"cores"`
	GOMAXPROCS   int       `json:"gomaxprocs"`
	GoVersion    string    `json:"go_version"`
	Platform     string    `json:"platform"`
	Packets      int       `json:"packets"`
	Seed         int64     `json:"seed"`
	BulkShare    float64   `json:"bulk_share_flag"` // 0: bench/gen's default
	Capture      string    `json:"capture"`
	FileBytes    int64     `json:"file_bytes"`
	FrameBytes   int64     `json:"frame_bytes"` // captured bytes of all packets
	Cached       bool      `json:"capture_from_cache"`
	GenSeconds   float64   `json:"generate_seconds,omitempty"`
	WarmSeconds  float64   `json:"page_cache_warm_seconds"`
	Workers      int       `json:"workers"`
	Analyzers    []string  `json:"analyzers"` // per-flow analyzers internal/app registers
	Revision     string    `json:"revision"`  // git describe of the tree, "" outside one
	Count        int       `json:"count"`
	LoadAvgStart string    `json:"loadavg_start"`
	LoadAvgEnd   string    `json:"loadavg_end"`
}

// Report is the -json output.
type Report struct {
	Conditions Conditions `json:"conditions"`
	Results    []Result   `json:"results"`
}

func parent(o *options, stdout, stderr io.Writer) error {
	c := Conditions{
		Started: time.Now().UTC().Truncate(time.Second), CPU: cpuModel(), Cores: runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH, Packets: o.packets, Seed: o.seed,
		BulkShare: o.bulk, Workers: o.workers, Count: o.count, LoadAvgStart: loadAvg(),
		Analyzers: analyzers(), Revision: revision(),
	}
	capture, sum, err := ensureCapture(o, &c, stderr)
	if err != nil {
		return err
	}
	c.Capture, c.FrameBytes = capture, sum.Bytes
	fi, err := os.Stat(capture)
	if err != nil {
		return err
	}
	c.FileBytes = fi.Size()
	t := time.Now()
	if err := warm(capture); err != nil {
		return err
	}
	c.WarmSeconds = time.Since(t).Seconds()

	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return err
		}
	}
	var results []Result
	failed := 0
	// Rounds: each mode once per round, so that the machine's drift (on a
	// shared machine, 30% within minutes) touches every mode alike and
	// the ratios between medians stay fair. Rows are printed by mode.
	for i := 1; i <= o.count; i++ {
		for _, m := range o.modes {
			fmt.Fprintf(stderr, "benchrun: %s (run %d/%d) ...\n", m, i, o.count)
			prof := ""
			if o.profile != "" {
				prof = filepath.Join(o.profile, fmt.Sprintf("%s-%d.pprof", m, i))
			}
			file, want := capture, uint64(sum.Packets)
			if m == modeFlows {
				if file, err = floodCapture(o.cache); err != nil {
					return err
				}
				want = floodFlows
			}
			r := measure(exe, m, file, o.workers, prof)
			r.Run = i
			if r.Err == "" && r.Packets != want {
				r.Err = fmt.Sprintf("read %d packets, the capture holds %d", r.Packets, want)
			}
			if r.Err != "" {
				failed++
				fmt.Fprintf(stderr, "benchrun: %s: %s\n", m, r.Err)
			}
			results = append(results, r)
		}
	}
	slices.SortStableFunc(results, func(a, b Result) int {
		return slices.Index(o.modes, a.Mode) - slices.Index(o.modes, b.Mode)
	})
	var ts *tsharkRun
	if o.tshark {
		fmt.Fprintf(stderr, "benchrun: tshark ...\n")
		t := runTshark(capture)
		ts = &t
	}
	c.LoadAvgEnd = loadAvg()
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(Report{Conditions: c, Results: results}); err != nil {
			return err
		}
	} else {
		printTable(stdout, &c, results)
		if o.compare {
			printCompare(stdout, &c, results, ts)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d measurement(s) failed", failed)
	}
	return nil
}

// measure runs one measurement in a child process and returns its result.
func measure(exe, mode, capture string, workers int, profile string) Result {
	an := cliAnalyzers
	if mode == modeEngine {
		an = "none"
	}
	cmd := exec.Command(exe, "-mode", mode, "-file", capture, "-workers", strconv.Itoa(workers), "-profile", profile, "-analyzers", an)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	runErr := cmd.Run()
	var r Result
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		r = Result{Mode: mode, Err: fmt.Sprintf("child: %v; no result (%v)", runErr, err)}
	} else if runErr != nil && r.Err == "" {
		r.Err = "child: " + runErr.Error()
	}
	return r
}

// sidecar is kept next to a cached capture: what the generator wrote.
type sidecar struct {
	Seed      int64       `json:"seed"`
	Packets   int         `json:"packets"`
	Bulk      float64     `json:"bulk_share_flag"`
	FileBytes int64       `json:"file_bytes"`
	Generated time.Time   `json:"generated"`
	Summary   gen.Summary `json:"summary"`
}

// ensureCapture returns the cached capture for o, writing it first if the
// cache does not hold a complete one (written to a temporary name and
// renamed, so a concurrent or interrupted run never leaves half a file).
func ensureCapture(o *options, c *Conditions, stderr io.Writer) (string, gen.Summary, error) {
	if err := os.MkdirAll(o.cache, 0o755); err != nil {
		return "", gen.Summary{}, err
	}
	name := fmt.Sprintf("synth-seed%d-n%d", o.seed, o.packets)
	if o.bulk != 0 {
		name += "-bulk" + strconv.FormatFloat(o.bulk, 'g', -1, 64)
	}
	path := filepath.Join(o.cache, name+".pcap")
	meta := path + ".json"
	if !o.regen {
		var sc sidecar
		b, err := os.ReadFile(meta)
		fi, serr := os.Stat(path)
		if err == nil && serr == nil && json.Unmarshal(b, &sc) == nil &&
			sc.Packets == o.packets && sc.Summary.Packets == o.packets && sc.FileBytes == fi.Size() {
			c.Cached = true
			fmt.Fprintf(stderr, "benchrun: using cached capture %s (generated %s)\n", path, sc.Generated.Format(time.RFC3339))
			return path, sc.Summary, nil
		}
	}
	fmt.Fprintf(stderr, "benchrun: generating %d packets (seed %d) into %s ...\n", o.packets, o.seed, path)
	t := time.Now()
	tmp, err := os.CreateTemp(o.cache, ".gen-*")
	if err != nil {
		return "", gen.Summary{}, err
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriterSize(tmp, 1<<20)
	sum, err := gen.Write(bw, gen.Config{Seed: o.seed, Packets: o.packets, BulkShare: o.bulk}, gen.Format{})
	if err == nil {
		err = bw.Flush()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", gen.Summary{}, fmt.Errorf("generating the capture: %w", err)
	}
	fi, err := os.Stat(tmp.Name())
	if err != nil {
		return "", gen.Summary{}, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", gen.Summary{}, err
	}
	c.GenSeconds = time.Since(t).Seconds()
	b, _ := json.MarshalIndent(sidecar{Seed: o.seed, Packets: o.packets, Bulk: o.bulk, FileBytes: fi.Size(),
		Generated: time.Now().UTC().Truncate(time.Second), Summary: sum}, "", " ")
	if err := os.WriteFile(meta, b, 0o644); err != nil {
		return "", gen.Summary{}, err
	}
	fmt.Fprintf(stderr, "benchrun: generated %.1f MB in %.1f s\n", float64(fi.Size())/1e6, c.GenSeconds)
	return path, sum, nil
}

// warm reads the capture once so that it sits in the page cache and no
// measurement pays for the disk (nor the first one alone).
func warm(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.CopyBuffer(io.Discard, f, make([]byte, 1<<20))
	return err
}

func printTable(w io.Writer, c *Conditions, results []Result) {
	fmt.Fprintf(w, "pktpipe benchmark, %s\n", c.Started.Format(time.RFC3339))
	fmt.Fprintf(w, "  cpu         %s, %d cores, GOMAXPROCS %d, %s, %s\n", c.CPU, c.Cores, c.GOMAXPROCS, c.GoVersion, c.Platform)
	cached := "generated now"
	if c.Cached {
		cached = "from cache"
	}
	fmt.Fprintf(w, "  capture     %s (%s)\n", c.Capture, cached)
	bulk := "default"
	if c.BulkShare != 0 {
		bulk = strconv.FormatFloat(c.BulkShare, 'g', -1, 64)
	}
	fmt.Fprintf(w, "              %d packets, seed %d, bulk share %s, pcap (ns) uncompressed, %.1f MB on disk, %.1f MB of frames (%.0f B/packet), page cache warm\n",
		c.Packets, c.Seed, bulk, float64(c.FileBytes)/1e6, float64(c.FrameBytes)/1e6, float64(c.FrameBytes)/float64(max(c.Packets, 1)))
	fmt.Fprintf(w, "  pipeline    %d workers, analyzers %s, tree %s\n", c.Workers, strings.Join(c.Analyzers, " "), c.Revision)
	fmt.Fprintf(w, "  load avg    %s at start, %s at end (1, 5, 15 min)\n", c.LoadAvgStart, c.LoadAvgEnd)
	fmt.Fprintf(w, "  each row is one child process; CPU = user+sys of that process (getrusage); RSS = its VmHWM\n\n")

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, fmt.Sprintf("%-20s", "mode")+"\tpackets\twall s\tpackets/s\tns/pkt\tCPU ns/pkt\tallocs/pkt\tpeak RSS MiB\tevents\tload1\t")
	for _, r := range results {
		name := r.Mode
		if c.Count > 1 {
			name += fmt.Sprintf(" #%d", r.Run)
		}
		name = fmt.Sprintf("%-20s", name) // left-aligned in a right-aligned table
		if r.Err != "" {
			fmt.Fprintf(tw, "%s\tFAILED: %s\t\t\t\t\t\t\t\t\t\n", name, r.Err)
			continue
		}
		events := "-"
		if pipelineMode(r.Mode) {
			events = strconv.FormatUint(r.Events, 10)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t%.0f\t%.0f\t%.3f\t%.1f\t%s\t%.2f\t\n",
			name, r.Packets, r.Wall, r.PPS, r.WallNsPkt, r.CPUNsPkt, r.AllocsPkt, r.PeakRSSMiB, events, r.Load1)
	}
	tw.Flush()
	var notes []string
	seen := map[string]bool{}
	note := func(s string) {
		if !seen[s] {
			seen[s] = true
			notes = append(notes, s)
		}
	}
	for _, r := range results {
		if r.OutBytes > 0 {
			note(fmt.Sprintf("%s: %.1f MB of JSON lines written", r.Mode, float64(r.OutBytes)/1e6))
		}
		if r.Note != "" {
			note(r.Mode + ": " + r.Note)
		}
		for k, v := range r.Losses {
			note(fmt.Sprintf("%s: loss counter %s = %g", r.Mode, k, v))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, "  "+n)
		}
	}
}
