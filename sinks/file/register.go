package file

import (
	"errors"
	"flag"
	"io/fs"
	"strings"
	"time"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/sinks/encode"
)

func init() {
	pipeline.RegisterSink(pipeline.SinkSpec{
		Scheme:     "file",
		Usage:      "file:PATH",
		NewOptions: func() registry.Options { return NewOptions() },
		Check: func(target string, opts registry.Options) error {
			_, err := configFor(target, opts)
			if errors.Is(err, fs.ErrNotExist) {
				return nil // the directory may be made before the run (LogsDirectory=)
			}
			return err
		},
		Open: open,
	})
}

// Options are the file sink's flags (and config keys).
type Options struct {
	Compress       string // none, gzip or zstd
	RotateSize     registry.ByteSize
	RotateInterval time.Duration
}

// NewOptions returns the defaults.
func NewOptions() *Options { return &Options{Compress: "none"} }

// RegisterFlags declares --compress, --rotate-size and --rotate-interval.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Compress, "compress", "none", "file sink compression: none, gzip or zstd (adds .gz/.zst to the name)")
	fs.Var(&o.RotateSize, "rotate-size", "file sink: start a new file after `SIZE` bytes (e.g. 256M; 0 = never)")
	fs.DurationVar(&o.RotateInterval, "rotate-interval", 0, "file sink: start a new file every `DURATION` (e.g. 1h; 0 = never)")
}

// Validate refuses an unknown compression and negative limits.
func (o *Options) Validate() error {
	switch o.Compress {
	case "", "none", "gzip", "zstd":
	default:
		return registry.Usagef("--compress %q: use none, gzip or zstd", o.Compress)
	}
	if o.RotateSize < 0 {
		return registry.Usagef("--rotate-size %d: must not be negative", o.RotateSize)
	}
	if o.RotateInterval < 0 {
		return registry.Usagef("--rotate-interval %s: must not be negative", o.RotateInterval)
	}
	return nil
}

// configFor is the Config that target and opts ask for, checked as New
// checks it (the target's kind, its directory), opening nothing.
func configFor(target string, opts registry.Options) (Config, error) {
	o, _ := opts.(*Options)
	if o == nil {
		o = NewOptions()
	}
	if err := o.Validate(); err != nil {
		return Config{}, err
	}
	cfg := Config{
		Path:        strings.TrimPrefix(target, "file:"),
		RotateBytes: int64(o.RotateSize),
		RotateEvery: o.RotateInterval,
	}
	if o.Compress != "none" {
		cfg.Compress = o.Compress
	}
	_, err := inspect(cfg)
	return cfg, err
}

func open(target string, opts registry.Options, env pipeline.SinkEnv) (pipeline.Sink, error) {
	cfg, err := configFor(target, opts)
	if err != nil {
		return nil, err
	}
	format := env.Format
	if format == "" {
		format = encode.FormatJSON
	}
	if cfg.Format, err = encode.New(format); err != nil {
		return nil, registry.Usage(err)
	}
	cfg.Ctx = env.Ctx
	return New(cfg)
}
