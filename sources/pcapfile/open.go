package pcapfile

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// opener turns a file name into a decompressed stream, reusing its
// decompressors from file to file.
type opener struct {
	stdin io.Reader
	ctx   context.Context // ends a read blocked on stdin
	gz    *gzip.Reader
	zs    *zstd.Decoder
	cnt   countingReader // compressed bytes read, for the progress bar
	f     *os.File       // the open file, closed by close
	comp  string         // the open file's compression: "", "gzip" or "zstd"
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// open returns the decompressed stream of name ("-" is stdin), choosing
// the decompressor by the first bytes.
func (o *opener) open(name string) (io.Reader, error) {
	o.close()
	var raw io.Reader
	if name == "-" {
		raw = o.stdin
		if o.ctx != nil {
			raw = newCancelReader(o.ctx, o.stdin)
		}
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		o.f, raw = f, f
	}
	o.cnt = countingReader{r: raw}
	o.comp = ""
	var magic [4]byte
	n, err := io.ReadFull(&o.cnt, magic[:])
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return nil, &Error{File: displayName(name), Msg: "reading file header", Err: err}
	}
	// Put the magic back in front of the rest of the stream.
	src := io.MultiReader(bytes.NewReader(magic[:n]), &o.cnt)
	switch {
	case n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		if o.gz == nil {
			o.gz = new(gzip.Reader)
		}
		if err := o.gz.Reset(src); err != nil {
			return nil, &Error{File: displayName(name), Msg: "bad gzip header", Err: err}
		}
		o.comp = "gzip"
		return o.gz, nil
	case n == 4 && magic == [4]byte{0x28, 0xb5, 0x2f, 0xfd}:
		if o.zs == nil {
			// Synchronous decoding: no goroutines to leak, and the cores
			// are better spent on the pipeline's workers. The window cap
			// is zstd(1)'s default: garbage cannot make us allocate more.
			zs, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30), zstd.WithDecoderMaxWindow(1<<27))
			if err != nil {
				return nil, fmt.Errorf("zstd: %w", err)
			}
			o.zs = zs
		}
		if err := o.zs.Reset(src); err != nil {
			return nil, &Error{File: displayName(name), Msg: "bad zstd stream", Err: err}
		}
		o.comp = "zstd"
		return o.zs, nil
	}
	return src, nil
}

func (o *opener) close() {
	if o.f != nil {
		o.f.Close()
		o.f = nil
	}
}

// release frees the decompressors (Source.Close).
func (o *opener) release() {
	o.close()
	if o.zs != nil {
		o.zs.Close()
		o.zs = nil
	}
}

func displayName(name string) string {
	if name == "-" {
		return "stdin"
	}
	return name
}
