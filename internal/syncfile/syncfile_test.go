package syncfile

import (
	"os"
	"path/filepath"
	"testing"
)

func create(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "seg"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestSyncsAsTheFileGrows: a file is synced in the background once per
// Every bytes written, not before, and Stop waits for the syncs.
func TestSyncsAsTheFileGrows(t *testing.T) {
	w := New(create(t))
	chunk := make([]byte, 1<<20)
	for w.Size() < Every-int64(len(chunk)) {
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if w.synced != 0 {
		t.Fatalf("sync asked for at %d bytes, below %d", w.synced, Every)
	}
	for w.Size() < 2*Every {
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	// Two asks; the second may have found the first not yet begun.
	if n := w.Syncs(); n < 1 || n > 2 || w.synced < Every {
		t.Errorf("%d syncs, last asked at %d bytes; want 1 or 2 after %d bytes", n, w.synced, w.Size())
	}
	if err := w.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestKeepsTheSyncError: a background sync that fails is reported by
// Stop, so that the file is not completed as if it were durable.
func TestKeepsTheSyncError(t *testing.T) {
	f := create(t)
	w := New(f)
	f.Close() // the sync cannot run: its error stands for a failed write-back
	w.n = Every
	w.synced = 0
	if w.kick != nil {
		w.kick <- struct{}{}
	}
	if err := w.Stop(); err == nil {
		t.Fatal("Stop: nil, want the failed sync's error")
	}
}

// TestCountingOnly: a counting Writer counts and never syncs.
func TestCountingOnly(t *testing.T) {
	w := Counting(create(t))
	if _, err := w.Write(make([]byte, Every+1)); err != nil {
		t.Fatal(err)
	}
	if w.Size() != Every+1 || w.Syncs() != 0 || w.Stop() != nil {
		t.Errorf("size %d, %d syncs", w.Size(), w.Syncs())
	}
}
