package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/pktpipe/pktpipe/internal/app"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sources/pcapfile"
	"github.com/pktpipe/pktpipe/stages/decode"
)

// The measurements, in the order they run.
const (
	modePcapgo   = "pcapgo-read"
	modeGopacket = "gopacket-decode"
	modePcapfile = "pcapfile-read"
	modeDecode   = "decode"
	modeFile     = "pipeline-file"
	modeDiscard  = "pipeline-discard"
	// modeEngine is modeFile with no analyzer: the engine's own cost
	// (read, decode, shard, flow table, flow events into the file), which
	// -compare shows beside the bare loop and the whole pipeline.
	modeEngine = "engine-file"
)

var allModes = []string{modePcapgo, modeGopacket, modePcapfile, modeDecode, modeFile, modeDiscard}

// pipelineMode reports whether mode runs the whole pipeline (internal/app),
// and so has events and a worker count.
func pipelineMode(mode string) bool {
	switch mode {
	case modeFile, modeDiscard, modeFlows, modeEngine:
		return true
	}
	return false
}

// What `pktpipe` passes to app.Build when a flag is left at its default
// (cmd/pktpipe/flags.go); the pipeline modes build exactly that.
const (
	cliFormat  = "json"
	cliFlowCap = 1 << 20
)

// Result is one measurement, made in a child process of its own.
type Result struct {
	Mode       string             `json:"mode"`
	Run        int                `json:"run"` // 1..count
	Packets    uint64             `json:"packets"`
	Wall       float64            `json:"wall_seconds"`
	PPS        float64            `json:"packets_per_second"`
	WallNsPkt  float64            `json:"wall_ns_per_packet"`
	CPUNsPkt   float64            `json:"cpu_ns_per_packet"` // user+sys of the whole process over the measured part
	User       float64            `json:"user_seconds"`
	Sys        float64            `json:"sys_seconds"`
	AllocsPkt  float64            `json:"allocs_per_packet"` // runtime.MemStats.Mallocs delta / packets
	AllocBytes uint64             `json:"alloc_bytes"`       // TotalAlloc delta
	GCs        uint32             `json:"gc_cycles"`
	PeakRSSMiB float64            `json:"peak_rss_mib"` // VmHWM of the child at the end
	Events     uint64             `json:"events"`       // events the sink accepted (pipeline modes)
	OutBytes   int64              `json:"output_bytes,omitempty"`
	Workers    int                `json:"workers,omitempty"`
	GOMAXPROCS int                `json:"gomaxprocs"`
	Load1      float64            `json:"load1_at_start"`
	Losses     map[string]float64 `json:"losses,omitempty"`
	Note       string             `json:"note,omitempty"`
	Err        string             `json:"error,omitempty"`
}

// child runs one measurement and prints its Result as one JSON line on
// stdout; the parent reads the last line.
func child(mode, capture string, workers int, profile string, stdout io.Writer) error {
	r := Result{Mode: mode, GOMAXPROCS: runtime.GOMAXPROCS(0), Load1: load1()}
	// The file sink's directory is made and removed outside the measured
	// part; its fsync at Close is inside.
	var outDir string
	if mode == modeFile || mode == modeEngine {
		d, err := os.MkdirTemp("", "pktpipe-benchrun-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		outDir = d
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	cpu0 := cpuTime()
	t0 := time.Now()

	var err error
	switch {
	case mode == modePcapgo:
		r.Packets, err = runPcapgo(capture)
	case mode == modeGopacket:
		r.Packets, err = runGopacketDecode(capture)
	case mode == modePcapfile:
		r.Packets, err = runSource(capture, nil)
	case mode == modeDecode:
		var bad, noIP uint64
		dec := decode.New()
		r.Packets, err = runSource(capture, func(b *packet.Batch) {
			for i := range b.Packets {
				p := &b.Packets[i]
				dec.DecodeIn(p, b.Room(i))
				if p.Meta.Err != packet.MalformedNone {
					bad++
				} else if p.Meta.IPVersion == 0 {
					noIP++
				}
			}
		})
		r.Note = fmt.Sprintf("malformed %d, no IP %d", bad, noIP)
	case pipelineMode(mode):
		r.Workers = workers
		err = runPipeline(capture, outDir, workers, &r)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}

	wall := time.Since(t0)
	cpu1 := cpuTime()
	if profile != "" {
		pprof.StopCPUProfile()
	}
	runtime.ReadMemStats(&m1)
	if err != nil {
		r.Err = err.Error()
	}
	r.Wall = wall.Seconds()
	r.User, r.Sys = (cpu1.user - cpu0.user).Seconds(), (cpu1.sys - cpu0.sys).Seconds()
	if n := float64(r.Packets); n > 0 {
		r.PPS = n / r.Wall
		r.WallNsPkt = float64(wall.Nanoseconds()) / n
		r.CPUNsPkt = float64((cpu1.user+cpu1.sys)-(cpu0.user+cpu0.sys)) / n
		r.AllocsPkt = float64(m1.Mallocs-m0.Mallocs) / n
	}
	r.AllocBytes = m1.TotalAlloc - m0.TotalAlloc
	r.GCs = m1.NumGC - m0.NumGC
	r.PeakRSSMiB = float64(vmHWM()) / (1 << 20)
	return json.NewEncoder(stdout).Encode(&r)
}

// runPcapgo is the bare gopacket read loop. pcapgo reads through a
// bufio.Reader; it is given a 1 MiB one, the size our source uses, so the
// two readers make the same read syscalls.
func runPcapgo(capture string) (uint64, error) {
	f, err := os.Open(capture)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rd, err := pcapgo.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return 0, err
	}
	var n, bytes uint64
	for {
		data, _, err := rd.ZeroCopyReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, err
		}
		n++
		bytes += uint64(len(data))
	}
	if bytes == 0 {
		return n, errors.New("no bytes read")
	}
	return n, nil
}

// runGopacketDecode is the bare decode loop pktpipe is measured against
// (make bench-compare): one goroutine, pcapgo's ZeroCopyReadPacketData and
// a gopacket DecodingLayerParser over Ethernet, 802.1Q, IPv4/6, TCP, UDP,
// ICMP and the payload, nothing kept.
func runGopacketDecode(capture string) (uint64, error) {
	f, err := os.Open(capture)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rd, err := pcapgo.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return 0, err
	}
	var (
		eth     layers.Ethernet
		dot1q   layers.Dot1Q
		ip4     layers.IPv4
		ip6     layers.IPv6
		tcp     layers.TCP
		udp     layers.UDP
		icmp4   layers.ICMPv4
		icmp6   layers.ICMPv6
		payload gopacket.Payload
		decoded = make([]gopacket.LayerType, 0, 8)
	)
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &dot1q, &ip4, &ip6, &tcp, &udp, &icmp4, &icmp6, &payload)
	parser.IgnoreUnsupported = true
	var n, transport uint64
	for {
		data, _, err := rd.ZeroCopyReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, err
		}
		n++
		_ = parser.DecodeLayers(data, &decoded) // a truncated packet stops the parse, as it would anywhere
		for _, t := range decoded {
			if t == layers.LayerTypeTCP || t == layers.LayerTypeUDP {
				transport++
			}
		}
	}
	if transport == 0 {
		return n, errors.New("no TCP or UDP layer decoded")
	}
	return n, nil
}

// runSource runs pcapfile.Source into a channel of the engine's default
// depth; one goroutine drains it, calls each (if any) on every batch, and
// releases the batches, as a dispatcher would.
func runSource(capture string, each func(*packet.Batch)) (uint64, error) {
	src, err := pcapfile.New(pcapfile.Config{Files: []string{capture}})
	if err != nil {
		return 0, err
	}
	pool := packet.NewPool(0, 0)
	ch := make(chan *packet.Batch, 8)
	done := make(chan uint64)
	go func() {
		var n uint64
		for b := range ch {
			if each != nil {
				each(b)
			}
			n += uint64(b.Len())
			b.Release()
		}
		done <- n
	}()
	err = src.Run(context.Background(), pool, ch)
	close(ch)
	return <-done, err
}

// runPipeline builds the pipeline as `pktpipe -r CAPTURE -o file:OUT
// --workers W` does, with OUT in outDir, or (outDir == "") the same with a
// sink that encodes JSON and throws the bytes away (the stdout sink over
// io.Discard), and runs it to the end, sink closed and fsynced included.
func runPipeline(capture, outDir string, workers int, r *Result) error {
	app.TuneGC() // as the command does
	cfg := app.Options{
		Files: []string{capture}, Format: cliFormat,
		Workers: workers, FlowCap: cliFlowCap, Stats: stats.NewRegistry(), Analyzers: analyzerSet(),
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if outDir != "" {
		cfg.Outputs = []string{"file:" + filepath.Join(outDir, "events.json")}
	} else {
		cfg.Outputs, cfg.Stdout = []string{"-"}, io.Discard
	}
	p, err := app.Build(cfg)
	if err != nil {
		return err
	}
	hp := os.Getenv("PKTPIPE_BENCH_HEAPPROFILE")
	if hp != "" && r.Mode == modeFlows {
		go heapAtPeak(cfg.Stats, hp)
	}
	res, err := p.Engine.Run(context.Background())
	if hp != "" && r.Mode != modeFlows {
		writeHeap(hp) // at the end: its alloc_* samples cover the whole run
	}
	r.Packets, r.Events = res.Packets, res.Events
	for _, l := range res.Losses {
		if r.Losses == nil {
			r.Losses = map[string]float64{}
		}
		r.Losses[l.ID()] = l.Value
	}
	if outDir != "" {
		r.OutBytes = dirBytes(outDir)
	}
	return err
}

// analyzerSet is -analyzers as app.Options.Analyzers (nil = all).
func analyzerSet() []string {
	switch cliAnalyzers {
	case "":
		return nil
	case "none":
		return []string{}
	}
	return strings.Split(cliAnalyzers, ",")
}

// heapAtPeak writes a heap profile to path once every flood flow is live
// (PKTPIPE_BENCH_HEAPPROFILE, for finding where a flow's bytes go; in the
// other pipeline modes the profile is written at the end, for its
// allocation counts).
func heapAtPeak(reg *stats.Registry, path string) {
	for {
		if v, _ := reg.Value("pktpipe_flow_table_flows"); v >= floodFlows*0.98 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	writeHeap(path)
}

func writeHeap(path string) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	runtime.GC() // the profile shows the heap as of the last GC
	_ = pprof.WriteHeapProfile(f)
}
