// Package file is the sink that writes events to files: JSON lines or
// msgpack, optionally gzip- or zstd-compressed, optionally rotated by size
// and by time.
//
// A reader never sees a half-written file under a final name. Each segment
// is written under a hidden temporary name in the destination directory
// (".events.json.tmp-<pid>-<n>"); when it is complete it is flushed, its
// compressor closed, fsynced, closed, renamed to its final name, and the
// directory fsynced. If anything fails the segment keeps its temporary name
// and the sink reports an error naming the path; such a leftover holds the
// events written before the failure, for inspection or recovery.
//
// Naming: without rotation the final file is Config.Path (plus ".gz" or
// ".zst"). With rotation, and for any segment that would otherwise
// overwrite a Path this sink already wrote, segments are named
// "<stem>-<UTC start>-<seq><ext>", e.g. "events-20261123T101500.123Z-0001.json.gz":
// the segment's start time to the millisecond, then a sequence number, so
// names sort in the order the segments were written.
package file

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/sinks/encode"
)

// Config says where and how to write.
type Config struct {
	// Path is the output file, e.g. "/var/log/pktpipe/events.json". Its
	// directory must exist. Rotated segments are named from it.
	Path string
	// Format encodes the events; nil means JSON lines.
	Format encode.Encoder
	// Compress is "", "gzip" or "zstd"; the names get ".gz" or ".zst".
	Compress string
	// RotateBytes ends a segment before it would exceed this many bytes
	// of encoded, uncompressed output (a single larger event still gets
	// written, alone). 0 = no size limit.
	RotateBytes int64
	// RotateEvery ends segments at multiples of this duration of the
	// clock (UTC), e.g. 1h ends them on the hour. 0 = never.
	RotateEvery time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// BufferSize is the write buffer in front of the compressor or file.
const BufferSize = 64 << 10

// Sink writes events to files. It implements pipeline.Sink; Reopen may be
// called from another goroutine (a SIGHUP handler).
type Sink struct {
	mu sync.Mutex

	cfg      Config
	enc      encode.Encoder
	newline  bool
	dir      string
	stem     string // final-name stem: "events"
	ext      string // final-name extension, with compression: ".json.gz"
	tmpBase  string // ".events.json.gz.tmp-<pid>-"
	rotating bool

	buf []byte
	bw  *bufio.Writer
	gz  *gzip.Writer
	zw  *zstd.Encoder

	// current segment; f == nil between segments
	f         *os.File
	tmp       string
	segStart  time.Time
	segEnd    time.Time // RotateEvery deadline
	segBytes  int64
	seq       int  // segments opened so far
	published bool // this sink has renamed a segment to Path
	closed    bool
	err       error // first failure: the sink is broken from then on
}

// New checks cfg and opens the first segment.
func New(cfg Config) (*Sink, error) {
	if cfg.Path == "" {
		return nil, errors.New("file sink: no path")
	}
	if cfg.RotateBytes < 0 || cfg.RotateEvery < 0 {
		return nil, fmt.Errorf("file sink %s: negative rotation limit", cfg.Path)
	}
	if cfg.Format == nil {
		cfg.Format = encode.NewJSON()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Sink{
		cfg:      cfg,
		enc:      cfg.Format,
		newline:  cfg.Format.Format() == encode.FormatJSON,
		dir:      filepath.Dir(cfg.Path),
		rotating: cfg.RotateBytes > 0 || cfg.RotateEvery > 0,
	}
	base := filepath.Base(cfg.Path)
	s.ext = filepath.Ext(base)
	s.stem = strings.TrimSuffix(base, s.ext)
	switch cfg.Compress {
	case "":
	case "gzip":
		s.ext += ".gz"
		s.gz = gzip.NewWriter(io.Discard)
	case "zstd":
		s.ext += ".zst"
		// One goroutine: the sink already runs on its own, and the CPUs
		// belong to the workers.
		zw, err := zstd.NewWriter(io.Discard, zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("file sink %s: zstd: %w", cfg.Path, err)
		}
		s.zw = zw
	default:
		return nil, fmt.Errorf("file sink %s: unknown compression %q (choices: none, gzip, zstd)", cfg.Path, cfg.Compress)
	}
	s.tmpBase = fmt.Sprintf(".%s%s.tmp-%d-", s.stem, s.ext, os.Getpid())
	s.bw = bufio.NewWriterSize(io.Discard, BufferSize)
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

// FinalPath is the file the output goes to when there is no rotation.
func (s *Sink) FinalPath() string { return filepath.Join(s.dir, s.stem+s.ext) }

// Write encodes the events into the current segment, rotating as needed.
func (s *Sink) Write(events []event.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	if err := s.rotateIfDue(); err != nil {
		return err
	}
	for _, ev := range events {
		s.buf = s.enc.Append(s.buf[:0], ev)
		if s.newline {
			s.buf = append(s.buf, '\n')
		}
		n := int64(len(s.buf))
		if s.f != nil && s.cfg.RotateBytes > 0 && s.segBytes > 0 && s.segBytes+n > s.cfg.RotateBytes {
			if err := s.finish(); err != nil {
				return err
			}
		}
		if s.f == nil {
			if err := s.open(); err != nil {
				return err
			}
		}
		if _, err := s.bw.Write(s.buf); err != nil {
			return s.writeFailed(err)
		}
		s.segBytes += n
	}
	return nil
}

// Flush ends the segment if its time is up, else pushes buffered output
// through the compressor to the file (no fsync: that is done when a
// segment completes).
func (s *Sink) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	if err := s.rotateIfDue(); err != nil || s.f == nil {
		return err
	}
	return s.flush()
}

// Reopen completes the current segment (it gets its final name) and starts
// a new one. Safe to call from another goroutine, e.g. on SIGHUP.
func (s *Sink) Reopen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	if s.f != nil {
		if err := s.finish(); err != nil {
			return err
		}
	}
	return s.open()
}

// Close completes the current segment. After a failure it only releases
// the file, which keeps its temporary name, and returns the failure.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.err
	}
	s.closed = true
	if s.err != nil {
		return s.err
	}
	if s.f != nil {
		return s.finish()
	}
	return nil
}

func (s *Sink) usable() error {
	if s.err != nil {
		return s.err
	}
	if s.closed {
		return fmt.Errorf("file sink %s: closed", s.cfg.Path)
	}
	return nil
}

func (s *Sink) rotateIfDue() error {
	if s.f == nil || s.cfg.RotateEvery <= 0 || s.cfg.Now().Before(s.segEnd) {
		return nil
	}
	return s.finish()
}

// open starts a segment under a new temporary name.
func (s *Sink) open() error {
	s.seq++
	s.tmp = filepath.Join(s.dir, fmt.Sprintf("%s%d", s.tmpBase, s.seq))
	f, err := os.OpenFile(s.tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return s.fail(err)
	}
	s.f = f
	s.segStart = s.cfg.Now()
	if s.cfg.RotateEvery > 0 {
		s.segEnd = s.segStart.Truncate(s.cfg.RotateEvery).Add(s.cfg.RotateEvery)
	}
	s.segBytes = 0
	switch {
	case s.gz != nil:
		s.gz.Reset(f)
		s.bw.Reset(s.gz)
	case s.zw != nil:
		s.zw.Reset(f)
		s.bw.Reset(s.zw)
	default:
		s.bw.Reset(f)
	}
	return nil
}

func (s *Sink) flush() error {
	if err := s.bw.Flush(); err != nil {
		return s.writeFailed(err)
	}
	var err error
	switch {
	case s.gz != nil:
		err = s.gz.Flush()
	case s.zw != nil:
		err = s.zw.Flush()
	}
	if err != nil {
		return s.writeFailed(err)
	}
	return nil
}

// finish completes the current segment: flush, end the compressed stream,
// fsync, close, rename to the final name, fsync the directory.
func (s *Sink) finish() error {
	if err := s.flush(); err != nil {
		return err
	}
	var err error
	switch {
	case s.gz != nil:
		err = s.gz.Close()
	case s.zw != nil:
		err = s.zw.Close()
	}
	if err != nil {
		return s.writeFailed(err)
	}
	if err := s.f.Sync(); err != nil {
		return s.fail(err)
	}
	f := s.f
	s.f = nil
	if err := f.Close(); err != nil {
		return s.fail(err)
	}
	final := s.finalName()
	if err := os.Rename(s.tmp, final); err != nil {
		return s.fail(err)
	}
	if final == s.FinalPath() {
		s.published = true
	}
	if err := syncDir(s.dir); err != nil {
		return s.fail(err)
	}
	return nil
}

// finalName is Path without rotation (unless that would overwrite what
// this sink published before), else the timestamped segment name.
func (s *Sink) finalName() string {
	if !s.rotating {
		p := s.FinalPath()
		if !s.published {
			return p
		}
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			return p // moved away (logrotate): publish there again
		}
	}
	for n := s.seq; ; n += 1000 {
		name := fmt.Sprintf("%s-%s-%04d%s", s.stem, s.segStart.UTC().Format("20060102T150405.000Z"), n, s.ext)
		p := filepath.Join(s.dir, name)
		// Never replace a file (another run may have used the same
		// millisecond); the check-then-rename race needs two writers on
		// one path, which is a misconfiguration anyway.
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			return p
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeFailed names the segment in err unless an os error already does.
func (s *Sink) writeFailed(err error) error {
	if pe := (*fs.PathError)(nil); !errors.As(err, &pe) {
		err = fmt.Errorf("write %s: %w", s.tmp, err)
	}
	return s.fail(err)
}

// fail records err as the sink's failure and releases the segment's file
// (which keeps its temporary name). Errors from package os already name
// their path; the wrapper adds the configured one.
func (s *Sink) fail(err error) error {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
	s.err = fmt.Errorf("file sink %s: %w", s.cfg.Path, err)
	return s.err
}
