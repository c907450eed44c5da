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
// # What the target may be
//
// The target is Config.Path plus ".gz" or ".zst" when compressing.
//   - Missing or a regular file: written as above. A regular file already
//     there is replaced when the segment completes, keeping its mode and
//     (when allowed) its owner, as logrotate's "create" set them.
//   - A symbolic link is resolved (filepath.EvalSymlinks) and the rules
//     apply to the file it points to: segments are written beside that
//     file and renamed over it, and the link is left alone. A link that
//     points nowhere is refused.
//   - A character device or a FIFO (-o file:/dev/null, a named pipe) is
//     opened and written in place: no temporary name, no rename, no fsync.
//     Rotation and compression are refused for it (a usage error at start),
//     and Reopen flushes and returns an error wrapping ErrInPlace. Opening a
//     FIFO waits for its reader, as any writer of a FIFO does, until
//     Config.Ctx is cancelled.
//   - A directory, a block device or a socket is refused at start.
//
// Nothing but a regular file is ever renamed over: a final name that has
// become something else by the time a segment completes is left alone and
// the segment keeps its temporary name.
//
// # Naming
//
// Without rotation the final file is the target. With rotation, and for any
// segment that would otherwise replace a non-empty target this sink already
// wrote, segments are named "<stem>-<UTC start>-<seq><ext>", e.g.
// "events-20261123T101500.123Z-0001.json.gz": the segment's start time to
// the millisecond, then a sequence number, so names sort in the order the
// segments were written.
//
// Reopen (SIGHUP) therefore works with logrotate: logrotate moves the
// target away (with "create" it leaves an empty file in its place), then
// SIGHUP completes the current segment under the target's name, which is
// free again (an empty file there is replaced, its mode and owner kept).
// Only a segment that completes (on SIGHUP or at exit) while the name still
// holds this sink's earlier, non-empty output gets a timestamped name, so
// nothing is overwritten. A name that holds another run's output is
// replaced, as -o always did.
//
// # Write failures and lost events
//
// Records reach the file whole. Encoded records collect in a buffer that is
// handed to the file (or the compressor) only between Writes, at Flush and
// when a segment completes; compressed output is a series of complete gzip
// members or zstd frames, one ended at each Flush (both formats read a
// series as one stream). The sink remembers the file offset of the last
// whole record (uncompressed) or complete member/frame (compressed). When
// a write fails, ENOSPC or anything else, the segment is cut back to that
// offset, so the leftover holds only whole records and decompresses
// cleanly, and the error returned is a *pipeline.LostError whose Accepted
// counts the events that earlier Writes accepted and that are not in the
// file; the failing Write's own batch is not in the file either. So the
// events in the files plus the lost ones are exactly the events written.
// One exception overcounts: when a size rotation inside a batch completed a
// segment and the same batch then fails (opening the next segment), the
// batch's events in the completed segment are counted as lost as well.
// An in-place target cannot be cut back: a failing write may leave part of
// a record in the device or FIFO.
package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/pktpipe/pktpipe/internal/syncfile"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/registry"
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
	// Ctx, when set, ends New's wait for a FIFO's reader (the run was told
	// to stop before anyone read the output).
	Ctx context.Context
}

// BufferSize is how much encoded output collects before it is handed to
// the file or compressor (at the start of the next Write). A batch is
// always taken whole, so the buffer may hold up to this plus one batch.
const BufferSize = 64 << 10

// ErrInPlace is wrapped by Reopen's error when the target is a device or a
// FIFO, written in place: there is no file to complete. The sink carries on.
var ErrInPlace = errors.New("written in place: SIGHUP has no file to complete")

// Sink writes events to files. It implements pipeline.Sink; Reopen may be
// called from another goroutine (a SIGHUP handler).
type Sink struct {
	mu sync.Mutex

	cfg      Config
	enc      encode.Encoder
	newline  bool
	target          // where the output goes
	tmpBase  string // ".events.json.gz.tmp-<pid>-"
	rotating bool

	rec []byte // a record set aside while its segment's predecessor is finished
	buf []byte // whole records not yet handed to the file or compressor
	gz  *gzip.Writer
	zw  *zstd.Encoder
	out *syncfile.Writer // the segment's file

	// current segment; f == nil between segments
	f        *os.File
	tmp      string
	segStart time.Time
	segEnd   time.Time // RotateEvery deadline
	segBytes int64
	// whole is out's offset at the end of the last whole record (or the
	// last complete gzip member or zstd frame): what a failure cuts back to.
	whole   int64
	inFrame bool // the compressor holds data not yet ended by a frame

	// undelivered counts the events accepted since the output was last
	// whole (in buf, or in the compressor's open frame); taken counts those
	// of the Write in progress; lost counts undelivered events of a failure
	// not yet reported as a LostError (a failure in Reopen is reported by
	// the next Write, Flush or Close).
	undelivered, taken, lost uint64

	seq       int  // segments opened so far
	published bool // this sink has renamed a segment to the target
	closed    bool
	err       error // first failure: the sink is broken from then on
}

// target is what New found at the configured path.
type target struct {
	final   string // the target: Path plus compression extension, links resolved
	dir     string
	stem    string // final-name stem: "events"
	ext     string // final-name extension, with compression: ".json.gz"
	inPlace bool   // a device or FIFO, written in place
	kind    string // what an in-place target is: "character device", "FIFO"
}

// New checks cfg and opens the first segment (for a FIFO this waits until
// it has a reader). Errors in cfg, and a target that cannot be written,
// are usage errors (registry.IsUsage).
func New(cfg Config) (*Sink, error) {
	t, err := inspect(cfg)
	if err != nil {
		return nil, err
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
		target:   t,
		rotating: cfg.RotateBytes > 0 || cfg.RotateEvery > 0,
	}
	switch cfg.Compress {
	case "gzip":
		s.gz = gzip.NewWriter(io.Discard) // open points it at the segment
	case "zstd":
		// One goroutine, which makes the encoder synchronous: its errors
		// come back from the call that caused them, and the CPUs belong
		// to the workers.
		zw, err := zstd.NewWriter(io.Discard, zstd.WithEncoderConcurrency(1)) // as gzip
		if err != nil {
			return nil, fmt.Errorf("file sink %s: zstd: %w", cfg.Path, err)
		}
		s.zw = zw
	}
	s.tmpBase = fmt.Sprintf(".%s%s.tmp-%d-", s.stem, s.ext, os.Getpid())
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

// inspect checks cfg and what is at its path, creating nothing.
func inspect(cfg Config) (target, error) {
	var t target
	if cfg.Path == "" {
		return t, registry.Usagef("file sink: no path (use -o file:PATH)")
	}
	if cfg.RotateBytes < 0 || cfg.RotateEvery < 0 {
		return t, registry.Usagef("file sink %s: negative rotation limit", cfg.Path)
	}
	var compExt string
	switch cfg.Compress {
	case "":
	case "gzip":
		compExt = ".gz"
	case "zstd":
		compExt = ".zst"
	default:
		return t, registry.Usagef("file sink %s: unknown compression %q (choices: none, gzip, zstd)", cfg.Path, cfg.Compress)
	}
	if compExt != "" {
		// Compressed output goes to PATH.gz: naming a device or a
		// directory with --compress would make a new file beside it.
		if fi, err := os.Stat(cfg.Path); err == nil && !fi.Mode().IsRegular() {
			return t, registry.Usagef("file sink %s: is a %s; --compress writes %s, a new file, not into it", cfg.Path, kindOf(fi.Mode()), cfg.Path+compExt)
		}
	}
	t.final = cfg.Path + compExt
	fi, err := os.Lstat(t.final)
	if err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		r, rerr := filepath.EvalSymlinks(t.final)
		if rerr != nil {
			return t, registry.Usagef("file sink %s: %s is a symbolic link that does not resolve: %w", cfg.Path, t.final, rerr)
		}
		t.final = r
		fi, err = os.Lstat(r)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return t, fmt.Errorf("file sink %s: %w", cfg.Path, err)
	default:
		switch m := fi.Mode(); {
		case m.IsRegular():
		case m.IsDir():
			return t, registry.Usagef("file sink %s: %s is a directory; give a file name, e.g. -o file:%s", cfg.Path, t.final, filepath.Join(t.final, "events.json"))
		case m&fs.ModeCharDevice != 0 || m&fs.ModeNamedPipe != 0:
			t.inPlace, t.kind = true, kindOf(m)
		default:
			return t, registry.Usagef("file sink %s: %s is a %s; the file sink writes regular files, character devices and FIFOs", cfg.Path, t.final, kindOf(m))
		}
	}
	if t.inPlace && (cfg.RotateBytes > 0 || cfg.RotateEvery > 0 || compExt != "") {
		return t, registry.Usagef("file sink %s: %s is a %s, written in place: it cannot be rotated or compressed (drop --rotate-size, --rotate-interval, --compress)", cfg.Path, t.final, t.kind)
	}
	t.dir = filepath.Dir(t.final)
	if !t.inPlace {
		di, err := os.Stat(t.dir)
		if err != nil {
			// Not a usage error: the directory may be made before the
			// run (systemd's LogsDirectory=), so config check passes it.
			return t, fmt.Errorf("file sink %s: %w", cfg.Path, err)
		}
		if !di.IsDir() {
			return t, registry.Usagef("file sink %s: %s is not a directory", cfg.Path, t.dir)
		}
	}
	base := strings.TrimSuffix(filepath.Base(t.final), compExt)
	ext := filepath.Ext(base)
	t.stem, t.ext = strings.TrimSuffix(base, ext), ext+compExt
	return t, nil
}

func kindOf(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "regular file"
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeSocket != 0:
		return "socket"
	}
	return "special file"
}

// FinalPath is the file the output goes to when there is no rotation.
func (s *Sink) FinalPath() string { return s.final }

// InPlace reports whether the target is a device or FIFO written in place
// (no temporary name: an abandoned run leaves nothing behind to complete).
func (s *Sink) InPlace() bool { return s.inPlace }

// Write encodes the events into the current segment, rotating as needed.
// The output of earlier Writes reaches the file first, so a failure never
// leaves part of this batch behind.
func (s *Sink) Write(events []event.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.taken = 0
	if err := s.usable(); err != nil {
		return s.report(err)
	}
	if err := s.rotateIfDue(); err != nil {
		return s.report(err)
	}
	if len(s.buf) >= BufferSize {
		if err := s.drain(); err != nil {
			return s.report(err)
		}
	}
	for _, ev := range events {
		// Encoded straight into the buffer: the record is copied aside
		// only when it opens a new segment.
		start := len(s.buf)
		s.buf = s.enc.Append(s.buf, ev)
		if s.newline {
			s.buf = append(s.buf, '\n')
		}
		n := int64(len(s.buf) - start)
		if s.f != nil && s.cfg.RotateBytes > 0 && s.segBytes > 0 && s.segBytes+n > s.cfg.RotateBytes {
			s.rec = append(s.rec[:0], s.buf[start:]...)
			s.buf = s.buf[:start]
			if err := s.finish(); err != nil {
				return s.report(err)
			}
			s.buf = append(s.buf, s.rec...) // finish drained the buffer
		}
		if s.f == nil {
			if err := s.open(); err != nil {
				return s.report(err)
			}
		}
		s.undelivered++
		s.taken++
		s.segBytes += n
	}
	s.taken = 0
	return nil
}

// Flush ends the segment if its time is up, else hands buffered output to
// the file, ending the compressor's frame (no fsync: that is done when a
// segment completes).
func (s *Sink) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.taken = 0
	if err := s.usable(); err != nil {
		return s.report(err)
	}
	if err := s.rotateIfDue(); err != nil || s.f == nil {
		return s.report(err)
	}
	return s.report(s.endFrame())
}

// Reopen completes the current segment (it gets its final name) and starts
// a new one. Safe to call from another goroutine, e.g. on SIGHUP. For an
// in-place target it flushes and returns an error wrapping ErrInPlace; the
// sink carries on. Events lost by a failure here are reported by the next
// Write, Flush or Close, which the engine counts.
func (s *Sink) Reopen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.taken = 0
	if err := s.usable(); err != nil {
		return err
	}
	if s.inPlace {
		if err := s.drain(); err != nil {
			return err
		}
		return fmt.Errorf("file sink %s: %s is a %s, %w", s.cfg.Path, s.final, s.kind, ErrInPlace)
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
	s.taken = 0
	if s.closed {
		return s.report(s.err)
	}
	s.closed = true
	if s.err != nil {
		return s.report(s.err)
	}
	if s.f != nil {
		return s.report(s.finish())
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

// report returns err as a LostError while lost events are unreported.
func (s *Sink) report(err error) error {
	if err == nil || s.lost == 0 {
		return err
	}
	n := s.lost
	s.lost = 0
	return &pipeline.LostError{Accepted: n, Err: err}
}

func (s *Sink) rotateIfDue() error {
	if s.f == nil || s.cfg.RotateEvery <= 0 || s.cfg.Now().Before(s.segEnd) {
		return nil
	}
	return s.finish()
}

// open starts a segment under a new temporary name, or opens an in-place
// target.
func (s *Sink) open() error {
	s.seq++
	var f *os.File
	var err error
	if s.inPlace {
		f, err = s.openInPlace()
	} else {
		s.tmp = filepath.Join(s.dir, fmt.Sprintf("%s%d", s.tmpBase, s.seq))
		f, err = os.OpenFile(s.tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	}
	if err != nil {
		return s.fail(err)
	}
	s.f = f
	if s.inPlace {
		s.out = syncfile.Counting(f)
	} else {
		s.out = syncfile.New(f) // synced as it grows: see package syncfile
	}
	s.whole, s.inFrame = 0, false
	s.segStart = s.cfg.Now()
	if s.cfg.RotateEvery > 0 {
		s.segEnd = s.segStart.Truncate(s.cfg.RotateEvery).Add(s.cfg.RotateEvery)
	}
	s.segBytes = 0
	switch {
	case s.gz != nil:
		s.gz.Reset(s.out)
	case s.zw != nil:
		s.zw.Reset(s.out)
	}
	return nil
}

// openInPlace opens the device or FIFO as it is: no O_CREATE, no O_TRUNC.
// O_NOCTTY: a terminal named here must not become the controlling one.
// Opening a FIFO waits for a reader; Config.Ctx ends the wait.
func (s *Sink) openInPlace() (*os.File, error) {
	open := func() (*os.File, error) { return os.OpenFile(s.final, os.O_WRONLY|syscall.O_NOCTTY, 0) }
	if s.cfg.Ctx == nil || s.kind != "FIFO" {
		return open()
	}
	type result struct {
		f   *os.File
		err error
	}
	done := make(chan result, 1)
	go func() {
		f, err := open()
		done <- result{f, err}
	}()
	select {
	case r := <-done:
		return r.f, r.err
	case <-s.cfg.Ctx.Done():
	}
	// Be the reader the open waits for, so that it returns, then let go.
	if rf, err := os.OpenFile(s.final, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
		if r := <-done; r.f != nil {
			r.f.Close()
		}
		rf.Close()
	}
	return nil, fmt.Errorf("waiting for a reader of %s: %w", s.final, context.Cause(s.cfg.Ctx))
}

// drain hands the buffered records to the compressor or the file. Records
// written straight to the file are whole once the write succeeds.
func (s *Sink) drain() error {
	if len(s.buf) == 0 {
		return nil
	}
	var err error
	switch {
	case s.gz != nil:
		_, err = s.gz.Write(s.buf)
		s.inFrame = true
	case s.zw != nil:
		_, err = s.zw.Write(s.buf)
		s.inFrame = true
	default:
		_, err = s.out.Write(s.buf)
	}
	s.buf = s.buf[:0]
	if err != nil {
		return s.writeFailed(err)
	}
	if s.gz == nil && s.zw == nil {
		s.delivered()
	}
	return nil
}

// endFrame drains the buffer and ends the compressor's frame (a gzip
// member, a zstd frame), so that everything so far decompresses on its own.
func (s *Sink) endFrame() error {
	if err := s.drain(); err != nil {
		return err
	}
	if !s.inFrame {
		return nil
	}
	if err := s.closeFrame(); err != nil {
		return err
	}
	switch {
	case s.gz != nil:
		s.gz.Reset(s.out)
	case s.zw != nil:
		s.zw.Reset(s.out)
	}
	return nil
}

func (s *Sink) closeFrame() error {
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
	s.inFrame = false
	s.delivered()
	return nil
}

// delivered marks everything written so far as whole.
func (s *Sink) delivered() {
	s.whole = s.out.Size()
	s.undelivered, s.taken = 0, 0
}

// finish completes the current segment: drain, end the compressed stream,
// fsync, close, rename to the final name, fsync the directory. An in-place
// target is only drained and closed.
func (s *Sink) finish() error {
	if err := s.drain(); err != nil {
		return err
	}
	// An empty segment still gets an empty frame: a .gz or .zst file of
	// no bytes would not decompress.
	if (s.gz != nil || s.zw != nil) && (s.inFrame || s.whole == 0) {
		if err := s.closeFrame(); err != nil {
			return err
		}
	}
	f := s.f
	if s.inPlace {
		s.f = nil
		if err := f.Close(); err != nil {
			return s.fail(err)
		}
		return nil
	}
	if err := s.out.Stop(); err != nil {
		return s.fail(err)
	}
	if err := f.Sync(); err != nil {
		return s.fail(err)
	}
	s.f = nil
	if err := f.Close(); err != nil {
		return s.fail(err)
	}
	final, err := s.finalName()
	if err != nil {
		return s.fail(err)
	}
	if err := os.Rename(s.tmp, final); err != nil {
		return s.fail(err)
	}
	if final == s.final {
		s.published = true
	}
	if err := syncDir(s.dir); err != nil {
		return s.fail(err)
	}
	return nil
}

// finalName is the target without rotation, unless the target holds this
// sink's earlier output, else the timestamped segment name. Replacing a
// file keeps its mode and owner.
func (s *Sink) finalName() (string, error) {
	if !s.rotating {
		p := s.final
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return p, nil // never there, or moved away (logrotate)
		case err != nil:
			return "", err
		case !fi.Mode().IsRegular():
			return "", fmt.Errorf("%s is now a %s: not replacing it", p, kindOf(fi.Mode()))
		case !s.published || fi.Size() == 0:
			// An earlier run's output, or the empty file logrotate's
			// "create" left: replace it as it was set up.
			if err := s.adopt(fi); err != nil {
				return "", err
			}
			return p, nil
		}
	}
	for n := s.seq; ; n += 1000 {
		name := fmt.Sprintf("%s-%s-%04d%s", s.stem, s.segStart.UTC().Format("20060102T150405.000Z"), n, s.ext)
		p := filepath.Join(s.dir, name)
		// Never replace a file (another run may have used the same
		// millisecond); the check-then-rename race needs two writers on
		// one path, which is a misconfiguration anyway.
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			return p, nil
		}
	}
}

// adopt gives the segment the mode and owner of the file it replaces.
func (s *Sink) adopt(fi fs.FileInfo) error {
	if err := os.Chmod(s.tmp, fi.Mode().Perm()); err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		// Only root may give a file away; an unprivileged run keeps its
		// own ownership (the mode still applies).
		if err := os.Lchown(s.tmp, int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, fs.ErrPermission) {
			return err
		}
	}
	return nil
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
		name := s.tmp
		if s.inPlace {
			name = s.final
		}
		err = fmt.Errorf("write %s: %w", name, err)
	}
	return s.fail(err)
}

// fail records err as the sink's failure, cuts the segment back to its
// last whole record or frame and releases its file (which keeps its
// temporary name). The events accepted by earlier Writes and not in the
// file are counted for the LostError that report returns. Errors from
// package os already name their path; the wrapper adds the configured one.
func (s *Sink) fail(err error) error {
	err = fmt.Errorf("file sink %s: %w", s.cfg.Path, err)
	if s.f != nil {
		if serr := s.out.Stop(); serr != nil {
			err = errors.Join(err, fmt.Errorf("syncing %s: %w", s.tmp, serr))
		}
		if !s.inPlace {
			if terr := s.f.Truncate(s.whole); terr != nil {
				err = errors.Join(err, fmt.Errorf("cutting %s back to its last whole record: %w", s.tmp, terr))
			}
		}
		s.f.Close()
		s.f = nil
	}
	s.lost += s.undelivered - s.taken
	s.undelivered, s.taken = 0, 0
	s.buf = s.buf[:0]
	s.err = err
	return err
}
