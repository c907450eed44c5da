package parquet

import (
	"math"
	"net/netip"
	"unicode/utf8"

	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/sinks/encode"
)

// flattener is the event.Writer that reads one event into a row: a cell
// per scalar or array, keyed by its column. Nested objects become dotted
// column names. An array of scalars becomes one list cell; an array that
// holds an object or an array becomes one cell of its JSON text, exactly
// as the JSON sink writes it. It allocates only when an event type shows
// a key for the first time.
type flattener struct {
	t *table

	stack []frame // the objects open around the next key; [0] is the root
	key   string

	// The array being read (inner > 0): its cell's elements start at e0;
	// once it holds an object or array (complex), j writes its JSON.
	inner   int
	e0      int
	complex bool
	j       encode.JSON
	jbuf    []byte

	row row
}

// frame is an open object: its node, and how many keys it has had.
type frame struct {
	n *node
	i int
}

// childOf is key's node in the innermost open object. Events write their
// keys in much the same order each time, so the node that came next
// last time is tried before the map.
func (f *flattener) childOf(key string) *node {
	fr := &f.stack[len(f.stack)-1]
	n := fr.n
	if n == nil {
		return nil
	}
	i := fr.i
	fr.i++
	if i < len(n.order) && n.order[i].key == key {
		return n.order[i]
	}
	c := f.t.child(n, key)
	if c != nil && i <= len(n.order) && i < maxOrder {
		if i == len(n.order) {
			n.order = append(n.order, c)
		} else {
			n.order[i] = c
		}
	}
	return c
}

// row is one event's values.
type row struct {
	seq   uint64 // stamps the columns this row wrote
	cells []cell
	elems []elem
	data  []byte // strings and JSON text of the cells and elements
	// dropped counts values left out because their event type has
	// maxColumns columns already.
	dropped uint64
}

// cell is one column's value in a row.
type cell struct {
	col    *column
	typ    colType // kList with elements' kind, kJSON, or a scalar kind
	null   bool
	dead   bool // replaced by a later value of the same column
	num    uint64
	b0, b1 int32 // bytes in row.data
	e0, e1 int32 // elements in row.elems
}

// elem is one element of a list cell.
type elem struct {
	k      kind
	null   bool
	num    uint64
	b0, b1 int32
}

func (r *row) bytes(b0, b1 int32) []byte { return r.data[b0:b1] }

// read flattens ev into f.row for table t.
func (f *flattener) read(t *table, ev event.Event) {
	f.t = t
	f.stack = f.stack[:0]
	f.inner = 0
	r := &f.row
	r.seq++
	r.cells, r.elems, r.data = r.cells[:0], r.elems[:0], r.data[:0]
	event.Encode(f, ev)
}

func (f *flattener) BeginObject() {
	switch {
	case f.inner > 0:
		f.nest()
		f.j.BeginObject()
	case len(f.stack) == 0:
		f.stack = append(f.stack, frame{n: f.t.root})
	default:
		f.stack = append(f.stack, frame{n: f.childOf(f.key)})
	}
}

func (f *flattener) EndObject() {
	if f.inner > 0 {
		f.inner--
		f.j.EndObject()
		return
	}
	if len(f.stack) > 0 {
		f.stack = f.stack[:len(f.stack)-1]
	}
}

func (f *flattener) BeginArray() {
	if f.inner > 0 {
		f.nest()
		f.j.BeginArray()
		return
	}
	f.inner, f.complex, f.e0 = 1, false, len(f.row.elems)
}

func (f *flattener) EndArray() {
	if f.inner > 1 {
		f.inner--
		f.j.EndArray()
		return
	}
	f.inner = 0
	r := &f.row
	if f.complex {
		f.j.EndArray()
		f.jbuf = f.j.Bytes()
		b0 := int32(len(r.data))
		r.data = append(r.data, f.jbuf...)
		f.add(cell{typ: colType{k: kJSON}, b0: b0, b1: int32(len(r.data))})
		return
	}
	e := kNone
	for _, x := range r.elems[f.e0:] {
		if !x.null {
			e = unifyScalar(e, x.k)
		}
	}
	c := cell{typ: colType{kList, e}, e0: int32(f.e0), e1: int32(len(r.elems))}
	if e == kJSON { // elements of kinds no one column type holds
		c = f.jsonCell(c)
	}
	f.add(c)
}

// nest notes an object or array inside the array being read: the array
// becomes JSON text, which starts with the scalars read so far.
func (f *flattener) nest() {
	if !f.complex {
		f.complex = true
		f.j.Reset(f.jbuf[:0])
		f.j.BeginArray()
		for _, x := range f.row.elems[f.e0:] {
			f.row.writeElem(&f.j, x)
		}
		f.row.elems = f.row.elems[:f.e0]
	}
	f.inner++
}

func (f *flattener) Key(k string) {
	if f.inner > 0 {
		f.j.Key(k)
		return
	}
	f.key = k
}

// scalar adds a value: to the array being read, or as the key's cell.
func (f *flattener) scalar(k kind, num uint64, null bool, b0, b1 int32) {
	switch {
	case f.inner == 1 && !f.complex:
		f.row.elems = append(f.row.elems, elem{k: k, null: null, num: num, b0: b0, b1: b1})
	case f.inner == 0:
		f.add(cell{typ: colType{k: k}, null: null, num: num, b0: b0, b1: b1})
	}
}

func (f *flattener) String(s string) {
	if f.inner > 0 && f.complex {
		f.j.String(s)
		return
	}
	b0 := int32(len(f.row.data))
	f.row.data = appendUTF8(f.row.data, s)
	f.scalar(kString, 0, false, b0, int32(len(f.row.data)))
}

// MAC writes a MAC address as text (event.MACWriter), with no string
// allocated for it.
func (f *flattener) MAC(m [6]byte) {
	if f.inner > 0 && f.complex {
		f.j.MAC(m)
		return
	}
	b0 := int32(len(f.row.data))
	f.row.data = event.AppendMAC(f.row.data, m)
	f.scalar(kString, 0, false, b0, int32(len(f.row.data)))
}

func (f *flattener) Uint(v uint64) {
	if f.inner > 0 && f.complex {
		f.j.Uint(v)
		return
	}
	f.scalar(kUint, v, false, 0, 0)
}

func (f *flattener) Int(v int64) {
	if f.inner > 0 && f.complex {
		f.j.Int(v)
		return
	}
	f.scalar(kInt, uint64(v), false, 0, 0)
}

// Float keeps NaN and ±Inf as NULL, as the JSON sink writes null.
func (f *flattener) Float(v float64) {
	if f.inner > 0 && f.complex {
		f.j.Float(v)
		return
	}
	f.scalar(kFloat, math.Float64bits(v), math.IsNaN(v) || math.IsInf(v, 0), 0, 0)
}

func (f *flattener) Bool(v bool) {
	if f.inner > 0 && f.complex {
		f.j.Bool(v)
		return
	}
	n := uint64(0)
	if v {
		n = 1
	}
	f.scalar(kBool, n, false, 0, 0)
}

func (f *flattener) Null() {
	if f.inner > 0 && f.complex {
		f.j.Null()
		return
	}
	f.scalar(kNone, 0, true, 0, 0)
}

func (f *flattener) Time(ns int64) {
	if f.inner > 0 && f.complex {
		f.j.Time(ns)
		return
	}
	f.scalar(kTime, uint64(ns), false, 0, 0)
}

// IP is text, as in JSON; the zero Addr is NULL (JSON's null).
func (f *flattener) IP(a netip.Addr) {
	if f.inner > 0 && f.complex {
		f.j.IP(a)
		return
	}
	if !a.IsValid() {
		f.scalar(kString, 0, true, 0, 0)
		return
	}
	b0 := int32(len(f.row.data))
	f.row.data = a.AppendTo(f.row.data)
	f.scalar(kString, 0, false, b0, int32(len(f.row.data)))
}

// add puts c in the row as the value of the current key's column; a key
// written twice keeps its last value, as JSON readers do.
func (f *flattener) add(c cell) {
	r := &f.row
	var col *column
	if len(f.stack) > 0 {
		col = f.t.column(f.childOf(f.key))
	}
	if col == nil {
		r.dropped++
		return
	}
	c.col = col
	if col.stamp == r.seq {
		r.cells[col.cell].dead = true
	}
	col.stamp, col.cell = r.seq, len(r.cells)
	r.cells = append(r.cells, c)
}

// jsonCell turns a list cell into a cell of its JSON text.
func (f *flattener) jsonCell(c cell) cell {
	f.jbuf = f.row.appendJSON(&f.j, f.jbuf[:0], &c)
	b0 := int32(len(f.row.data))
	f.row.data = append(f.row.data, f.jbuf...)
	return cell{col: c.col, typ: colType{k: kJSON}, b0: b0, b1: int32(len(f.row.data))}
}

// appendJSON appends c's value as JSON text (for a JSON column).
func (r *row) appendJSON(j *encode.JSON, dst []byte, c *cell) []byte {
	if c.typ.k == kJSON {
		return append(dst, r.bytes(c.b0, c.b1)...)
	}
	j.Reset(dst)
	switch {
	case c.typ.k == kList:
		j.BeginArray()
		for _, x := range r.elems[c.e0:c.e1] {
			r.writeElem(j, x)
		}
		j.EndArray()
	default:
		r.writeElem(j, elem{k: c.typ.k, null: c.null, num: c.num, b0: c.b0, b1: c.b1})
	}
	return j.Bytes()
}

func (r *row) writeElem(j *encode.JSON, x elem) {
	switch {
	case x.null:
		j.Null()
	case x.k == kBool:
		j.Bool(x.num != 0)
	case x.k == kUint:
		j.Uint(x.num)
	case x.k == kInt:
		j.Int(int64(x.num))
	case x.k == kFloat:
		j.Float(math.Float64frombits(x.num))
	case x.k == kTime:
		j.Time(int64(x.num))
	default:
		j.String(string(r.bytes(x.b0, x.b1)))
	}
}

// appendUTF8 appends s with each byte that is not valid UTF-8 replaced by
// U+FFFD, as the JSON sink does: Parquet strings are UTF-8, and readers
// such as DuckDB refuse others.
func appendUTF8(b []byte, s string) []byte {
	if utf8.ValidString(s) {
		return append(b, s...)
	}
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return b
}
