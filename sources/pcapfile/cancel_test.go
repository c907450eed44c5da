package pcapfile

import (
	"context"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pktpipe/pktpipe/internal/testenv"
)

// A stream that stays open (`(cat x.pcap; sleep 600) | pktpipe -r -`) must
// not keep a stopped run waiting: cancelling ends Run with what was read.
func TestCancelEndsAReadBlockedOnStdin(t *testing.T) {
	data, want := genPcap(t, false, 500, time.Unix(1700000000, 0), time.Millisecond)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close() // never closed before the end: the writer goes quiet
	wrote := make(chan error, 1)
	go func() { _, err := w.Write(data); wrote <- err }()
	src, err := New(Config{Files: []string{"-"}, Stdin: r, Stats: newStats()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var got []pkt
	go func() {
		defer close(done)
		got, err = drainCtx(t, ctx, src, nil, nil)
	}()
	// Once the source has taken every byte out of the pipe, it waits for
	// more that never comes: stop it then.
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the source to drain the pipe", func() bool {
		n, err := unix.IoctlGetInt(int(r.Fd()), unix.TIOCINQ)
		return err == nil && n == 0
	})
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Run still blocked on the open pipe after cancel")
	}
	if err != nil {
		t.Fatalf("cancelled run: %v", err)
	}
	// Cancelling stops reading; what was read before is delivered.
	if len(got) == 0 || len(got) > len(want) {
		t.Fatalf("got %d packets of %d", len(got), len(want))
	}
	samePkts(t, got, want[:len(got)])
}
