package features

import (
	"encoding/binary"
	"flag"
	"math"
	"net/netip"
	"strings"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/stages/flow"
)

// mapWriter collects a Features object as name → value (float64 for
// numbers, []float64 for arrays).
type mapWriter struct {
	m     map[string]any
	key   string
	arr   []float64
	inArr bool
	ints  map[string]bool // written with Int/Uint
}

func (w *mapWriter) BeginObject() {}
func (w *mapWriter) EndObject()   {}
func (w *mapWriter) BeginArray()  { w.inArr, w.arr = true, []float64{} }
func (w *mapWriter) EndArray()    { w.inArr = false; w.m[w.key] = w.arr }
func (w *mapWriter) Key(k string) { w.key = k }
func (w *mapWriter) put(v float64, isInt bool) {
	if w.inArr {
		w.arr = append(w.arr, v)
		return
	}
	w.m[w.key] = v
	w.ints[w.key] = isInt
}
func (w *mapWriter) String(string)   {}
func (w *mapWriter) Uint(v uint64)   { w.put(float64(v), true) }
func (w *mapWriter) Int(v int64)     { w.put(float64(v), true) }
func (w *mapWriter) Float(v float64) { w.put(v, false) }
func (w *mapWriter) Bool(bool)       {}
func (w *mapWriter) Null()           { w.put(math.NaN(), false) }
func (w *mapWriter) Time(int64)      {}
func (w *mapWriter) IP(a netip.Addr) {}
func (s *state) values(n int) map[string]any {
	x := &Features{st: *s, n: n}
	if sp := s.splt; sp != nil {
		for _, d := range sp.dir[:sp.n] {
			x.splt = append(x.splt, int32(d))
		}
		x.splt = append(append(x.splt, sp.ps[:sp.n]...), sp.piat[:sp.n]...)
	}
	w := &mapWriter{m: map[string]any{}, ints: map[string]bool{}}
	x.Encode(w)
	return w.m
}

// sane checks what must hold of any output: every number finite, no
// negative duration, gap, size or count, stddev >= 0, min <= mean <= max.
func sane(t *testing.T, v map[string]any) {
	t.Helper()
	f := func(k string) float64 { return v[k].(float64) }
	for k, x := range v {
		if a, ok := x.([]float64); ok {
			for _, e := range a {
				if math.IsNaN(e) || math.IsInf(e, 0) || e < -1 {
					t.Fatalf("%s: %v", k, a)
				}
			}
			continue
		}
		e := x.(float64)
		if math.IsNaN(e) || math.IsInf(e, 0) {
			t.Fatalf("%s = %v", k, e)
		}
		if e < 0 && !strings.HasSuffix(k, "_seen_ms") {
			t.Fatalf("%s = %v, negative", k, e)
		}
	}
	for _, p := range []string{"bidirectional_", "src2dst_", "dst2src_"} {
		if f(p+"last_seen_ms") < f(p+"first_seen_ms") {
			t.Fatalf("%s: last %v before first %v", p, f(p+"last_seen_ms"), f(p+"first_seen_ms"))
		}
		for _, q := range []string{"ps", "piat_ms"} {
			lo, mean, hi := f(p+"min_"+q), f(p+"mean_"+q), f(p+"max_"+q)
			tol := 1e-9 * math.Max(1, hi)
			if mean < lo-tol || mean > hi+tol {
				t.Fatalf("%s%s: min %v mean %v max %v", p, q, lo, mean, hi)
			}
		}
	}
}

func TestTimeBackwardsAndZeroGaps(t *testing.T) {
	s := &state{}
	const ms = int64(1e6)
	base := int64(1_700_000_000_000) * ms
	// 0, 5, 5 (zero gap), 3 (backwards: taken at 5), 10, then the reply
	// direction backwards by a second.
	s.add(flow.ToServer, base, 60, 0x02)
	s.add(flow.ToClient, base+5*ms, 60, 0x12)
	s.add(flow.ToServer, base+5*ms, 52, 0x10)
	s.add(flow.ToServer, base+3*ms, 100, 0x18)
	s.add(flow.ToServer, base+10*ms, 52, 0x10)
	s.add(flow.ToClient, base-1000*ms, 1500, 0x18)
	v := s.values(0)
	sane(t, v)
	want := map[string]float64{
		"bidirectional_duration_ms": 10, "src2dst_duration_ms": 10, "dst2src_duration_ms": 5,
		"bidirectional_min_piat_ms": 0, "bidirectional_max_piat_ms": 5,
		"bidirectional_mean_piat_ms": 2,        // gaps 5,0,0,5,0
		"src2dst_mean_piat_ms":       10.0 / 3, // gaps 5,0,5
		"dst2src_mean_piat_ms":       5,        // gap 5 (10 - 5)
		"src2dst_syn_packets":        1, "dst2src_syn_packets": 1, "bidirectional_ack_packets": 5,
		"src2dst_psh_packets": 1, "bidirectional_psh_packets": 2,
	}
	for k, w := range want {
		if got := v[k].(float64); math.Abs(got-w) > 1e-12 {
			t.Errorf("%s = %v, want %v", k, got, w)
		}
	}
}

func TestHugeCounts(t *testing.T) {
	s := &state{}
	s.add(flow.ToServer, 1e9, 1500, 0x10)
	s.add(flow.ToServer, 2e9, 40, 0x10)
	// As if 2^33 more packets of 1500 bytes had been seen at the same
	// millisecond: counters past 32 bits, flag counters at their cap.
	d := &s.d[flow.ToServer]
	d.pkts += 1 << 33
	d.bytes += 1500 << 33
	d.minPIAT = 0
	for i := range d.flags {
		d.flags[i] = math.MaxUint32
	}
	s.add(flow.ToServer, 3e9, 1500, 0xff)
	s.add(flow.ToClient, 3e9, 1500, 0xff)
	v := s.values(0)
	sane(t, v)
	if got, want := v["src2dst_packets"].(float64), float64(1<<33+3); got != want {
		t.Errorf("src2dst_packets = %v, want %v", got, want)
	}
	if got := v["src2dst_ack_packets"].(float64); got != math.MaxUint32 {
		t.Errorf("src2dst_ack_packets = %v, want saturated at 2^32-1", got)
	}
	if got := v["bidirectional_ack_packets"].(float64); got != math.MaxUint32+1 {
		t.Errorf("bidirectional_ack_packets = %v, want 2^32", got)
	}
	// A time gap past 2^32 ms saturates instead of wrapping.
	s.add(flow.ToServer, 3e9+(1<<33)*1e6, 1500, 0)
	sane(t, s.values(0))
}

func TestSPLTPaddingAndSizes(t *testing.T) {
	a := New(4)
	x := a.start()
	s := &x.st
	if s.splt == nil {
		t.Fatal("no SPLT buffer with N > 0")
	}
	s.add(flow.ToServer, 1_000_000, 74, 0x02)
	s.add(flow.ToClient, 3_500_000, 74, 0x12)
	v := s.values(4)
	for k, want := range map[string][]float64{
		"splt_direction": {0, 1, -1, -1}, "splt_ps": {74, 74, -1, -1}, "splt_piat_ms": {0, 2, -1, -1},
	} {
		got := v[k].([]float64)
		if len(got) != len(want) {
			t.Fatalf("%s = %v, want %v", k, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s = %v, want %v", k, got, want)
			}
		}
	}
	// A recycled SPLT buffer starts empty.
	sp := s.splt
	a.end(x)
	y := a.start()
	if y.st.d[0].pkts != 0 || y.st.splt != sp || sp.n != 0 {
		t.Fatalf("SPLT buffer not recycled empty: %+v", y.st.splt)
	}
	if New(0).start().st.splt != nil {
		t.Fatal("SPLT buffer allocated with N = 0")
	}
}

func TestOptions(t *testing.T) {
	o := NewOptions()
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	o.RegisterFlags(fs)
	if err := fs.Parse([]string{"--splt", "10"}); err != nil || o.SPLT != 10 || o.Validate() != nil {
		t.Fatalf("--splt 10: %v %+v", err, o)
	}
	for _, bad := range []int{-1, MaxSPLT + 1} {
		o.SPLT = bad
		if o.Validate() == nil {
			t.Errorf("--splt %d accepted", bad)
		}
	}
	if _, ok := flow.LookupAnalyzer("features"); !ok {
		t.Fatal("features not registered")
	}
}

// reference keeps every sample and computes the statistics in two passes.
type reference struct {
	ps, piat [3][]float64 // bi, src2dst, dst2src
	last     [3]int64
	seen     [3]bool
	clock    int64
	started  bool
}

func (r *reference) add(d int, ts int64, size uint64) {
	if r.started && ts < r.clock {
		ts = r.clock
	}
	r.started, r.clock = true, ts
	ms := floorMS(ts)
	for _, i := range []int{0, 1 + d} {
		if r.seen[i] {
			r.piat[i] = append(r.piat[i], float64(ms-r.last[i]))
		}
		r.seen[i], r.last[i] = true, ms
		r.ps[i] = append(r.ps[i], float64(size))
	}
}

func meanStd(x []float64) (float64, float64) {
	if len(x) == 0 {
		return 0, 0
	}
	var sum float64
	for _, v := range x {
		sum += v
	}
	m := sum / float64(len(x))
	if len(x) < 2 {
		return m, 0
	}
	var ss float64
	for _, v := range x {
		ss += (v - m) * (v - m)
	}
	return m, math.Sqrt(ss / float64(len(x)-1))
}

func close(a, b float64) bool {
	return math.Abs(a-b) <= 1e-6*math.Max(math.Abs(a), math.Abs(b)) || math.Abs(a-b) < 1e-9
}

// FuzzState feeds the state arbitrary packets (direction, a signed time
// step, size, flags) and checks every output against sample-keeping
// two-pass statistics, and the invariants of sane.
func FuzzState(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 60, 2, 1, 5, 0, 0, 60, 0x12})
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 0x80, 0, 0, 0, 0, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		a := New(10)
		x := a.start()
		s := &x.st
		var ref reference
		ts := int64(1_700_000_000) * 1e9
		const rec = 6
		for len(data) >= rec {
			d := int(data[0] & 1)
			step := int64(int16(binary.BigEndian.Uint16(data[1:]))) * 37_000 // about ±1.2 s in 37 µs steps
			size := uint64(binary.BigEndian.Uint16(data[3:]))
			if data[0]&2 != 0 {
				size <<= 16 // jumbo/GSO-sized and beyond
			}
			ts += step
			s.add(flow.Dir(d), ts, size, data[5])
			ref.add(d, ts, size)
			data = data[rec:]
		}
		if s.d[0].pkts+s.d[1].pkts == 0 {
			return
		}
		v := s.values(10)
		sane(t, v)
		for i, p := range []string{"bidirectional_", "src2dst_", "dst2src_"} {
			m, sd := meanStd(ref.ps[i])
			if !close(v[p+"mean_ps"].(float64), m) || !close(v[p+"stddev_ps"].(float64), sd) {
				t.Fatalf("%sps: mean %v stddev %v, want %v %v", p, v[p+"mean_ps"], v[p+"stddev_ps"], m, sd)
			}
			m, sd = meanStd(ref.piat[i])
			if !close(v[p+"mean_piat_ms"].(float64), m) || !close(v[p+"stddev_piat_ms"].(float64), sd) {
				t.Fatalf("%spiat: mean %v stddev %v, want %v %v", p, v[p+"mean_piat_ms"], v[p+"stddev_piat_ms"], m, sd)
			}
			if got := v[p+"packets"].(float64); got != float64(len(ref.ps[i])) {
				t.Fatalf("%spackets = %v, want %d", p, got, len(ref.ps[i]))
			}
		}
		a.end(x)
	})
}

var _ event.Writer = (*mapWriter)(nil)
