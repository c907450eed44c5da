package parquet_test

import (
	"bytes"
	"errors"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	pq "github.com/parquet-go/parquet-go"

	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/sinks/parquet"
)

// prog turns bytes into a balanced sequence of Writer calls: each byte
// picks the next key, value, object or array, from a few keys that
// collide ("a" and "a.b" beside a{b}), so that columns change kind, keys
// repeat, and arrays mix kinds.
type prog struct {
	data []byte
	i    int
}

var fuzzKeys = []string{"a", "b", "a.b", "c", "x"}

func (p *prog) next() byte {
	if p.i >= len(p.data) {
		return 0
	}
	b := p.data[p.i]
	p.i++
	return b
}

func (p *prog) object(w event.Writer, depth int) {
	for range 12 {
		b := p.next()
		if b == 0 || b%13 == 0 {
			return
		}
		w.Key(fuzzKeys[int(b)%len(fuzzKeys)])
		p.value(w, depth)
	}
}

func (p *prog) array(w event.Writer, depth int) {
	for range 8 {
		b := p.next()
		if b == 0 || b%7 == 0 {
			return
		}
		p.value(w, depth)
	}
}

func (p *prog) value(w event.Writer, depth int) {
	b := p.next()
	switch b % 11 {
	case 0:
		w.Uint(uint64(b) << (b % 64))
	case 1:
		w.Int(-int64(b) << (b % 60))
	case 2:
		w.Float([]float64{0.5, math.NaN(), math.Inf(-1), -1e300, 3}[int(b)%5])
	case 3:
		w.String(string(p.data[min(p.i, len(p.data)):min(p.i+int(b%5), len(p.data))]))
	case 4:
		w.Bool(b&16 != 0)
	case 5:
		w.Null()
	case 6:
		w.Time(int64(b) * 1e12)
	case 7:
		w.IP([]netip.Addr{{}, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")}[int(b)%3])
	case 8, 9:
		if depth >= 4 {
			w.Null()
			return
		}
		if b%11 == 8 {
			w.BeginObject()
			p.object(w, depth+1)
			w.EndObject()
		} else {
			w.BeginArray()
			p.array(w, depth+1)
			w.EndArray()
		}
	default:
		w.Uint(uint64(b))
	}
}

// FuzzShapes writes events of any shape: the sink never fails or panics,
// leaves no temporary file, and its files decode (every page of every
// column) with as many rows as events were written.
func FuzzShapes(f *testing.F) {
	f.Add([]byte{1, 3, 8, 1, 2, 2, 9, 4, 0, 255, 2, 14, 3, 9, 1, 0, 6})
	f.Add([]byte{2, 5, 9, 1, 3, 8, 2, 1, 0, 0, 2, 1, 200, 7, 0})
	f.Add(bytes.Repeat([]byte{5, 9, 3, 9, 8, 1, 0, 2, 0}, 20))
	f.Fuzz(shapes)
}

func shapes(t *testing.T, data []byte) {
	dir := t.TempDir()
	group := int64(1) // a row group per row: schemas fix at once
	if len(data) > 0 && data[0]&1 != 0 {
		group = 1 << 20
	}
	s, err := parquet.New(parquet.Config{Dir: dir, RowGroupBytes: group})
	must(t, err)
	var events []event.Event
	for chunk := range bytes.SplitSeq(data, []byte{0xfe}) {
		p := &prog{data: chunk}
		events = append(events, mk("fuzz", len(events), func(w event.Writer) { p.i = 0; p.object(w, 0) }))
		if len(events) == 64 {
			break
		}
	}
	for i := 0; i < len(events); i += 3 {
		must(t, s.Write(events[i:min(i+3, len(events))]))
	}
	must(t, s.Close())
	final, temp := listing(t, dir)
	if len(temp) != 0 {
		t.Fatalf("temporary files left: %v", temp)
	}
	var rows int64
	for _, name := range final {
		rows += decodeAll(t, filepath.Join(dir, name))
	}
	if rows != int64(len(events)) {
		t.Fatalf("%d rows in %d files, %d events written", rows, len(final), len(events))
	}
}

// decodeAll reads every page of every column of a file with parquet-go
// and returns its rows.
func decodeAll(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	f, err := pq.OpenFile(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, rg := range f.RowGroups() {
		for _, cc := range rg.ColumnChunks() {
			pages := cc.Pages()
			for {
				p, err := pages.ReadPage()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				pq.Release(p)
			}
			pages.Close()
		}
	}
	return f.NumRows()
}
