package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestMain lets the test binary stand in for benchrun when the parent
// re-executes itself with -mode (os.Executable is the test binary here).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "-mode" {
		if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "benchrun:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRun runs every measurement on a small capture, twice to check that
// the second run reuses the cached capture, and checks the JSON report.
func TestRun(t *testing.T) {
	const n = 3000
	cache := t.TempDir()
	for i, wantCached := range []bool{false, true} {
		var out, errb bytes.Buffer
		err := run([]string{"-packets", fmt.Sprint(n), "-cache", cache, "-workers", "2", "-json"}, &out, &errb)
		if err != nil {
			t.Fatalf("run %d: %v\n%s", i, err, errb.String())
		}
		var rep Report
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatalf("run %d: %v\n%s", i, err, out.String())
		}
		if rep.Conditions.Cached != wantCached || rep.Conditions.Packets != n || rep.Conditions.FileBytes == 0 {
			t.Errorf("run %d: conditions %+v", i, rep.Conditions)
		}
		if len(rep.Results) != len(allModes) {
			t.Fatalf("run %d: %d results, want %d", i, len(rep.Results), len(allModes))
		}
		for j, r := range rep.Results {
			if r.Mode != allModes[j] || r.Err != "" || r.Packets != n || r.Wall <= 0 || r.PeakRSSMiB <= 0 {
				t.Errorf("run %d: result %+v", i, r)
			}
			pipe := strings.HasPrefix(r.Mode, "pipeline-")
			if pipe != (r.Events > 0) || pipe != (r.Workers == 2) {
				t.Errorf("run %d: %s: %d events, %d workers", i, r.Mode, r.Events, r.Workers)
			}
			if (r.Mode == modeFile) != (r.OutBytes > 0) {
				t.Errorf("run %d: %s wrote %d bytes", i, r.Mode, r.OutBytes)
			}
		}
		events := map[string]uint64{}
		for _, r := range rep.Results {
			events[r.Mode] = r.Events
		}
		if a, b := events[modeFile], events[modeDiscard]; a != b {
			t.Errorf("run %d: file sink took %d events, discarding sink %d", i, a, b)
		}
	}
}

// engine-file runs the pipeline with no analyzer, whatever -analyzers
// says: only flow events, fewer than the whole pipeline's on the same
// capture, written to a file.
func TestEngineMode(t *testing.T) {
	var out, errb bytes.Buffer
	err := run([]string{"-packets", "3000", "-cache", t.TempDir(), "-workers", "2", "-json",
		"-modes", modeEngine + "," + modeFile, "-analyzers", "tls,dns"}, &out, &errb)
	if err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 2 {
		t.Fatalf("%d results", len(rep.Results))
	}
	eng, full := rep.Results[0], rep.Results[1]
	if eng.Mode != modeEngine || eng.Err != "" || eng.Packets != 3000 || eng.OutBytes == 0 || eng.Events == 0 {
		t.Errorf("engine: %+v", eng)
	}
	if full.Events <= eng.Events {
		t.Errorf("engine took %d events, the pipeline with tls and dns %d", eng.Events, full.Events)
	}
}

// The -compare summary takes medians per mode and divides the bare loop's
// wall time by the pipeline's.
func TestCompare(t *testing.T) {
	var out bytes.Buffer
	printCompare(&out, &Conditions{Packets: 10, Workers: 2}, []Result{
		{Mode: modeGopacket, Wall: 1}, {Mode: modeGopacket, Wall: 9}, {Mode: modeGopacket, Wall: 2},
		{Mode: modeFile, Wall: 4, CPUNsPkt: 600}, {Mode: modeFile, Wall: 3, CPUNsPkt: 500}, {Mode: modeFile, Err: "x", Wall: 0.1},
		{Mode: modeEngine, Wall: 1.6, CPUNsPkt: 300},
	}, &tsharkRun{Wall: 70, CPU: 1})
	for _, want := range []string{"medians of 3 and 2 runs", "bare loop / 1 goroutine", "550", "pktpipe speed / bare loop speed (wall): 0.57x", "tshark speed (wall): 20.0x",
		"no analyzer (the engine)", "engine speed / bare loop speed (wall): 1.25x"} {
		want = strings.Replace(want, "bare loop / 1 goroutine", "bare loop (gopacket, 1 goroutine, decode)", 1)
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in\n%s", want, out.String())
		}
	}
}

func TestTable(t *testing.T) {
	var out bytes.Buffer
	printTable(&out, &Conditions{Packets: 10, Count: 1}, []Result{
		{Mode: modeDecode, Packets: 10, Wall: 1, PPS: 10},
		{Mode: modeDiscard, Packets: 10, Events: 3},
		{Mode: modeFile, Err: "boom"},
	})
	s := out.String()
	for _, want := range []string{"CPU ns/pkt", "decode ", "pipeline-file", "FAILED: boom"} {
		if !strings.Contains(s, want) {
			t.Errorf("table lacks %q:\n%s", want, s)
		}
	}
}
