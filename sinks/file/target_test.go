package file

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/registry"
)

// TestCharDeviceWrittenInPlace: -o file:NODE where NODE is a character
// device (a /dev/null made with mknod) writes into the device; the node is
// still the same device afterwards and nothing else appears beside it.
func TestCharDeviceWrittenInPlace(t *testing.T) {
	testenv.NeedRoot(t)
	dir := t.TempDir()
	nul := filepath.Join(dir, "nul")
	must(t, unix.Mknod(nul, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	s, err := New(Config{Path: nul})
	must(t, err)
	if !s.InPlace() || s.FinalPath() != nul {
		t.Errorf("InPlace %v, FinalPath %s", s.InPlace(), s.FinalPath())
	}
	must(t, s.Write(flowsFrom(1, 500)))
	must(t, s.Flush())
	if err := s.Reopen(); !errors.Is(err, ErrInPlace) {
		t.Errorf("Reopen = %v, want ErrInPlace", err)
	}
	must(t, s.Write(flowsFrom(501, 500))) // Reopen did not break the sink
	must(t, s.Close())
	isDevNull(t, nul)
	if final, temp := listing(t, dir); !slices.Equal(final, []string{"nul"}) || len(temp) != 0 {
		t.Errorf("directory holds %v and temporary %v, want only the device", final, temp)
	}
	// Rotation and compression are refused at start, by New and by the
	// registered sink's Check, and leave the device alone.
	for _, cfg := range []Config{
		{Path: nul, RotateBytes: 1 << 20},
		{Path: nul, RotateEvery: 3600e9},
		{Path: nul, Compress: "gzip"},
	} {
		if _, err := New(cfg); !registry.IsUsage(err) {
			t.Errorf("New(%+v) = %v, want a usage error", cfg, err)
		}
	}
	spec := fileSpec(t)
	o := NewOptions()
	o.RotateSize = 1 << 20
	if err := spec.Check("file:"+nul, o); !registry.IsUsage(err) {
		t.Errorf("Check with --rotate-size = %v, want a usage error", err)
	}
	o = NewOptions()
	o.Compress = "zstd"
	if err := spec.Check("file:"+nul, o); !registry.IsUsage(err) {
		t.Errorf("Check with --compress = %v, want a usage error", err)
	}
	isDevNull(t, nul)
}

func isDevNull(t *testing.T, p string) {
	t.Helper()
	fi, err := os.Lstat(p)
	must(t, err)
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode()&fs.ModeCharDevice == 0 || st.Rdev != unix.Mkdev(1, 3) {
		t.Fatalf("%s is now %v (rdev %#x), want the character device 1,3", p, fi.Mode(), st.Rdev)
	}
}

// TestFIFOWrittenInPlace: a reader of a named pipe gets every event, in
// order, and the pipe is still a pipe afterwards.
func TestFIFOWrittenInPlace(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "events.fifo")
	must(t, unix.Mkfifo(fifo, 0o600))
	got := make(chan []byte, 1)
	go func() {
		var b []byte
		f, err := os.Open(fifo) // waits for the writer, as New waits for it
		if err == nil {
			b, err = io.ReadAll(f)
			f.Close()
		}
		if err != nil {
			t.Error(err)
		}
		got <- b
	}()
	s, err := New(Config{Path: fifo})
	must(t, err)
	// More than a pipe holds (64 KiB), so the reader must be reading.
	for i := range 40 {
		must(t, s.Write(flowsFrom(i*100+1, 100)))
		if i%7 == 0 {
			must(t, s.Flush())
		}
	}
	if err := s.Reopen(); !errors.Is(err, ErrInPlace) {
		t.Errorf("Reopen = %v, want ErrInPlace", err)
	}
	must(t, s.Close())
	// The reader sees EOF once the sink closes the pipe; a sink that
	// wrote elsewhere leaves it waiting for a writer.
	var b []byte
	select {
	case b = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("the FIFO's reader got no end of file: the sink did not write into the FIFO")
	}
	if ids := flowIDs(t, b); !slices.Equal(ids, seq(1, 4000)) {
		t.Errorf("the reader got %d events, want 1..4000 in order", len(ids))
	}
	fi, err := os.Lstat(fifo)
	must(t, err)
	if fi.Mode()&fs.ModeNamedPipe == 0 {
		t.Errorf("%s is now %v, want a FIFO", fifo, fi.Mode())
	}
	if final, temp := listing(t, dir); len(final) != 1 || len(temp) != 0 {
		t.Errorf("directory holds %v and temporary %v, want only the FIFO", final, temp)
	}
}

// TestSymlinkResolved: a link to a regular file gets the output in the
// file it points to (the link stays a link); a link to a device is written
// in place; a dangling link is refused.
func TestSymlinkResolved(t *testing.T) {
	dir, real := t.TempDir(), t.TempDir()
	target := filepath.Join(real, "events.json")
	must(t, os.WriteFile(target, []byte("old\n"), 0o600))
	link := filepath.Join(dir, "events.json")
	must(t, os.Symlink(target, link))
	s, err := New(Config{Path: link})
	must(t, err)
	must(t, s.Write(flowsFrom(1, 5)))
	must(t, s.Close())
	if dst, err := os.Readlink(link); err != nil || dst != target {
		t.Fatalf("link now %q, %v; want it still pointing at %s", dst, err, target)
	}
	if got := flowIDs(t, content(t, target)); !slices.Equal(got, seq(1, 5)) {
		t.Errorf("%s holds %v", target, got)
	}
	if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("replaced file's mode %v (%v), want the old 0600 kept", fi.Mode(), err)
	}
	if final, temp := listing(t, real); !slices.Equal(final, []string{"events.json"}) || len(temp) != 0 {
		t.Errorf("beside the target: %v, temporary %v", final, temp)
	}

	nullLink := filepath.Join(dir, "null")
	must(t, os.Symlink("/dev/null", nullLink))
	s, err = New(Config{Path: nullLink})
	must(t, err)
	must(t, s.Write(flowsFrom(1, 5)))
	must(t, s.Close())
	if fi, err := os.Stat("/dev/null"); err != nil || fi.Mode()&fs.ModeCharDevice == 0 {
		t.Fatalf("/dev/null is now %v (%v)", fi.Mode(), err)
	}
	if dst, err := os.Readlink(nullLink); err != nil || dst != "/dev/null" {
		t.Errorf("link now %q, %v", dst, err)
	}
	if final, temp := listing(t, dir); len(temp) != 0 || !slices.Contains(final, "null") {
		t.Errorf("beside the link: %v, temporary %v", final, temp)
	}

	dangling := filepath.Join(dir, "dangling.json")
	must(t, os.Symlink(filepath.Join(dir, "missing", "x.json"), dangling))
	if _, err := New(Config{Path: dangling}); !registry.IsUsage(err) {
		t.Errorf("New on a dangling link = %v, want a usage error", err)
	}
}

// TestDirectoryRefusedAtStart: -o file:DIR fails before anything is
// written, as a usage error. A missing directory fails New (at start) but
// passes Check: config check may run before the directory is made
// (systemd's LogsDirectory=).
func TestDirectoryRefusedAtStart(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing", "e.json")
	if _, err := New(Config{Path: missing}); err == nil {
		t.Errorf("New(%q) succeeded", missing)
	}
	if err := fileSpec(t).Check("file:"+missing, NewOptions()); err != nil {
		t.Errorf("Check(file:%s) = %v, want nil", missing, err)
	}
	for _, p := range []string{dir, ""} {
		if _, err := New(Config{Path: p}); !registry.IsUsage(err) {
			t.Errorf("New(%q) = %v, want a usage error", p, err)
		}
		if err := fileSpec(t).Check("file:"+p, NewOptions()); !registry.IsUsage(err) {
			t.Errorf("Check(file:%s) = %v, want a usage error", p, err)
		}
	}
	if final, temp := listing(t, dir); len(final)+len(temp) != 0 {
		t.Errorf("refused targets left %v %v", final, temp)
	}
}

// TestNeverRenamesOverNonRegular: a final name that became a FIFO while
// the segment was written is left alone; the segment keeps its temporary
// name and holds the events.
func TestNeverRenamesOverNonRegular(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.json")
	s, err := New(Config{Path: path})
	must(t, err)
	must(t, s.Write(flowsFrom(1, 3)))
	must(t, unix.Mkfifo(path, 0o600))
	if err := s.Close(); err == nil {
		t.Fatal("Close renamed over a FIFO without an error")
	}
	fi, err := os.Lstat(path)
	must(t, err)
	if fi.Mode()&fs.ModeNamedPipe == 0 {
		t.Fatalf("%s is now %v", path, fi.Mode())
	}
	_, temp := listing(t, dir)
	if len(temp) != 1 {
		t.Fatalf("temporary files %v", temp)
	}
	if got := flowIDs(t, content(t, filepath.Join(dir, temp[0]))); !slices.Equal(got, seq(1, 3)) {
		t.Errorf("leftover holds %v", got)
	}
}

// TestFIFOWaitEndsOnStop: opening a FIFO nobody reads waits, and the
// run's stop (SinkEnv.Ctx) ends the wait with an error; the FIFO stays.
func TestFIFOWaitEndsOnStop(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "events.fifo")
	must(t, unix.Mkfifo(fifo, 0o600))
	ctx, cancel := context.WithCancel(context.Background())
	spec := fileSpec(t)
	done := make(chan error, 1)
	go func() {
		s, err := spec.Open("file:"+fifo, NewOptions(), pipeline.SinkEnv{Ctx: ctx})
		if err == nil {
			s.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Open returned %v with no reader and no stop", err)
	default:
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Open = %v, want an error wrapping context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Open still waits for a reader after the stop")
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
		t.Errorf("%s is now %v (%v)", fifo, fi.Mode(), err)
	}
}
