package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/sources/afpacket/netnstest"
)

// TestLiveCapture runs the pktpipe binary on one end of a veth pair in
// throw-away namespaces (AF_PACKET with fanout 1 and 2, and eBPF), with
// tcpdump capturing beside it, drives known traffic (3 pings, a TCP echo,
// UDP to a closed port, a TLS handshake), stops both with SIGTERM once
// both have read every packet of it (endOfTraffic, then pktpipe's metrics),
// and checks that:
//   - the expected packets were delivered (counts by kind);
//   - the live run's events equal those of `pktpipe -r` on its own -w
//     capture (in_iface aside);
//   - they equal those of `pktpipe -r` on tcpdump's capture of the same
//     traffic, times aside (each capture stamps egress packets itself);
//   - nothing is left attached to the interface afterwards.
func TestLiveCapture(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "tcpdump")
	testenv.NeedCommand(t, "ping")
	testenv.NeedCommand(t, "ss") // endOfTraffic
	bin := filepath.Join(t.TempDir(), "pktpipe")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cert := selfSigned(t)
	for _, c := range []struct {
		name string
		args []string
	}{
		{"afpacket", []string{"--capture", "afpacket", "--ring-timeout", "10ms"}},
		{"afpacket-fanout2", []string{"--capture", "afpacket", "--fanout", "2", "--ring-timeout", "10ms"}},
		{"ebpf", []string{"--capture", "ebpf"}},
	} {
		t.Run(c.name, func(t *testing.T) { liveCase(t, bin, cert, c.args) })
	}
}

func liveCase(t *testing.T, bin string, cert tls.Certificate, args []string) {
	p := netnstest.New(t)
	dir := t.TempDir()
	capFile := filepath.Join(dir, "capture.pcapng")
	liveEvents := filepath.Join(dir, "live.json")
	tdFile := filepath.Join(dir, "tcpdump.pcap")
	const filter = "ip"

	if strings.Contains(strings.Join(args, " "), "ebpf") {
		testenv.NeedCommand(t, "bpftool") // checks that nothing stays attached
	}
	// -U: tcpdump writes each packet as it captures it, so the file shows
	// how far it got.
	td := p.Command(0, "tcpdump", "-i", p.Dev[0], "--immediate-mode", "-U", "--time-stamp-precision", "nano", "-w", tdFile, filter)
	tdErr, err := td.StderrPipe()
	must(t, err)
	must(t, td.Start())
	tdLog := opsWatch(tdErr)
	t.Cleanup(func() {
		if td.ProcessState == nil {
			td.Process.Kill()
			<-tdLog.done
			td.Wait()
		}
	})
	opsWaitFor(t, tdLog, "tcpdump to listen", func() bool { _, ok := tdLog.find("listening on"); return ok })
	pp := startLive(t, bin, p, append(append([]string{"-w", capFile, "-o", "file:" + liveEvents}, args...), filter)...)

	// Traffic from namespace 0 to namespace 1.
	p.Run(t, 0, "ping", "-c", "3", "-i", "0.2", "-W", "2", p.V4[1].String())
	var ln, tln net.Listener
	must(t, p.Do(1, func() (err error) {
		if ln, err = net.Listen("tcp", p.V4[1].String()+":7000"); err != nil {
			return err
		}
		tln, err = tls.Listen("tcp", p.V4[1].String()+":7443", &tls.Config{Certificates: []tls.Certificate{cert}})
		return err
	}))
	defer ln.Close()
	defer tln.Close()
	go func() { // echo once
		c, err := ln.Accept()
		if err == nil {
			io.Copy(c, c)
			c.Close()
		}
	}()
	go func() {
		c, err := tln.Accept()
		if err == nil {
			c.(*tls.Conn).Handshake()
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	var tc, uc, sc net.Conn
	must(t, p.Do(0, func() (err error) {
		if tc, err = net.Dial("tcp", p.V4[1].String()+":7000"); err != nil {
			return err
		}
		if uc, err = net.Dial("udp", p.V4[1].String()+":9"); err != nil {
			return err
		}
		sc, err = net.Dial("tcp", p.V4[1].String()+":7443")
		return err
	}))
	tc.Write([]byte("hello"))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(tc, buf); err != nil {
		t.Fatal(err)
	}
	tc.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, tc)
	tc.Close()
	uc.Write([]byte("x"))
	uc.SetReadDeadline(time.Now().Add(10 * time.Second)) // bounds a lost answer only
	if _, err := uc.Read(buf); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("UDP to a closed port: %v, want the port-unreachable error (ECONNREFUSED)", err)
	}
	uc.Close()
	tlsc := tls.Client(sc, &tls.Config{ServerName: "pktpipe.test", InsecureSkipVerify: true})
	if err := tlsc.Handshake(); err != nil {
		t.Fatal(err)
	}
	// An orderly close, as the echo's: close_notify, then read to the
	// server's close_notify (and its session tickets) before closing the
	// socket, so the teardown is FINs, never a RST racing the end. The
	// client then waits for the server's FIN too: sent right after its
	// close_notify, it would otherwise cross the client's FIN, and the
	// capture points (tc hooks, tcpdump) may then see the two in either
	// order (conn.history "ShADadFf" against "ShADadfF").
	if err := tlsc.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, tlsc)
	io.Copy(io.Discard, sc)
	tlsc.Close()

	endOfTraffic(t, p, tdFile)
	want := countPackets(t, tdFile)
	opsWaitFor(t, pp.w, fmt.Sprintf("pktpipe to read the %d packets tcpdump wrote", want), func() bool {
		read, ok1 := sumSeries(pp.url, "pktpipe_source_packets_total")
		rejected, ok2 := sumSeries(pp.url, "pktpipe_filter_rejected_total")
		return ok1 && ok2 && read-rejected >= float64(want)
	})
	td.Process.Signal(syscall.SIGTERM)
	pp.stop(t)
	<-tdLog.done
	td.Wait()
	if strings.Contains(strings.Join(args, " "), "ebpf") {
		if out, _ := p.Command(0, "bpftool", "net", "show", "dev", p.Dev[0]).CombinedOutput(); strings.Contains(string(out), "tcx") {
			t.Errorf("programs still attached after SIGTERM:\n%s", out)
		}
	}

	live := readEvents(t, liveEvents)
	checkTraffic(t, live, p.V4[0].String(), p.V4[1].String())

	replay := filepath.Join(dir, "replay.json")
	if out, err := exec.Command(bin, "-r", capFile, "-o", "file:"+replay).CombinedOutput(); err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	same(t, "pktpipe -r on the -w capture", live, readEvents(t, replay), false)
	tdEvents := filepath.Join(dir, "td.json")
	if out, err := exec.Command(bin, "-r", tdFile, "-o", "file:"+tdEvents).CombinedOutput(); err != nil {
		t.Fatalf("tcpdump's capture: %v\n%s", err, out)
	}
	same(t, "pktpipe -r on tcpdump's capture", live, readEvents(t, tdEvents), true)
	if !t.Failed() {
		t.Logf("%d events, identical across live, -w replay and tcpdump's capture", len(live))
	}
}

// checkTraffic asserts the packets the test sent are all there.
func checkTraffic(t *testing.T, evs []map[string]any, a, b string) {
	t.Helper()
	var pingOK, udpOK, unreach, tcpEcho, tlsOK bool
	for _, e := range evs {
		// The live sources number their packets: every event but the
		// flow records carries pcap_cnt.
		if _, has := e["pcap_cnt"]; has != (e["event_type"] != "flow") || has && num(e["pcap_cnt"]) < 1 {
			t.Errorf("pcap_cnt wrong or missing: %s", toJSON(e))
		}
		f, _ := e["flow"].(map[string]any)
		switch {
		case e["event_type"] == "flow" && e["proto"] == "ICMP" && e["src_ip"] == a:
			pingOK = num(f["pkts_toserver"]) == 3 && num(f["pkts_toclient"]) == 3
		case e["event_type"] == "flow" && e["proto"] == "UDP" && e["dest_ip"] == b:
			udpOK = num(f["pkts_toserver"]) == 1 && num(f["pkts_toclient"]) == 0
		case e["event_type"] == "icmp_feedback" || e["icmp_feedback"] != nil:
			unreach = unreach || strings.Contains(toJSON(e), "port-unreachable")
		case e["event_type"] == "flow" && e["proto"] == "TCP" && num(e["dest_port"]) == 7000:
			// 5 bytes each way, and the three-way handshake and FINs.
			tcpEcho = num(f["pkts_toserver"]) >= 4 && num(f["pkts_toclient"]) >= 3 && f["state"] == "closed"
		case e["event_type"] == "tls":
			tlsOK = strings.Contains(toJSON(e), "pktpipe.test")
		}
	}
	if !pingOK || !udpOK || !unreach || !tcpEcho || !tlsOK {
		t.Errorf("ping 3+3 %v, UDP 1 %v, port-unreachable %v, TCP echo %v, TLS sni %v\n%s",
			pingOK, udpOK, unreach, tcpEcho, tlsOK, strings.Join(lines(evs), "\n"))
	}
}

func toJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

func lines(evs []map[string]any) []string {
	var out []string
	for _, e := range evs {
		out = append(out, toJSON(e))
	}
	sort.Strings(out)
	return out
}

// same compares two event sets after sorting, without in_iface and
// pcap_cnt (a position in one source's stream: per socket with fanout,
// and counting packets a user-space filter then drops, which -w leaves
// out) or event_id (which hashes pcap_cnt), and without anything derived
// from capture times when noTimes (flow_id hashes the flow's start time
// too).
func same(t *testing.T, what string, a, b []map[string]any, noTimes bool) {
	t.Helper()
	norm := func(evs []map[string]any) []string {
		for _, e := range evs {
			strip(e, noTimes)
		}
		return lines(evs)
	}
	x, y := norm(a), norm(b)
	if strings.Join(x, "\n") == strings.Join(y, "\n") {
		return
	}
	t.Errorf("%s: %d vs %d events differ\nlive:\n%s\nother:\n%s", what, len(x), len(y), strings.Join(x, "\n"), strings.Join(y, "\n"))
}

func strip(m map[string]any, noTimes bool) {
	for k, v := range m {
		if k == "in_iface" || k == "pcap_cnt" || k == "event_id" || (noTimes && (k == "timestamp" || k == "flow_id" || k == "start" || k == "end" || k == "age" ||
			strings.Contains(k, "rtt") || strings.HasSuffix(k, "_ms") || strings.HasSuffix(k, "_us") || strings.HasSuffix(k, "_ns"))) {
			delete(m, k)
			continue
		}
		switch sub := v.(type) {
		case map[string]any:
			strip(sub, noTimes)
		case []any:
			for _, x := range sub {
				if m, ok := x.(map[string]any); ok {
					strip(m, noTimes)
				}
			}
		}
	}
}

func readEvents(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseLines(t, string(b))
}

// endOfTraffic returns once every packet of the test's traffic has crossed
// Dev[0] and tcpdump has written it to tdFile.
//
// The traffic is over when no connection to the test's servers is left in
// either namespace but in TIME-WAIT (the side that closes last leaves
// LAST-ACK only on the final ACK). A datagram from namespace 1 to a socket
// in namespace 0 then marks the end: once tcpdump, which writes packets in
// capture order, has written it, it has written everything before.
func endOfTraffic(t *testing.T, p *netnstest.Pair, tdFile string) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, "the TCP connections to close", func() bool {
		for i := range p.NS {
			out, err := p.Command(i, "ss", "-Htan").Output()
			if err != nil {
				return false
			}
			for _, l := range strings.Split(string(out), "\n") {
				f := strings.Fields(l) // state, recv-q, send-q, local, peer
				if len(f) < 5 || f[0] == "LISTEN" || f[0] == "TIME-WAIT" {
					continue
				}
				for _, a := range f[3:5] {
					if strings.HasSuffix(a, ":7000") || strings.HasSuffix(a, ":7443") {
						return false
					}
				}
			}
		}
		return true
	})
	var rc, mc net.PacketConn
	must(t, p.Do(0, func() (err error) { rc, err = net.ListenPacket("udp", p.V4[0].String()+":7999"); return err }))
	defer rc.Close()
	must(t, p.Do(1, func() (err error) { mc, err = net.ListenPacket("udp", p.V4[1].String()+":0"); return err }))
	defer mc.Close()
	marker := []byte(fmt.Sprintf("pktpipe-live-end-%d-%d", os.Getpid(), time.Now().UnixNano()))
	if _, err := mc.WriteTo(marker, &net.UDPAddr{IP: p.V4[0].AsSlice(), Port: 7999}); err != nil {
		t.Fatal(err)
	}
	rc.SetReadDeadline(time.Now().Add(10 * time.Second)) // bounds a lost datagram only
	buf := make([]byte, 64)
	if n, _, err := rc.ReadFrom(buf); err != nil || !bytes.Equal(buf[:n], marker) {
		t.Fatalf("end marker: %v %q", err, buf[:n])
	}
	testenv.WaitFor(t, 30*time.Second, "tcpdump to write the end marker", func() bool {
		b, _ := os.ReadFile(tdFile)
		return bytes.Contains(b, marker)
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pktpipe.test"}, DNSNames: []string{"pktpipe.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
