package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pktpipe/pktpipe/stages/flow"

	_ "github.com/pktpipe/pktpipe/stages/all" // the analyzers the pipeline modes run
)

type cpuSplit struct{ user, sys time.Duration }

// cpuTime is the user and system CPU time of the whole process (every
// thread, the garbage collector's included).
func cpuTime() cpuSplit {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return cpuSplit{}
	}
	return cpuSplit{time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())}
}

// vmHWM is the process's peak resident set size in bytes (VmHWM in
// /proc/self/status), 0 if unknown.
func vmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v) // "123456 kB"
			if len(f) >= 1 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

// loadAvg is /proc/loadavg's first three fields ("" if unknown).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func load1() float64 {
	f := strings.Fields(loadAvg())
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := bytes.Cut(sc.Bytes(), []byte(":")); ok && string(bytes.TrimSpace(k)) == "model name" {
			return string(bytes.TrimSpace(v))
		}
	}
	return "unknown"
}

// dirBytes is the total size of the regular files under dir.
func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// analyzers names the per-flow analyzers the pipeline modes run (what
// internal/app registers today), so a row can be told from one taken
// before an analyzer was added.
func analyzers() []string {
	names := []string{}
	specs, _ := flow.ResolveAnalyzers(analyzerSet())
	for _, s := range specs {
		names = append(names, s.Name)
	}
	return names
}

// revision is `git describe --always --dirty` of the working directory, or
// "unknown" (the build has no VCS stamp: GOFLAGS=-buildvcs=false here).
func revision() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
