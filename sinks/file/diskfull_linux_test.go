package file

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline"
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

// decompressAny returns a file's records, decompressed by magic number
// (a leftover's temporary name has no .gz or .zst). Every byte must
// decompress: a cut-off stream is an error.
func decompressAny(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	must(t, err)
	var r io.Reader
	switch {
	case bytes.HasPrefix(raw, []byte{0x1f, 0x8b}):
		gr, err := gzip.NewReader(bytes.NewReader(raw))
		must(t, err)
		r = gr
	case bytes.HasPrefix(raw, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(bytes.NewReader(raw))
		must(t, err)
		defer zr.Close()
		r = zr
	default:
		return raw
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s does not decompress to the end: %v", path, err)
	}
	return b
}

// TestDiskFull fills a 64 KiB tmpfs. Afterwards every file, the failed
// segment's leftover included, holds only whole JSON lines (and compressed
// ones decompress completely), and the events in the files plus the events
// reported lost (the failing batch, plus LostError.Accepted) are exactly
// the events written.
func TestDiskFull(t *testing.T) {
	for _, c := range []struct {
		name     string
		compress string
		rotate   int64
		flushing int // Flush every this many batches
	}{
		{"plain", "", 0, 4},
		{"plain-unflushed", "", 0, 1 << 30},
		{"plain-rotating", "", 20 << 10, 3},
		{"gzip", "gzip", 0, 4},
		{"gzip-rotating", "gzip", 24 << 10, 4},
		{"zstd", "zstd", 0, 5},
		{"zstd-rotating", "zstd", 24 << 10, 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := tinyDisk(t)
			s, err := New(Config{Path: filepath.Join(dir, "events.json"), Compress: c.compress, RotateBytes: c.rotate})
			must(t, err)
			// Write until the disk is full: varied ids keep the compressed
			// output from shrinking to nothing.
			var written, lost uint64
			count := func(err error) {
				var le *pipeline.LostError
				if errors.As(err, &le) {
					lost += le.Accepted
				}
			}
			var werr error
			for i := 0; i < 10000 && werr == nil; i++ {
				batch := flowsFrom(i*977+1, 1+i%64)
				written += uint64(len(batch))
				if werr = s.Write(batch); werr != nil {
					lost += uint64(len(batch)) // what the engine counts
					count(werr)
				} else if i%c.flushing == 0 {
					werr = s.Flush()
					count(werr)
				}
			}
			cerr := s.Close()
			count(cerr)
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
			for _, n := range final {
				if !strings.HasPrefix(n, "events-") || c.rotate == 0 {
					t.Errorf("final-named file %s after a failed write", n)
				}
			}
			var delivered uint64
			for _, n := range append(final, temp...) {
				delivered += uint64(len(flowIDs(t, decompressAny(t, filepath.Join(dir, n)))))
			}
			if delivered+lost != written {
				t.Errorf("%d events in the files + %d lost = %d, want the %d written", delivered, lost, delivered+lost, written)
			}
			t.Logf("error: %v; %d complete segments; %d events written, %d in files, %d lost", err, len(final), written, delivered, lost)
		})
	}
}
