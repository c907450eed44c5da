package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/pktpipe/pktpipe/internal/app"
	"github.com/pktpipe/pktpipe/pipeline/registry"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

var errHelp = errors.New("help requested")

// options is everything the command line can say: the pipeline's options
// (internal/app declares them, with every component's own flags), and
// what only the command has (logging, progress, ops).
type options struct {
	app        app.Options
	flags      *app.Flags
	noProgress bool
	logLevel   slog.Level

	ops opsOptions // metrics, status line, config (ops.go)
}

const usageHead = `pktpipe — streaming packet analysis: flows, TLS fingerprints, ICMP feedback, RTT.

Usage:
  pktpipe [options] -r FILE [-r FILE ...] [filter expression]
  pktpipe [options] -i IFACE [filter expression]
  pktpipe --config FILE [options]
  pktpipe config check FILE
  pktpipe version

Events go to the sinks (-o, repeatable) as JSON lines (default) or msgpack;
logs go to stderr. The schema is in docs/schema.md. The exit code is 0 when
everything read was processed and written, 1 on an error (bad input, a
failed sink), 2 on a usage error, and 3 when the run finished but something
was dropped or spilled.

Signals: SIGINT or SIGTERM stops reading and drains everything read to the
sinks; a second one exits at once (what was in flight is logged as lost).
SIGHUP completes the current output file and starts a new one (logrotate).

Examples:
  pktpipe -r capture.pcapng.zst
  pktpipe -r 'traces/*.pcap' -o file:events.json --compress zstd --rotate-size 256M
  pktpipe -i eth0 -o file:events.json -o kafka://broker:9092/pktpipe
  zcat x.pcap.gz | pktpipe -r - --format msgpack -o file:events.msgpack

Options:
`

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("pktpipe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var level string
	o.flags = o.app.RegisterFlags(fs)
	fs.BoolVar(&o.noProgress, "no-progress", false, "no progress bar on stderr (it is shown only when stderr is a terminal)")
	fs.StringVar(&level, "log-level", "info", "log level on stderr: debug, info, warn, error")
	o.ops.register(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, err
	}
	if err := o.ops.applyConfig(fs); err != nil { // --config FILE (ops.go)
		return nil, err
	}
	o.app.Filter = strings.Join(fs.Args(), " ")
	if o.app.Filter == "" {
		o.app.Filter = o.ops.fileFilter
	}
	if err := o.logLevel.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level: %v", err)
	}
	if err := o.flags.CheckUse(&o.app, fs, o.ops.isSet); err != nil {
		return nil, o.ops.locate(err)
	}
	if err := o.ops.validate(o); err != nil {
		return nil, o.ops.locate(err)
	}
	// Everything the run will check without opening anything: bounds,
	// component options, analyzers, every -o target.
	if err := app.Check(&o.app); err != nil {
		return nil, o.ops.locate(err)
	}
	return o, nil
}

// exitCodeOf is the exit code of a failed build: 2 for what the user
// asked wrongly, 1 for the rest.
func exitCodeOf(err error) int {
	if registry.IsUsage(err) {
		return exitUsage
	}
	return exitError
}
