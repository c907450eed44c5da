// Command pktpipe reads packets from capture files (and, later, live
// interfaces), follows flows, and writes typed events as JSON lines or
// msgpack to stdout, files or Kafka. See README.md and docs/schema.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/pktpipe/pktpipe/internal/app"
)

func main() {
	app.TuneGC()
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the run failed: bad input, a sink error
	exitUsage = 2
	exitLoss  = 3 // the run finished but something was dropped or spilled
)

// run is main without the process: tests call it directly.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "version" {
		fmt.Fprintln(stdout, versionString())
		return exitOK
	}
	if len(args) > 0 && args[0] == "config" {
		return runConfigCommand(args[1:], stdout, stderr)
	}
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, errHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "pktpipe: %v\n", err)
		return exitUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: opts.logLevel}))

	// The first SIGINT/SIGTERM stops the sources and lets everything read
	// drain to the sink; a second one exits at once.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer func() {
		signal.Stop(sigs)
		close(sigs) // nothing sends after Stop: this ends the goroutine
	}()
	go func() {
		s, ok := <-sigs
		if !ok {
			return
		}
		log.Info("stopping: draining what was read (signal again to exit at once)", "signal", s.String())
		cancel()
		if _, ok := <-sigs; ok {
			log.Error("second signal: exiting without draining; events in the pipeline are lost", opts.ops.inFlight()...)
			os.Exit(exitLoss)
		}
	}()
	return execute(ctx, opts, stdin, stdout, stderr, log)
}
