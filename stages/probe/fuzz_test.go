package probe

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sinks/encode"
	"github.com/pktpipe/pktpipe/stages/flow"
	"github.com/pktpipe/pktpipe/stages/tcpstate"
)

// FuzzProbe drives the analyzer, and the scan detector behind it, with arbitrary sequences of TCP, UDP,
// echo and ICMP-error packets among a few hosts and ports, with sequence
// numbers from a small range so that answers and quotes often match: RST
// and SYN/ACK storms, forged quotes, errors quoting either direction,
// answers before probes. Every record must encode to valid JSON with one
// conn object, and outcomes must be named.
func FuzzProbe(f *testing.F) {
	f.Add([]byte{0, 0, 2, 1, 0, 1, 1, 18, 2, 1, 0, 0})
	f.Add([]byte{0, 0, 2, 1, 0, 3, 0, 13, 1, 0, 0, 0, 0, 1, 20, 3, 2, 1})
	f.Add([]byte{2, 0, 8, 0, 0, 0, 3, 1, 8, 0, 0, 0, 2, 1, 0, 0, 0, 0})
	f.Fuzz(fuzzOne)
}

func fuzzOne(t *testing.T, data []byte) {
	pkts := fuzzPackets(data)
	{
		reg := stats.NewRegistry()
		pr := New(reg)
		var recs []Record
		pr.SetRecordSink(func(r Record) { recs = append(recs, r) })
		p := flow.NewProcessor(flow.Config{Workers: 1, Stats: reg, MaxFlows: 64}, tcpstate.New(), pr)
		ch := make(chan *event.Batch, len(pkts)+8) // at least one event per batch
		em := pipeline.NewEmitter(ch)
		ts := t0
		for i := range pkts {
			ts = pkts[i].Timestamp
			p.Packet(&pkts[i], em)
		}
		p.Flush(ts, em)
		em.Flush()
		close(ch)
		enc, err := encode.New("json")
		if err != nil {
			t.Fatal(err)
		}
		for b := range ch {
			for _, e := range b.Events {
				line := enc.Append(nil, e)
				if !json.Valid(line) {
					t.Fatalf("invalid JSON: %s", line)
				}
				if !strings.Contains(string(line), `"outcome"`) {
					continue
				}
				var r recJSON
				if err := json.Unmarshal(line, &r); err != nil {
					t.Fatalf("%v: %s", err, line)
				}
				if strings.Count(string(line), `"conn":`) > 1 {
					t.Fatalf("two conn objects: %s", line)
				}
				if c := r.Conn; c != nil && c.Outcome != "" {
					if _, ok := ParseOutcome(c.Outcome); !ok {
						t.Fatalf("outcome %q: %s", c.Outcome, line)
					}
					if c.Attempts < 1 || (c.RTTNS != nil && *c.RTTNS < 0) {
						t.Fatalf("attempts/rtt: %s", line)
					}
				}
			}
			b.Release()
		}
		// The detector's input: these records, with thresholds low enough
		// that every kind can come out.
		for _, ev := range feedDetector(t, ScanConfig{PortThreshold: 2, TargetThreshold: 2, PingThreshold: 2, MinFailed: 1, MaxPairs: 8, MaxOpen: 2}, recs) {
			line := enc.Append(nil, ev)
			if !json.Valid(line) {
				t.Fatalf("invalid JSON: %s", line)
			}
			var sum uint64
			for _, n := range ev.Outcomes {
				sum += n
			}
			if sum == 0 || sum > ev.Probes || ev.Targets == 0 || ev.End < ev.Start || len(ev.Open) > 2 {
				t.Fatalf("scan event: %s", line)
			}
		}
	}
}

// fuzzPackets reads data 6 bytes per packet: TCP, UDP, echo and
// ICMP-error packets among a few hosts and ports.
func fuzzPackets(data []byte) []packet.Packet {
	hosts := []netip.Addr{cli, srv, rtr, cli6, srv6, rtr6}
	if len(data) > 6*128 { // more packets find nothing new and slow minimization down
		data = data[:6*128]
	}
	var pkts []packet.Packet
	ts := t0
	for len(data) >= 6 {
		b := data[:6]
		data = data[6:]
		ts += int64(b[5]) * ms
		v6 := b[0]&0x80 != 0
		pick := func(x byte) netip.Addr {
			i := int(x % 3)
			if v6 {
				i += 3
			}
			return hosts[i]
		}
		src, dst := pick(b[0]>>2), pick(b[0]>>4)
		sp, dp := uint16(40000+int(b[1]&3)), uint16(8000+int(b[1]>>2&3))
		seq, ack := uint32(b[3]&7)*1000, uint32(b[4]&7)*1000+uint32(b[4]>>3&1)
		var pk packet.Packet
		switch b[0] & 3 {
		case 0:
			pk = tcp(ts, src, sp, dst, dp, b[2], seq, ack)
		case 1:
			pk = udp(ts, src, sp, dst, dp)
		case 2:
			typ := uint8(8)
			if v6 {
				typ = 128
			}
			if b[2]&1 != 0 {
				typ = map[bool]uint8{false: 0, true: 129}[v6]
			}
			pk = echo(ts, src, dst, typ, uint16(b[1]&3))
		case 3:
			// An error quoting a TCP/UDP/echo packet from src to dst.
			var q packet.Packet
			switch b[1] >> 6 {
			case 0, 1:
				q = tcp(ts, src, sp, dst, dp, packet.TCPSyn, seq, 0)
			case 2:
				q = udp(ts, src, sp, dst, dp)
			default:
				q = echo(ts, src, dst, map[bool]uint8{false: 8, true: 128}[v6], uint16(b[1]&3))
			}
			pk = icmpErr(ts, pick(b[4]), b[2]&15, b[3]&15, &q)
			pk.Meta.X.Quote.HasSeq = b[4]&0x40 == 0 && pk.Meta.X.Quote.HasSeq
			if b[4]&0x20 != 0 { // a v4 error for a v6 quote and the like
				pk.Meta.Proto ^= packet.ProtoICMP ^ packet.ProtoICMPv6
			}
		}
		if !packet.IsICMPError(pk.Meta.Proto, pk.Meta.ICMPType) {
			pk.Meta.X = nil
		}
		pkts = append(pkts, pk)
	}
	return pkts
}
