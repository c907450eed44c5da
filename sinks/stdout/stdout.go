// Package stdout is the sink that writes events to a stream, normally
// standard output: JSON lines (one object per line) or, for msgpack, the
// maps back to back with no separator.
//
// Output is buffered (64 KiB) and reaches the stream on Flush, which the
// engine calls at least once a second, and on Close. When the stream is
// os.Stdout, the sink catches SIGPIPE while it is open so that a reader
// going away (`pktpipe ... | head`) is a clear error rather than the Go
// runtime killing the process.
package stdout

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/sinks/encode"
)

// BufferSize is the size of the output buffer.
const BufferSize = 64 << 10

// ErrBrokenPipe is wrapped by the error returned when the reader of the
// stream has gone away (EPIPE).
var ErrBrokenPipe = errors.New("broken pipe: the reading process closed its end")

// Sink writes encoded events to a stream. It implements pipeline.Sink.
type Sink struct {
	w       io.Writer
	bw      *bufio.Writer
	enc     encode.Encoder
	buf     []byte
	newline bool
	name    string
	sigpipe chan os.Signal // non-nil while SIGPIPE is caught for os.Stdout
	err     error          // first failure; the sink is broken after it
}

// New returns a sink writing to w with enc.
func New(w io.Writer, enc encode.Encoder) *Sink {
	s := &Sink{
		w:       w,
		bw:      bufio.NewWriterSize(w, BufferSize),
		enc:     enc,
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

// Write encodes each event into the buffer.
func (s *Sink) Write(events []event.Event) error {
	if s.err != nil {
		return s.err
	}
	for _, ev := range events {
		// A reused scratch buffer rather than bufio's AvailableBuffer:
		// an event that does not fit the free space would make append
		// allocate.
		s.buf = s.enc.Append(s.buf[:0], ev)
		if s.newline {
			s.buf = append(s.buf, '\n')
		}
		if _, err := s.bw.Write(s.buf); err != nil {
			return s.fail(err)
		}
	}
	return nil
}

// Flush writes the buffered events to the stream.
func (s *Sink) Flush() error {
	if s.err != nil {
		return s.err
	}
	if err := s.bw.Flush(); err != nil {
		return s.fail(err)
	}
	return nil
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

func (s *Sink) fail(err error) error {
	if errors.Is(err, syscall.EPIPE) {
		s.err = fmt.Errorf("%s: %w (%w)", s.name, ErrBrokenPipe, err)
	} else {
		s.err = fmt.Errorf("%s: write: %w", s.name, err)
	}
	return s.err
}
