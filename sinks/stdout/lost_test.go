package stdout

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"syscall"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/registry"
)

// limitWriter takes the first limit bytes, then fails with err (a partial
// write when a Write crosses the limit).
type limitWriter struct {
	out   bytes.Buffer
	limit int
	err   error
}

func (w *limitWriter) Write(p []byte) (int, error) {
	room := w.limit - w.out.Len()
	if room >= len(p) {
		return w.out.Write(p)
	}
	w.out.Write(p[:max(room, 0)])
	return max(room, 0), w.err
}

// TestWriteErrorCountsLost: whatever the point where the stream fails,
// the complete lines it received plus the events reported lost (the
// failing batch, which the engine counts, plus LostError.Accepted) are
// every event written.
func TestWriteErrorCountsLost(t *testing.T) {
	line := len(mustEnc(t, "json").Append(nil, flows(1)[0])) + 1
	for _, limit := range []int{0, line / 2, 3 * line, BufferSize - 7, BufferSize + 5*line + 3, 3 * BufferSize} {
		w := &limitWriter{limit: limit, err: syscall.ENOSPC}
		s := New(w, mustEnc(t, "json"))
		var written, lost uint64
		var err error
		for i := 0; i < 2000 && err == nil; i++ {
			batch := flows(1 + i%40)
			written += uint64(len(batch))
			if err = s.Write(batch); err != nil {
				lost += uint64(len(batch))
			} else if i%25 == 24 {
				err = s.Flush()
			}
		}
		if err == nil {
			err = s.Close()
		}
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("limit %d: error %v, want ENOSPC", limit, err)
		}
		var le *pipeline.LostError
		if errors.As(err, &le) {
			lost += le.Accepted
		}
		// Later calls repeat the failure without counting anything again.
		if err2 := s.Close(); !errors.Is(err2, syscall.ENOSPC) || errors.As(err2, new(*pipeline.LostError)) {
			t.Errorf("limit %d: Close after the failure = %v", limit, err2)
		}
		// Whole lines: newline-terminated and valid (the piece after the
		// last newline is part of a lost record).
		var whole uint64
		lines := bytes.Split(w.out.Bytes(), []byte("\n"))
		for _, l := range lines[:len(lines)-1] {
			if !json.Valid(l) {
				t.Fatalf("limit %d: a newline-terminated line is not JSON: %q", limit, l)
			}
			whole++
		}
		if whole+lost != written {
			t.Errorf("limit %d: %d whole lines delivered + %d lost = %d, want the %d written", limit, whole, lost, whole+lost, written)
		}
	}
}

func TestRegistered(t *testing.T) {
	spec, ok := pipeline.SinkFor("-")
	if !ok || spec.Scheme != "stdout" {
		t.Fatalf("SinkFor(-) = %+v, %v", spec, ok)
	}
	if err := spec.Check("stdout:x", nil); !registry.IsUsage(err) {
		t.Errorf("Check(stdout:x) = %v, want a usage error", err)
	}
	if err := spec.Check("-", nil); err != nil {
		t.Errorf("Check(-) = %v", err)
	}
	var out bytes.Buffer
	s, err := spec.Open("-", nil, pipeline.SinkEnv{Stdout: &out, Format: "msgpack"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(flows(2)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if out.Len() == 0 || out.Bytes()[0]&0xf0 != 0x80 { // a msgpack fixmap
		t.Errorf("output %q is not msgpack", out.Bytes())
	}
	if _, err := spec.Open("-", nil, pipeline.SinkEnv{Stdout: &out, Format: "xml"}); !registry.IsUsage(err) {
		t.Errorf("Open with --format xml = %v, want a usage error", err)
	}
	s, err = spec.Open("-", nil, pipeline.SinkEnv{})
	if err != nil {
		t.Fatal(err)
	}
	if s.(*Sink).w != os.Stdout {
		t.Error("without SinkEnv.Stdout the sink does not write to os.Stdout")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
