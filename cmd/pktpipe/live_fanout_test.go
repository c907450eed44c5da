package main

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/sources/afpacket/netnstest"
)

// TestLiveFanoutICMPMatched runs `pktpipe -i IF --fanout 2 --workers 2` on
// one end of a veth pair while that end sends UDP datagrams to 32 closed
// ports over IPv4 and over IPv6 (flows that land on both sockets), and
// checks after SIGTERM that every port-unreachable they drew is an
// icmp_feedback event with matched:true. With PACKET_FANOUT_HASH an error
// could go to the other socket than its flow and be processed before the
// flow's datagram (matched:false); the eBPF fanout program sends it to the
// flow's socket, behind the datagram. Three runs, each in new namespaces.
func TestLiveFanoutICMPMatched(t *testing.T) {
	testenv.NeedRoot(t)
	bin := filepath.Join(t.TempDir(), "pktpipe")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for run := range 3 {
		t.Run(fmt.Sprint("run", run+1), func(t *testing.T) { fanoutMatched(t, bin) })
	}
}

func fanoutMatched(t *testing.T, bin string) {
	p := netnstest.New(t)
	for _, s := range []string{"net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0", "net.ipv4.icmp_msgs_per_sec=100000", "net.ipv4.icmp_msgs_burst=100000"} {
		_ = p.Command(1, "sysctl", "-qw", s).Run() // best effort: some are not per namespace
	}
	events := filepath.Join(t.TempDir(), "events.json")
	r := startLive(t, bin, p, "--fanout", "2", "--ring-timeout", "10ms", "-o", "file:"+events) // --workers 2

	const ports = 32
	dsts := []string{p.V4[1].String(), p.V6[1].String()}
	must(t, p.Do(0, func() error {
		for _, d := range dsts {
			for i := range ports {
				u, err := net.Dial("udp", net.JoinHostPort(d, fmt.Sprint(33434+i)))
				if err != nil {
					return err
				}
				u.Write([]byte("probe"))
				u.Close()
				time.Sleep(time.Millisecond)
			}
		}
		return nil
	}))
	want := len(dsts) * ports
	r.waitPackets(t, float64(2*want))
	// Both sockets must have had flows, or the run proves nothing.
	_, body := opsScrape(t, r.url)
	var perSocket []string
	for k, v := range opsProm(t, body) {
		if strings.HasPrefix(k, "pktpipe_source_packets_total{") {
			perSocket = append(perSocket, fmt.Sprintf("%s=%.0f", k, v))
			if v < float64(want)/8 {
				t.Errorf("a socket read few packets: %s", k)
			}
		}
	}
	if len(perSocket) != 2 {
		t.Errorf("source counters %v, want 2 sockets", perSocket)
	}
	r.stop(t)
	if strings.Contains(r.w.all(), "PACKET_FANOUT_HASH") {
		t.Fatalf("the eBPF fanout program was not used:\n%s", r.w.all())
	}

	var matched, unmatched []string
	quoted := map[string]bool{}
	for _, e := range readEvents(t, events) {
		fb, _ := e["icmp_feedback"].(map[string]any)
		if e["event_type"] != "icmp_feedback" || fb["class"] != "port-unreachable" {
			continue
		}
		q, _ := fb["quoted"].(map[string]any)
		key := fmt.Sprintf("%v %v", q["dest_ip"], q["dest_port"])
		quoted[key] = true
		if fb["matched"] == true {
			matched = append(matched, key)
		} else {
			unmatched = append(unmatched, toJSON(e))
		}
	}
	if len(unmatched) > 0 {
		t.Errorf("%d of %d port-unreachables unmatched:\n%s", len(unmatched), len(matched)+len(unmatched), strings.Join(unmatched, "\n"))
	}
	if len(matched)+len(unmatched) != want || len(quoted) != want {
		t.Errorf("%d port-unreachable events about %d ports, want %d about %d", len(matched)+len(unmatched), len(quoted), want, want)
	}
	t.Logf("%d port-unreachables matched; %s", len(matched), strings.Join(perSocket, " "))
}
