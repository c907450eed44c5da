package file

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSyncerSyncsAsTheSegmentGrows: a segment is synced in the background
// once per syncBytes written, not before, and stop waits for the syncs.
func TestSyncerSyncsAsTheSegmentGrows(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "seg"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := countWriter{f: f, sync: startSyncer(f)}
	chunk := make([]byte, 1<<20)
	for w.n < syncBytes-int64(len(chunk)) {
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if w.sync.synced != 0 {
		t.Fatalf("sync asked for at %d bytes, below %d", w.sync.synced, syncBytes)
	}
	for w.n < 2*syncBytes {
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.sync.stop(); err != nil {
		t.Fatal(err)
	}
	// Two asks; the second may have found the first not yet begun.
	if w.sync.syncs < 1 || w.sync.syncs > 2 || w.sync.synced < syncBytes {
		t.Errorf("%d syncs, last asked at %d bytes; want 1 or 2 after %d bytes", w.sync.syncs, w.sync.synced, w.n)
	}
}

// TestSyncerKeepsItsError: a background sync that fails is reported by
// stop, so that the segment is not completed as if it were durable.
func TestSyncerKeepsItsError(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "seg"))
	if err != nil {
		t.Fatal(err)
	}
	s := startSyncer(f)
	f.Close() // the sync cannot run: its error stands for a failed write-back
	s.wrote(syncBytes)
	if err := s.stop(); err == nil {
		t.Fatal("stop: nil, want the failed sync's error")
	}
}
