package main

import (
	"context"
	"flag"
	"log/slog"

	"github.com/pktpipe/pktpipe/internal/app"
)

// opsOptions are the flags of running pktpipe as a service: metrics
// endpoint, status line, config file.
type opsOptions struct{}

func (p *opsOptions) register(fs *flag.FlagSet) {}

func (p *opsOptions) validate(o *options) error { return nil }

// start begins what runs beside the pipeline (metrics server, status
// line); the returned function stops it after the run.
func (p *opsOptions) start(ctx context.Context, o *options, pl *app.Pipeline, log *slog.Logger) (func(), error) {
	return func() {}, nil
}
