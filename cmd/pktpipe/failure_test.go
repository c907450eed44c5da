package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/testenv"
)

// Failure paths of the whole command (issue: failure paths that lose or
// mislead). Each case failed before its fix.

func TestUsageErrorsExit2(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"-r", sample, "-o", "nope:x"},
		{"-r", sample, "-o", "file:"},
		{"-r", sample, "-o", "file:" + dir}, // a directory: refused at start, not after the run
		{"-r", sample, "-o", "kafka://127.0.0.1:9092/t?compression=brotli"},
		{"-r", sample, "-o", "kafka://127.0.0.1:99999/t"},
		{"-r", sample, "--replay-speed", "-1"},
		{"-r", sample, "--flow-timeout-tcp", "-1s"},
		{"-r", sample, "--flow-timeout-closed", "-1s"},
		{"-r", sample, "--flow-active-timeout", "-1s"},
		{"-r", sample, "--shard", "2/2"},
		{"-r", sample, "--shard", "1"},
		{"-r", sample, "--drain-timeout", "-1s"},
		{"-r", sample, "--batch-packets", "-1"},
		{"-r", sample, "--batch-packets", "100000000"},
		{"-r", sample, "--workers", "100000"},
		{"-r", sample, "--analyzers", "dns,nope"},
		{"-r", sample, "--fanout", "2"},
		{"-i", "lo", "--capture", "pcap"},
	} {
		code, _, stderr := runCmd(t, nil, args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d: %s", args, code, exitUsage, stderr)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a refused run left %d files in %s", len(entries), dir)
	}
}

// config check builds every component's options as the run does, so what
// the run refuses, check refuses, naming the file's line.
func TestConfigCheckRefusesWhatTheRunRefuses(t *testing.T) {
	for conf, want := range map[string]string{
		"read: [x.pcap]\nworkers: 2\noutput: nope:x\n":                       ":3: -o \"nope:x\"",
		"read: [x.pcap]\noutput: kafka://h:1/t?foo=bar\n":                    ":2: -o kafka://h:1/t?foo=bar",
		"read: [x.pcap]\noutput: kafka://u:secret@h:1/t\n":                   ":2: -o kafka://u:xxxxx@h:1/t",
		"read: [x.pcap]\nbatch_packets: 100000000\n":                         ":2: --batch-packets 100000000",
		"read: [x.pcap]\nanalyzers: dns\nflow_timeout_udp: -5s\n":            ":3: --flow-timeout-udp",
		"read: [x.pcap]\noutput: [file:/tmp/a.json, stdout:what]\n":          ":2: -o stdout:what",
		"interface: lo\ncapture: ebpf\nfanout: 2\n":                          ":3: --fanout",
		"read: [x.pcap]\noutput: kafka://h:1/t?sasl=plain&compression=lz9\n": "compression",
	} {
		path := writeConfig(t, conf)
		code, _, stderr := runCmd(t, nil, "config", "check", path)
		if code != exitUsage || !strings.Contains(stderr, want) {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 with %q", conf, code, stderr, want)
		}
		if strings.Contains(stderr, "secret") {
			t.Errorf("%q: the password is in the message: %s", conf, stderr)
		}
	}
	code, _, stderr := runCmd(t, nil, "config", "check", "/dev/zero")
	if code != exitUsage || !strings.Contains(stderr, "not a regular file") {
		t.Errorf("config check /dev/zero: exit %d, %s", code, stderr)
	}
}

// `pktpipe -r big.pcap | head -1`: head leaves after one line; pktpipe
// must stop reading at once and leave quietly, as tcpdump does, not replay
// the rest of the capture and log errors.
func TestHeadClosingThePipeStopsTheRun(t *testing.T) {
	sh := testenv.NeedCommand(t, "sh")
	bin := opsBinary(t)
	const packets = 300000
	capture := synth(t, packets)
	errPath := filepath.Join(t.TempDir(), "stderr")
	cmd := exec.Command(sh, "-c", `"$0" -r "$1" --workers 2 2>"$2" | head -1 >/dev/null; echo "${PIPESTATUS:-}"`, bin, capture, errPath)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	stderr, _ := os.ReadFile(errPath)
	if strings.Contains(string(stderr), "level=ERROR") {
		t.Errorf("errors logged for a reader that left:\n%s", stderr)
	}
	read := summaryPackets(t, string(stderr))
	if read >= packets {
		t.Errorf("read all %d packets after head left:\n%s", read, stderr)
	}
	t.Logf("stopped after %d of %d packets", read, packets)

	// With a stream that stays open, the run must end by itself (it used
	// to wait for the writer of stdin to close it).
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	data, err := os.ReadFile(capture)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = w.Write(data) }() // and never closed
	run := exec.Command(sh, "-c", `"$0" -r - --workers 2 2>/dev/null | head -1 >/dev/null`, bin)
	run.Stdin = r
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	done := make(chan error, 1)
	go func() { done <- run.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pipeline: %v", err)
		}
	case <-time.After(2 * time.Minute):
		_ = run.Process.Kill()
		t.Fatal("pktpipe -r - kept waiting on its open stdin after head left")
	}
}

var packetsRe = regexp.MustCompile(`msg=done packets=(\d+)`)

func summaryPackets(t *testing.T, stderr string) int {
	t.Helper()
	m := packetsRe.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no summary line in:\n%s", stderr)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}
