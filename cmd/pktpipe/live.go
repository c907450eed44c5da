package main

import (
	"errors"
	"flag"

	"github.com/pktpipe/pktpipe/internal/app"
)

// liveOptions are the flags of live capture (-i) and filter expressions.
type liveOptions struct{}

func (l *liveOptions) register(fs *flag.FlagSet) {}

func (l *liveOptions) validate(o *options) error {
	if o.iface != "" {
		return errors.New("live capture (-i) is not wired into the command yet; use -r FILE")
	}
	if o.filter != "" {
		return errors.New("filter expressions are not supported yet (got " + o.filter + ")")
	}
	return nil
}

// configure turns the live flags into sources on cfg (cfg.Sources).
func (l *liveOptions) configure(o *options, cfg *app.Config) error { return nil }
