package pcapfile

import "fmt"

// Error is a problem found in a capture file's content, or an error reading
// it, at a byte offset of the decompressed stream.
type Error struct {
	File   string
	Offset int64 // offset of the record or block at fault
	// Compression is "gzip" or "zstd" when the file is compressed: Offset
	// then counts decompressed bytes, not bytes of the file, and the
	// message says so.
	Compression string
	Msg         string // what is wrong, e.g. "truncated packet record (want 1514 bytes, have 200)"
	Err         error  // underlying read or decompression error, if any
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s: offset %d: %s", e.File, e.Offset, e.Msg)
	if e.Compression != "" {
		s = fmt.Sprintf("%s: offset %d in the decompressed (%s) stream: %s", e.File, e.Offset, e.Compression, e.Msg)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }
