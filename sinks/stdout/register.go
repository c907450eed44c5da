package stdout

import (
	"os"
	"strings"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/sinks/encode"
)

// The stdout sink is -o - (pipeline.SinkScheme maps "-" to "stdout"). It
// has no options.
func init() {
	pipeline.RegisterSink(pipeline.SinkSpec{
		Scheme: "stdout",
		Usage:  "-",
		Check:  func(target string, _ registry.Options) error { return checkTarget(target) },
		Open:   open,
	})
}

func checkTarget(target string) error {
	if rest, ok := strings.CutPrefix(target, "stdout:"); ok && rest != "" {
		return registry.Usagef("-o %q: standard output takes no path (use -o -)", target)
	}
	return nil
}

func open(target string, _ registry.Options, env pipeline.SinkEnv) (pipeline.Sink, error) {
	if err := checkTarget(target); err != nil {
		return nil, err
	}
	format := env.Format
	if format == "" {
		format = encode.FormatJSON
	}
	enc, err := encode.New(format)
	if err != nil {
		return nil, registry.Usage(err)
	}
	w := env.Stdout
	if w == nil {
		w = os.Stdout
	}
	return New(w, enc), nil
}
