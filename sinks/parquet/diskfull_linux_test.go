package parquet_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/sinks/parquet"
)

// tinyDisk mounts a tmpfs of size on a fresh directory for the test.
func tinyDisk(t *testing.T, size string) string {
	testenv.NeedRoot(t)
	dir := t.TempDir()
	err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size)
	testenv.Need(t, err == nil, "mount a tmpfs (CAP_SYS_ADMIN)")
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// flowEvent is a flow record with varied fields, so that compression
// does not shrink the files to nothing.
func flowEvent(i int) event.Event {
	h := uint64(i) * 0x9e3779b97f4a7c15
	return &event.Flow{
		Header: event.Header{
			Timestamp: t0 + int64(i)*1e6, FlowID: h >> 1, IfIndex: -1,
			SrcIP:   netip.AddrFrom4([4]byte{10, byte(h >> 8), byte(h >> 16), byte(h >> 24)}),
			DestIP:  netip.AddrFrom4([4]byte{10, 9, byte(h >> 32), byte(h >> 40)}),
			SrcPort: uint16(h >> 48), DestPort: 443, Proto: 6,
			CommunityID: fmt.Sprintf("1:%016x%012x=", h, h>>13),
		},
		PktsToServer: h % 1000, PktsToClient: h % 777, BytesToServer: h % 100000, BytesToClient: h % 65536,
		Start: t0 + int64(i)*1e6, End: t0 + int64(i)*1e6 + int64(h%1e9),
		State: "closed", Reason: "fin", TCPFlags: uint8(h), TCPFlagsTS: uint8(h >> 8), TCPFlagsTC: uint8(h >> 16),
	}
}

// dnsLike is a second event type, so that two files are in progress.
func dnsLike(i int) event.Event {
	return mk("dnslike", i, func(w event.Writer) {
		key(w, "q")
		w.String(fmt.Sprintf("host-%08x.example", uint32(i)*2654435761))
		key(w, "n")
		w.Uint(uint64(i))
	})
}

// TestDiskFull fills a small tmpfs. The error wraps ENOSPC and names the
// directory; no temporary file is left (a file without its footer is no
// use, and its space goes back); every file left reads back in DuckDB;
// and the rows in the files plus the events reported lost (the failing
// batch, plus LostError.Accepted) are exactly the events written.
func TestDiskFull(t *testing.T) {
	for _, c := range []struct {
		name   string
		rotate int64
		group  int64
	}{
		{"rotating", 24 << 10, 8 << 10},
		{"one-file-per-type", 0, 8 << 10},
		{"unflushed", 0, 1 << 30},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := tinyDisk(t, "192k")
			s, err := parquet.New(parquet.Config{Dir: dir, RotateBytes: c.rotate, RowGroupBytes: c.group, Compression: "none"})
			must(t, err)
			var written, lost uint64
			count := func(err error) {
				var le *pipeline.LostError
				if errors.As(err, &le) {
					lost += le.Accepted
				}
			}
			var werr error
			// One event a batch: the count is then exact (see the
			// package doc for a batch split by a completed file).
			for i := 0; i < 200_000 && werr == nil; i++ {
				e := flowEvent(i)
				if i%3 == 0 {
					e = dnsLike(i)
				}
				written++
				if werr = s.Write([]event.Event{e}); werr != nil {
					lost++ // what the engine counts
					count(werr)
				} else if i%50 == 0 {
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
				t.Errorf("error %q does not name the directory", err)
			}
			final, temp := listing(t, dir)
			if len(temp) != 0 {
				t.Errorf("temporary files left: %v", temp)
			}
			var delivered uint64
			if len(final) > 0 {
				for _, tb := range dump(t, dir)[dir] {
					delivered += uint64(len(tb.rows))
				}
			}
			if delivered+lost != written {
				t.Errorf("%d rows in the files + %d lost = %d, want the %d written", delivered, lost, delivered+lost, written)
			}
			t.Logf("error: %v; %d files; %d events written, %d in files, %d lost", err, len(final), written, delivered, lost)
		})
	}
}
