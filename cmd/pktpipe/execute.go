package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/pktpipe/pktpipe/internal/app"
	"github.com/pktpipe/pktpipe/sources/pcapfile"
)

func execute(ctx context.Context, o *options, stdin io.Reader, stdout, stderr io.Writer, log *slog.Logger) int {
	cfg := o.app
	cfg.Stdin, cfg.Stdout, cfg.Log, cfg.Ctx = stdin, stdout, log, ctx
	if f, ok := stderr.(*os.File); ok && !o.noProgress && pcapfile.ProgressWanted(f) {
		cfg.Progress = stderr
	}
	p, err := app.Build(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "pktpipe: %v\n", err)
		return exitCodeOf(err)
	}
	if len(p.Reopeners) > 0 {
		// SIGHUP completes the current file and starts a new one (logrotate).
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for range hup {
				for _, r := range p.Reopeners {
					if err := r.Reopen(); err != nil {
						log.Error("reopen on SIGHUP failed", "err", err)
					} else {
						log.Info("file sink reopened on SIGHUP")
					}
				}
			}
		}()
	}
	stopOps, err := o.ops.start(ctx, o, p, log)
	if err != nil {
		_ = p.Close()
		fmt.Fprintf(stderr, "pktpipe: %v\n", err)
		return exitCodeOf(err)
	}
	start := time.Now()
	res, runErr := p.Run(ctx)
	stopOps()
	elapsed := time.Since(start)

	o.ops.summary(log, res, elapsed, p.Stats) // one line; the loss lines follow
	for _, s := range res.Sinks {
		if s.Lost > 0 && !s.ReaderGone {
			log.Error("sink lost events", "sink", s.Name, "target", p.Target(s.Name), "delivered", s.Delivered, "lost", s.Lost, "err", s.Err)
		}
	}
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
