package probe_test

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/pktpipe/pktpipe/internal/app"
)

// writeScan writes a capture of one source probing 40 TCP ports of one
// target: the first 3 answer SYN/ACK, the rest RST.
func writeScan(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "scan.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	scanner, target := net.IP{10, 1, 1, 1}, net.IP{10, 2, 2, 2}
	ts := time.Unix(1_800_000_000, 0)
	write := func(src, dst net.IP, sport, dport uint16, tcp layers.TCP) {
		eth := layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		ip := layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
		tcp.SrcPort, tcp.DstPort, tcp.Window = layers.TCPPort(sport), layers.TCPPort(dport), 1024
		_ = tcp.SetNetworkLayerForChecksum(&ip)
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, &eth, &ip, &tcp); err != nil {
			t.Fatal(err)
		}
		ts = ts.Add(time.Millisecond)
		b := buf.Bytes()
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(b), Length: len(b)}, b); err != nil {
			t.Fatal(err)
		}
	}
	for port := uint16(1); port <= 40; port++ {
		write(scanner, target, 40000, port, layers.TCP{SYN: true, Seq: 1000})
		if port <= 3 {
			write(target, scanner, port, 40000, layers.TCP{SYN: true, ACK: true, Seq: 5000, Ack: 1001})
		} else {
			write(target, scanner, port, 40000, layers.TCP{RST: true, ACK: true, Ack: 1001})
		}
	}
	return path
}

// The probe analyzer's scan stage, as the app wires it (a keyed stage
// beside the workers): one portscan event from the scanner, with the
// outcomes of every port, whatever the number of workers.
func TestScanEventThroughTheApp(t *testing.T) {
	capture := writeScan(t)
	var prev string
	for _, workers := range []int{1, 4} {
		var out bytes.Buffer
		p, err := app.Build(app.Options{Files: []string{capture}, Workers: workers, Stdout: &out})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
		var scans []string
		for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			if strings.Contains(l, `"event_type":"scan"`) {
				scans = append(scans, l)
			}
		}
		if len(scans) != 1 {
			t.Fatalf("workers %d: %d scan events\n%s", workers, len(scans), out.String())
		}
		var ev struct {
			SrcIP string `json:"src_ip"`
			Scan  struct {
				Kind     string         `json:"kind"`
				Ports    int            `json:"ports"`
				Outcomes map[string]int `json:"outcomes"`
			} `json:"scan"`
		}
		if err := json.Unmarshal([]byte(scans[0]), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.SrcIP != "10.1.1.1" || ev.Scan.Kind != "portscan" || ev.Scan.Ports != 40 ||
			ev.Scan.Outcomes["open"] != 3 || ev.Scan.Outcomes["closed"] != 37 {
			t.Fatalf("workers %d: %s", workers, scans[0])
		}
		if prev != "" && prev != scans[0] {
			t.Fatalf("workers 1 and 4 differ:\n%s\n%s", prev, scans[0])
		}
		prev = scans[0]
	}
}
