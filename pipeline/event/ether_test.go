package event_test

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/sinks/encode"
)

// A flow's ether object lists each side's MACs once, as Suricata's flow
// records do; a second MAC on a side (asymmetric routing) is listed too.
func TestFlowEther(t *testing.T) {
	a, b, r := [6]byte{0, 0x11, 0x22, 0xaa, 0xbb, 0xcc}, [6]byte{2, 0, 0, 0, 0, 1}, [6]byte{0xfe, 0xff, 0, 0, 0, 9}
	for _, tc := range []struct {
		ether     [2]event.Ether
		src, dest []any
	}{
		{[2]event.Ether{}, nil, nil},
		{[2]event.Ether{{Src: a, Dst: b, Valid: true}}, []any{"00:11:22:aa:bb:cc"}, []any{"02:00:00:00:00:01"}},
		{[2]event.Ether{{Src: a, Dst: b, Valid: true}, {Src: b, Dst: a, Valid: true}}, []any{"00:11:22:aa:bb:cc"}, []any{"02:00:00:00:00:01"}},
		{[2]event.Ether{{Src: a, Dst: b, Valid: true}, {Src: r, Dst: a, Valid: true}}, []any{"00:11:22:aa:bb:cc"}, []any{"02:00:00:00:00:01", "fe:ff:00:00:00:09"}},
		{[2]event.Ether{{}, {Src: b, Dst: a, Valid: true}}, []any{"00:11:22:aa:bb:cc"}, []any{"02:00:00:00:00:01"}},
	} {
		f := &event.Flow{Header: event.Header{SrcIP: netip.MustParseAddr("10.0.0.1"), DestIP: netip.MustParseAddr("10.0.0.2"), Proto: 17}, Ether: tc.ether}
		var m map[string]any
		if err := json.Unmarshal(encode.NewJSON().Append(nil, f), &m); err != nil {
			t.Fatal(err)
		}
		e, ok := m["ether"].(map[string]any)
		if tc.src == nil {
			if ok {
				t.Errorf("%v: ether %v, want none", tc.ether, e)
			}
			continue
		}
		if !reflect.DeepEqual(e["src_macs"], tc.src) || !reflect.DeepEqual(e["dest_macs"], tc.dest) || len(e) != 2 {
			t.Errorf("%v: ether %v, want src_macs %v dest_macs %v", tc.ether, e, tc.src, tc.dest)
		}
	}
}
