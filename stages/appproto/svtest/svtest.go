// Package svtest runs captures through the real engine (pcapfile, decode,
// the flow table with the given analyzers, a memory sink) and reads
// suricata-verify's test.yaml checks, for the tests of stages/appproto,
// stages/ssh and stages/http.
package svtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sinks/memsink"
	"github.com/pktpipe/pktpipe/sources/pcapfile"
	"github.com/pktpipe/pktpipe/stages/decode"
	"github.com/pktpipe/pktpipe/stages/flow"
)

// Run runs file through the engine with one worker and the analyzers
// built by mk (one set per run), and returns every event decoded from
// JSON (numbers as json.Number).
func Run(t testing.TB, file string, mk func(reg *stats.Registry) []flow.Analyzer) []map[string]any {
	t.Helper()
	evs, err := RunErr(file, mk)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// RunErr is Run returning its error.
func RunErr(file string, mk func(reg *stats.Registry) []flow.Analyzer) ([]map[string]any, error) {
	reg := stats.NewRegistry()
	src, err := pcapfile.New(pcapfile.Config{Files: []string{file}, Stats: reg})
	if err != nil {
		return nil, err
	}
	sink := memsink.New(nil)
	eng, err := pipeline.New(pipeline.Config{Workers: 1, Stats: reg}, pipeline.Parts{
		Sources:    []pipeline.Source{src},
		NewDecoder: func() pipeline.Decoder { return decode.New() },
		NewProcessor: func(int) pipeline.Processor {
			as := mk(reg)
			for i, a := range as {
				if su, ok := a.(flow.SlotUser); ok {
					su.SetSlot(i)
				}
			}
			return flow.NewProcessor(flow.Config{Workers: 1, Stats: reg}, as...)
		},
		Sink: sink,
	})
	if err != nil {
		return nil, err
	}
	if _, err := eng.Run(context.Background()); err != nil {
		return nil, err
	}
	return sink.Events(), nil
}

// Check is one "filter" of a test.yaml.
type Check struct {
	Count int
	Match map[string]any
}

// Test is one suricata-verify test directory.
type Test struct {
	Name  string // path under tests/
	Dir   string
	Pcap  string // "" when the test has none
	Args  []string
	Check []Check
}

// Load reads every test.yaml under root.
func Load(root string) ([]Test, error) {
	var out []Test
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "test.yaml" {
			return err
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var y struct {
			Pcap   any      `yaml:"pcap"`
			Args   []string `yaml:"args"`
			Checks []struct {
				Filter *struct {
					Count int            `yaml:"count"`
					Match map[string]any `yaml:"match"`
				} `yaml:"filter"`
			} `yaml:"checks"`
		}
		if err := yaml.Unmarshal(raw, &y); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		dir := filepath.Dir(p)
		name, _ := filepath.Rel(root, dir)
		tc := Test{Name: name, Dir: dir, Args: y.Args}
		switch v := y.Pcap.(type) {
		case string:
			tc.Pcap = filepath.Join(dir, v)
		case nil:
			ms, _ := filepath.Glob(filepath.Join(dir, "*.pcap"))
			ng, _ := filepath.Glob(filepath.Join(dir, "*.pcapng"))
			ms = append(ms, ng...)
			sort.Strings(ms)
			if len(ms) > 0 {
				tc.Pcap = ms[0]
			}
		}
		for _, c := range y.Checks {
			if c.Filter != nil {
				tc.Check = append(tc.Check, Check{Count: c.Filter.Count, Match: c.Filter.Match})
			}
		}
		out = append(out, tc)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// Lookup returns the value at a dotted path with [i] indices
// ("ssh.client.hassh.hash", "queries[0].rrname").
func Lookup(ev map[string]any, path string) (any, bool) {
	var cur any = ev
	for _, part := range strings.Split(path, ".") {
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 && strings.HasSuffix(part, "]") {
			n, err := strconv.Atoi(part[i+1 : len(part)-1])
			if err != nil {
				return nil, false
			}
			name, idx = part[:i], n
		}
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[name]; !ok {
			return nil, false
		}
		if idx >= 0 {
			a, ok := cur.([]any)
			if !ok || idx >= len(a) {
				return nil, false
			}
			cur = a[idx]
		}
	}
	return cur, true
}

// Equal compares a decoded event value with a YAML value: numbers by
// value, addresses by parsed address (Suricata writes IPv6 in full).
func Equal(got, want any) bool {
	switch w := want.(type) {
	case int:
		return fmt.Sprint(got) == strconv.Itoa(w)
	case float64:
		f, err := strconv.ParseFloat(fmt.Sprint(got), 64)
		return err == nil && f == w
	case bool:
		b, ok := got.(bool)
		return ok && b == w
	case string:
		g, ok := got.(string)
		if !ok {
			return false
		}
		if g == w {
			return true
		}
		a, err1 := netip.ParseAddr(g)
		b, err2 := netip.ParseAddr(w)
		return err1 == nil && err2 == nil && a == b
	case nil:
		return got == nil
	}
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	return string(gj) == string(wj)
}
