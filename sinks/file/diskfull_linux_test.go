package file

import (
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pktpipe/pktpipe/internal/testenv"
)

// tinyDisk mounts a 64 KiB tmpfs on a fresh directory for the test.
func tinyDisk(t *testing.T) string {
	testenv.NeedRoot(t)
	dir := t.TempDir()
	err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k")
	testenv.Need(t, err == nil, "mount a tmpfs (CAP_SYS_ADMIN)")
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

func TestDiskFull(t *testing.T) {
	for _, c := range []struct {
		name     string
		compress string
		rotate   int64
	}{
		{"plain", "", 0},
		{"gzip-rotating", "gzip", 24 << 10},
		{"zstd-rotating", "zstd", 24 << 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := tinyDisk(t)
			s, err := New(Config{Path: filepath.Join(dir, "events.json"), Compress: c.compress, RotateBytes: c.rotate})
			must(t, err)
			// Write until the disk is full: varied ids keep the compressed
			// output from shrinking to nothing.
			var werr error
			for i := 0; i < 10000 && werr == nil; i++ {
				werr = s.Write(flowsFrom(i*977+1, 64))
				if werr == nil && i%4 == 0 {
					werr = s.Flush()
				}
			}
			cerr := s.Close()
			err = errors.Join(werr, cerr)
			if werr == nil && cerr == nil {
				t.Fatal("no error from a full disk")
			}
			if !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("error %v does not wrap ENOSPC", err)
			}
			if !strings.Contains(err.Error(), dir) {
				t.Errorf("error %q does not name the path", err)
			}
			final, temp := listing(t, dir)
			if len(temp) != 1 {
				t.Errorf("want the failed segment left under its temporary name, have %v", temp)
			}
			// Segments completed before the disk filled are whole.
			for _, n := range final {
				if !strings.HasPrefix(n, "events-") || c.rotate == 0 {
					t.Errorf("final-named file %s after a failed write", n)
					continue
				}
				flowIDs(t, content(t, filepath.Join(dir, n)))
			}
			t.Logf("error: %v; %d complete segments", err, len(final))
		})
	}
}
