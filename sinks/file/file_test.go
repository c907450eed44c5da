package file

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/pktpipe/pktpipe/internal/syncfile"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/sinks/encode"
)

var _ pipeline.Sink = (*Sink)(nil)

// flowsFrom returns n flow events with flow_id first, first+1, ...
func flowsFrom(first, n int) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = &event.Flow{
			Header: event.Header{
				Timestamp: int64(first+i) * 1e9, FlowID: uint64(first + i), IfIndex: -1,
				SrcIP: netip.MustParseAddr("10.0.0.1"), DestIP: netip.MustParseAddr("10.0.0.2"),
				SrcPort: 1000, DestPort: 53, Proto: 17,
			},
			State: "new", Reason: "timeout",
		}
	}
	return evs
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func at(s string) time.Time          { t, _ := time.Parse(time.RFC3339Nano, s); return t }
func isTemp(name string) bool        { return strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-") }
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// listing returns the final-named and temporary files in dir, sorted.
func listing(t testing.TB, dir string) (final, temp []string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	for _, e := range ents {
		if isTemp(e.Name()) {
			temp = append(temp, e.Name())
		} else {
			final = append(final, e.Name())
		}
	}
	return
}

// content returns a segment's bytes, decompressed by its extension.
func content(t testing.TB, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	must(t, err)
	var r io.Reader
	switch {
	case strings.HasSuffix(path, ".gz"):
		gr, err := gzip.NewReader(bytes.NewReader(raw))
		must(t, err)
		r = gr
	case strings.HasSuffix(path, ".zst"):
		zr, err := zstd.NewReader(bytes.NewReader(raw))
		must(t, err)
		defer zr.Close()
		r = zr
	default:
		return raw
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s does not decompress: %v", path, err)
	}
	return b
}

// flowIDs parses JSON lines and returns their flow ids in order.
func flowIDs(t testing.TB, b []byte) []uint64 {
	t.Helper()
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("content does not end with a newline: %q", b[max(0, len(b)-40):])
	}
	var ids []uint64
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var m struct {
			FlowID uint64 `json:"flow_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("bad JSON line %q: %v", sc.Text(), err)
		}
		ids = append(ids, m.FlowID)
	}
	return ids
}

func seq(from, to int) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, uint64(i))
	}
	return s
}

func TestNoRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.json")
	s, err := New(Config{Path: path})
	must(t, err)
	must(t, s.Write(flowsFrom(1, 5)))
	must(t, s.Flush())
	if final, temp := listing(t, dir); len(final) != 0 || len(temp) != 1 {
		t.Fatalf("while open: final %v temp %v; want only one temporary file", final, temp)
	}
	must(t, s.Write(flowsFrom(6, 5)))
	must(t, s.Close())
	final, temp := listing(t, dir)
	if !slices.Equal(final, []string{"events.json"}) || len(temp) != 0 {
		t.Fatalf("after Close: final %v temp %v", final, temp)
	}
	if got := flowIDs(t, content(t, path)); !slices.Equal(got, seq(1, 10)) {
		t.Errorf("flow ids %v", got)
	}
	if err := s.Write(flowsFrom(11, 1)); err == nil {
		t.Error("Write after Close succeeded")
	}
}

func TestEmptyRunStillWritesFile(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Config{Path: filepath.Join(dir, "e.json"), Compress: "gzip"})
	must(t, err)
	must(t, s.Close())
	if b := content(t, filepath.Join(dir, "e.json.gz")); len(b) != 0 {
		t.Errorf("empty run wrote %q", b)
	}
}

func TestRotateBySize(t *testing.T) {
	line := len(encode.NewJSON().Append(nil, flowsFrom(1, 1)[0])) + 1
	for _, comp := range []string{"", "gzip", "zstd"} {
		t.Run("compress="+comp, func(t *testing.T) {
			dir := t.TempDir()
			clk := &fakeClock{t: at("2026-11-23T10:15:00.123Z")}
			s, err := New(Config{Path: filepath.Join(dir, "events.json"), Compress: comp,
				RotateBytes: int64(3*line + line/2), Now: clk.Now})
			must(t, err)
			// Single events and batches, so rotation happens inside a batch.
			must(t, s.Write(flowsFrom(1, 1)))
			must(t, s.Write(flowsFrom(2, 7)))
			clk.Set(at("2026-11-23T10:15:01Z"))
			must(t, s.Write(flowsFrom(9, 2)))
			must(t, s.Close())
			final, temp := listing(t, dir)
			if len(temp) != 0 {
				t.Fatalf("temporary files left: %v", temp)
			}
			ext := map[string]string{"": ".json", "gzip": ".json.gz", "zstd": ".json.zst"}[comp]
			want := []string{
				"events-20261123T101500.123Z-0001" + ext,
				"events-20261123T101500.123Z-0002" + ext,
				"events-20261123T101500.123Z-0003" + ext,
				"events-20261123T101501.000Z-0004" + ext,
			}
			if !slices.Equal(final, want) {
				t.Fatalf("segments %v, want %v", final, want)
			}
			var all []uint64
			for i, name := range final {
				b := content(t, filepath.Join(dir, name))
				if len(b) > 3*line+line/2 {
					t.Errorf("%s: %d bytes, over the limit", name, len(b))
				}
				ids := flowIDs(t, b)
				if i < 3 && len(ids) != 3 {
					t.Errorf("%s holds %d events, want 3", name, len(ids))
				}
				all = append(all, ids...)
			}
			if !slices.Equal(all, seq(1, 10)) {
				t.Errorf("events across segments: %v, want each of 1..10 once, in order", all)
			}
		})
	}
}

func TestRotateByTime(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{t: at("2026-11-23T10:15:30Z")}
	s, err := New(Config{Path: filepath.Join(dir, "events.json"), RotateEvery: time.Minute, Now: clk.Now})
	must(t, err)
	must(t, s.Write(flowsFrom(1, 3)))
	clk.Set(at("2026-11-23T10:15:59.999Z"))
	must(t, s.Flush())
	if final, _ := listing(t, dir); len(final) != 0 {
		t.Fatalf("rotated before the minute was up: %v", final)
	}
	clk.Set(at("2026-11-23T10:16:00Z"))
	must(t, s.Write(flowsFrom(4, 2)))
	if final, _ := listing(t, dir); !slices.Equal(final, []string{"events-20261123T101530.000Z-0001.json"}) {
		t.Fatalf("after the minute: %v", final)
	}
	// A quiet period: Flush ends the segment on time, and no empty
	// segments are made while nothing is written.
	clk.Set(at("2026-11-23T10:17:00.5Z"))
	must(t, s.Flush())
	clk.Set(at("2026-11-23T10:20:00Z"))
	must(t, s.Flush())
	final, temp := listing(t, dir)
	if !slices.Equal(final, []string{"events-20261123T101530.000Z-0001.json", "events-20261123T101600.000Z-0002.json"}) || len(temp) != 0 {
		t.Fatalf("after a quiet period: final %v temp %v", final, temp)
	}
	must(t, s.Write(flowsFrom(6, 1)))
	must(t, s.Close())
	final, _ = listing(t, dir)
	if len(final) != 3 || final[2] != "events-20261123T102000.000Z-0003.json" {
		t.Fatalf("after Close: %v", final)
	}
	var all []uint64
	for _, n := range final {
		all = append(all, flowIDs(t, content(t, filepath.Join(dir, n)))...)
	}
	if !slices.Equal(all, seq(1, 6)) {
		t.Errorf("events %v", all)
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.json")
	clk := &fakeClock{t: at("2026-01-02T03:04:05Z")}
	s, err := New(Config{Path: path, Now: clk.Now})
	must(t, err)
	must(t, s.Write(flowsFrom(1, 2)))
	must(t, s.Reopen())
	if got := flowIDs(t, content(t, path)); !slices.Equal(got, seq(1, 2)) {
		t.Fatalf("after Reopen %s holds %v", path, got)
	}
	// logrotate moved the file away: the next segment is published at Path.
	must(t, os.Rename(path, path+".1"))
	must(t, s.Write(flowsFrom(3, 2)))
	must(t, s.Reopen())
	// Nobody moved it this time: the sink must not overwrite its own output.
	must(t, s.Write(flowsFrom(5, 2)))
	must(t, s.Close())
	final, temp := listing(t, dir)
	want := []string{"events-20260102T030405.000Z-0003.json", "events.json", "events.json.1"}
	if !slices.Equal(final, want) || len(temp) != 0 {
		t.Fatalf("files %v (temp %v), want %v", final, temp, want)
	}
	for name, ids := range map[string][]uint64{"events.json.1": seq(1, 2), "events.json": seq(3, 4), want[0]: seq(5, 6)} {
		if got := flowIDs(t, content(t, filepath.Join(dir, name))); !slices.Equal(got, ids) {
			t.Errorf("%s holds %v, want %v", name, got, ids)
		}
	}
}

// TestReopenConcurrent calls Reopen from another goroutine (as a SIGHUP
// handler would) while the engine's goroutine writes: no event is lost or
// doubled, and the race detector sees the lock.
func TestReopenConcurrent(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Config{Path: filepath.Join(dir, "events.json"), RotateBytes: 1 << 20})
	must(t, err)
	done := make(chan error)
	go func() {
		var err error
		for range 20 {
			err = errors.Join(err, s.Reopen())
		}
		done <- err
	}()
	for i := range 50 {
		must(t, s.Write(flowsFrom(i*10+1, 10)))
	}
	must(t, <-done)
	must(t, s.Close())
	final, temp := listing(t, dir)
	if len(temp) != 0 || len(final) < 21 {
		t.Fatalf("final %d files, temp %v", len(final), temp)
	}
	var all []uint64
	for _, n := range final {
		all = append(all, flowIDs(t, content(t, filepath.Join(dir, n)))...)
	}
	if !slices.Equal(all, seq(1, 500)) {
		t.Errorf("got %d events, want 1..500 each once in order", len(all))
	}
}

func TestMsgpackFile(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Config{Path: filepath.Join(dir, "events.msgpack"), Format: encode.NewMsgpack(), Compress: "zstd"})
	must(t, err)
	must(t, s.Write(flowsFrom(1, 50)))
	must(t, s.Close())
	d := msgpack.NewDecoder(bytes.NewReader(content(t, filepath.Join(dir, "events.msgpack.zst"))))
	for i := 1; i <= 50; i++ {
		var m struct {
			FlowID uint64 `msgpack:"flow_id"`
			Type   string `msgpack:"event_type"`
		}
		must(t, d.Decode(&m))
		if m.FlowID != uint64(i) || m.Type != "flow" {
			t.Fatalf("record %d: %+v", i, m)
		}
	}
	if _, err := d.DecodeInterface(); err != io.EOF {
		t.Errorf("trailing data: %v", err)
	}
}

// TestReaderNeverSeesPartial lists the directory while segments are being
// written and rotated: every final-named file must already hold its
// complete content the first time it is seen.
func TestReaderNeverSeesPartial(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Config{Path: filepath.Join(dir, "events.json"), Compress: "gzip", RotateBytes: 4 << 10})
	must(t, err)
	seen := map[string][]byte{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			ents, err := os.ReadDir(dir) // not listing: no t.Fatal off the test goroutine
			if err != nil {
				t.Error(err)
				return
			}
			for _, e := range ents {
				n := e.Name()
				if _, ok := seen[n]; !ok && !isTemp(n) {
					b, err := os.ReadFile(filepath.Join(dir, n))
					if err != nil {
						t.Errorf("read %s: %v", n, err)
						return
					}
					seen[n] = b
				}
			}
		}
	}()
	for i := range 30 {
		must(t, s.Write(flowsFrom(i*20+1, 20)))
	}
	must(t, s.Close())
	close(stop)
	<-done
	final, temp := listing(t, dir)
	if len(temp) != 0 || len(final) < 10 {
		t.Fatalf("final %d files, temp %v", len(final), temp)
	}
	// Whatever the reader saw under a final name is still there, unchanged.
	for n, early := range seen {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil || !bytes.Equal(early, b) {
			t.Errorf("%s was seen under a final name before it was complete (%d bytes then; now %d, %v)", n, len(early), len(b), err)
		}
	}
	var all []uint64
	for _, n := range final {
		all = append(all, flowIDs(t, content(t, filepath.Join(dir, n)))...)
	}
	if !slices.Equal(all, seq(1, 600)) {
		t.Errorf("got %d events, want 1..600 each once in order", len(all))
	}
	t.Logf("%d segments, reader saw %d of them while writing", len(final), len(seen))
}

func TestBadConfig(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "no path"},
		{Config{Path: filepath.Join(dir, "e.json"), Compress: "lz4"}, "gzip, zstd"},
		{Config{Path: filepath.Join(dir, "e.json"), RotateBytes: -1}, "negative"},
		{Config{Path: filepath.Join(dir, "missing", "e.json")}, filepath.Join(dir, "missing")},
	} {
		_, err := New(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want an error containing %q", c.cfg, err, c.want)
		}
	}
}

func TestWriteAllocs(t *testing.T) {
	for _, comp := range []string{"", "gzip", "zstd"} {
		dir := t.TempDir()
		s, err := New(Config{Path: filepath.Join(dir, "e.json"), Compress: comp})
		must(t, err)
		evs := flowsFrom(1, 256)
		for range 10 {
			must(t, s.Write(evs))
		}
		if a := testing.AllocsPerRun(50, func() { _ = s.Write(evs) }); a != 0 {
			t.Errorf("compress=%q: %v allocations per batch of 256, want 0", comp, a)
		}
		must(t, s.Close())
	}
}

func BenchmarkWrite(b *testing.B) {
	for _, comp := range []string{"", "gzip", "zstd"} {
		b.Run("compress="+comp, func(b *testing.B) {
			s, err := New(Config{Path: filepath.Join(b.TempDir(), "e.json"), Compress: comp, RotateBytes: 64 << 20})
			must(b, err)
			evs := flowsFrom(1, 256)
			b.ReportAllocs()
			for b.Loop() {
				must(b, s.Write(evs))
			}
			must(b, s.Close())
		})
	}
}

// TestSegmentSyncedAsItGrows: a segment file is synced in the background
// while it grows (package syncfile), not only when it completes; an
// in-place target (a device) is not.
func TestSegmentSyncedAsItGrows(t *testing.T) {
	s, err := New(Config{Path: filepath.Join(t.TempDir(), "events.json")})
	must(t, err)
	for id := 1; s.out.Size() < syncfile.Every+1<<20; id += 1000 {
		must(t, s.Write(flowsFrom(id, 1000)))
		must(t, s.Flush())
	}
	deadline := time.Now().Add(30 * time.Second)
	for s.out.Syncs() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // the sync runs on its own goroutine
	}
	if s.out.Syncs() == 0 {
		t.Errorf("no background sync after %d bytes", s.out.Size())
	}
	must(t, s.Close())

	d, err := New(Config{Path: os.DevNull})
	must(t, err)
	for id := 1; d.out.Size() < syncfile.Every+1<<20; id += 1000 {
		must(t, d.Write(flowsFrom(id, 1000)))
		must(t, d.Flush())
	}
	must(t, d.Close())
	if n := d.out.Syncs(); n != 0 {
		t.Errorf("%s: %d background syncs, want none", os.DevNull, n)
	}
}
