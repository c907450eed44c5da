package parquet

import (
	"math"
	"reflect"

	pq "github.com/parquet-go/parquet-go"
)

// kind is what a column holds, or a value is.
type kind uint8

const (
	kNone   kind = iota // no value seen yet (null only)
	kBool               // BOOLEAN
	kUint               // INT64 annotated unsigned (UBIGINT)
	kInt                // INT64
	kFloat              // DOUBLE
	kString             // STRING (UTF-8)
	kTime               // TIMESTAMP(MICROS, UTC)
	kJSON               // STRING annotated JSON: arrays of objects, values of mixed kinds
	kList               // LIST of the elem kind
)

var kindNames = [...]string{"none", "bool", "uint", "int", "float", "string", "time", "json", "list"}

func (k kind) String() string { return kindNames[k] }

// colType is a column's type in one file: a kind, and for a list the
// kind of its elements (kNone while only empty lists were seen).
type colType struct{ k, elem kind }

// unifyScalar is the kind that holds values of both a and b: unsigned
// and signed integers meet in INT64, integers and floats in DOUBLE, and
// anything else in JSON text.
func unifyScalar(a, b kind) kind {
	switch {
	case a == b || b == kNone:
		return a
	case a == kNone:
		return b
	case (a == kUint && b == kInt) || (a == kInt && b == kUint):
		return kInt
	case isNumber(a) && isNumber(b):
		return kFloat
	}
	return kJSON
}

func isNumber(k kind) bool { return k == kUint || k == kInt || k == kFloat }

// unify is the type that holds the values of both a and b.
func unify(a, b colType) colType {
	switch {
	case a.k == kNone:
		return b
	case b.k == kNone:
		return a
	case a.k == kList && b.k == kList:
		if e := unifyScalar(a.elem, b.elem); e != kJSON {
			return colType{kList, e}
		}
	case a.k != kList && b.k != kList:
		return colType{k: unifyScalar(a.k, b.k)}
	}
	return colType{k: kJSON}
}

// holds reports whether a column of kind c stores a value of kind v as
// it is or by an exact conversion (n is the value's bits: an unsigned
// value above 2^63-1 does not fit INT64).
func holds(c, v kind, n uint64) bool {
	switch {
	case c == v:
		return true
	case c == kInt && v == kUint:
		return n <= math.MaxInt64
	case c == kFloat:
		return v == kUint || v == kInt
	}
	return false
}

// node is the Parquet type of a column: every column is optional, so a
// row without the key reads as NULL.
func (t colType) node() pq.Node {
	if t.k == kList {
		e := t.elem
		if e == kNone {
			e = kString // only empty lists so far: any element type reads them
		}
		return pq.Optional(pq.List(pq.Optional(leaf(e))))
	}
	return pq.Optional(leaf(t.k))
}

func leaf(k kind) pq.Node {
	switch k {
	case kBool:
		return pq.Leaf(pq.BooleanType)
	case kUint:
		return pq.Uint(64)
	case kInt:
		return pq.Int(64)
	case kFloat:
		return pq.Leaf(pq.DoubleType)
	case kTime:
		return pq.Timestamp(pq.Microsecond)
	case kJSON:
		return pq.JSON()
	}
	return pq.String()
}

// column is one flattened key of an event type ("flow.pkts_toserver"),
// with the entries buffered for the current row group as Parquet levels.
// A scalar column has one entry per row (def 1 value, def 0 null); a
// list column has one per element (def 3; def 2 a null element, rep 1
// after the first), or one for an empty list (def 1) or a null (def 0).
type column struct {
	name string
	typ  colType // in the current file; only ever unified upwards
	idx  int     // leaf index in the file's schema; -1: not in it

	rows int      // rows the entries cover
	defs []uint8  // definition level of each entry
	reps []uint8  // repetition level of each entry (lists only)
	nums []uint64 // each entry's bits (numbers, booleans, times in ns)
	ends []uint32 // each entry's end in data (strings, JSON)
	data []byte

	// stamp and cell place the column's value in the row being read
	// (a key written twice in one event keeps its last value).
	stamp uint64
	cell  int
}

func (c *column) byteKind() bool {
	k := c.typ.k
	if k == kList {
		k = c.typ.elem
	}
	return k == kString || k == kJSON || k == kNone
}

// entry appends one entry (its value from num or b).
func (c *column) entry(rep, def uint8, num uint64, b []byte) {
	c.defs = append(c.defs, def)
	if c.typ.k == kList {
		c.reps = append(c.reps, rep)
	}
	if c.byteKind() {
		c.data = append(c.data, b...)
		c.ends = append(c.ends, uint32(len(c.data)))
	} else {
		c.nums = append(c.nums, num)
	}
}

// retype gives the column type t while its entries hold no value (nulls,
// empty lists): a first value, or a list's first element, fixes the kind.
func (c *column) retype(t colType) {
	n := len(c.defs)
	c.typ = t
	c.reps, c.nums, c.ends = c.reps[:0], c.nums[:0], c.ends[:0]
	for range n {
		if t.k == kList {
			c.reps = append(c.reps, 0)
		}
		if c.byteKind() {
			c.ends = append(c.ends, 0)
		} else {
			c.nums = append(c.nums, 0)
		}
	}
}

// padTo adds null entries for the rows up to n that had no value.
func (c *column) padTo(n int) {
	for c.rows < n {
		c.entry(0, 0, 0, nil)
		c.rows++
	}
}

func (c *column) reset() {
	c.rows = 0
	c.defs, c.reps, c.nums, c.ends, c.data = c.defs[:0], c.reps[:0], c.nums[:0], c.ends[:0], c.data[:0]
}

// appendValues appends entries [from, to) as Parquet values of leaf
// column c.idx.
func (c *column) appendValues(dst []pq.Value, from, to int) []pq.Value {
	k, full, list := c.typ.k, uint8(1), c.typ.k == kList
	if list {
		k, full = c.typ.elem, 3
	}
	bytes := c.byteKind()
	var start uint32
	if bytes && from > 0 {
		start = c.ends[from-1]
	}
	for i := from; i < to; i++ {
		def := c.defs[i]
		rep := 0
		if list {
			rep = int(c.reps[i])
		}
		var v pq.Value
		switch {
		case bytes:
			end := c.ends[i]
			if def == full {
				v = pq.ByteArrayValue(c.data[start:end])
			}
			start = end
		case def != full:
		case k == kFloat:
			v = pq.DoubleValue(math.Float64frombits(c.nums[i]))
		case k == kBool:
			v = pq.BooleanValue(c.nums[i] != 0)
		case k == kTime:
			v = pq.Int64Value(floorDiv(int64(c.nums[i]), 1000))
		default:
			v = pq.Int64Value(int64(c.nums[i]))
		}
		dst = append(dst, v.Level(rep, int(def), c.idx))
	}
	return dst
}

// floorDiv is a/b rounded down, as the JSON encoder's timestamps are.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// orderedGroup is a Parquet group whose columns keep the order they were
// first seen in (EVE's order of keys) instead of parquet.Group's sorted
// names.
type orderedGroup struct {
	pq.Group
	fields []pq.Field
}

func (g orderedGroup) Fields() []pq.Field { return g.fields }

type field struct {
	pq.Node
	name string
}

func (f field) Name() string { return f.name }

// Value is for writing Go structs, which this sink does not do.
func (f field) Value(reflect.Value) reflect.Value { return reflect.Value{} }

// newSchema is the schema of the columns cols, in that order.
func newSchema(name string, cols []*column) *pq.Schema {
	g := orderedGroup{Group: make(pq.Group, len(cols)), fields: make([]pq.Field, len(cols))}
	for i, c := range cols {
		n := c.typ.node()
		g.Group[c.name] = n
		g.fields[i] = field{Node: n, name: c.name}
	}
	return pq.NewSchema(name, g)
}
