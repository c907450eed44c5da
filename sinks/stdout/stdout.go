// Package stdout is the sink that writes events to a stream, normally
// standard output: JSON lines (one object per line) or, for msgpack, the
// maps back to back with no separator.
//
// Output is buffered and reaches the stream between Writes once 64 KiB have
// collected, on Flush, which the engine calls at least once a second, and on
// Close. A batch is always taken whole, so a failure never leaves part of
// the failing batch in the stream.
//
// When a write fails, the events of earlier Writes that were still in the
// buffer are lost, except those whose records the stream took whole before
// the error: the error is then a *pipeline.LostError counting them, so that
// the events delivered plus those lost are the events written. A stream
// cannot be cut back: a failing write may leave part of one record in it.
//
// When the reader goes away (EPIPE, `pktpipe ... | head`) the error wraps
// ErrBrokenPipe, which wraps pipeline.ErrReaderGone. When the stream is
// os.Stdout, the sink catches SIGPIPE while it is open, so that a write to
// the closed pipe returns EPIPE rather than the Go runtime killing the
// process.
package stdout

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/sinks/encode"
)

// BufferSize is how much output collects before it is written.
const BufferSize = 64 << 10

// ErrBrokenPipe is wrapped by the error returned when the reader of the
// stream has gone away (EPIPE). It wraps pipeline.ErrReaderGone.
var ErrBrokenPipe error = brokenPipe{}

type brokenPipe struct{}

func (brokenPipe) Error() string { return "broken pipe: the reading process closed its end" }
func (brokenPipe) Unwrap() error { return pipeline.ErrReaderGone }

// Sink writes encoded events to a stream. It implements pipeline.Sink.
type Sink struct {
	w       io.Writer
	enc     encode.Encoder
	buf     []byte // whole records not yet written
	ends    []int  // where each record in buf ends
	newline bool
	name    string
	sigpipe chan os.Signal // non-nil while SIGPIPE is caught for os.Stdout
	err     error          // first failure; the sink is broken after it
}

// New returns a sink writing to w with enc.
func New(w io.Writer, enc encode.Encoder) *Sink {
	s := &Sink{
		w:       w,
		enc:     enc,
		buf:     make([]byte, 0, BufferSize),
		newline: enc.Format() == encode.FormatJSON,
		name:    "output",
	}
	if f, ok := w.(*os.File); ok {
		s.name = f.Name()
		if f == os.Stdout {
			s.name = "stdout"
			// With SIGPIPE caught, a write to a closed pipe on fd 1 returns
			// EPIPE instead of killing the process. Deliveries that find the
			// channel full are dropped, which is what we want.
			s.sigpipe = make(chan os.Signal, 1)
			signal.Notify(s.sigpipe, syscall.SIGPIPE)
		}
	}
	return s
}

// Write encodes each event into the buffer, first writing out what earlier
// Writes buffered if it has grown past BufferSize.
func (s *Sink) Write(events []event.Event) error {
	if s.err != nil {
		return s.err
	}
	if len(s.buf) >= BufferSize {
		if err := s.drain(); err != nil {
			return err
		}
	}
	for _, ev := range events {
		s.buf = s.enc.Append(s.buf, ev)
		if s.newline {
			s.buf = append(s.buf, '\n')
		}
		s.ends = append(s.ends, len(s.buf))
	}
	return nil
}

// Flush writes the buffered events to the stream.
func (s *Sink) Flush() error {
	if s.err != nil {
		return s.err
	}
	return s.drain()
}

// Close flushes and stops catching SIGPIPE. It does not close the stream,
// which the sink does not own.
func (s *Sink) Close() error {
	err := s.Flush()
	if s.sigpipe != nil {
		signal.Stop(s.sigpipe)
		s.sigpipe = nil
	}
	return err
}

func (s *Sink) drain() error {
	if len(s.buf) == 0 {
		return nil
	}
	n, err := s.w.Write(s.buf)
	if err == nil && n < len(s.buf) {
		err = io.ErrShortWrite
	}
	if err == nil {
		s.buf, s.ends = s.buf[:0], s.ends[:0]
		return nil
	}
	// The records the stream took whole were delivered; the rest are lost.
	lost := len(s.ends)
	for _, end := range s.ends {
		if end > n {
			break
		}
		lost--
	}
	s.buf, s.ends = s.buf[:0], s.ends[:0]
	if errors.Is(err, syscall.EPIPE) {
		s.err = fmt.Errorf("%s: %w (%w)", s.name, ErrBrokenPipe, err)
	} else {
		s.err = fmt.Errorf("%s: write: %w", s.name, err)
	}
	if lost > 0 {
		return &pipeline.LostError{Accepted: uint64(lost), Err: s.err}
	}
	return s.err
}
