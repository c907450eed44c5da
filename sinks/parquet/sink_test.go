package parquet_test

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sinks/encode"
	"github.com/pktpipe/pktpipe/sinks/parquet"
)

// ev is an event of a test type whose body is any sequence of Writer
// calls, to drive the sink through shapes the real events may take.
type ev struct {
	event.Header
	ty   event.Type
	body func(w event.Writer)
}

func (e *ev) Type() event.Type          { return e.ty }
func (e *ev) EncodeBody(w event.Writer) { e.body(w) }

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano()

func mk(ty string, i int, body func(w event.Writer)) event.Event {
	return &ev{Header: event.Header{Timestamp: t0 + int64(i)*1001, IfIndex: -1}, ty: event.Type(ty), body: body}
}

// writeJSON writes events as the JSON file sink does.
func writeJSON(t testing.TB, path string, events []event.Event) {
	t.Helper()
	enc := encode.NewJSON()
	var b []byte
	for _, e := range events {
		b = enc.Append(b, e)
		b = append(b, '\n')
	}
	must(t, os.WriteFile(path, b, 0o644))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// listing splits dir's names into final files and temporary ones.
func listing(t testing.TB, dir string) (final, temp []string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			temp = append(temp, e.Name())
		} else {
			final = append(final, e.Name())
		}
	}
	return final, temp
}

func key(w event.Writer, k string) { w.Key(k) }

// TestRowsOfEveryShape: null before a value, lists (empty first, of
// numbers, of strings, of times), arrays of objects, a list of mixed
// kinds, a key written twice, a dotted key beside the nested one, an
// empty object, NaN and ±Inf, the zero address, bytes that are not UTF-8:
// DuckDB reads each row as the JSON encoder writes it.
func TestRowsOfEveryShape(t *testing.T) {
	dir := t.TempDir()
	nan, inf := math.NaN(), math.Inf(1)
	var events []event.Event
	add := func(body func(w event.Writer)) { events = append(events, mk("shape", len(events), body)) }
	add(func(w event.Writer) {
		key(w, "n")
		w.Null()
		key(w, "l")
		w.BeginArray()
		w.EndArray()
		key(w, "f")
		w.Float(nan)
		key(w, "ip")
		w.IP(netip.Addr{})
	})
	add(func(w event.Writer) {
		key(w, "n")
		w.String("now a string")
		key(w, "l")
		w.BeginArray()
		w.Uint(1)
		w.Uint(math.MaxUint64)
		w.EndArray()
		key(w, "f")
		w.Float(-0.1)
		key(w, "ip")
		w.IP(netip.MustParseAddr("fd00::1"))
		key(w, "s")
		w.String("a\xffb\x00c\"d\\é")
		key(w, "o")
		w.BeginArray()
		w.BeginObject()
		key(w, "x")
		w.Uint(1)
		key(w, "t")
		w.Time(t0)
		w.EndObject()
		w.BeginArray()
		w.String("nested")
		w.EndArray()
		w.EndArray()
	})
	add(func(w event.Writer) {
		key(w, "l")
		w.BeginArray()
		w.EndArray()
		key(w, "f")
		w.Float(inf)
		key(w, "strs")
		w.BeginArray()
		w.String("x")
		w.String("y\xfe")
		w.EndArray()
		key(w, "times")
		w.BeginArray()
		w.Time(-1)
		w.Time(t0 + 999)
		w.EndArray()
		key(w, "d")
		w.Int(1)
		key(w, "d")
		w.Int(-2) // the last value counts, as for JSON readers
		key(w, "x.y")
		w.Uint(5)
		key(w, "x")
		w.BeginObject()
		key(w, "z")
		w.Bool(false)
		w.EndObject()
		key(w, "e")
		w.BeginObject()
		w.EndObject()
		key(w, "mixed")
		w.BeginArray()
		w.Uint(1)
		w.String("one")
		w.EndArray()
		key(w, "floats")
		w.BeginArray()
		w.Float(1)
		w.Float(nan)
		w.Float(2.5e-300)
		w.EndArray()
	})
	add(func(w event.Writer) {
		key(w, "x")
		w.BeginObject()
		key(w, "y")
		w.Uint(6)
		w.EndObject()
		key(w, "o")
		w.BeginArray()
		w.Int(-1) // scalars first, then an object: still one JSON array
		w.BeginObject()
		w.EndObject()
		w.EndArray()
	})
	s, err := parquet.New(parquet.Config{Dir: dir})
	must(t, err)
	must(t, s.Write(events))
	must(t, s.Close())
	js := filepath.Join(t.TempDir(), "shape.json")
	writeJSON(t, js, events)
	tables := dump(t, dir)[dir]
	if rows, _ := compareRuns(t, "shapes", tables, js); rows != len(events) {
		t.Fatalf("compared %d rows, want %d", rows, len(events))
	}
	want := map[string]string{
		"timestamp": "TIMESTAMP WITH TIME ZONE", "event_type": "VARCHAR",
		"n": "VARCHAR", "l": "UBIGINT[]", "f": "DOUBLE", "ip": "VARCHAR", "s": "VARCHAR",
		"o": "JSON", "strs": "VARCHAR[]", "times": "TIMESTAMP WITH TIME ZONE[]", "d": "BIGINT",
		"x.y": "UBIGINT", "x.z": "BOOLEAN", "mixed": "JSON", "floats": "DOUBLE[]",
	}
	tb := tables["shape"]
	for c, typ := range want {
		if tb.columns[c] != typ {
			t.Errorf("column %s: %q, want %q", c, tb.columns[c], typ)
		}
	}
	if _, ok := tb.columns["e"]; ok {
		t.Error("an empty object made a column")
	}
	if i := slices.Index(tb.order, "n"); i < 0 || tb.order[i+1] != "l" || tb.order[i+2] != "f" {
		t.Errorf("columns not in the order first seen: %v", tb.order)
	}
	if final, temp := listing(t, dir); len(final) != 1 || len(temp) != 0 {
		t.Errorf("files %v, temporary %v; want one file", final, temp)
	}
}

// TestSchemaSplits: once a file's first row group is written, a new key
// or a value its column cannot hold completes the file, and the next
// file's schema has every column so far, widened as needed.
func TestSchemaSplits(t *testing.T) {
	dir := t.TempDir()
	reg := stats.NewRegistry()
	// Tiny row groups: each row is written at once, fixing the schema.
	s, err := parquet.New(parquet.Config{Dir: dir, RowGroupBytes: 1, Stats: reg})
	must(t, err)
	var events []event.Event
	add := func(body func(w event.Writer)) { events = append(events, mk("t", len(events), body)) }
	add(func(w event.Writer) { key(w, "a"); w.Uint(1) })
	add(func(w event.Writer) { key(w, "a"); w.Uint(2); key(w, "b"); w.String("new key") }) // split: b
	add(func(w event.Writer) { key(w, "a"); w.Uint(math.MaxUint64) })                      // fits UBIGINT
	add(func(w event.Writer) { key(w, "a"); w.Int(-5) })                                   // split: BIGINT
	add(func(w event.Writer) { key(w, "a"); w.Uint(7) })                                   // fits BIGINT
	add(func(w event.Writer) { key(w, "a"); w.Uint(math.MaxUint64) })                      // split: DOUBLE
	add(func(w event.Writer) { key(w, "a"); w.Float(0.5) })
	add(func(w event.Writer) { key(w, "a"); w.String("text") }) // split: JSON
	add(func(w event.Writer) { key(w, "a"); w.Int(-3) })
	for _, e := range events {
		must(t, s.Write([]event.Event{e}))
	}
	must(t, s.Close())
	final, temp := listing(t, dir)
	if len(temp) != 0 {
		t.Errorf("temporary files left: %v", temp)
	}
	slices.Sort(final)
	files := dumpFiles(t, dir)
	type want struct {
		a, b string
		rows int
	}
	wants := []want{{"UBIGINT", "", 1}, {"UBIGINT", "VARCHAR", 2}, {"BIGINT", "VARCHAR", 2}, {"DOUBLE", "VARCHAR", 2}, {"JSON", "VARCHAR", 2}}
	if len(final) != len(wants) {
		t.Fatalf("files %v, want %d", final, len(wants))
	}
	var got []string
	for i, name := range final {
		tb := files[name]
		if tb.columns["a"] != wants[i].a || tb.columns["b"] != wants[i].b || len(tb.rows) != wants[i].rows {
			t.Errorf("%s: a %q, b %q, %d rows; want %+v", name, tb.columns["a"], tb.columns["b"], len(tb.rows), wants[i])
		}
		for _, r := range tb.rows {
			got = append(got, fmt.Sprint(r["a"]))
		}
	}
	// Each value as its file holds it: the JSON column holds JSON text.
	wantA := []string{"1", "2", "18446744073709551615", "-5", "7", "1.8446744073709552e+19", "0.5", `"text"`, "-3"}
	if !slices.Equal(got, wantA) {
		t.Errorf("values of a: %q, want %q", got, wantA)
	}
	if v, _ := reg.Value("pktpipe_parquet_schema_splits_total"); v != 4 {
		t.Errorf("splits counted: %v, want 4", v)
	}
	if v, _ := reg.Value(`pktpipe_parquet_files_total{event_type="t"}`); v != 5 {
		t.Errorf("files counted: %v, want 5", v)
	}
}

// TestIntervalRotation: every file in progress completes when the clock
// passes a multiple of the interval (at Write or Flush); a type without
// events meanwhile gets no file.
func TestIntervalRotation(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 3, 1, 12, 0, 59, 0, time.UTC)
	s, err := parquet.New(parquet.Config{Dir: dir, RotateEvery: time.Minute, Now: func() time.Time { return now }})
	must(t, err)
	body := func(w event.Writer) { key(w, "v"); w.Uint(1) }
	must(t, s.Write([]event.Event{mk("a", 0, body), mk("b", 1, body)}))
	must(t, s.Flush())
	if final, _ := listing(t, dir); len(final) != 0 {
		t.Fatalf("files complete before the interval ended: %v", final)
	}
	now = now.Add(time.Second) // 12:01:00
	must(t, s.Flush())
	final, temp := listing(t, dir)
	if len(final) != 2 || len(temp) != 0 {
		t.Fatalf("after the interval: files %v, temporary %v", final, temp)
	}
	must(t, s.Write([]event.Event{mk("a", 2, body), mk("a", 3, body)}))
	now = now.Add(90 * time.Second) // 12:02:30: ends a's second file at the next Write
	must(t, s.Write([]event.Event{mk("a", 4, body)}))
	must(t, s.Close())
	final, temp = listing(t, dir)
	slices.Sort(final)
	wantNames := []string{
		"a-20260301T120059.000Z-0001.parquet", "a-20260301T120100.000Z-0002.parquet",
		"a-20260301T120230.000Z-0003.parquet", "b-20260301T120059.000Z-0001.parquet",
	}
	if !slices.Equal(final, wantNames) || len(temp) != 0 {
		t.Fatalf("files %v (temporary %v), want %v", final, temp, wantNames)
	}
	files := dumpFiles(t, dir)
	for name, n := range map[string]int{wantNames[0]: 1, wantNames[1]: 2, wantNames[2]: 1, wantNames[3]: 1} {
		if len(files[name].rows) != n {
			t.Errorf("%s: %d rows, want %d", name, len(files[name].rows), n)
		}
	}
}

// TestReopenCompletesFiles: Reopen (SIGHUP) completes the files in
// progress; later events start new ones.
func TestReopenCompletesFiles(t *testing.T) {
	dir := t.TempDir()
	s, err := parquet.New(parquet.Config{Dir: dir})
	must(t, err)
	body := func(w event.Writer) { key(w, "v"); w.Uint(1) }
	must(t, s.Write([]event.Event{mk("a", 0, body)}))
	must(t, s.Reopen())
	if final, temp := listing(t, dir); len(final) != 1 || len(temp) != 0 {
		t.Fatalf("after Reopen: files %v, temporary %v", final, temp)
	}
	must(t, s.Reopen()) // nothing in progress: nothing to do
	must(t, s.Write([]event.Event{mk("a", 1, body)}))
	must(t, s.Close())
	if final, temp := listing(t, dir); len(final) != 2 || len(temp) != 0 {
		t.Fatalf("after Close: files %v, temporary %v", final, temp)
	}
	if err := s.Write([]event.Event{mk("a", 2, body)}); err == nil {
		t.Error("Write after Close succeeded")
	}
}

func TestConfigRefused(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	must(t, os.WriteFile(file, nil, 0o644))
	for _, c := range []parquet.Config{
		{}, {Dir: file}, {Dir: t.TempDir(), Compression: "lzma"}, {Dir: t.TempDir(), RotateBytes: -1},
	} {
		if _, err := parquet.New(c); err == nil {
			t.Errorf("New(%+v) succeeded", c)
		}
	}
	if _, err := parquet.New(parquet.Config{Dir: filepath.Join(t.TempDir(), "missing")}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("New with a missing directory: %v", err)
	}
}

// A temporary file of a process that is gone (pktpipe killed with -9) is
// removed when a sink opens the directory; a live process's is kept.
func TestStaleTempsRemoved(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := filepath.Join(dir, fmt.Sprintf(".flow.parquet.tmp-%d-1", cmd.Process.Pid))
	live := filepath.Join(dir, ".flow.parquet.tmp-1-1") // PID 1 is always running
	for _, p := range []string{dead, live} {
		if err := os.WriteFile(p, []byte("PAR1 no footer"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := parquet.New(parquet.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(dead); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the dead process's temporary file is still there: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("the live process's temporary file was removed: %v", err)
	}
}
