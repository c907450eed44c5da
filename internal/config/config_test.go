package config

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

type testFlags struct {
	fs      *flag.FlagSet
	reads   list
	workers int
	output  string
	quiet   bool
	rotate  string
}

func newFlags() *testFlags {
	t := &testFlags{fs: flag.NewFlagSet("t", flag.ContinueOnError)}
	t.fs.Var(&t.reads, "r", "")
	t.fs.IntVar(&t.workers, "workers", 1, "")
	t.fs.StringVar(&t.output, "o", "-", "")
	t.fs.BoolVar(&t.quiet, "quiet", false, "")
	t.fs.StringVar(&t.rotate, "rotate-size", "0", "")
	t.fs.String("config", "", "")
	return t
}

var schema = &Schema{
	Aliases:    map[string]string{"read": "r", "output": "o"},
	Extras:     []string{"filter"},
	Hidden:     []string{"config"},
	Repeatable: func(f *flag.Flag) bool { _, ok := f.Value.(*list); return ok },
}

func apply(t *testing.T, yml string, args ...string) (*testFlags, map[string][]string, error) {
	t.Helper()
	tf := newFlags()
	if err := tf.fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	f, err := Parse("test.yaml", []byte(yml))
	if err != nil {
		return tf, nil, err
	}
	set := map[string]bool{}
	tf.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	ex, err := schema.Apply(f, tf.fs, func(n string) bool { return set[n] })
	return tf, ex, err
}

func TestApplySetsFlagsAndCommandLineWins(t *testing.T) {
	yml := "# comment\nworkers: 4\noutput: file:/var/log/pktpipe/events.json\nrotate_size: 256M\nread: [a.pcap, b.pcap]\nquiet: true\nfilter: tcp port 443\n"
	tf, ex, err := apply(t, yml)
	if err != nil {
		t.Fatal(err)
	}
	if tf.workers != 4 || tf.output != "file:/var/log/pktpipe/events.json" || tf.rotate != "256M" || !tf.quiet ||
		strings.Join(tf.reads, " ") != "a.pcap b.pcap" || strings.Join(ex["filter"], "") != "tcp port 443" {
		t.Fatalf("applied: %+v %v", tf, ex)
	}
	tf, _, err = apply(t, yml, "--workers", "2", "-r", "c.pcap")
	if err != nil {
		t.Fatal(err)
	}
	if tf.workers != 2 || strings.Join(tf.reads, " ") != "c.pcap" || tf.rotate != "256M" {
		t.Fatalf("command line did not win: workers %d reads %v", tf.workers, tf.reads)
	}
}

func TestErrorsNameTheLine(t *testing.T) {
	for _, c := range []struct{ yml, want string }{
		{"workers: 4\n\nwokers: 2\n", `test.yaml:3: unknown key "wokers" (did you mean "workers"?)`},
		{"workers: 4\nbogus: 1\n", `test.yaml:2: unknown key "bogus"`},
		{"workers: four\n", `test.yaml:1: workers: invalid value "four"`},
		{"workers: [1, 2]\n", "test.yaml:1: workers takes one value, not a list"},
		{"workers: 1\nworkers: 2\n", `test.yaml:2: duplicate key "workers" (first on line 1)`},
		{"output:\n", "test.yaml:1: output: no value"},
		{"read:\n  a: b\n", "test.yaml:2: read: want a value or a list"},
		{"- a\n- b\n", "test.yaml:1: the file must be a mapping"},
		{"workers: 4\n  bad indent: [\n", "test.yaml:"},
		{"config: other.yaml\n", `test.yaml:1: unknown key "config"`},
		{"r: x.pcap\n", `test.yaml:1: unknown key "r"`},
	} {
		_, _, err := apply(t, c.yml)
		var ce *Error
		if err == nil || !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%q: error %v, want prefix %q", c.yml, err, c.want)
		}
	}
	if _, _, err := apply(t, "workers: 4\n\n  oops: [\n"); err == nil || !strings.Contains(err.Error(), "line ") {
		t.Errorf("syntax error without a line: %v", err)
	}
}

func TestEmptyFileIsFine(t *testing.T) {
	for _, yml := range []string{"", "# only a comment\n", "---\n"} {
		if tf, _, err := apply(t, yml); err != nil || tf.workers != 1 {
			t.Errorf("%q: %v", yml, err)
		}
	}
}

func TestFormatRoundTrips(t *testing.T) {
	items := []Item{
		{Key: "workers", Values: []string{"4"}, Comment: "file line 2"},
		{Key: "output", Values: []string{"-"}, String: true, Comment: "default"},
		{Key: "read", Values: []string{"a b.pcap", "123"}, List: true, String: true},
		{Key: "quiet", Values: []string{"true"}},
		{Key: "filter", Values: []string{""}, String: true},
		{Key: "rotate_size", Values: []string{"268435456"}},
		{Key: "metrics_addr", Values: []string{":9477"}, String: true},
	}
	out, err := Format(items)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse("out.yaml", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(f.Entries) != len(items) {
		t.Fatalf("%d entries back, want %d\n%s", len(f.Entries), len(items), out)
	}
	for i, e := range f.Entries {
		if e.Key != items[i].Key || strings.Join(e.Values, "|") != strings.Join(items[i].Values, "|") {
			t.Errorf("entry %d: %q %q, want %q %q\n%s", i, e.Key, e.Values, items[i].Key, items[i].Values, out)
		}
	}
	if !strings.Contains(string(out), "workers: 4 # file line 2\n") {
		t.Errorf("numbers should be plain, with the comment:\n%s", out)
	}
}

func TestLoadRefusesDevicesAndHugeFiles(t *testing.T) {
	if _, err := Load("/dev/zero"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("/dev/zero: %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, bytes.Repeat([]byte("# comment\n"), MaxSize/10+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("big file: %v", err)
	}
}
