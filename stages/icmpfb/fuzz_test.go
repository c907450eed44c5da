package icmpfb

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/sinks/encode"
	"github.com/pktpipe/pktpipe/stages/decode"
	"github.com/pktpipe/pktpipe/stages/flow"
)

// errorPacket builds a raw-IP ICMP (v6: ICMPv6) error from the router to
// whoever sent the quote, carrying quote as its body.
func errorPacket(v6 bool, typ, code uint8, rest uint32, quote []byte) []byte {
	icmp := make([]byte, 8, 8+len(quote))
	icmp[0], icmp[1] = typ, code
	binary.BigEndian.PutUint32(icmp[4:], rest)
	icmp = append(icmp, quote...)
	if !v6 {
		h := make([]byte, 20, 20+len(icmp))
		h[0], h[8], h[9] = 0x45, 64, 1
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(icmp)))
		copy(h[12:], []byte{10, 0, 0, 254})
		copy(h[16:], []byte{10, 0, 0, 1})
		if len(quote) >= 20 && quote[0]>>4 == 4 {
			copy(h[16:], quote[12:16]) // back to the quoted sender
		}
		return append(h, icmp...)
	}
	h := make([]byte, 40, 40+len(icmp))
	h[0], h[6], h[7] = 0x60, 58, 64
	binary.BigEndian.PutUint16(h[4:], uint16(len(icmp)))
	h[8], h[23] = 0xfd, 0xfe
	h[24], h[39] = 0xfd, 1
	if len(quote) >= 40 && quote[0]>>4 == 6 {
		copy(h[24:], quote[8:24])
	}
	return append(h, icmp...)
}

// FuzzClassify: a raw-IP packet made of the quote bytes (so the quoted flow
// often exists), then an ICMP error quoting those bytes with an arbitrary
// type, code and rest-of-header, through decode, the flow table and the
// analyzer. It must not panic; every error the decoder passes on gives
// exactly one icmp_feedback event with a class, which encodes to valid
// JSON; a matched one carries a flow_id; the flow record's feedback count
// equals the events that matched it.
func FuzzClassify(f *testing.F) {
	f.Add(false, uint8(3), uint8(3), uint32(0), []byte("E\x00\x00\x1c\x00\x00\x00\x00@\x11\x00\x00\n\x00\x00\x01\n\x00\x00\x02\x9c@\x005\x00\x08\x00\x00"))
	f.Add(false, uint8(3), uint8(4), uint32(1400), []byte("E\x00\x05\xdc\x00\x00@\x00@\x06\x00\x00\n\x00\x00\x01\n\x00\x00\x02\x9c@\x01\xbb\x00\x00\x03\xe8\x00\x00\x00\x00P\x18\x01\x00\x00\x00\x00\x00"))
	f.Add(true, uint8(2), uint8(0), uint32(1280), []byte("`\x00\x00\x00\x00\x08\x11@\xfd\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\xfd\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x9c@\x005\x00\x08\x00\x00"))
	f.Add(true, uint8(1), uint8(0), uint32(0), []byte("`\x00\x00\x00\x00\x08\x00@\xfe\x80\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xbe\xef\xfe\x80\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xde\xad"))
	f.Add(false, uint8(12), uint8(0), uint32(0x14000000), []byte("E\x00\x00"))
	f.Add(false, uint8(5), uint8(1), uint32(0x0a000003), []byte{})
	enc := encode.NewJSON()
	dec := decode.New()
	f.Fuzz(func(t *testing.T, v6 bool, typ, code uint8, rest uint32, quote []byte) {
		if len(quote) > 1400 {
			return
		}
		pkts := []packet.Packet{
			{Data: quote, OrigLen: uint32(len(quote)), Timestamp: t0, LinkType: packet.LinkRaw, IfIndex: -1},
			{Data: errorPacket(v6, typ, code, rest, quote), Timestamp: t0 + 1e6, LinkType: packet.LinkRaw, IfIndex: -1},
		}
		ch := make(chan *event.Batch, 64)
		em := pipeline.NewEmitter(ch)
		p := flow.NewProcessor(flow.Config{MaxFlows: 4}, New(Config{MaxItems: 1}))
		wantEvents := 0
		for i := range pkts {
			pk := &pkts[i]
			pk.OrigLen = uint32(len(pk.Data))
			dec.Decode(pk)
			m := &pk.Meta
			if m.Err == packet.MalformedNone && m.IPVersion != 0 && packet.IsICMPError(m.Proto, m.ICMPType) {
				wantEvents++
			}
			p.Packet(pk, em)
		}
		p.Flush(t0+2e6, em)
		em.Flush()
		close(ch)
		fbEvents, matched, counted := 0, 0, 0
		for b := range ch {
			for _, ev := range b.Events {
				line := enc.Append(nil, ev)
				if !json.Valid(line) {
					t.Fatalf("invalid JSON: %s", line)
				}
				switch e := ev.(type) {
				case *event.ICMPFeedback:
					fbEvents++
					if e.Feedback.Class == "" {
						t.Fatalf("no class: %s", line)
					}
					if e.Feedback.Matched {
						matched++
						if e.FlowID == 0 {
							t.Fatalf("matched without flow_id: %s", line)
						}
					}
				case *event.Flow:
					for _, x := range e.Extra {
						if fx, ok := x.(*event.FlowFeedback); ok {
							counted += int(fx.Count)
							if len(fx.Items) > 1 {
								t.Fatalf("%d items over a cap of 1", len(fx.Items))
							}
						}
					}
				}
			}
		}
		if fbEvents != wantEvents {
			t.Fatalf("%d icmp_feedback events, want %d", fbEvents, wantEvents)
		}
		if counted != matched {
			t.Fatalf("flow records count %d errors, %d matched", counted, matched)
		}
	})
}

// TestWriteFuzzSeeds (ICMPFB_WRITE_SEEDS=1) writes testdata/fuzz/FuzzClassify
// from the ICMP errors of the Zeek traces and testdata/sample.pcap: their
// type, code, rest of header and quote.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("ICMPFB_WRITE_SEEDS") != "1" {
		t.Skip("set ICMPFB_WRITE_SEEDS=1 to rewrite the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzClassify")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(testenv.Conformance(t, "zeek", "testing", "btest", "Traces", "icmp"), "*.pcap"))
	files = append(files, filepath.Join(testenv.RepoRoot(t), "testdata", "sample.pcap"))
	dec := decode.New()
	n := 0
	for _, file := range files {
		for _, pk := range readPcap(t, file) {
			dec.Decode(&pk)
			m := &pk.Meta
			if m.IPVersion == 0 || !packet.IsICMPError(m.Proto, m.ICMPType) || int(m.L4Off)+8 > len(pk.Data) {
				continue
			}
			quote := pk.Data[m.L4Off+8:]
			body := fmt.Sprintf("go test fuzz v1\nbool(%v)\nbyte('\\x%02x')\nbyte('\\x%02x')\nuint32(%d)\n[]byte(%s)\n",
				m.IPVersion == 6, m.ICMPType, m.ICMPCode, m.ICMPRest, strconv.Quote(string(quote)))
			name := fmt.Sprintf("%s-%x", filepath.Base(file), sha256.Sum256([]byte(body)))[:40]
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	t.Logf("wrote %d seeds", n)
}
