package parquet_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/sinks/parquet"
)

func spec(t testing.TB) pipeline.SinkSpec {
	t.Helper()
	s, ok := pipeline.SinkFor("parquet:/x")
	if !ok || s.Scheme != "parquet" || s.Check == nil || s.Open == nil {
		t.Fatalf("parquet sink not registered: %+v %v", s, ok)
	}
	return s
}

// TestOptionsFlags: the flags, their defaults, and what Validate refuses.
func TestOptionsFlags(t *testing.T) {
	o := spec(t).NewOptions().(*parquet.Options)
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	o.RegisterFlags(fs)
	for name, def := range map[string]string{
		"parquet-rotate-size": "0", "parquet-rotate-interval": "0s",
		"parquet-row-group-size": "16777216", "parquet-compression": "zstd",
	} {
		if f := fs.Lookup(name); f == nil || f.DefValue != def {
			t.Errorf("flag %s: %+v, want default %q", name, f, def)
		}
	}
	must(t, fs.Parse([]string{"--parquet-rotate-size", "256M", "--parquet-rotate-interval", "1h",
		"--parquet-row-group-size", "8M", "--parquet-compression", "snappy"}))
	want := parquet.Options{RotateSize: 256 << 20, RotateInterval: time.Hour, RowGroupSize: 8 << 20, Compression: "snappy"}
	if *o != want {
		t.Errorf("parsed %+v, want %+v", *o, want)
	}
	must(t, o.Validate())
	dir := t.TempDir()
	for _, bad := range []parquet.Options{
		{Compression: "lzo", RowGroupSize: 1 << 20}, {Compression: "zstd", RowGroupSize: 1 << 20, RotateSize: -1},
		{Compression: "zstd", RowGroupSize: 1 << 20, RotateInterval: -time.Second}, {Compression: "zstd", RowGroupSize: 1000},
	} {
		if err := bad.Validate(); !registry.IsUsage(err) {
			t.Errorf("Validate(%+v) = %v, want a usage error", bad, err)
		}
		if err := spec(t).Check("parquet:"+dir, &bad); !registry.IsUsage(err) {
			t.Errorf("Check with %+v = %v, want a usage error", bad, err)
		}
	}
}

// TestCheckAndOpen: Check creates nothing and lets a directory that does
// not exist yet pass (it may be made before the run); Open needs it; a
// file or no path is a usage error.
func TestCheckAndOpen(t *testing.T) {
	s := spec(t)
	dir := t.TempDir()
	o := parquet.NewOptions()
	must(t, s.Check("parquet:"+dir, o))
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("Check created %v", ents)
	}
	missing := filepath.Join(dir, "later")
	must(t, s.Check("parquet:"+missing, o))
	if _, err := s.Open("parquet:"+missing, o, pipeline.SinkEnv{}); err == nil {
		t.Error("Open of a missing directory succeeded")
	}
	file := filepath.Join(dir, "f")
	must(t, os.WriteFile(file, nil, 0o644))
	for _, target := range []string{"parquet:", "parquet:" + file} {
		if err := s.Check(target, o); !registry.IsUsage(err) {
			t.Errorf("Check(%s) = %v, want a usage error", target, err)
		}
	}
	sink, err := s.Open("parquet:"+dir, o, pipeline.SinkEnv{Format: "msgpack"})
	must(t, err)
	must(t, sink.Write([]event.Event{mk("x", 0, func(w event.Writer) { key(w, "v"); w.Uint(1) })}))
	must(t, sink.Close())
	if final, temp := listing(t, dir); len(final) != 2 || len(temp) != 0 { // the file and f
		t.Errorf("files %v, temporary %v", final, temp)
	}
}
