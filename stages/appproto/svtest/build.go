package svtest

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Seg is one message of a built session.
type Seg struct {
	FromClient bool
	Data       []byte
	// Split, when inside Data, cuts it in two segments at that offset.
	Split int
}

// Capture builds frames of sessions between 10.x hosts.
type Capture struct {
	frames [][]byte
	ts     []time.Time
	now    time.Time
}

// NewCapture starts an empty capture.
func NewCapture() *Capture { return &Capture{now: time.Unix(1_700_000_000, 0)} }

func (c *Capture) add(b []byte) {
	c.now = c.now.Add(time.Millisecond)
	c.frames = append(c.frames, b)
	c.ts = append(c.ts, c.now)
}

func ipLayer(src, dst netip.Addr, proto layers.IPProtocol) (gopacket.SerializableLayer, gopacket.NetworkLayer, layers.EthernetType) {
	if src.Is4() {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
		return ip, ip, layers.EthernetTypeIPv4
	}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
	return ip, ip, layers.EthernetTypeIPv6
}

func (c *Capture) frame(src, dst netip.AddrPort, l4 gopacket.SerializableLayer, proto layers.IPProtocol, payload []byte) {
	ipl, nl, et := ipLayer(src.Addr(), dst.Addr(), proto)
	switch t := l4.(type) {
	case *layers.TCP:
		_ = t.SetNetworkLayerForChecksum(nl)
	case *layers.UDP:
		_ = t.SetNetworkLayerForChecksum(nl)
	}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: et}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ipl, l4, gopacket.Payload(payload)); err != nil {
		panic(err)
	}
	c.add(append([]byte(nil), buf.Bytes()...))
}

// TCP adds a whole connection: handshake, the segments in order, FINs.
func (c *Capture) TCP(cli, srv netip.AddrPort, segs ...Seg) {
	cseq, sseq := uint32(1000), uint32(5000)
	tcp := func(from, to netip.AddrPort, seq, ack uint32, syn, fin, ackf, psh bool, data []byte) {
		c.frame(from, to, &layers.TCP{SrcPort: layers.TCPPort(from.Port()), DstPort: layers.TCPPort(to.Port()),
			Seq: seq, Ack: ack, SYN: syn, FIN: fin, ACK: ackf, PSH: psh, Window: 65535}, layers.IPProtocolTCP, data)
	}
	tcp(cli, srv, cseq, 0, true, false, false, false, nil)
	tcp(srv, cli, sseq, cseq+1, true, false, true, false, nil)
	cseq++
	sseq++
	tcp(cli, srv, cseq, sseq, false, false, true, false, nil)
	for _, s := range segs {
		parts := [][]byte{s.Data}
		if s.Split > 0 && s.Split < len(s.Data) {
			parts = [][]byte{s.Data[:s.Split], s.Data[s.Split:]}
		}
		for _, d := range parts {
			// Segments of at most 1400 bytes.
			for len(d) > 0 {
				n := min(len(d), 1400)
				if s.FromClient {
					tcp(cli, srv, cseq, sseq, false, false, true, true, d[:n])
					cseq += uint32(n)
				} else {
					tcp(srv, cli, sseq, cseq, false, false, true, true, d[:n])
					sseq += uint32(n)
				}
				d = d[n:]
			}
		}
	}
	tcp(cli, srv, cseq, sseq, false, true, true, false, nil)
	tcp(srv, cli, sseq, cseq+1, false, true, true, false, nil)
	tcp(cli, srv, cseq+1, sseq+1, false, false, true, false, nil)
}

// UDP adds datagrams between cli and srv.
func (c *Capture) UDP(cli, srv netip.AddrPort, segs ...Seg) {
	for _, s := range segs {
		from, to := cli, srv
		if !s.FromClient {
			from, to = srv, cli
		}
		c.frame(from, to, &layers.UDP{SrcPort: layers.UDPPort(from.Port()), DstPort: layers.UDPPort(to.Port())}, layers.IPProtocolUDP, s.Data)
	}
}

// Write writes the capture to a pcap file in t's temporary directory.
func (c *Capture) Write(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "built.pcap")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for i, fr := range c.frames {
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: c.ts[i], CaptureLength: len(fr), Length: len(fr)}, fr); err != nil {
			t.Fatal(err)
		}
	}
	return p
}
