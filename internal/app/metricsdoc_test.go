package app_test

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/app"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

// Every series a run registers is documented in docs/operations.md: a run
// with every analyzer (features too), the active timeout, a shard, and the
// file and parquet sinks over the sample capture.
func TestOperationsDocumentsEverySeries(t *testing.T) {
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	o := app.Options{
		Files: []string{sample}, Workers: 2, Analyzers: []string{"all", "features"},
		Outputs: []string{"file:" + filepath.Join(dir, "e.json"), "parquet:" + dir},
		Stdout:  io.Discard, Stats: stats.NewRegistry(),
	}
	o.Timeouts.Active = time.Minute
	if err := o.Shard.Set("0/2"); err != nil {
		t.Fatal(err)
	}
	p, err := app.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, s := range o.Stats.Snapshot() {
		if !seen[s.Name] && !strings.Contains(string(doc), "`"+s.Name+"`") {
			t.Errorf("docs/operations.md does not list %s (%s)", s.Name, s.Help)
		}
		seen[s.Name] = true
	}
}
