package gen

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pktpipe/pktpipe/internal/testenv"
)

// These tests let Wireshark judge the generator: checksums, TLS hellos
// (split ones included), handshake RTTs and DNS delays must come out as
// the ground truth says.

func writeFile(t *testing.T, name string, cfg Config, f Format) (string, Summary) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	file, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := Write(file, cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	if err := file.Close(); err != nil {
		t.Fatal(err)
	}
	return path, sum
}

func tshark(t *testing.T, bin string, args ...string) []string {
	t.Helper()
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		t.Fatalf("tshark %s: %v", strings.Join(args, " "), err)
	}
	s := strings.TrimRight(string(out), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

type endpoint struct {
	addr string
	port int
}

func TestTshark(t *testing.T) {
	bin := testenv.NeedCommand(t, "tshark")
	// Fewer bulk transfers, so a small file holds many connections.
	path, sum := writeFile(t, "s.pcap", Config{Seed: 11, Packets: 8000, BulkShare: 0.01, Truth: true}, Format{})
	conns := map[endpoint]*Conn{}
	for _, c := range sum.Truth.Conns {
		if c.Proto != "icmp" && c.Proto != "ipv6-icmp" {
			conns[endpoint{c.Client.String(), int(c.ClientPort)}] = c
		}
	}
	lookup := func(v4, v6, port string) *Conn {
		t.Helper()
		a := v4
		if a == "" {
			a = v6
		}
		p, _ := strconv.Atoi(port)
		c := conns[endpoint{a, p}]
		if c == nil {
			t.Fatalf("no ground truth for %s port %s", a, port)
		}
		return c
	}

	t.Run("checksums", func(t *testing.T) {
		bad := tshark(t, bin, "-r", path, "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
			"-Y", `_ws.expert.severity >= warning && (ip.checksum.status=="Bad" || tcp.checksum.status=="Bad" || udp.checksum.status=="Bad")`)
		if len(bad) > 0 {
			t.Errorf("%d packets with bad checksums, first: %s", len(bad), bad[0])
		}
	})

	// One pass for everything else: tshark's start-up dominates.
	fields := []string{"ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport", "udp.dstport", "tcp.len",
		"tcp.flags", "tcp.seq", "tcp.ack", "tcp.analysis.initial_rtt", "tls.handshake.type", "tls.handshake.extensions_server_name",
		"dns.flags.response", "dns.id", "dns.time", "icmp.type", "icmpv6.type", "icmp.mtu", "icmpv6.mtu"}
	args := []string{"-r", path, "-T", "fields", "-Y", "tls.handshake.type==1 || tls.handshake.type==2 || " +
		"(tcp.analysis.initial_rtt && tcp.flags==0x010 && tcp.seq==1 && tcp.ack==1 && tcp.len==0 && !icmp && !icmpv6) || " +
		"dns.flags.response==1 || (icmp.type==3 && icmp.code==4) || icmpv6.type==2"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	var rows []map[string]string
	for _, l := range tshark(t, bin, args...) {
		row := map[string]string{}
		for i, v := range strings.Split(l, "\t") {
			row[fields[i]] = v
		}
		rows = append(rows, row)
	}
	first := func(v string) string { return strings.Split(v, ",")[0] }

	t.Run("tls-hellos", func(t *testing.T) {
		seen := map[int]bool{}
		var hellos, split, odd, serverHellos int
		for _, r := range rows {
			types := strings.Split(r["tls.handshake.type"], ",")
			if slices.Contains(types, "2") {
				serverHellos++
			}
			if !slices.Contains(types, "1") {
				continue
			}
			hellos++
			c := lookup(r["ip.src"], r["ipv6.src"], r["tcp.srcport"])
			if c.TLS == nil || !c.TLS.HelloComplete {
				t.Fatalf("tshark found a ClientHello in flow %d, truth has none", c.ID)
			}
			if sni := r["tls.handshake.extensions_server_name"]; sni != c.TLS.SNI {
				t.Errorf("flow %d: tshark SNI %q, truth %q", c.ID, sni, c.TLS.SNI)
			}
			if c.TLS.Split {
				split++
				if n, _ := strconv.Atoi(r["tcp.len"]); n >= c.TLS.HelloLen {
					t.Errorf("flow %d: split hello found in a %d-byte segment", c.ID, n)
				}
			}
			if c.TLS.OddSplit {
				odd++
			}
			seen[c.ID] = true
		}
		if len(seen) != sum.TLSClientHellos || hellos != sum.TLSClientHellos {
			t.Errorf("tshark found %d hellos in %d flows, summary says %d", hellos, len(seen), sum.TLSClientHellos)
		}
		if split != sum.TLSSplitHellos || odd != sum.TLSOddSplit || split == 0 || odd == 0 {
			t.Errorf("tshark found %d split (%d odd) hellos, summary says %d (%d)", split, odd, sum.TLSSplitHellos, sum.TLSOddSplit)
		}
		if serverHellos != sum.TLSServerHellos {
			t.Errorf("tshark found %d ServerHellos, summary says %d", serverHellos, sum.TLSServerHellos)
		}
	})

	t.Run("handshake-rtt", func(t *testing.T) {
		// initial_rtt is on every packet after the handshake; take the
		// handshake's own ACK (relative seq 1, ack 1, no payload, from
		// the client).
		n := 0
		for _, r := range rows {
			if r["tcp.analysis.initial_rtt"] == "" || r["tcp.flags"] != "0x0010" || r["tcp.len"] != "0" ||
				r["tcp.seq"] != "1" || r["tcp.ack"] != "1" {
				continue
			}
			p, _ := strconv.Atoi(r["tcp.srcport"])
			c := conns[endpoint{r["ip.src"] + r["ipv6.src"], p}]
			if c == nil { // a server's ACK
				continue
			}
			got, _ := strconv.ParseFloat(r["tcp.analysis.initial_rtt"], 64)
			want := c.ClientRTT + c.ServerRTT
			if d := math.Abs(got*1e9 - float64(want)); d > 1000 {
				t.Errorf("flow %d: initial_rtt %.9f s, truth %d ns", c.ID, got, want)
			}
			n++
		}
		if n != sum.Handshakes || n == 0 {
			t.Errorf("checked %d handshakes, summary has %d", n, sum.Handshakes)
		}
	})

	t.Run("dns-delay", func(t *testing.T) {
		n := 0
		for _, r := range rows {
			if r["dns.flags.response"] != "1" {
				continue
			}
			n++
			c := lookup(r["ip.dst"], r["ipv6.dst"], r["udp.dstport"])
			id, _ := strconv.ParseUint(r["dns.id"], 0, 16)
			got, _ := strconv.ParseFloat(r["dns.time"], 64)
			found := false
			for _, q := range c.DNS {
				if q.ID == uint16(id) {
					found = true
					if d := math.Abs(got*1e9 - float64(q.Delay)); d > 1000 {
						t.Errorf("flow %d query %#x: dns.time %.9f, truth %d ns", c.ID, id, got, q.Delay)
					}
				}
			}
			if !found {
				t.Errorf("flow %d: response id %#x not in the truth", c.ID, id)
			}
		}
		if n != sum.DNSResponses || n == 0 {
			t.Errorf("tshark found %d responses, summary %d", n, sum.DNSResponses)
		}
	})

	t.Run("icmp-mtu", func(t *testing.T) {
		n := 0
		for _, r := range rows {
			mtu := r["icmp.mtu"] + r["icmpv6.mtu"]
			if mtu == "" {
				continue
			}
			n++
			// The quoted packet's addresses follow the outer ones.
			c := lookup(first(r["ip.dst"]), first(r["ipv6.dst"]), r["tcp.srcport"])
			if m, _ := strconv.Atoi(mtu); c.ICMP == nil || c.ICMP.MTU != m {
				t.Errorf("flow %d: MTU %s, truth %+v", c.ID, mtu, c.ICMP)
			}
		}
		if want := sum.ICMPErrors["frag-needed"] + sum.ICMPErrors["packet-too-big"]; n != want || want == 0 {
			t.Errorf("tshark found %d MTU errors, summary %d", n, want)
		}
	})
}

func TestTsharkFormats(t *testing.T) {
	bin := testenv.NeedCommand(t, "tshark")
	for _, tc := range []struct {
		name string
		f    Format
	}{{"s.pcap.gz", Format{PCAP, Gzip}}, {"s.pcapng.gz", Format{PCAPNG, Gzip}}} {
		path, sum := writeFile(t, tc.name, Config{Seed: 2, Packets: 1500}, tc.f)
		lines := tshark(t, bin, "-r", path, "-T", "fields", "-e", "frame.time_epoch")
		if len(lines) != sum.Packets {
			t.Errorf("%s: tshark read %d packets, want %d", tc.name, len(lines), sum.Packets)
			continue
		}
		// Nanosecond timestamps survive: the last one is exact.
		if want := strconv.FormatInt(sum.Last/1e9, 10) + "." + strconv.FormatInt(1e9+sum.Last%1e9, 10)[1:]; lines[len(lines)-1] != want {
			t.Errorf("%s: last timestamp %s, want %s", tc.name, lines[len(lines)-1], want)
		}
	}
}
