package parquet

import (
	"errors"
	"flag"
	"io/fs"
	"strings"
	"time"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/registry"
)

func init() {
	pipeline.RegisterSink(pipeline.SinkSpec{
		Scheme:     "parquet",
		Usage:      "parquet:DIR",
		NewOptions: func() registry.Options { return NewOptions() },
		Check: func(target string, opts registry.Options) error {
			_, err := configFor(target, opts)
			if errors.Is(err, fs.ErrNotExist) {
				return nil // the directory may be made before the run (StateDirectory=)
			}
			return err
		},
		Open: open,
	})
}

// Options are the Parquet sink's flags (and config keys). They carry a
// parquet- prefix: the file sink owns --rotate-size and --rotate-interval,
// and both sinks can run at once with their own limits.
type Options struct {
	RotateSize     registry.ByteSize
	RotateInterval time.Duration
	RowGroupSize   registry.ByteSize
	Compression    string
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{RowGroupSize: DefaultRowGroupBytes, Compression: "zstd"}
}

// RegisterFlags declares --parquet-rotate-size, --parquet-rotate-interval,
// --parquet-row-group-size and --parquet-compression.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.Var(&o.RotateSize, "parquet-rotate-size", "Parquet sink: complete an event type's file once it holds `SIZE` bytes (e.g. 256M; 0 = never)")
	fs.DurationVar(&o.RotateInterval, "parquet-rotate-interval", 0, "Parquet sink: complete every file at each multiple of `DURATION` of the clock (e.g. 1h; 0 = never)")
	fs.Var(&o.RowGroupSize, "parquet-row-group-size", "Parquet sink: `SIZE` of the values an event type buffers before writing them as a row group (memory per event type)")
	fs.StringVar(&o.Compression, "parquet-compression", "zstd", "Parquet sink: column compression: zstd, snappy, gzip or none")
}

// Validate refuses an unknown compression and negative sizes.
func (o *Options) Validate() error {
	if _, err := codec(o.Compression); err != nil {
		return registry.Usagef("--parquet-compression: %w", err)
	}
	if o.RotateSize < 0 {
		return registry.Usagef("--parquet-rotate-size %d: must not be negative", o.RotateSize)
	}
	if o.RotateInterval < 0 {
		return registry.Usagef("--parquet-rotate-interval %s: must not be negative", o.RotateInterval)
	}
	if o.RowGroupSize < minRowGroupBytes {
		return registry.Usagef("--parquet-row-group-size %d: want at least %d", o.RowGroupSize, minRowGroupBytes)
	}
	return nil
}

// configFor is the Config that target and opts ask for, checked as New
// checks it, creating nothing.
func configFor(target string, opts registry.Options) (Config, error) {
	o, _ := opts.(*Options)
	if o == nil {
		o = NewOptions()
	}
	if err := o.Validate(); err != nil {
		return Config{}, err
	}
	cfg := Config{
		Dir:           strings.TrimPrefix(target, "parquet:"),
		RotateBytes:   int64(o.RotateSize),
		RotateEvery:   o.RotateInterval,
		RowGroupBytes: int64(o.RowGroupSize),
		Compression:   o.Compression,
	}
	return cfg, cfg.check()
}

// open makes the sink. --format does not apply: Parquet is the format.
func open(target string, opts registry.Options, env pipeline.SinkEnv) (pipeline.Sink, error) {
	cfg, err := configFor(target, opts)
	if err != nil {
		return nil, err
	}
	cfg.Stats = env.Stats
	return New(cfg)
}
