package file

import (
	"flag"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/registry"
)

func fileSpec(t testing.TB) pipeline.SinkSpec {
	t.Helper()
	spec, ok := pipeline.SinkFor("file:x")
	if !ok || spec.Scheme != "file" || spec.Check == nil || spec.Open == nil {
		t.Fatalf("file sink not registered: %+v %v", spec, ok)
	}
	return spec
}

// TestOptionsFlags: the flags keep today's names, defaults and meaning.
func TestOptionsFlags(t *testing.T) {
	spec := fileSpec(t)
	o := spec.NewOptions().(*Options)
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	o.RegisterFlags(fs)
	for name, def := range map[string]string{"compress": "none", "rotate-size": "0", "rotate-interval": "0s"} {
		f := fs.Lookup(name)
		if f == nil || f.DefValue != def {
			t.Errorf("flag %s: %+v, want default %q", name, f, def)
		}
	}
	must(t, fs.Parse([]string{"--compress", "zstd", "--rotate-size", "256M", "--rotate-interval", "1h"}))
	if *o != (Options{Compress: "zstd", RotateSize: 256 << 20, RotateInterval: time.Hour}) {
		t.Errorf("parsed %+v", *o)
	}
	must(t, o.Validate())
	for _, bad := range []Options{{Compress: "brotli"}, {Compress: "none", RotateSize: -1}, {Compress: "none", RotateInterval: -time.Second}} {
		if err := bad.Validate(); !registry.IsUsage(err) {
			t.Errorf("Validate(%+v) = %v, want a usage error", bad, err)
		}
		if err := spec.Check("file:"+filepath.Join(t.TempDir(), "e.json"), &bad); !registry.IsUsage(err) {
			t.Errorf("Check with %+v = %v, want a usage error", bad, err)
		}
	}
}

// TestOpenFromRegistry opens the sink the way the app does.
func TestOpenFromRegistry(t *testing.T) {
	spec := fileSpec(t)
	dir := t.TempDir()
	o := NewOptions()
	o.Compress = "gzip"
	target := "file:" + filepath.Join(dir, "events.json")
	must(t, spec.Check(target, o))
	if final, temp := listing(t, dir); len(final)+len(temp) != 0 {
		t.Fatalf("Check created %v %v", final, temp)
	}
	s, err := spec.Open(target, o, pipeline.SinkEnv{Format: "json"})
	must(t, err)
	must(t, s.Write(flowsFrom(1, 3)))
	must(t, s.Close())
	if got := flowIDs(t, content(t, filepath.Join(dir, "events.json.gz"))); !slices.Equal(got, seq(1, 3)) {
		t.Errorf("events %v", got)
	}
	if _, err := spec.Open(target, o, pipeline.SinkEnv{Format: "xml"}); !registry.IsUsage(err) {
		t.Errorf("Open with format xml = %v, want a usage error", err)
	}
	if err := spec.Check("file:", o); !registry.IsUsage(err) {
		t.Errorf("Check(file:) = %v, want a usage error", err)
	}
}
