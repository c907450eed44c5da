package parquet

import (
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/syncfile"
	"github.com/pktpipe/pktpipe/pipeline/event"
)

// blob is an event with one incompressible string, so that a file grows
// by about what is written.
type blob struct {
	event.Header
	s string
}

func (*blob) Type() event.Type            { return "blob" }
func (b *blob) EncodeBody(w event.Writer) { w.Key("s"); w.String(b.s) }

// TestFileSyncedAsItGrows: a Parquet file in progress is synced in the
// background while it grows (package syncfile), so that the fsync which
// completes it waits only for its tail.
func TestFileSyncedAsItGrows(t *testing.T) {
	s, err := New(Config{Dir: t.TempDir(), Compression: "none", RowGroupBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 2048)
	var seg *segment
	for i := 0; seg == nil || seg.out.Size() < syncfile.Every+1<<20; i++ {
		rand.Read(raw)
		ev := &blob{Header: event.Header{Timestamp: int64(i), IfIndex: -1}, s: hex.EncodeToString(raw)}
		if err := s.Write([]event.Event{ev}); err != nil {
			t.Fatal(err)
		}
		if t := s.tables["blob"]; t != nil {
			seg = t.seg
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for seg.out.Syncs() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // the sync runs on its own goroutine
	}
	if seg.out.Syncs() == 0 {
		t.Errorf("no background sync after %d bytes", seg.out.Size())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
