// Package parquet is the sink that writes events as Parquet files
// (-o parquet:DIR), one series of files per event type, for pandas,
// polars and DuckDB to read without parsing JSON.
//
// It uses github.com/parquet-go/parquet-go: pure Go, with a low-level
// column writer (ColumnWriter.WriteRowValues) that takes values with
// their Parquet levels, so the sink can keep its own columnar buffers
// and build the schema at run time, and a small dependency tree. Apache
// Arrow's Go module would bring Arrow's in-memory format, whose builders
// this sink does not need, and a much larger tree.
//
// # Columns
//
// An event is read through the event.Writer interface, as the JSON
// encoder reads it, so the columns are the JSON keys and docs/schema.md
// describes them:
//   - Nested objects are flattened to dotted names: flow.pkts_toserver,
//     tls.ja3.hash, features.bidirectional_mean_ps. An empty object adds
//     no column.
//   - Unsigned integers are UBIGINT (INT64 annotated unsigned), signed
//     ones BIGINT, floats DOUBLE, booleans BOOLEAN, strings and addresses
//     VARCHAR (UTF-8; bytes that are not UTF-8 become U+FFFD, as in the
//     JSON output), timestamps TIMESTAMP (microseconds, UTC).
//   - An array of scalars is a LIST of their type (vlan, ether.src_macs,
//     tls.client_alpns, features.splt_ps). An array that holds objects or
//     arrays (dns.queries, dns.answers, scan.open) is one JSON column (the
//     Parquet JSON type) holding the array's JSON text exactly as the JSON
//     sink writes it.
//   - NULL is a key the event lacks, JSON's null, and a float that is NaN
//     or infinite (which JSON writes as null).
//   - Columns come in the order the keys were first seen, which is EVE's.
//
// # Schema
//
// The columns of an event type are learnt from its events, not declared:
// features, SPLT and the analyzers' extensions vary with the run's
// options. A file's schema is fixed when its first row group is written:
// every column of the type seen so far in the run, with the type its
// values had. A row that brings a key that schema lacks, or a value its
// column's type cannot hold exactly (an INT64 column and an unsigned
// value above 2^63-1, a BIGINT and a string), completes the file, and
// the next one starts with the column added, or its type widened
// (unsigned and signed integers to BIGINT, integers and floats to
// DOUBLE, anything else to JSON text). A type's schema therefore only
// grows during a run: every file has the columns of the files before
// it, and a reader of several files takes the last file's schema or
// unions them by name (DuckDB: read_parquet('DIR/flow-*.parquet',
// union_by_name = true)). Readers that take the first file's schema
// drop the later columns (pyarrow's dataset, silently) or refuse them
// (polars). Splits are common early in a run: flows that end by FIN come
// first, UDP and ICMP flows (and their keys) after their idle timeouts.
// pktpipe_parquet_schema_splits_total counts the files completed that
// way. An event type holds at most maxColumns
// columns; values of further keys are left out and counted in
// pktpipe_parquet_dropped_values_total (a loss).
//
// # Files
//
// Each event type's rows collect in memory until they reach the row
// group size, and are then written as one row group. The sink's memory
// is a few times the row group size for each busy event type (buffers
// grow by doubling; parquet-go holds a row group's pages until it ends). A file is written
// under a hidden temporary name in DIR (".flow.parquet.tmp-<pid>-<n>");
// when it is complete, its footer is written, it is fsynced, closed,
// renamed to "<event_type>-<UTC start>-<seq>.parquet" (e.g.
// flow-20261123T101500.123Z-0001.parquet: the time of its first event,
// then a number so that names sort in the order files were begun), and
// the directory is fsynced. A reader therefore never sees a file without
// its footer. Files complete when they reach the rotation size (checked
// after each row group, so a file ends up to one row group over it), at
// each multiple of the rotation interval of the clock, on SIGHUP
// (Reopen), on a schema change, and at exit (Close); a type without
// events in a period gets no file.
//
// # Failures and lost events
//
// A Parquet file without its footer cannot be read, so a file is whole
// or nothing. When a write fails (ENOSPC or anything else) the sink stops:
// every open file is closed and its temporary name removed (on a full
// disk that gives the space back), and the error is a
// *pipeline.LostError whose Accepted counts the events earlier Writes
// accepted that were in those files; the failing Write's own batch is
// counted by the engine. So the rows in the complete files plus the lost
// events are the events written, except that a batch whose events partly
// went into a file completed within the same Write is counted lost whole.
package parquet

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	kzstd "github.com/klauspost/compress/zstd"
	pq "github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/compress/gzip"
	"github.com/parquet-go/parquet-go/compress/snappy"
	"github.com/parquet-go/parquet-go/compress/uncompressed"
	"github.com/parquet-go/parquet-go/compress/zstd"

	"github.com/pktpipe/pktpipe/internal/syncfile"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

const (
	// DefaultRowGroupBytes is the default row group size: the buffered
	// values of one event type (about 12,000 flow records with features).
	DefaultRowGroupBytes = 16 << 20
	minRowGroupBytes     = 64 << 10

	// maxColumns bounds the columns of one event type (and maxNodes the
	// objects that hold them), should a key ever be made from data.
	maxColumns = 2048
	maxNodes   = 4096

	// pageBytes is the writer's page buffer per column (parquet-go's
	// default is 256 KiB): with 130 columns of flow features, 64 KiB
	// pages hold 25 MB less in memory and make files 1% larger.
	pageBytes = 64 << 10

	// valuesChunk is how many values go to the Parquet writer at once.
	valuesChunk = 4096
)

// Config says where and how to write.
type Config struct {
	// Dir receives the files; it must exist.
	Dir string
	// RotateBytes completes a file once it holds this many bytes
	// (0 = never).
	RotateBytes int64
	// RotateEvery completes every file at multiples of this duration of
	// the clock (UTC), e.g. 1h on the hour (0 = never).
	RotateEvery time.Duration
	// RowGroupBytes is how much an event type buffers before writing a
	// row group (0 = DefaultRowGroupBytes).
	RowGroupBytes int64
	// Compression is zstd (""), snappy, gzip or none.
	Compression string
	Now         func() time.Time // nil: time.Now
	Stats       *stats.Registry  // nil: counted privately
}

// check validates cfg and DIR, creating nothing. A missing DIR is not a
// usage error (it may be made before the run).
func (c *Config) check() error {
	if c.Dir == "" {
		return registry.Usagef("parquet sink: no directory (use -o parquet:DIR)")
	}
	if c.RotateBytes < 0 || c.RotateEvery < 0 || c.RowGroupBytes < 0 {
		return registry.Usagef("parquet sink %s: negative size or interval", c.Dir)
	}
	if _, err := codec(c.Compression); err != nil {
		return registry.Usagef("parquet sink %s: %w", c.Dir, err)
	}
	fi, err := os.Stat(c.Dir)
	if err != nil {
		return fmt.Errorf("parquet sink: %w", err)
	}
	if !fi.IsDir() {
		return registry.Usagef("parquet sink: %s is not a directory (-o parquet:DIR writes a file per event type in DIR)", c.Dir)
	}
	return nil
}

func codec(name string) (compress.Codec, error) {
	switch name {
	case "", "zstd":
		return newZstd()
	case "snappy":
		return &snappy.Codec{}, nil
	case "gzip":
		return &gzip.Codec{}, nil
	case "none":
		return &uncompressed.Codec{}, nil
	}
	return nil, fmt.Errorf("unknown compression %q (choices: zstd, snappy, gzip, none)", name)
}

// zstdCodec compresses pages with one zstd encoder that the sink keeps
// for its life. parquet-go's own codec keeps its encoders in a sync.Pool,
// which every garbage collection empties, and a new encoder allocates
// megabytes of tables: in a busy pipeline that was a new encoder for
// almost every row group. Pages are compressed in the goroutine that
// writes, under the sink's mutex, one at a time.
type zstdCodec struct {
	zstd.Codec // String, CompressionCodec and Decode
	enc        *kzstd.Encoder
}

func newZstd() (*zstdCodec, error) {
	enc, err := kzstd.NewWriter(nil, kzstd.WithEncoderConcurrency(1), kzstd.WithZeroFrames(true), kzstd.WithEncoderCRC(false))
	if err != nil {
		return nil, err
	}
	return &zstdCodec{enc: enc}, nil
}

func (c *zstdCodec) Encode(dst, src []byte) ([]byte, error) {
	return c.enc.EncodeAll(src, dst[:0]), nil
}

// Sink writes events to Parquet files. It implements pipeline.Sink;
// Reopen may be called from another goroutine (a SIGHUP handler).
type Sink struct {
	mu sync.Mutex

	cfg        Config
	codec      compress.Codec
	groupBytes int64
	tables     map[event.Type]*table
	list       []*table // in the order first seen
	fl         flattener
	vals       []pq.Value
	temps      int // temporary files made

	stats           *stats.Registry
	splits, dropped *stats.Counter
	lost            uint64 // events lost by a failure, not yet reported
	closed          bool
	err             error // first failure: the sink is broken from then on
}

// table is one event type: its columns, and its file in progress.
type table struct {
	name   string
	root   *node
	nodes  int
	cols   []*column // in the order first seen
	byName map[string]*column

	seg    *segment  // the file in progress; nil before its first row
	schema []*column // its columns, once its first row group is written
	rows   int       // rows buffered for the next row group
	size   int64     // roughly their bytes
	// fileRows counts the rows of the file in progress; batchRows those
	// of them that the Write in progress put there.
	fileRows, batchRows uint64
	files               int // files begun

	// w wrote the last file; the next file with the same columns and
	// types (wtypes) reuses it and its buffers.
	w      *pq.GenericWriter[any]
	wtypes []colType

	completed *stats.Counter
}

// node is an object key: the column of its scalar values, and the keys
// of its object values, by name and in the order last written.
type node struct {
	key, path string
	col       *column
	kids      map[string]*node
	order     []*node
}

// maxOrder bounds node.order: keys past it are found by the map alone.
const maxOrder = 512

// segment is a file being written.
type segment struct {
	f     *os.File
	out   *syncfile.Writer // synced as it grows: see package syncfile
	w     *pq.GenericWriter[any]
	tmp   string
	start time.Time
	end   time.Time // RotateEvery deadline
}

// New checks cfg; files are made as events arrive.
func New(cfg Config) (*Sink, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RowGroupBytes == 0 {
		cfg.RowGroupBytes = DefaultRowGroupBytes
	}
	c, _ := codec(cfg.Compression)
	s := &Sink{cfg: cfg, codec: c, groupBytes: cfg.RowGroupBytes, tables: map[event.Type]*table{}, stats: cfg.Stats}
	if cfg.RotateBytes > 0 {
		s.groupBytes = min(s.groupBytes, cfg.RotateBytes)
	}
	if s.stats == nil {
		s.stats = stats.NewRegistry()
	}
	s.splits = s.stats.Counter("pktpipe_parquet_schema_splits_total", "Parquet files completed early because an event brought a column, or a value, that the file's schema lacks.")
	s.dropped = s.stats.LossCounter("pktpipe_parquet_dropped_values_total", "Values the Parquet sink left out: their event type had too many columns.")
	removeStaleTemps(cfg.Dir)
	return s, nil
}

// removeStaleTemps removes the temporary files a killed pktpipe left in
// dir (".TYPE.parquet.tmp-PID-N" of a PID no longer running): they have
// no footer, no reader can use them, and nothing else would remove them.
// A live process's files are left alone (two sinks may share a DIR).
func removeStaleTemps(dir string) {
	names, _ := filepath.Glob(filepath.Join(dir, ".*.parquet.tmp-*-*"))
	for _, name := range names {
		rest := name[strings.LastIndex(name, ".parquet.tmp-")+len(".parquet.tmp-"):]
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid <= 0 || pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		_ = os.Remove(name)
	}
}

func (s *Sink) table(ty event.Type) *table {
	if t := s.tables[ty]; t != nil {
		return t
	}
	t := &table{
		name: string(ty), root: &node{}, byName: map[string]*column{},
		completed: s.stats.Counter("pktpipe_parquet_files_total", "Parquet files completed (footer written, renamed to their final name).", "event_type", string(ty)),
	}
	s.tables[ty] = t
	s.list = append(s.list, t)
	return t
}

// child is key's node in n (nil beyond maxNodes).
func (t *table) child(n *node, key string) *node {
	if n == nil {
		return nil
	}
	c := n.kids[key]
	if c == nil {
		if t.nodes >= maxNodes {
			return nil
		}
		t.nodes++
		c = &node{key: key, path: key}
		if n.path != "" {
			c.path = n.path + "." + key
		}
		if n.kids == nil {
			n.kids = map[string]*node{}
		}
		n.kids[key] = c
	}
	return c
}

// column is node c's column (nil beyond maxColumns). A dotted key and
// the nested keys with the same path share a column.
func (t *table) column(c *node) *column {
	if c == nil {
		return nil
	}
	if c.col == nil {
		col := t.byName[c.path]
		if col == nil {
			if len(t.cols) >= maxColumns {
				return nil
			}
			col = &column{name: c.path, idx: -1}
			t.byName[c.path] = col
			t.cols = append(t.cols, col)
		}
		c.col = col
	}
	return c.col
}

// Write adds the events to their types' files, writing row groups and
// completing files as they fill.
func (s *Sink) Write(events []event.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return s.report(err)
	}
	for _, t := range s.list {
		t.batchRows = 0
	}
	if err := s.rotateIfDue(); err != nil {
		return s.failed(err)
	}
	for _, ev := range events {
		t := s.table(ev.Type())
		s.fl.read(t, ev)
		if r := &s.fl.row; r.dropped > 0 {
			s.dropped.Add(r.dropped)
			r.dropped = 0
		}
		if err := s.addRow(t); err != nil {
			return s.failed(err)
		}
	}
	for _, t := range s.list {
		t.batchRows = 0
	}
	return nil
}

// Flush completes the files whose interval is over. Rows wait in memory
// for their row group: a Parquet file is readable only once complete.
func (s *Sink) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return s.report(err)
	}
	return s.failed(s.rotateIfDue())
}

// Reopen completes every file in progress (SIGHUP); the next events
// start new ones. A failure here is also reported by the next Write,
// Flush or Close, which the engine counts.
func (s *Sink) Reopen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	if err := s.completeAll(); err != nil {
		return s.fail(err)
	}
	return nil
}

// Close completes every file in progress.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.err != nil {
		s.closed = true
		return s.report(s.err)
	}
	s.closed = true
	return s.failed(s.completeAll())
}

func (s *Sink) usable() error {
	if s.err != nil {
		return s.err
	}
	if s.closed {
		return fmt.Errorf("parquet sink %s: closed", s.cfg.Dir)
	}
	return nil
}

// failed records err (nil: none) as the sink's failure and reports it.
func (s *Sink) failed(err error) error {
	if err == nil {
		return nil
	}
	return s.report(s.fail(err))
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

// fail makes err the sink's failure: every file in progress is closed
// and removed, and its rows from earlier Writes are counted as lost.
func (s *Sink) fail(err error) error {
	err = fmt.Errorf("parquet sink %s: %w", s.cfg.Dir, err)
	for _, t := range s.list {
		if t.seg != nil {
			t.seg.out.Stop() // its error changes nothing: the file is removed
			t.seg.f.Close()
			if rerr := os.Remove(t.seg.tmp); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				err = errors.Join(err, rerr)
			}
		}
		s.lost += t.fileRows - t.batchRows
		t.clear()
		t.w = nil // its state is that of the failed write
	}
	s.err = err
	return err
}

// clear forgets the file in progress.
func (t *table) clear() {
	t.seg, t.schema = nil, nil
	t.rows, t.size, t.fileRows, t.batchRows = 0, 0, 0, 0
	for _, c := range t.cols {
		c.reset()
		c.idx = -1
	}
}

func (s *Sink) rotateIfDue() error {
	if s.cfg.RotateEvery <= 0 {
		return nil
	}
	now := s.cfg.Now()
	for _, t := range s.list {
		if t.seg != nil && !now.Before(t.seg.end) {
			if err := s.complete(t); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Sink) completeAll() error {
	for _, t := range s.list {
		if t.seg != nil {
			if err := s.complete(t); err != nil {
				return err
			}
		}
	}
	return nil
}

// addRow adds the flattened event to t's file, first completing the file
// if the row does not fit its schema.
func (s *Sink) addRow(t *table) error {
	r := &s.fl.row
	if t.seg == nil {
		if err := s.begin(t); err != nil {
			return err
		}
	}
	conflict := false
	for i := range r.cells {
		c := &r.cells[i]
		if c.dead || c.null || r.fits(c.col.typ, c) {
			continue
		}
		if t.schema == nil && c.col.values() == 0 {
			// Nothing written in this column's type yet: take the
			// value's (or a type that holds both).
			c.col.retype(r.widen(c.col.typ, c))
			continue
		}
		conflict = true
	}
	if conflict {
		s.splits.Inc()
		if err := s.complete(t); err != nil {
			return err
		}
		if err := s.begin(t); err != nil {
			return err
		}
		for i := range r.cells {
			c := &r.cells[i]
			if !c.dead && !c.null && !r.fits(c.col.typ, c) {
				c.col.retype(r.widen(c.col.typ, c))
			}
		}
	}
	for i := range r.cells {
		if c := &r.cells[i]; !c.dead {
			t.size += s.commit(t, c)
		}
	}
	t.rows++
	t.fileRows++
	t.batchRows++
	if t.size < s.groupBytes {
		return nil
	}
	if err := s.writeRowGroup(t); err != nil {
		return err
	}
	if s.cfg.RotateBytes > 0 && t.seg.out.Size() >= s.cfg.RotateBytes {
		return s.complete(t)
	}
	return nil
}

// fits reports whether a column of type ct holds c's value exactly.
func (r *row) fits(ct colType, c *cell) bool {
	switch {
	case ct.k == kJSON:
		return true
	case c.typ.k == kList:
		if ct.k != kList {
			return false
		}
		for _, x := range r.elems[c.e0:c.e1] {
			if !x.null && !holds(ct.elem, x.k, x.num) {
				return false
			}
		}
		return true
	case c.typ.k == kJSON || ct.k == kList:
		return false
	}
	return holds(ct.k, c.typ.k, c.num)
}

// widen is the type that holds what a column of type ct held and c's
// value: their unified type, or wider still for a value that type cannot
// hold (an unsigned value above 2^63-1 in BIGINT goes to DOUBLE).
func (r *row) widen(ct colType, c *cell) colType {
	t := unify(ct, c.typ)
	for !r.fits(t, c) {
		switch {
		case t.k == kList && isNumber(t.elem):
			t.elem = kFloat
		case isNumber(t.k):
			t.k = kFloat
		default:
			return colType{k: kJSON}
		}
	}
	return t
}

// values counts the entries of c that hold a value.
func (c *column) values() int {
	n := 0
	full := uint8(1)
	if c.typ.k == kList {
		full = 2 // an element, null or not
	}
	for _, d := range c.defs {
		if d >= full {
			n++
		}
	}
	return n
}

// commit appends c's value to its column as row t.rows, and returns
// roughly the bytes it takes.
func (s *Sink) commit(t *table, c *cell) int64 {
	r := &s.fl.row
	col := c.col
	col.padTo(t.rows)
	col.rows++
	switch {
	case c.null:
		col.entry(0, 0, 0, nil)
		return 9
	case col.typ.k == kJSON:
		s.fl.jbuf = r.appendJSON(&s.fl.j, s.fl.jbuf[:0], c)
		col.entry(0, 1, 0, s.fl.jbuf)
		return int64(5 + len(s.fl.jbuf))
	case col.typ.k == kList:
		es := r.elems[c.e0:c.e1]
		if len(es) == 0 {
			col.entry(0, 1, 0, nil)
			return 10
		}
		var size int64
		for i, x := range es {
			rep, def := uint8(1), uint8(3)
			if i == 0 {
				rep = 0
			}
			if x.null {
				def = 2
			}
			col.entry(rep, def, convert(col.typ.elem, x.k, x.num), r.bytes(x.b0, x.b1))
			size += int64(10 + x.b1 - x.b0)
		}
		return size
	}
	col.entry(0, 1, convert(col.typ.k, c.typ.k, c.num), r.bytes(c.b0, c.b1))
	return int64(9 + c.b1 - c.b0)
}

// convert returns the bits of a value of kind v in a column of kind k.
func convert(k, v kind, n uint64) uint64 {
	if k == kFloat && v != kFloat {
		if v == kUint {
			return math.Float64bits(float64(n))
		}
		return math.Float64bits(float64(int64(n)))
	}
	return n
}

// begin starts t's next file under a temporary name.
func (s *Sink) begin(t *table) error {
	s.temps++
	t.files++
	tmp := filepath.Join(s.cfg.Dir, fmt.Sprintf(".%s.parquet.tmp-%d-%d", t.name, os.Getpid(), s.temps))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	seg := &segment{f: f, out: syncfile.New(f), tmp: tmp, start: s.cfg.Now()}
	if s.cfg.RotateEvery > 0 {
		seg.end = seg.start.Truncate(s.cfg.RotateEvery).Add(s.cfg.RotateEvery)
	}
	t.seg = seg
	return nil
}

// sameTypes reports whether cols have the types ts, in order. A file's
// columns are every typed column so far, in the order first seen, so
// equal types mean an equal schema.
func sameTypes(ts []colType, cols []*column) bool {
	if len(ts) != len(cols) {
		return false
	}
	for i, c := range cols {
		if ts[i] != c.typ {
			return false
		}
	}
	return true
}

// writeRowGroup writes t's buffered rows as a row group, fixing the
// file's schema at its first.
func (s *Sink) writeRowGroup(t *table) error {
	seg := t.seg
	if t.schema == nil {
		for _, c := range t.cols {
			if c.typ.k != kNone {
				c.idx = len(t.schema)
				t.schema = append(t.schema, c)
			}
		}
		if t.w != nil && sameTypes(t.wtypes, t.schema) {
			t.w.Reset(seg.out) // keeps its buffers
		} else {
			// The schema is given, not derived from a Go type: values
			// go in through the column writers only.
			t.w = pq.NewGenericWriter[any](seg.out, newSchema(t.name, t.schema), pq.Compression(s.codec), pq.PageBufferSize(pageBytes))
			t.wtypes = t.wtypes[:0]
			for _, c := range t.schema {
				t.wtypes = append(t.wtypes, c.typ)
			}
		}
		seg.w = t.w
	}
	writers := seg.w.ColumnWriters()
	for _, c := range t.schema {
		c.padTo(t.rows)
		vals := s.vals[:0]
		for from, n := 0, len(c.defs); from < n; {
			// A chunk ends at a row's first entry.
			to := min(from+valuesChunk, n)
			for c.typ.k == kList && to < n && c.reps[to] != 0 {
				to++
			}
			vals = c.appendValues(vals[:0], from, to)
			if _, err := writers[c.idx].WriteRowValues(vals); err != nil {
				return fmt.Errorf("%s: column %s: %w", seg.tmp, c.name, err)
			}
			from = to
		}
		clear(vals) // drop the references to the column's bytes
		s.vals = vals[:0]
	}
	if err := seg.w.Flush(); err != nil {
		return wrapPath(err, seg.tmp)
	}
	for _, c := range t.cols {
		c.reset()
	}
	t.rows, t.size = 0, 0
	return nil
}

// complete writes t's buffered rows and the footer, then syncs, closes
// and renames the file and syncs the directory.
func (s *Sink) complete(t *table) error {
	seg := t.seg
	if t.rows > 0 || t.schema == nil {
		if err := s.writeRowGroup(t); err != nil {
			return err
		}
	}
	if err := seg.w.Close(); err != nil {
		return wrapPath(err, seg.tmp)
	}
	if err := seg.out.Stop(); err != nil {
		return err
	}
	if err := seg.f.Sync(); err != nil {
		return err
	}
	if err := seg.f.Close(); err != nil {
		return err
	}
	final := s.finalName(t)
	if err := os.Rename(seg.tmp, final); err != nil {
		return err
	}
	// The rows are in a complete file: no longer at risk.
	t.clear()
	t.completed.Inc()
	return syncDir(s.cfg.Dir)
}

// finalName is "<type>-<UTC start>-<seq>.parquet", never a name in use.
func (s *Sink) finalName(t *table) string {
	stamp := t.seg.start.UTC().Format("20060102T150405.000Z")
	for n := t.files; ; n += 1000 {
		p := filepath.Join(s.cfg.Dir, fmt.Sprintf("%s-%s-%04d.parquet", t.name, stamp, n))
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			return p
		}
	}
}

// wrapPath names the file in err unless an os error already does.
func wrapPath(err error, path string) error {
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		return err
	}
	return fmt.Errorf("write %s: %w", path, err)
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
