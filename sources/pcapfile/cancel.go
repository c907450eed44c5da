package pcapfile

import (
	"context"
	"io"
)

// cancelReader reads a stream (stdin) in a goroutine of its own, so that a
// read blocked on a quiet pipe ends when ctx is cancelled: a run that was
// told to stop (a signal, or every sink failed) must not wait for the
// pipe's writer. The goroutine itself stays blocked in Read until the
// writer sends or closes; the process exits regardless.
type cancelReader struct {
	ctx     context.Context
	r       io.Reader
	buf     []byte
	rest    []byte
	err     error
	started bool
	got     chan readResult
	next    chan struct{}
}

type readResult struct {
	n   int
	err error
}

func newCancelReader(ctx context.Context, r io.Reader) *cancelReader {
	return &cancelReader{ctx: ctx, r: r, buf: make([]byte, 256<<10),
		got: make(chan readResult), next: make(chan struct{}, 1)}
}

func (c *cancelReader) Read(p []byte) (int, error) {
	if len(c.rest) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		if !c.started {
			c.started = true
			go c.loop()
		} else {
			c.next <- struct{}{} // buf is free again
		}
		select {
		case r := <-c.got:
			c.rest, c.err = c.buf[:r.n], r.err
		case <-c.ctx.Done():
			c.err = c.ctx.Err()
			return 0, c.err
		}
	}
	n := copy(p, c.rest)
	c.rest = c.rest[n:]
	if n == 0 {
		return 0, c.err
	}
	return n, nil
}

func (c *cancelReader) loop() {
	for {
		n, err := c.r.Read(c.buf)
		select {
		case c.got <- readResult{n, err}:
		case <-c.ctx.Done():
			return
		}
		if err != nil {
			return
		}
		select {
		case <-c.next:
		case <-c.ctx.Done():
			return
		}
	}
}
