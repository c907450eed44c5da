package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pktpipe/pktpipe/internal/testenv"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pktpipe.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigCheckRejectsUnknownKeyNamingTheLine(t *testing.T) {
	p := writeConfig(t, "read: [x.pcap]\nworkers: 2\n\nwokers: 4\n")
	code, out, errs := runCmd(t, nil, "config", "check", p)
	if code == exitOK || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	if want := p + `:4: unknown key "wokers" (did you mean "workers"?)`; !strings.Contains(errs, want) {
		t.Fatalf("stderr %q, want %q", errs, want)
	}
	for text, want := range map[string]string{
		"read: [x.pcap]\nworkers: many\n":       ":2: workers: invalid value \"many\"",
		"read: [x.pcap]\nrotate_size: 12Q\n":    ":2: rotate_size: invalid value \"12Q\"",
		"read: [x.pcap]\nformat: [a, b]\n":      ":2: format takes one value, not a list",
		"read: x.pcap\ninterface: eth0\n":       "-r and -i cannot be used together",
		"read: [x.pcap]\nmetrics_addr: :9477\n": "not a loopback address",
	} {
		p := writeConfig(t, text)
		if code, _, errs := runCmd(t, nil, "config", "check", p); code != exitUsage || !strings.Contains(errs, want) {
			t.Errorf("%q: exit %d, stderr %q, want %q", text, code, errs, want)
		}
	}
}

func TestConfigCheckAcceptsTheExample(t *testing.T) {
	example := filepath.Join(testenv.RepoRoot(t), "deploy", "pktpipe.yaml.example")
	code, out, errs := runCmd(t, nil, "config", "check", example)
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	for _, want := range []string{
		"interface: eth0 # " + example + " line ",
		"output: file:/var/log/pktpipe/events.json # " + example + " line ",
		"rotate_size: 268435456 # ",
		"workers: 2 # ",
		"metrics_addr: 127.0.0.1:9477 # ",
		"format: json # ",
		"batch_packets: 256 # ",
		"no_progress: false # default",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("effective configuration lacks %q:\n%s", want, out)
		}
	}
	// The printed configuration is itself a valid config file.
	if code, _, errs := runCmd(t, nil, "config", "check", writeConfig(t, out)); code != exitOK {
		t.Fatalf("the effective configuration does not check: exit %d\n%s", code, errs)
	}
}

// A run from a config file gives the same events as the same flags, and
// flags on the command line win over the file.
func TestConfigFileRunsLikeFlags(t *testing.T) {
	abs, _ := filepath.Abs(sample)
	out := filepath.Join(t.TempDir(), "events.json")
	p := writeConfig(t, "read: ["+abs+"]\nworkers: 3\noutput: file:"+out+"\nno_community_id: true\n")
	code, stdout, errs := runCmd(t, nil, "--config", p, "-o", "-")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("the file's output was used although -o was given")
	}
	_, want, _ := runCmd(t, nil, "-r", sample, "--no-community-id")
	if sortedLines(stdout) != sortedLines(want) || strings.Contains(stdout, "community_id") {
		t.Fatalf("config run differs from the flags run")
	}
	// -r on the command line replaces the file's input.
	if code, _, errs := runCmd(t, nil, "--config", p, "-o", "-", "-r", "/nonexistent.pcap"); code == exitOK || !strings.Contains(errs, "nonexistent") {
		t.Fatalf("-r did not replace the file's read: exit %d\n%s", code, errs)
	}
}
