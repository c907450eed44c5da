package quic

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"runtime"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/stages/decode"
	"github.com/pktpipe/pktpipe/stages/flow"
	"github.com/pktpipe/pktpipe/stages/reassembly"
)

// quicEvent is a quic event (its PcapCnt is the index of the packet whose
// processing emitted it; TestSuricataVerify checks pcap_cnt on a real
// pipeline run).
type quicEvent struct {
	*event.QUIC
}

// result is what running a capture gave.
type result struct {
	events  []quicEvent
	flows   []*event.Flow
	packets int
}

type pktSource interface {
	ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// openCapture opens a pcap or pcapng file.
func openCapture(t testing.TB, path string) (pktSource, func(gopacket.CaptureInfo) packet.LinkType) {
	t.Helper()
	src, lt, err := readCapture(path)
	if err != nil {
		t.Fatal(err)
	}
	return src, lt
}

func readCapture(path string) (pktSource, func(gopacket.CaptureInfo) packet.LinkType, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if len(raw) >= 4 && bytes.Equal(raw[:4], []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
		r, err := pcapgo.NewNgReader(bytes.NewReader(raw), pcapgo.DefaultNgReaderOptions)
		if err != nil {
			return nil, nil, err
		}
		return r, func(ci gopacket.CaptureInfo) packet.LinkType {
			if ifc, err := r.Interface(ci.InterfaceIndex); err == nil {
				return packet.LinkType(ifc.LinkType)
			}
			return packet.LinkType(r.LinkType())
		}, nil
	}
	r, err := pcapgo.NewReader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return nil, nil, err
	}
	lt := packet.LinkType(r.LinkType())
	if r.LinkType() == layers.LinkTypeRaw {
		lt = packet.LinkRaw
	}
	return r, func(gopacket.CaptureInfo) packet.LinkType { return lt }, nil
}

// runCapture feeds a capture, packet by packet, through stages/decode and
// a flow.Processor hosting a quic Analyzer (the pipeline's worker minus
// the channels), numbering packets as a source does (Index).
func runCapture(t testing.TB, path string) *result {
	t.Helper()
	src, linkType := openCapture(t, path)
	out := make(chan *event.Batch, 1024)
	em := pipeline.NewEmitter(out)
	// The default budget of one worker: nothing of a capture is given up.
	budget := reassembly.NewBudget(reassembly.PerWorker(reassembly.DefaultProcessBytes, runtime.NumCPU()), nil)
	defer func() {
		if n := budget.GivenUp(); n != 0 {
			t.Fatalf("%s: %d reassembly buffers given up under the default budget", path, n)
		}
	}()
	proc := flow.NewProcessor(flow.Config{Workers: 1}, New(Config{Budget: budget}))
	dec := decode.New()
	res := &result{}
	var last int64
	collect := func() {
		em.Flush()
		for {
			select {
			case b := <-out:
				for _, e := range b.Events {
					switch e := e.(type) {
					case *event.QUIC:
						res.events = append(res.events, quicEvent{e})
					case *event.Flow:
						res.flows = append(res.flows, e)
					}
				}
				b.Events = b.Events[:0] // events are kept; do not clear them into the pool
			default:
				return
			}
		}
	}
	for {
		data, ci, err := src.ReadPacketData()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		res.packets++
		last = ci.Timestamp.UnixNano()
		pk := packet.Packet{Data: data, OrigLen: uint32(ci.Length), Timestamp: ci.Timestamp.UnixNano(), LinkType: linkType(ci), IfIndex: -1, Index: uint64(res.packets)}
		dec.Decode(&pk)
		proc.Packet(&pk, em)
		collect()
	}
	proc.Flush(last, em)
	collect()
	return res
}

// clientEvents and serverEvents split a run's quic events by the hello
// they report.
func (r *result) clientEvents() []quicEvent {
	var out []quicEvent
	for _, e := range r.events {
		if e.JA4 != "" || e.SNI != "" {
			out = append(out, e)
		}
	}
	return out
}

func (r *result) serverEvents() []quicEvent {
	var out []quicEvent
	for _, e := range r.events {
		if e.JA3SHash != "" {
			out = append(out, e)
		}
	}
	return out
}
