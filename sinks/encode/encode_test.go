package encode

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/vmihailenco/msgpack/v5"
)

// allKinds is an event whose body calls every Writer method, nested.
type allKinds struct {
	event.Header
	str string
}

func (*allKinds) Type() event.Type { return "test" }

func (a *allKinds) EncodeBody(w event.Writer) {
	w.Key("s")
	w.String(a.str)
	w.Key("u")
	w.Uint(math.MaxUint64)
	w.Key("i")
	w.Int(math.MinInt64)
	w.Key("f")
	w.Float(1.5)
	w.Key("nan")
	w.Float(math.NaN())
	w.Key("inf")
	w.Float(math.Inf(-1))
	w.Key("t")
	w.Bool(true)
	w.Key("b")
	w.Bool(false)
	w.Key("n")
	w.Null()
	w.Key("ts")
	w.Time(1_700_000_000_123_456_789)
	w.Key("ip4")
	w.IP(netip.MustParseAddr("10.0.0.1"))
	w.Key("ip6")
	w.IP(netip.MustParseAddr("fd00::1"))
	w.Key("noip")
	w.IP(netip.Addr{})
	w.Key("empty_obj")
	w.BeginObject()
	w.EndObject()
	w.Key("empty_arr")
	w.BeginArray()
	w.EndArray()
	w.Key("nest")
	w.BeginArray()
	w.BeginObject()
	w.Key("a")
	w.BeginArray()
	w.Int(-1)
	w.BeginArray()
	w.EndArray()
	w.String("x")
	w.EndArray()
	w.Key("b")
	w.BeginObject()
	w.Key("c")
	w.Uint(3)
	w.EndObject()
	w.EndObject()
	w.Uint(7)
	w.BeginObject()
	w.EndObject()
	w.EndArray()
}

func newAllKinds(s string) *allKinds {
	return &allKinds{
		Header: event.Header{
			Timestamp: 1_700_000_000_000_000_000, FlowID: 42, IfIndex: -1,
			SrcIP: netip.MustParseAddr("192.0.2.1"), DestIP: netip.MustParseAddr("2001:db8::2"),
			SrcPort: 1234, DestPort: 443, Proto: 6, VLAN: [2]uint16{10, 20},
		},
		str: s,
	}
}

// num is a number normalised to text, so that JSON and msgpack decodings
// (json.Number vs int8/uint64/float64...) compare equal.
type num string

func normNumber(s string) num {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return num(strconv.FormatInt(i, 10))
	}
	if u, err := strconv.ParseUint(s, 10, 64); err == nil {
		return num(strconv.FormatUint(u, 10))
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		panic(err)
	}
	return num(strconv.FormatFloat(f, 'g', -1, 64))
}

// normalise rewrites decoded numbers as num, recursively.
func normalise(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = normalise(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = normalise(e)
		}
		return s
	case json.Number:
		return normNumber(string(x))
	case float64:
		return normNumber(strconv.FormatFloat(x, 'g', -1, 64))
	case float32:
		return normNumber(strconv.FormatFloat(float64(x), 'g', -1, 32))
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return num(strconv.FormatInt(rv.Int(), 10))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return num(strconv.FormatUint(rv.Uint(), 10))
	}
	return v
}

func decodeJSON(t testing.TB, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, b)
	}
	if d.More() {
		t.Fatalf("trailing data after the JSON value: %s", b)
	}
	return normalise(v)
}

func decodeMsgpack(t testing.TB, b []byte) any {
	t.Helper()
	d := msgpack.NewDecoder(bytes.NewReader(b))
	v, err := d.DecodeInterface()
	if err != nil {
		t.Fatalf("output is not msgpack: %v\n%x", err, b)
	}
	if _, err := d.DecodeInterface(); err == nil {
		t.Fatalf("trailing data after the msgpack value: %x", b)
	}
	return normalise(v)
}

func TestAllWriterMethods(t *testing.T) {
	ev := newAllKinds("plain")
	got := decodeJSON(t, NewJSON().Append(nil, ev))
	want := map[string]any{
		"timestamp":  "2023-11-14T22:13:20.000000+0000",
		"flow_id":    num("42"),
		"vlan":       []any{num("10"), num("20")},
		"event_type": "test",
		"src_ip":     "192.0.2.1", "src_port": num("1234"),
		"dest_ip": "2001:db8::2", "dest_port": num("443"),
		"ip_v":  num("4"),
		"proto": "TCP",
		"s":     "plain",
		"u":     num("18446744073709551615"),
		"i":     num("-9223372036854775808"),
		"f":     num("1.5"),
		"nan":   nil, "inf": nil,
		"t": true, "b": false, "n": nil,
		"ts":        "2023-11-14T22:13:20.123456+0000",
		"ip4":       "10.0.0.1",
		"ip6":       "fd00::1",
		"noip":      nil,
		"empty_obj": map[string]any{},
		"empty_arr": []any{},
		"nest": []any{
			map[string]any{
				"a": []any{num("-1"), []any{}, "x"},
				"b": map[string]any{"c": num("3")},
			},
			num("7"),
			map[string]any{},
		},
	}
	if !reflect.DeepEqual(got, any(want)) {
		t.Errorf("JSON decoded to\n%#v\nwant\n%#v", got, want)
	}
	gotMP := decodeMsgpack(t, NewMsgpack().Append(nil, ev))
	if !reflect.DeepEqual(gotMP, any(want)) {
		t.Errorf("msgpack decoded to\n%#v\nwant\n%#v", gotMP, want)
	}
}

func TestAppendKeepsDst(t *testing.T) {
	for _, f := range []string{FormatJSON, FormatMsgpack} {
		enc, err := New(f)
		if err != nil {
			t.Fatal(err)
		}
		if enc.Format() != f {
			t.Errorf("Format() = %q, want %q", enc.Format(), f)
		}
		one := enc.Append(nil, newAllKinds("a"))
		two := enc.Append([]byte("prefix"), newAllKinds("a"))
		if !bytes.Equal(two, append([]byte("prefix"), one...)) {
			t.Errorf("%s: Append does not append to dst", f)
		}
		// Reusing the encoder gives identical output (no state leaks).
		if again := enc.Append(nil, newAllKinds("a")); !bytes.Equal(again, one) {
			t.Errorf("%s: second Append differs", f)
		}
	}
}

func TestNewUnknownFormat(t *testing.T) {
	_, err := New("xml")
	if err == nil || !strings.Contains(err.Error(), "json") || !strings.Contains(err.Error(), "msgpack") || !strings.Contains(err.Error(), "xml") {
		t.Fatalf("New(xml) error = %v, want one naming the format and the choices", err)
	}
}

func TestFlowEvent(t *testing.T) {
	f := &event.Flow{
		Header: event.Header{
			Timestamp: 1_763_892_915_123_456_000, FlowID: 1 << 60, IfIndex: 2, PcapCnt: 9,
			SrcIP: netip.MustParseAddr("10.1.1.1"), DestIP: netip.MustParseAddr("10.2.2.2"),
			SrcPort: 40000, DestPort: 443, Proto: 6, CommunityID: "1:abc=",
			Sensor: &event.Sensor{Host: "s1", IfName: func(i int32) string { return map[int32]string{2: "eth0"}[i] }},
		},
		PktsToServer: 10, PktsToClient: 8, BytesToServer: 1000, BytesToClient: 9000,
		Start: 1_763_892_900_000_000_000, End: 1_763_892_915_000_000_000,
		State: "closed", Reason: "fin", TCPFlags: 0x1b, TCPFlagsTS: 0x1b, TCPFlagsTC: 0x1a,
		Tunnel: "vxlan", OuterSrc: netip.MustParseAddr("172.16.0.1"), OuterDst: netip.MustParseAddr("172.16.0.2"),
		Extra: []event.Extension{ext{}},
	}
	out := NewJSON().Append(nil, f)
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("flow JSON does not parse: %v\n%s", err, out)
	}
	for _, k := range []string{"timestamp", "flow_id", "pcap_cnt", "in_iface", "event_type", "src_ip", "src_port",
		"dest_ip", "dest_port", "ip_v", "proto", "community_id", "flow", "tcp", "tunnel", "rtt", "host"} {
		if _, ok := m[k]; !ok {
			t.Errorf("flow JSON lacks %q: %s", k, out)
		}
	}
	if m["in_iface"] != "eth0" || m["host"] != "s1" || m["ip_v"] != 4.0 {
		t.Errorf("in_iface %v host %v ip_v %v, want eth0 s1 4", m["in_iface"], m["host"], m["ip_v"])
	}
	fl := m["flow"].(map[string]any)
	if fl["start"] != "2025-11-23T10:15:00.000000+0000" || fl["age"] != 15.0 || fl["reason"] != "fin" {
		t.Errorf("flow object = %v", fl)
	}
	if tcp := m["tcp"].(map[string]any); tcp["tcp_flags"] != "1b" || tcp["syn"] != true {
		t.Errorf("tcp object = %v", tcp)
	}
	// msgpack carries the same structure and values.
	if j, mp := decodeJSON(t, out), decodeMsgpack(t, NewMsgpack().Append(nil, f)); !reflect.DeepEqual(j, mp) {
		t.Errorf("msgpack differs from JSON:\n%#v\n%#v", mp, j)
	}
}

type ext struct{}

func (ext) Key() string { return "rtt" }
func (ext) Encode(w event.Writer) {
	w.BeginObject()
	w.Key("handshake_us")
	w.Float(1234.5)
	w.EndObject()
}

func TestTime(t *testing.T) {
	const layout = "2006-01-02T15:04:05.000000-0700"
	for _, ns := range []int64{0, 1, 999, 1000, -1, -1_000_000_001, 1_763_892_915_123_456_789,
		math.MaxInt64, math.MinInt64, 951_782_400_000_000_000 /* 2000-02-29 */} {
		want := time.Unix(0, ns).UTC().Format(layout)
		if got := string(appendEVETime(nil, ns)); got != want {
			t.Errorf("appendEVETime(%d) = %s, want %s", ns, got, want)
		}
		var c eveSeconds // also after another time in the same second
		for _, at := range []int64{ns, ns - ns%1e9, ns} {
			if got := string(c.append(nil, at)); got != time.Unix(0, at).UTC().Format(layout) {
				t.Errorf("eveSeconds.append(%d) = %s after %d", at, got, c.sec)
			}
		}
		if len(want) != eveTimeLen {
			t.Errorf("%s: length %d, want %d", want, len(want), eveTimeLen)
		}
	}
}

func TestFloats(t *testing.T) {
	for _, f := range []float64{0, 1, -1.25, 1e21, 1e-7, 123456789.125, math.MaxFloat64, math.SmallestNonzeroFloat64, math.Copysign(0, -1)} {
		e := NewJSON()
		e.Float(f)
		out := e.Bytes()
		var back float64
		if err := json.Unmarshal(out, &back); err != nil || back != f {
			t.Errorf("Float(%v) wrote %s, decodes to %v, %v", f, out, back, err)
		}
		m := NewMsgpack()
		m.Float(f)
		var mback float64
		if err := msgpack.Unmarshal(m.Bytes(), &mback); err != nil || mback != f {
			t.Errorf("msgpack Float(%v) decodes to %v, %v", f, mback, err)
		}
	}
}

// TestMsgpackSizes crosses every length and integer boundary of the format.
func TestMsgpackSizes(t *testing.T) {
	ints := []int64{0, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64,
		-1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, math.MinInt32 - 1, math.MinInt64}
	for _, v := range ints {
		e := NewMsgpack()
		e.Int(v)
		var got int64
		if err := msgpack.Unmarshal(e.Bytes(), &got); err != nil || got != v {
			t.Errorf("Int(%d) decodes to %d, %v", v, got, err)
		}
		if v >= 0 {
			e.Uint(uint64(v))
			var u uint64
			if err := msgpack.Unmarshal(e.Bytes(), &u); err != nil || u != uint64(v) {
				t.Errorf("Uint(%d) decodes to %d, %v", v, u, err)
			}
		}
	}
	for _, n := range []int{0, 31, 32, 255, 256, 65535, 65536} {
		s := strings.Repeat("é", n/2) + strings.Repeat("x", n%2)
		e := NewMsgpack()
		e.String(s)
		var got string
		if err := msgpack.Unmarshal(e.Bytes(), &got); err != nil || got != s {
			t.Errorf("String of %d bytes: decode error %v or mismatch", len(s), err)
		}
	}
	for _, ip := range []string{"0.0.0.0", "255.255.255.255", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "1:2:3:4:5:6:7:8", "fe80::1%eth0", "::ffff:10.0.0.1"} {
		e := NewMsgpack()
		e.BeginArray()
		e.IP(netip.MustParseAddr(ip))
		e.Int(-1) // checks that nothing after the address shifted
		e.EndArray()
		b := e.Bytes()
		if hdr := 1 + len(ip)/32; len(b) != 1+hdr+len(ip)+1 {
			t.Errorf("IP(%s) takes %d bytes, not the smallest str encoding", ip, len(b))
		}
		var got []any
		if err := msgpack.Unmarshal(b, &got); err != nil || len(got) != 2 || got[0] != ip || got[1] != int8(-1) {
			t.Errorf("IP(%s) decodes to %v, %v", ip, got, err)
		}
	}
	for _, n := range []int{15, 16, 65535, 65536} {
		e := NewMsgpack()
		e.BeginObject()
		e.Key("arr")
		e.BeginArray()
		for i := range n {
			e.Int(int64(i))
		}
		e.EndArray()
		e.Key("map")
		e.BeginObject()
		for i := range n {
			e.Key(strconv.Itoa(i))
			e.Bool(true)
		}
		e.EndObject()
		e.EndObject()
		var got struct {
			Arr []int           `msgpack:"arr"`
			Map map[string]bool `msgpack:"map"`
		}
		if err := msgpack.Unmarshal(e.Bytes(), &got); err != nil || len(got.Arr) != n || len(got.Map) != n || got.Arr[n-1] != n-1 {
			t.Errorf("containers of %d entries: %v, got %d/%d", n, err, len(got.Arr), len(got.Map))
		}
	}
}

var escapeCases = []string{
	"", "plain", `quote " and \ backslash`, "ctl \x00\x01\x1f\x7f \b\f\n\r\t end",
	"é ü 中文 🎉", "\u2028\u2029", "bad \xff byte", "trunc \xe4\xb8", "\xc3\x28", "\xed\xa0\x80 surrogate",
	"\ufffd literal", "</script>&<>",
}

func TestEscaping(t *testing.T) {
	for _, s := range escapeCases {
		want := string([]rune(s)) // each invalid byte becomes U+FFFD
		var got string
		out := appendJSONString(nil, s)
		if err := json.Unmarshal(out, &got); err != nil || got != want {
			t.Errorf("%q: wrote %s, decodes to %q (%v), want %q", s, out, got, err, want)
		}
		for _, c := range out {
			if c < 0x20 {
				t.Errorf("%q: raw control byte %#x in output %q", s, c, out)
			}
		}
		e := NewMsgpack()
		e.String(s)
		var mgot string
		if err := msgpack.Unmarshal(e.Bytes(), &mgot); err != nil || mgot != want {
			t.Errorf("msgpack %q: decodes to %q (%v), want %q", s, mgot, err, want)
		}
	}
	// Keys are escaped too.
	e := NewJSON()
	e.BeginObject()
	e.Key("k\"\n\xff")
	e.Null()
	e.EndObject()
	var m map[string]any
	if err := json.Unmarshal(e.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["k\"\n\ufffd"]; !ok {
		t.Errorf("escaped key lost: %v", m)
	}
}

func FuzzJSONString(f *testing.F) {
	for _, s := range escapeCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := appendJSONString(nil, s)
		if !json.Valid(out) {
			t.Fatalf("invalid JSON for %q: %s", s, out)
		}
		var got string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		if want := string([]rune(s)); got != want {
			t.Fatalf("%q round-trips to %q, want %q", s, got, want)
		}
	})
}

// FuzzJSONKey: any name, met on a fresh encoder, after other names and
// again once remembered, gives an object that decodes to it.
func FuzzJSONKey(f *testing.F) {
	for _, s := range append(escapeCases, "", "a", "plain_name") {
		f.Add(s)
	}
	var j JSON // shared across inputs: names remembered from earlier ones
	f.Fuzz(func(t *testing.T, k string) {
		for range 2 {
			j.Reset(nil)
			j.BeginObject()
			j.Key("other")
			j.Uint(1)
			j.Key(k)
			j.Uint(2)
			j.EndObject()
			out := j.Bytes()
			var m map[string]uint64
			if err := json.Unmarshal(out, &m); err != nil {
				t.Fatalf("invalid JSON for name %q: %s", k, out)
			}
			if want := string([]rune(k)); m[want] != 2 && want != "other" {
				t.Fatalf("name %q lost in %s", k, out)
			}
		}
		var fresh JSON
		fresh.Reset(nil)
		fresh.BeginObject()
		fresh.Key(k)
		fresh.Uint(3)
		fresh.EndObject()
		if out := fresh.Bytes(); !json.Valid(out) {
			t.Fatalf("invalid JSON for name %q first: %s", k, out)
		}
	})
}

func TestUnbalancedPanics(t *testing.T) {
	for _, w := range []event.Writer{NewJSON(), NewMsgpack()} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%T: EndObject at depth 0 did not panic", w)
				}
			}()
			w.EndObject()
		}()
	}
}

func benchFlow() *event.Flow {
	return &event.Flow{
		Header: event.Header{
			Timestamp: 1_763_892_915_123_456_000, FlowID: 1 << 60, IfIndex: 2,
			SrcIP: netip.MustParseAddr("10.1.1.1"), DestIP: netip.MustParseAddr("2001:db8::1"),
			SrcPort: 40000, DestPort: 443, Proto: 6, CommunityID: "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
		},
		PktsToServer: 10, PktsToClient: 8, BytesToServer: 1000, BytesToClient: 9000,
		Start: 1_763_892_900_000_000_000, End: 1_763_892_915_000_000_000,
		State: "closed", Reason: "fin", TCPFlags: 0x1b, TCPFlagsTS: 0x1b, TCPFlagsTC: 0x1a,
		Extra: []event.Extension{ext{}},
	}
}

func TestZeroAllocs(t *testing.T) {
	ev := benchFlow()
	for _, f := range []string{FormatJSON, FormatMsgpack} {
		enc, _ := New(f)
		buf := enc.Append(nil, ev) // warm: scratch buffers and dst grow once
		allocs := testing.AllocsPerRun(1000, func() {
			buf = enc.Append(buf[:0], ev)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per event, want 0", f, allocs)
		}
	}
}

func BenchmarkAppend(b *testing.B) {
	ev := benchFlow()
	for _, f := range []string{FormatJSON, FormatMsgpack} {
		b.Run(f, func(b *testing.B) {
			enc, _ := New(f)
			buf := enc.Append(nil, ev)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				buf = enc.Append(buf[:0], ev)
			}
		})
	}
}

func BenchmarkJSONString(b *testing.B) {
	s := strings.Repeat("server.example.com ", 4) + "\t\"x\""
	buf := make([]byte, 0, 256)
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	for b.Loop() {
		buf = appendJSONString(buf[:0], s)
	}
}

// plainPrefix must stop at the first byte that needs escaping wherever it
// sits in an eight-byte block (it may stop earlier, never later).
func TestPlainPrefix(t *testing.T) {
	for _, bad := range []byte{0, 0x1f, '"', '\\', 0x80, 0xff} {
		for n := 1; n <= 20; n++ {
			for at := 0; at < n; at++ {
				b := []byte(strings.Repeat("a~ !", 5)[:n])
				b[at] = bad
				if got := plainPrefix(string(b)); got != at {
					t.Fatalf("plainPrefix(%q) = %d, want %d", b, got, at)
				}
			}
		}
	}
	if got := plainPrefix("abcdefghijklmnopq"); got != 17 {
		t.Errorf("plain string: %d", got)
	}
}

// TestKeyEscapes: names that need escaping are escaped every time, also
// after plain names were remembered and when the same name comes again
// (Key's memory of plain names must never take them for plain).
func TestKeyEscapes(t *testing.T) {
	names := []string{"plain", `q"uote`, "tab\tname", `back\slash`, "plain", "ctl\x01", "long_plain_name_x", `q"uote`, ""}
	var j JSON
	// The empty name first, on an encoder that has remembered nothing.
	j.Reset(nil)
	j.BeginObject()
	j.Key("")
	j.Uint(7)
	j.EndObject()
	if got := string(j.Bytes()); got != `{"":7}` {
		t.Fatalf("empty name on a fresh encoder: %s", got)
	}
	for range 3 {
		j.Reset(nil)
		j.BeginObject()
		for i, k := range names {
			j.Key(k)
			j.Uint(uint64(i))
		}
		j.EndObject()
		got := j.Bytes()
		var m map[string]uint64
		if err := json.Unmarshal(got, &m); err != nil {
			t.Fatalf("invalid JSON %s: %v", got, err)
		}
		for i, k := range names {
			if v, ok := m[k]; !ok || (v != uint64(i) && names[v] != k) {
				t.Errorf("name %q lost or wrong in %s", k, got)
			}
		}
	}
}

// TestAppendMicros: the fast path writes exactly what strconv's shortest
// 'g' format writes, wherever it claims a value (and claims the values it
// exists for: milliseconds from nanoseconds).
func TestAppendMicros(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var claimed int
	check := func(v float64) {
		t.Helper()
		got, ok := appendMicros(nil, v)
		if !ok {
			return
		}
		claimed++
		if want := strconv.AppendFloat(nil, v, 'g', -1, 64); string(got) != string(want) {
			t.Fatalf("appendMicros(%v) = %q, strconv %q", v, got, want)
		}
	}
	for range 200_000 {
		ns := rng.Int64N(2e12) - 1e12 // ±16 minutes, the range it claims
		check(float64(ns) / 1e6)
		check(float64(rng.Int64N(1e6)) / 1e6)
		check(math.Float64frombits(rng.Uint64())) // mostly unclaimed
		check(rng.Float64() * 1000)
	}
	for _, v := range []float64{1e-4, 1e-4 - 1e-12, 0.000123, 0.1, 0.3, 1, 5, 123456, 999999.999999, 1e6, 1e6 - 1e-6, -0.5, 0, math.Copysign(0, -1), 1.5e-5, 100.25} {
		check(v)
	}
	if claimed < 350_000 { // about 390,000: a few products are not whole
		t.Errorf("claimed only %d values", claimed)
	}
}
