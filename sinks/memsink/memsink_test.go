package memsink

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/sinks/encode"
)

var _ pipeline.Sink = (*Sink)(nil)

func flow(id uint64) *event.Flow {
	return &event.Flow{
		Header: event.Header{
			Timestamp: 1e18, FlowID: id, IfIndex: -1,
			SrcIP: netip.MustParseAddr("10.0.0.1"), DestIP: netip.MustParseAddr("10.0.0.2"),
			SrcPort: 1000, DestPort: 443, Proto: 6,
		},
		State: "closed", Reason: "fin",
	}
}

func TestEncodesAtWriteTime(t *testing.T) {
	for _, f := range []string{"json", "msgpack"} {
		enc, _ := encode.New(f)
		s := New(enc)
		ev := flow(1<<63 + 1)
		batch := []event.Event{ev}
		if err := s.Write(batch); err != nil {
			t.Fatal(err)
		}
		ev.FlowID = 99 // the engine reuses events after Write
		batch[0] = nil
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		evs := s.Events()
		if len(evs) != 1 || evs[0]["flow_id"] != json.Number("9223372036854775809") {
			t.Fatalf("%s: events %v", f, evs)
		}
		if p, ok := Int(evs[0]["dest_port"]); !ok || p != 443 {
			t.Errorf("%s: dest_port %v", f, evs[0]["dest_port"])
		}
		if n := len(s.ByType(event.TypeFlow)); n != 1 {
			t.Errorf("%s: ByType(flow) = %d events", f, n)
		}
	}
}

func TestSameViewForBothFormats(t *testing.T) {
	j, m := New(nil), New(encode.NewMsgpack())
	for _, s := range []*Sink{j, m} {
		if err := s.Write([]event.Event{flow(7)}); err != nil {
			t.Fatal(err)
		}
	}
	if a, b := j.Events(), m.Events(); !reflect.DeepEqual(a, b) {
		t.Errorf("JSON view %v\nmsgpack view %v", a, b)
	}
}

func TestFailWrite(t *testing.T) {
	s := New(nil)
	s.FailWrite = errors.New("boom")
	if err := s.Write([]event.Event{flow(1)}); err == nil || s.Len() != 0 {
		t.Fatalf("Write = %v, Len %d", err, s.Len())
	}
}

// TestWithEngine runs the real engine with a processor that emits one flow
// per packet: every event reaches the sink, which is flushed and closed.
func TestWithEngine(t *testing.T) {
	s := New(nil)
	e, err := pipeline.New(pipeline.Config{Workers: 2}, pipeline.Parts{
		Sources:      []pipeline.Source{src{n: 300}},
		NewDecoder:   func() pipeline.Decoder { return dec{} },
		NewProcessor: func(int) pipeline.Processor { return &proc{} },
		Sink:         s,
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 300 || s.Len() != 300 || !s.Closed() {
		t.Fatalf("result %+v, sink holds %d, closed %v", res, s.Len(), s.Closed())
	}
	seen := map[json.Number]bool{}
	for _, ev := range s.Events() {
		seen[ev["flow_id"].(json.Number)] = true
	}
	if len(seen) != 300 {
		t.Errorf("%d distinct events, want 300", len(seen))
	}
}

type src struct{ n int }

func (src) Name() string { return "test" }
func (src) Close() error { return nil }
func (s src) Run(ctx context.Context, pool *packet.Pool, out chan<- *packet.Batch) error {
	b := pool.Get()
	for i := range s.n {
		if b.Full(4) {
			out <- b
			b = pool.Get()
		}
		p := b.Append([]byte{byte(i >> 8), byte(i), 0, 0})
		p.Timestamp = int64(i)
	}
	out <- b
	return nil
}

type dec struct{}

// Decode makes each packet its own UDP flow, numbered by its first bytes.
func (dec) DecodeIn(p *packet.Packet, _ *packet.Extra) {
	m := &p.Meta
	m.IPVersion, m.Proto = 4, packet.ProtoUDP
	m.Src, m.Dst = netip.AddrFrom4([4]byte{10, 0, p.Data[0], p.Data[1]}), netip.MustParseAddr("10.1.0.1")
	m.SrcPort, m.DstPort = 1000, 53
}

type proc struct{}

func (*proc) Process(b *packet.Batch, out *pipeline.Emitter) {
	for i := range b.Packets {
		p := &b.Packets[i]
		out.Emit(&event.Flow{Header: event.Header{
			Timestamp: p.Timestamp, FlowID: uint64(p.Data[0])<<8 | uint64(p.Data[1]) + 1, IfIndex: -1,
			SrcIP: p.Meta.Src, DestIP: p.Meta.Dst, Proto: 17,
		}})
	}
}
func (*proc) Flush(int64, *pipeline.Emitter) {}
