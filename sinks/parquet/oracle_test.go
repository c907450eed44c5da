package parquet_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/app"
	"github.com/pktpipe/pktpipe/internal/testenv"
)

// The oracle is DuckDB (pip install duckdb==2.0.0), run by
// testdata/dump.py: it reads the Parquet files back, and every row must
// equal the event the JSON file sink wrote in the same run, column for
// column: each JSON key, flattened to its dotted name, has the same value
// (integers exactly, floats to the bit, timestamps to the microsecond,
// arrays element by element, JSON columns as the same JSON), and every
// column the event lacks is NULL.

// duckdb returns a python3 that imports duckdb.
func duckdb(t testing.TB) string {
	t.Helper()
	py := testenv.NeedCommand(t, "python3")
	if err := exec.Command(py, "-c", "import duckdb").Run(); err != nil {
		testenv.Need(t, false, "python3 module duckdb (pip install duckdb==2.0.0)")
	}
	return py
}

// table is what DuckDB read for one event type of one directory.
type table struct {
	columns map[string]string // name -> DuckDB type
	order   []string
	rows    []map[string]any
	files   []string // each row's file
}

// dump reads dirs with DuckDB: tables by directory, then event type.
func dump(t testing.TB, dirs ...string) map[string]map[string]*table {
	t.Helper()
	return dumpArgs(t, dirs...)
}

// dumpFiles reads each file of dir on its own: tables by file name.
func dumpFiles(t testing.TB, dir string) map[string]*table {
	t.Helper()
	return dumpArgs(t, "--per-file", dir)[dir]
}

func dumpArgs(t testing.TB, args ...string) map[string]map[string]*table {
	t.Helper()
	py := duckdb(t)
	var stderr bytes.Buffer
	cmd := exec.Command(py, append([]string{"testdata/dump.py"}, args...)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("duckdb: %v\n%s", err, stderr.Bytes())
	}
	res := map[string]map[string]*table{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var line struct {
			Dir, Type, File string
			Columns         [][2]string
			Row             map[string]any
		}
		d := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		d.UseNumber()
		if err := d.Decode(&line); err != nil {
			t.Fatalf("dump.py output %.200q: %v", sc.Text(), err)
		}
		if res[line.Dir] == nil {
			res[line.Dir] = map[string]*table{}
		}
		tb := res[line.Dir][line.Type]
		if line.Columns != nil {
			tb = &table{columns: map[string]string{}}
			for _, c := range line.Columns {
				tb.columns[c[0]] = c[1]
				tb.order = append(tb.order, c[0])
			}
			res[line.Dir][line.Type] = tb
			continue
		}
		tb.rows = append(tb.rows, line.Row)
		tb.files = append(tb.files, line.File)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return res
}

// jsonEvents reads a JSON lines file: each event as decoded (numbers as
// json.Number), grouped by event_type in file order.
func jsonEvents(t testing.TB, path string) map[string][]map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	byType := map[string][]map[string]any{}
	for line := range bytes.Lines(b) {
		var ev map[string]any
		d := json.NewDecoder(bytes.NewReader(line))
		d.UseNumber()
		if err := d.Decode(&ev); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		ty, _ := ev["event_type"].(string)
		byType[ty] = append(byType[ty], ev)
	}
	return byType
}

// flatten turns nested objects into dotted keys, as the sink does.
func flatten(prefix string, v any, out map[string]any) {
	m, ok := v.(map[string]any)
	if !ok {
		out[prefix] = v
		return
	}
	for k, x := range m {
		if prefix != "" {
			k = prefix + "." + k
		}
		flatten(k, x, out)
	}
}

// compareRuns checks that DuckDB's tables of dir hold exactly the events
// of the JSON file, and returns how many rows and values it compared.
func compareRuns(t testing.TB, name string, tables map[string]*table, jsonPath string) (rows, values int) {
	t.Helper()
	events := jsonEvents(t, jsonPath)
	for ty := range tables {
		if _, ok := events[ty]; !ok {
			t.Errorf("%s: Parquet files of type %s, which the JSON output lacks", name, ty)
		}
	}
	for ty, evs := range events {
		tb := tables[ty]
		if tb == nil {
			t.Errorf("%s: %d %s events in JSON, no Parquet file", name, len(evs), ty)
			continue
		}
		if len(tb.rows) != len(evs) {
			t.Errorf("%s: %s: %d rows in Parquet, %d events in JSON", name, ty, len(tb.rows), len(evs))
			continue
		}
		for i, ev := range evs {
			flat := map[string]any{}
			flatten("", ev, flat)
			row := tb.rows[i]
			for k, jv := range flat {
				typ, ok := tb.columns[k]
				if !ok {
					t.Errorf("%s: %s row %d (%s): no column %q", name, ty, i, tb.files[i], k)
					continue
				}
				if err := equal(jv, row[k], typ); err != nil {
					t.Errorf("%s: %s row %d (%s) column %q (%s): %v", name, ty, i, tb.files[i], k, typ, err)
				}
				values++
			}
			for k, pv := range row {
				if _, ok := flat[k]; !ok && pv != nil {
					t.Errorf("%s: %s row %d column %q = %v, but the event has no such key", name, ty, i, k, pv)
				}
			}
			rows++
		}
	}
	return rows, values
}

// equal compares a JSON value with what DuckDB read from a column of
// DuckDB type typ.
func equal(jv, pv any, typ string) error {
	if jv == nil || pv == nil {
		if jv != pv {
			return fmt.Errorf("JSON %v, Parquet %v", jv, pv)
		}
		return nil
	}
	if typ == "JSON" {
		s, ok := pv.(string)
		if !ok {
			return fmt.Errorf("JSON column value %T", pv)
		}
		d := json.NewDecoder(strings.NewReader(s))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			return fmt.Errorf("JSON column %q: %v", s, err)
		}
		if !reflect.DeepEqual(jv, v) {
			return fmt.Errorf("JSON %v, Parquet %s", jv, s)
		}
		return nil
	}
	if elem, ok := strings.CutSuffix(typ, "[]"); ok {
		ja, ok1 := jv.([]any)
		pa, ok2 := pv.([]any)
		if !ok1 || !ok2 || len(ja) != len(pa) {
			return fmt.Errorf("JSON %v, Parquet %v", jv, pv)
		}
		for i := range ja {
			if err := equal(ja[i], pa[i], elem); err != nil {
				return fmt.Errorf("element %d: %v", i, err)
			}
		}
		return nil
	}
	switch {
	case strings.HasPrefix(typ, "TIMESTAMP"):
		s, _ := jv.(string)
		tm, err := time.Parse("2006-01-02T15:04:05.000000-0700", s)
		if err != nil {
			return err
		}
		if us := strconv.FormatInt(tm.UnixMicro(), 10); us != fmt.Sprint(pv) {
			return fmt.Errorf("JSON %s (%s µs), Parquet %v µs", s, us, pv)
		}
	case typ == "DOUBLE":
		a, err1 := jv.(json.Number).Float64()
		b, err2 := pv.(json.Number).Float64()
		if err1 != nil || err2 != nil || a != b {
			return fmt.Errorf("JSON %v, Parquet %v", jv, pv)
		}
	case typ == "BIGINT" || typ == "UBIGINT":
		a, ok1 := jv.(json.Number)
		b, ok2 := pv.(json.Number)
		if !ok1 || !ok2 || a != b {
			return fmt.Errorf("JSON %v, Parquet %v", jv, pv)
		}
	case typ == "VARCHAR" || typ == "BOOLEAN":
		if jv != pv {
			return fmt.Errorf("JSON %#v, Parquet %#v", jv, pv)
		}
	default:
		return fmt.Errorf("unexpected column type %s", typ)
	}
	return nil
}

// runApp runs pktpipe in-process with CLI arguments (those of the real
// command line, parsed by the same flag set) and returns the run's error.
func runApp(t testing.TB, args ...string) error {
	t.Helper()
	var o app.Options
	fs := flag.NewFlagSet("pktpipe", flag.ContinueOnError)
	o.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	o.SensorName = "parquet-test"
	p, err := app.Build(o)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	defer p.Close()
	_, err = p.Run(t.Context())
	return err
}

var captureName = regexp.MustCompile(`\.(pcap|pcapng|cap)(\.(gz|zst))?$`)

// captures lists testdata/sample.pcap and every conformance capture.
func captures(t *testing.T) []string {
	root := testenv.Conformance(t)
	files := []string{filepath.Join(testenv.RepoRoot(t), "testdata", "sample.pcap")}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && captureName.MatchString(d.Name()) {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files[1:])
	return files
}

// TestDuckDBReadsTheJSONOutput runs every capture (sample.pcap and the
// conformance set: DNS, HTTP, TLS, SSH, QUIC, ICMP errors, VLANs,
// tunnels...) with every analyzer, flow features and SPLT, into a Parquet
// sink and a JSON file sink at once, and compares every row DuckDB reads
// with the JSON.
func TestDuckDBReadsTheJSONOutput(t *testing.T) {
	duckdb(t)
	files := captures(t)
	base := t.TempDir()
	var dirs, jsons []string
	for i, f := range files {
		dir := filepath.Join(base, strconv.Itoa(i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		js := dir + ".json"
		// Some conformance captures are cut short on purpose: the events
		// up to the damage still count, in both sinks.
		if err := runApp(t, "-r", f, "--workers", "1", "--analyzers", "all,features", "--splt", "10",
			"-o", "parquet:"+dir, "-o", "file:"+js); err != nil {
			t.Logf("%s: %v", filepath.Base(f), err)
		}
		dirs, jsons = append(dirs, dir), append(jsons, js)
	}
	got := dump(t, dirs...)
	var rows, values int
	types := map[string]int{}
	for i, dir := range dirs {
		r, v := compareRuns(t, filepath.Base(files[i]), got[dir], jsons[i])
		rows, values = rows+r, values+v
		for ty, tb := range got[dir] {
			types[ty] += len(tb.rows)
		}
	}
	for _, want := range []string{"flow", "dns", "tls", "http", "ssh", "quic", "icmp_feedback", "rtt"} {
		if types[want] == 0 {
			t.Errorf("no %s rows: the captures no longer cover that type", want)
		}
	}
	if rows < 1000 {
		t.Errorf("compared only %d rows", rows)
	}
	t.Logf("%d captures: %d rows, %d values equal; rows by type %v", len(files), rows, values, types)
}
