package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"strconv"
	"time"
	"unsafe"

	"github.com/pktpipe/pktpipe/pipeline/event"
)

// The events pktpipe wrote are read back into a store that holds no
// pointers (a string arena, one op array, one record per event), so that
// 200k events cost the garbage collector nothing to keep: the sink, not
// the harness, is measured. Write gets them as replayed events, made
// afresh for each batch in a reused array, as the pipeline hands a sink
// batches of new events.
type store struct {
	arena   []byte
	ops     []op
	evs     []stored
	sensors []*event.Sensor
	names   map[string]span // each member name once in the arena
}

// span is arena[off:off+n].
type span struct{ off, n uint32 }

type stored struct {
	ts              int64
	flowID, pcapCnt uint64
	src, dst        [16]byte
	ip              uint8 // 0 none, 4, 6
	sport, dport    uint16
	proto           uint8
	vlan            [2]uint16
	cid, typ        span
	ops0, ops1      uint32
	sensor          int16 // index in sensors, -1 none
}

// replayed is one stored event as an event.Event: the common header
// fields are in its Header, the rest is replayed through the Writer in
// the order read, so the sink encodes it back to the same fields (its
// event_id is stamped anew: another value of the same form).
type replayed struct {
	event.Header
	typ event.Type
	ops []op
	st  *store
}

func (st *store) str(sp span) string {
	if sp.n == 0 {
		return ""
	}
	return unsafe.String(&st.arena[sp.off], sp.n)
}

// fill makes r event i.
func (st *store) fill(r *replayed, i int) {
	e := &st.evs[i]
	r.Header = event.Header{Timestamp: e.ts, FlowID: e.flowID, PcapCnt: e.pcapCnt, IfIndex: -1,
		SrcPort: e.sport, DestPort: e.dport, Proto: e.proto, VLAN: e.vlan, CommunityID: st.str(e.cid)}
	switch e.ip {
	case 4:
		r.SrcIP, r.DestIP = netip.AddrFrom4([4]byte(e.src[:4])), netip.AddrFrom4([4]byte(e.dst[:4]))
	case 6:
		r.SrcIP, r.DestIP = netip.AddrFrom16(e.src), netip.AddrFrom16(e.dst)
	}
	if e.sensor >= 0 {
		r.Sensor = st.sensors[e.sensor]
	}
	r.typ = event.Type(st.str(e.typ))
	r.ops = st.ops[e.ops0:e.ops1]
	r.st = st
}

type opKind uint8

const (
	opKey opKind = iota
	opString
	opUint
	opInt
	opFloat
	opBool
	opNull
	opBeginObject
	opEndObject
	opBeginArray
	opEndArray
)

// op is one Writer call: a string is arena[off:off+n], a number or bool
// is in v.
type op struct {
	kind   opKind
	off, n uint32
	v      uint64
}

func (e *replayed) Type() event.Type { return e.typ }

func (e *replayed) str(o op) string { return e.st.str(span{o.off, o.n}) }

func (e *replayed) EncodeBody(w event.Writer) {
	for _, o := range e.ops {
		switch o.kind {
		case opKey:
			w.Key(e.str(o))
		case opString:
			w.String(e.str(o))
		case opUint:
			w.Uint(o.v)
		case opInt:
			w.Int(int64(o.v))
		case opFloat:
			w.Float(math.Float64frombits(o.v))
		case opBool:
			w.Bool(o.v != 0)
		case opNull:
			w.Null()
		case opBeginObject:
			w.BeginObject()
		case opEndObject:
			w.EndObject()
		case opBeginArray:
			w.BeginArray()
		case opEndArray:
			w.EndArray()
		}
	}
}

// header keys that event.Encode writes from the Header (or derives).
var headerKeys = map[string]bool{
	"timestamp": true, "flow_id": true, "pcap_cnt": true, "in_iface": true, "vlan": true,
	"event_type": true, "event_id": true, "src_ip": true, "src_port": true, "dest_ip": true,
	"dest_port": true, "ip_v": true, "proto": true, "community_id": true, "host": true,
}

var protoNums = map[string]uint8{"ICMP": 1, "TCP": 6, "UDP": 17, "IPv6-ICMP": 58, "SCTP": 132, "GRE": 47}

// readEvents reads pktpipe's JSON lines into a store.
func readEvents(path string) (*store, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	st := &store{}
	sensors := map[string]int16{}
	for sc.Scan() {
		if err := st.parse(sc.Bytes(), sensors); err != nil {
			return nil, fmt.Errorf("%s: %v: %.200s", path, err, sc.Bytes())
		}
	}
	return st, sc.Err()
}

func (st *store) addString(s string) span {
	sp := span{uint32(len(st.arena)), uint32(len(s))}
	st.arena = append(st.arena, s...)
	return sp
}

func (st *store) addOp(k opKind, s string) {
	var sp span
	if k == opKey {
		// A name is stored once, so that every event passes the same
		// string for it, as the pipeline's events pass their constants.
		var ok bool
		if sp, ok = st.names[s]; !ok {
			sp = st.addString(s)
			if st.names == nil {
				st.names = map[string]span{}
			}
			st.names[s] = sp
		}
	} else {
		sp = st.addString(s)
	}
	st.ops = append(st.ops, op{kind: k, off: sp.off, n: sp.n})
}

func (st *store) parse(line []byte, sensors map[string]int16) error {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(line, &top); err != nil {
		return err
	}
	str := func(k string) string {
		var s string
		if v, ok := top[k]; ok {
			json.Unmarshal(v, &s)
		}
		return s
	}
	num := func(k string) uint64 {
		var n uint64
		if v, ok := top[k]; ok {
			json.Unmarshal(v, &n)
		}
		return n
	}
	ts, err := time.Parse("2006-01-02T15:04:05.000000-0700", str("timestamp"))
	if err != nil {
		return err
	}
	e := stored{ts: ts.UnixNano(), flowID: num("flow_id"), pcapCnt: num("pcap_cnt"), sensor: -1}
	e.typ = st.addString(str("event_type"))
	if a, err := netip.ParseAddr(str("src_ip")); err == nil {
		d, _ := netip.ParseAddr(str("dest_ip"))
		e.ip = 6
		if a.Is4() {
			e.ip = 4
		}
		e.src, e.dst = a.As16(), d.As16()
		if a.Is4() {
			s4, d4 := a.As4(), d.As4()
			copy(e.src[:], s4[:])
			copy(e.dst[:], d4[:])
		}
		e.sport, e.dport = uint16(num("src_port")), uint16(num("dest_port"))
		p := str("proto")
		if n, ok := protoNums[p]; ok {
			e.proto = n
		} else {
			n, _ := strconv.Atoi(p)
			e.proto = uint8(n)
		}
	}
	e.cid = st.addString(str("community_id"))
	var vlan []uint16
	if v, ok := top["vlan"]; ok {
		json.Unmarshal(v, &vlan)
		copy(e.vlan[:], vlan)
	}
	if host := str("host"); host != "" {
		i, ok := sensors[host]
		if !ok {
			i = int16(len(st.sensors))
			st.sensors = append(st.sensors, &event.Sensor{Host: host})
			sensors[host] = i
		}
		e.sensor = i
	}
	// The rest, in the line's order.
	e.ops0 = uint32(len(st.ops))
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	if _, err := d.Token(); err != nil { // {
		return err
	}
	for d.More() {
		k, err := d.Token()
		if err != nil {
			return err
		}
		key := k.(string)
		if headerKeys[key] {
			var skip json.RawMessage
			if err := d.Decode(&skip); err != nil {
				return err
			}
			continue
		}
		st.addOp(opKey, key)
		if err := st.value(d); err != nil {
			return err
		}
	}
	e.ops1 = uint32(len(st.ops))
	st.evs = append(st.evs, e)
	return nil
}

// value records one JSON value from d: a scalar, or an object or array
// down to its end.
func (st *store) value(d *json.Decoder) error {
	var stack []bool // true: object
	keyNext := false
	for {
		t, err := d.Token()
		if err == io.EOF {
			return io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
		switch v := t.(type) {
		case json.Delim:
			switch v {
			case '{':
				st.ops = append(st.ops, op{kind: opBeginObject})
				stack = append(stack, true)
			case '[':
				st.ops = append(st.ops, op{kind: opBeginArray})
				stack = append(stack, false)
			case '}':
				st.ops = append(st.ops, op{kind: opEndObject})
				stack = stack[:len(stack)-1]
			case ']':
				st.ops = append(st.ops, op{kind: opEndArray})
				stack = stack[:len(stack)-1]
			}
		case string:
			if keyNext {
				st.addOp(opKey, v)
				keyNext = false
				continue
			}
			st.addOp(opString, v)
		case json.Number:
			s := v.String()
			if u, err := strconv.ParseUint(s, 10, 64); err == nil {
				st.ops = append(st.ops, op{kind: opUint, v: u})
			} else if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				st.ops = append(st.ops, op{kind: opInt, v: uint64(i)})
			} else {
				f, _ := strconv.ParseFloat(s, 64)
				st.ops = append(st.ops, op{kind: opFloat, v: math.Float64bits(f)})
			}
		case bool:
			b := uint64(0)
			if v {
				b = 1
			}
			st.ops = append(st.ops, op{kind: opBool, v: b})
		case nil:
			st.ops = append(st.ops, op{kind: opNull})
		}
		if len(stack) == 0 {
			return nil
		}
		// In an object, a key comes after its start or a complete value.
		keyNext = stack[len(stack)-1] && st.ops[len(st.ops)-1].kind != opKey
	}
}
