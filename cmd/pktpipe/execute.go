package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/pktpipe/pktpipe/internal/app"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sources/pcapfile"
	"github.com/pktpipe/pktpipe/stages/flow"
)

func execute(ctx context.Context, o *options, stdin io.Reader, stdout, stderr io.Writer, log *slog.Logger) int {
	cfg := app.Config{
		Files: o.reads, Stdin: stdin, ReplaySpeed: o.replaySpeed,
		Output: o.output, Stdout: stdout, Format: o.format, Compress: o.compress,
		RotateBytes: o.rotateBytes, RotateInterval: o.rotateInterval,
		KafkaTopic: o.kafkaTopic, KafkaDrainTimeout: o.kafkaDrain, KafkaSpill: o.kafkaSpill,
		Workers: o.workers, BatchPackets: o.batchPackets, FlowCap: o.flowCap,
		Timeouts: flow.Timeouts{
			New: o.timeoutNew, TCP: o.timeoutTCP, UDP: o.timeoutUDP, ICMP: o.timeoutICMP,
		},
		CommunityIDSeed: uint16(o.cidSeed), NoCommunityID: o.noCommunity,
		Analyzers: analyzerList(o.analyzers),
		Stats:     stats.NewRegistry(), Log: log,
	}
	if f, ok := stderr.(*os.File); ok && !o.noProgress && pcapfile.ProgressWanted(f) {
		cfg.Progress = stderr
	}
	if err := o.live.configure(o, &cfg); err != nil {
		fmt.Fprintf(stderr, "pktpipe: %v\n", err)
		return exitUsage
	}
	p, err := app.Build(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "pktpipe: %v\n", err)
		return exitError
	}
	if p.FileSink != nil {
		// SIGHUP completes the current file and starts a new one (logrotate).
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for range hup {
				if err := p.FileSink.Reopen(); err != nil {
					log.Error("reopen on SIGHUP failed", "err", err)
				} else {
					log.Info("file sink reopened on SIGHUP")
				}
			}
		}()
	}
	stopOps, err := o.ops.start(ctx, o, p, log)
	if err != nil {
		fmt.Fprintf(stderr, "pktpipe: %v\n", err)
		return exitError
	}
	start := time.Now()
	res, runErr := p.Engine.Run(ctx)
	stopOps()
	elapsed := time.Since(start)

	o.ops.summary(log, res, elapsed, p.Stats) // one line; the loss lines follow
	switch {
	case runErr != nil:
		log.Error("run failed", "err", runErr)
		return exitError
	case len(res.Losses) > 0:
		for _, l := range res.Losses {
			log.Error("lost", "counter", l.ID(), "value", l.Value)
		}
		return exitLoss
	}
	return exitOK
}

// versionString reports the module version, VCS revision and Go version.
func versionString() string {
	v, rev, dirty, goVer := "devel", "", "", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVer = bi.GoVersion
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
	}
	if version != "" {
		v = version
	}
	out := "pktpipe " + v
	if rev != "" {
		out += " (" + rev + dirty + ")"
	}
	return out + " " + goVer
}

// analyzerList turns --analyzers into app.Config.Analyzers ("all" = nil).
func analyzerList(s string) []string {
	if s == "" || s == "all" {
		return nil
	}
	var out []string
	for _, n := range strings.Split(s, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	if out == nil {
		return []string{} // "--analyzers ," = none
	}
	return out
}
