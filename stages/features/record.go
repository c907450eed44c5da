package features

import (
	"github.com/pktpipe/pktpipe/pipeline/event"
)

// Features is the record's "features" object: the flow's state (updated in
// place while the flow lives, handed to the record at its end),
// turned into NFStream's columns when it is encoded.
type Features struct {
	st state
	n  int // SPLT length (0 = off)
	// splt is the first packets' directions, then sizes, then gaps,
	// len(splt)/3 of each.
	splt []int32
}

// Key implements event.Extension.
func (*Features) Key() string { return "features" }

// side is one prefix's columns.
type side struct {
	pkts, bytes       uint64
	first, last       int64
	minPS, maxPS      uint64
	meanPS, stdPS     float64
	minPIAT, maxPIAT  uint64
	meanPIAT, stdPIAT float64
	flags             [8]uint64
	psM2              float64
}

func dirSide(d *dirStats, base int64, first, last uint32) side {
	s := side{pkts: d.pkts, bytes: d.bytes, psM2: d.psM2}
	if d.pkts == 0 {
		return s
	}
	s.first, s.last = base+int64(first), base+int64(last)
	s.minPS, s.maxPS = uint64(d.minPS), uint64(d.maxPS)
	s.meanPS, s.stdPS = ratio(float64(d.bytes), d.pkts), stddev(d.psM2, d.pkts)
	if d.pkts > 1 {
		s.minPIAT, s.maxPIAT = uint64(d.minPIAT), uint64(d.maxPIAT)
		s.meanPIAT = ratio(float64(last-first), d.pkts-1)
		s.stdPIAT = stddev(d.piatM2, d.pkts-1)
	}
	for j, b := range flagBit {
		s.flags[j] = uint64(d.flags[b])
	}
	return s
}

// sides returns the bidirectional, src2dst and dst2src columns.
func (x *Features) sides() [3]side {
	st := &x.st
	a := dirSide(&st.d[0], st.base, st.first[0], st.last[0])
	b := dirSide(&st.d[1], st.base, st.first[1], st.last[1])
	bi := side{pkts: a.pkts + b.pkts, bytes: a.bytes + b.bytes}
	switch {
	case a.pkts > 0 && b.pkts > 0:
		bi.first, bi.last = min(a.first, b.first), max(a.last, b.last)
		bi.minPS, bi.maxPS = min(a.minPS, b.minPS), max(a.maxPS, b.maxPS)
	case a.pkts > 0:
		bi.first, bi.last, bi.minPS, bi.maxPS = a.first, a.last, a.minPS, a.maxPS
	case b.pkts > 0:
		bi.first, bi.last, bi.minPS, bi.maxPS = b.first, b.last, b.minPS, b.maxPS
	}
	bi.meanPS = ratio(float64(bi.bytes), bi.pkts)
	// Chan et al.'s merge of the two directions' squared deviations.
	m2 := a.psM2 + b.psM2
	if a.pkts > 0 && b.pkts > 0 {
		dm := b.meanPS - a.meanPS
		m2 += dm * dm * float64(a.pkts) / float64(bi.pkts) * float64(b.pkts)
	}
	bi.stdPS = stddev(m2, bi.pkts)
	if bi.pkts > 1 {
		bi.minPIAT, bi.maxPIAT = uint64(st.biMin), uint64(st.biMax)
		bi.meanPIAT = ratio(float64(st.latest()), bi.pkts-1)
		bi.stdPIAT = stddev(st.biM2, bi.pkts-1)
	}
	for i := range bi.flags {
		bi.flags[i] = a.flags[i] + b.flags[i]
	}
	return [3]side{bi, a, b}
}

var prefixes = [3]string{"bidirectional_", "src2dst_", "dst2src_"}

// Column names in NFStream's order, built once so Encode allocates nothing.
var (
	colTimes [3][5]string // first_seen_ms, last_seen_ms, duration_ms, packets, bytes
	colPS    [3][4]string
	colPIAT  [3][4]string
	colFlags [3][8]string
)

func init() {
	for i, p := range prefixes {
		for j, n := range [5]string{"first_seen_ms", "last_seen_ms", "duration_ms", "packets", "bytes"} {
			colTimes[i][j] = p + n
		}
		for j, n := range [4]string{"min_ps", "mean_ps", "stddev_ps", "max_ps"} {
			colPS[i][j] = p + n
		}
		for j, n := range [4]string{"min_piat_ms", "mean_piat_ms", "stddev_piat_ms", "max_piat_ms"} {
			colPIAT[i][j] = p + n
		}
		for j, n := range flagNames {
			colFlags[i][j] = p + n + "_packets"
		}
	}
}

// Encode implements event.Extension: one flat object, columns in
// NFStream's order.
func (x *Features) Encode(w event.Writer) {
	s := x.sides()
	w.BeginObject()
	for i := range s {
		c := &colTimes[i]
		w.Key(c[0])
		w.Int(s[i].first)
		w.Key(c[1])
		w.Int(s[i].last)
		w.Key(c[2])
		w.Int(s[i].last - s[i].first)
		w.Key(c[3])
		w.Uint(s[i].pkts)
		w.Key(c[4])
		w.Uint(s[i].bytes)
	}
	for i := range s {
		c := &colPS[i]
		w.Key(c[0])
		w.Uint(s[i].minPS)
		w.Key(c[1])
		w.Float(s[i].meanPS)
		w.Key(c[2])
		w.Float(s[i].stdPS)
		w.Key(c[3])
		w.Uint(s[i].maxPS)
	}
	for i := range s {
		c := &colPIAT[i]
		w.Key(c[0])
		w.Uint(s[i].minPIAT)
		w.Key(c[1])
		w.Float(s[i].meanPIAT)
		w.Key(c[2])
		w.Float(s[i].stdPIAT)
		w.Key(c[3])
		w.Uint(s[i].maxPIAT)
	}
	for i := range s {
		for j, c := range colFlags[i] {
			w.Key(c)
			w.Uint(s[i].flags[j])
		}
	}
	if x.n > 0 {
		k := len(x.splt) / 3
		for i, name := range [3]string{"splt_direction", "splt_ps", "splt_piat_ms"} {
			w.Key(name)
			w.BeginArray()
			for _, v := range x.splt[i*k : (i+1)*k] {
				w.Int(int64(v))
			}
			for range x.n - k {
				w.Int(-1) // NFStream's padding
			}
			w.EndArray()
		}
	}
	w.EndObject()
}
