package dns_test

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// dnsMsg builds a message: id, a question for name A, and (response)
// nA answers 10.0.0.i pointing back at the question.
func dnsMsg(id uint16, name string, response bool, nA int) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	flags := uint16(0x0100)
	if response {
		flags = 0x8180
	}
	b = binary.BigEndian.AppendUint16(b, flags)
	b = append(b, 0, 1, byte(nA>>8), byte(nA), 0, 0, 0, 0)
	for _, l := range []string{name[:len(name)-5], "test"} {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	b = append(b, 0, 0, 1, 0, 1)
	for i := 0; i < nA; i++ {
		b = append(b, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, byte(i>>8), byte(i))
	}
	return b
}

// framed prefixes messages with their length, as DNS over TCP does.
func framed(msgs ...[]byte) []byte {
	var b []byte
	for _, m := range msgs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(m)))
		b = append(b, m...)
	}
	return b
}

type seg struct {
	toServer bool
	off      int // offset in that direction's stream
	data     []byte
	ackOff   int // > 0: acknowledges that much of the other direction
}

// tcpPcap writes a TCP connection 10.0.0.1:40000 → 10.0.0.2:53 (handshake,
// then segs in the order given, sequence numbers from their offsets).
func tcpPcap(t *testing.T, segs []seg) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "tcp.pcap")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	const isnC, isnS = 1000, 5000
	ts := time.Unix(1700000000, 0)
	write := func(toServer bool, flags string, seq, ack uint32, pl []byte) {
		src, dst := net.IP{10, 0, 0, 1}, net.IP{10, 0, 0, 2}
		sp, dp := layers.TCPPort(40000), layers.TCPPort(53)
		if !toServer {
			src, dst, sp, dp = dst, src, dp, sp
		}
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
		tcp := &layers.TCP{SrcPort: sp, DstPort: dp, Seq: seq, Ack: ack, Window: 65535, ACK: ack != 0}
		for _, c := range flags {
			switch c {
			case 'S':
				tcp.SYN = true
			case 'F':
				tcp.FIN = true
			}
		}
		tcp.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp, gopacket.Payload(pl)); err != nil {
			t.Fatal(err)
		}
		ts = ts.Add(time.Millisecond)
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(buf.Bytes()), Length: len(buf.Bytes())}, buf.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	write(true, "S", isnC, 0, nil)
	write(false, "S", isnS, isnC+1, nil)
	write(true, "", isnC+1, isnS+1, nil)
	for _, s := range segs {
		if s.toServer {
			write(true, "", uint32(isnC+1+s.off), uint32(isnS+1+s.ackOff), s.data)
		} else {
			write(false, "", uint32(isnS+1+s.off), uint32(isnC+1+s.ackOff), s.data)
		}
	}
	return file
}

// dnsSummary lists the dns events as "pcap_cnt type id answers".
func dnsSummary(evs []map[string]any) []string {
	var out []string
	for _, e := range ofType(evs, "dns") {
		d := e["dns"].(map[string]any)
		a, _ := d["answers"].([]any)
		out = append(out, fmt.Sprintf("%v %v %v %d", e["pcap_cnt"], d["type"], d["id"], len(a)))
	}
	return out
}

func TestTCPReassembly(t *testing.T) {
	q1, q2, q3 := dnsMsg(1, "host.test", false, 0), dnsMsg(2, "mail.test", false, 0), dnsMsg(3, "www.test", false, 0)
	r1, r2 := dnsMsg(1, "host.test", true, 100), dnsMsg(2, "mail.test", true, 2) // r1: 1627 bytes
	c := framed(q1, q2, q3)
	s := framed(r1, r2)
	n1 := 2 + len(r1)
	cases := []struct {
		name     string
		segs     []seg
		want     []string
		counters map[string]float64
	}{{
		// Packets 4..: two queries in one segment; the third's length
		// prefix split between segments; a 1627-byte answer in three
		// segments, the second retransmitted and the third overlapping
		// it, the second answer sharing the third segment.
		name: "split, several per segment, retransmitted, overlapping",
		segs: []seg{
			{true, 0, c[:len(c)-len(q3)-1], 0},
			{true, len(c) - len(q3) - 1, c[len(c)-len(q3)-1:], 0},
			{false, 0, s[:600], 0},
			{false, 600, s[600:1200], 0},
			{false, 600, s[600:1200], 0},
			{false, 1100, s[1100:], 0},
		},
		want: []string{"4 request 1 0", "4 request 2 0", "5 request 3 0", "9 response 1 100", "9 response 2 2"},
		counters: map[string]float64{"pktpipe_dns_tcp_reassembled_total": 2, "pktpipe_dns_malformed_total": 0,
			"pktpipe_dns_tcp_gaps_total": 0},
	}, {
		// The answer's middle segment is lost (the capture missed it:
		// the client acknowledges past it). The later segments wait for
		// it until that acknowledgement; then that answer is lost, the
		// next segment is not taken for a message start (the rest of
		// r1 is not plausible), and the answer that starts a later
		// segment is decoded, stamped with that segment's packet.
		name: "gap",
		segs: []seg{
			{true, 0, framed(q1, q2), 0},
			{false, 0, s[:600], 0},
			{false, 1200, s[1200:n1], 0},
			{false, n1, s[n1:], 0},
			{true, len(framed(q1, q2)), nil, len(s)},
		},
		want: []string{"4 request 1 0", "4 request 2 0", "7 response 2 2"},
		counters: map[string]float64{"pktpipe_dns_tcp_gaps_total": 1, "pktpipe_dns_tcp_reassembled_total": 0,
			"pktpipe_dns_tcp_out_of_order_total": 2},
	}, {
		// The same hole never filled nor acknowledged: what waited is
		// decoded when the flow ends, stamped with its own packet.
		name: "gap at flow end",
		segs: []seg{
			{true, 0, framed(q1, q2), 0},
			{false, 0, s[:600], 0},
			{false, 1200, s[1200:n1], 0},
			{false, n1, s[n1:], 0},
		},
		want:     []string{"4 request 1 0", "4 request 2 0", "7 response 2 2"},
		counters: map[string]float64{"pktpipe_dns_tcp_gaps_total": 1},
	}, {
		// Segments out of order: the third and second of the answer
		// before the first. It is decoded when the first comes.
		name: "out of order",
		segs: []seg{
			{true, 0, framed(q1, q2), 0},
			{false, 1200, s[1200:], 0},
			{false, 600, s[600:1200], 0},
			{false, 0, s[:600], 0},
		},
		want: []string{"4 request 1 0", "4 request 2 0", "7 response 1 100", "7 response 2 2"},
		counters: map[string]float64{"pktpipe_dns_tcp_gaps_total": 0, "pktpipe_dns_tcp_reassembled_total": 1,
			"pktpipe_dns_tcp_out_of_order_total": 2},
	}, {
		// One byte per segment.
		name: "one byte per segment",
		segs: func() []seg {
			var l []seg
			for i := range c {
				l = append(l, seg{true, i, c[i : i+1], 0})
			}
			return l
		}(),
		want:     []string{fmt.Sprint(3+2+len(q1)) + " request 1 0", fmt.Sprint(3+2*2+len(q1)+len(q2)) + " request 2 0", fmt.Sprint(3+len(c)) + " request 3 0"},
		counters: map[string]float64{"pktpipe_dns_tcp_reassembled_total": 3},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			evs, reg := runPcap(t, tcpPcap(t, tc.segs), 0)
			if got := dnsSummary(evs); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("events %q, want %q", got, tc.want)
			}
			for k, v := range tc.counters {
				if got, _ := reg.Value(k); got != v {
					t.Errorf("%s = %v, want %v", k, got, v)
				}
			}
		})
	}
}

// TestTCPBudget: a message larger than the reassembly budget is given up
// (counted) and the stream goes on with the next message.
func TestTCPBudget(t *testing.T) {
	r1, r2 := dnsMsg(1, "host.test", true, 100), dnsMsg(2, "mail.test", true, 2)
	s := framed(r1, r2)
	n1 := 2 + len(r1)
	file := tcpPcap(t, []seg{
		{true, 0, framed(dnsMsg(1, "host.test", false, 0), dnsMsg(2, "mail.test", false, 0)), 0},
		{false, 0, s[:600], 0},
		{false, 600, s[600:n1], 0},
		{false, n1, s[n1:], 0},
	})
	evs, reg := runPcap(t, file, 1000)
	want := []string{"4 request 1 0", "4 request 2 0", "7 response 2 2"}
	if got := dnsSummary(evs); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events %q, want %q", got, want)
	}
	if v, _ := reg.Value("pktpipe_dns_tcp_given_up_total"); v != 1 {
		t.Errorf("given up %v, want 1", v)
	}
	if v, _ := reg.Value("pktpipe_dns_malformed_total"); v != 0 {
		t.Errorf("malformed %v, want 0", v)
	}
}
