package pcapfile

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
)

type fakeDecoder struct{}

// Decode gives every packet an IPv4 flow so the engine dispatches it.
func (fakeDecoder) DecodeIn(p *packet.Packet, _ *packet.Extra) {
	p.Meta.IPVersion, p.Meta.Proto = 4, packet.ProtoUDP
	p.Meta.Src = netip.AddrFrom4([4]byte{10, 0, 0, p.Data[0]})
	p.Meta.Dst = netip.AddrFrom4([4]byte{10, 0, 0, 1})
}

type countProc struct{ n *atomic.Uint64 }

func (c countProc) Process(b *packet.Batch, _ *pipeline.Emitter) { c.n.Add(uint64(b.Len())) }
func (countProc) Flush(int64, *pipeline.Emitter)                 {}

type nopSink struct{}

func (nopSink) Write([]event.Event) error { return nil }
func (nopSink) Flush() error              { return nil }
func (nopSink) Close() error              { return nil }

// TestEngine runs the source inside the engine on a capture whose last
// record is cut: every good packet reaches the workers and the error,
// naming file and offset, comes out of Engine.Run.
func TestEngine(t *testing.T) {
	data, _ := genPcap(t, false, 1000, base, time.Millisecond)
	f := writeTemp(t, data[:len(data)-100])
	src, err := New(Config{Files: []string{f}})
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Uint64
	e, err := pipeline.New(pipeline.Config{Workers: 2, BatchPackets: 64}, pipeline.Parts{
		Sources:      []pipeline.Source{src},
		NewDecoder:   func() pipeline.Decoder { return fakeDecoder{} },
		NewProcessor: func(int) pipeline.Processor { return countProc{&n} },
		Sink:         nopSink{},
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), f+": offset ") || !strings.Contains(err.Error(), "truncated packet record") {
		t.Fatalf("engine error %v", err)
	}
	if res.Packets != 999 || n.Load() != 999 {
		t.Fatalf("engine read %d, workers saw %d packets, want 999", res.Packets, n.Load())
	}
}

func TestProgressWanted(t *testing.T) {
	f, err := os.Create(writeTemp(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if ProgressWanted(f) || ProgressWanted(nil) {
		t.Fatal("a regular file is not a terminal")
	}
}
