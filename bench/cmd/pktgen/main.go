// Command pktgen writes a deterministic synthetic capture (see package
// bench/gen): the same flags give the same bytes.
//
//	go run ./bench/cmd/pktgen -n 2000000 -seed 1 -o synth.pcap [-format pcap|pcap-us|pcapng] [-gzip|-zstd] [-truth synth.json]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pktpipe/pktpipe/bench/gen"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "pktgen:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pktgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		n       = fs.Int("n", 100000, "number of packets to write")
		seed    = fs.Int64("seed", 1, "random seed: the capture depends only on it and the other flags")
		out     = fs.String("o", "synth.pcap", "output file (- for stdout)")
		format  = fs.String("format", "pcap", "capture format: pcap (ns), pcap-us or pcapng")
		gz      = fs.Bool("gzip", false, "gzip the capture")
		zst     = fs.Bool("zstd", false, "zstd the capture")
		truth   = fs.String("truth", "", "write per-flow ground truth as JSON to this file")
		v6      = fs.Float64("ipv6", 0, "share of IPv6 flows (0: default 0.2, negative: none)")
		vlan    = fs.Float64("vlan", 0, "share of VLAN-tagged flows (0: default 0.1, negative: none)")
		bulk    = fs.Float64("bulk", 0, "share of TCP connections with a bulk transfer (0: default 0.04, negative: none)")
		rate    = fs.Float64("rate", 0, "new flows per second of simulated time (0: default 1000)")
		start   = fs.String("start", "", "simulated start time, RFC 3339 (default 2025-01-01T00:00:00Z)")
		summary = fs.Bool("summary", true, "print the summary as JSON on stderr")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c, err := gen.ParseContainer(*format)
	if err != nil {
		return err
	}
	f := gen.Format{Container: c}
	switch {
	case *gz && *zst:
		return fmt.Errorf("-gzip and -zstd are exclusive")
	case *gz:
		f.Compression = gen.Gzip
	case *zst:
		f.Compression = gen.Zstd
	}
	cfg := gen.Config{Seed: *seed, Packets: *n, IPv6Share: *v6, VLANShare: *vlan, BulkShare: *bulk,
		FlowsPerSecond: *rate, Truth: *truth != ""}
	if *start != "" {
		if cfg.Start, err = time.Parse(time.RFC3339Nano, *start); err != nil {
			return err
		}
	}

	var w io.Writer = stdout
	var file *os.File
	if *out != "-" {
		if file, err = os.Create(*out); err != nil {
			return err
		}
		defer file.Close()
		w = file
	}
	began := time.Now()
	sum, err := gen.Write(w, cfg, f)
	if err != nil {
		return err
	}
	if file != nil {
		if err := file.Close(); err != nil {
			return err
		}
	}
	if sum.Truth != nil {
		tf, err := os.Create(*truth)
		if err != nil {
			return err
		}
		if err := sum.Truth.WriteJSON(tf); err != nil {
			tf.Close()
			return err
		}
		if err := tf.Close(); err != nil {
			return err
		}
	}
	if *summary {
		el := time.Since(began)
		b, _ := json.MarshalIndent(sum, "", " ")
		fmt.Fprintf(stderr, "%s\n%d packets in %v (%.0f packets/s)\n", b, sum.Packets, el.Round(time.Millisecond), float64(sum.Packets)/el.Seconds())
	}
	return nil
}
