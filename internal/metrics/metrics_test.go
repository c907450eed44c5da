package metrics

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline/stats"
)

type fakeQueues struct{}

func (fakeQueues) QueueFill() ([]string, []int, []int) {
	return []string{"source0", "worker0", "events"}, []int{1, 7, 0}, []int{8, 8, 16}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestScrapeExportsTheRegistry(t *testing.T) {
	reg := stats.NewRegistry()
	reg.Counter("pktpipe_source_packets_total", "Packets read by a source.", "source", "pcapfile").Add(79)
	reg.Counter("pktpipe_events_total", "Events emitted, by event_type.", "type", "flow").Add(20)
	reg.Counter("pktpipe_events_total", "Events emitted, by event_type.", "type", "tls").Add(4)
	reg.Gauge("pktpipe_flow_table_flows", "Flows in the table.", "worker", "0").Set(12)
	reg.LossCounter("pktpipe_sink_failed_events_total", "Events the sink failed to write.")
	// A name registered once with a label and once without: one family.
	reg.Counter("pktpipe_odd_total", "Odd.").Add(1)
	reg.Counter("pktpipe_odd_total", "Odd.", "k", "v").Add(2)

	s, err := Start(Config{Addr: "127.0.0.1:0", Stats: reg, Queues: fakeQueues{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	// A series registered after start appears at the next scrape.
	reg.Counter("pktpipe_events_total", "Events emitted, by event_type.", "type", "dns").Add(3)

	code, body := get(t, "http://"+s.Addr()+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	for _, want := range []string{
		"# TYPE pktpipe_source_packets_total counter",
		`pktpipe_source_packets_total{source="pcapfile"} 79`,
		"# HELP pktpipe_events_total Events emitted, by event_type.",
		`pktpipe_events_total{type="flow"} 20`,
		`pktpipe_events_total{type="tls"} 4`,
		`pktpipe_events_total{type="dns"} 3`,
		"# TYPE pktpipe_flow_table_flows gauge",
		`pktpipe_flow_table_flows{worker="0"} 12`,
		"pktpipe_sink_failed_events_total 0",
		`pktpipe_odd_total{k=""} 1`, // empty = absent to Prometheus
		`pktpipe_odd_total{k="v"} 2`,
		"# TYPE pktpipe_queue_batches gauge",
		`pktpipe_queue_batches{queue="worker0"} 7`,
		`pktpipe_queue_capacity_batches{queue="events"} 16`,
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", body)
	}
}

func TestHealthz(t *testing.T) {
	reg := stats.NewRegistry()
	failed := reg.LossCounter("pktpipe_sink_failed_events_total", "Events the sink failed to write.")
	s, err := Start(Config{Addr: "127.0.0.1:0", Stats: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	url := "http://" + s.Addr() + "/healthz"
	if code, body := get(t, url); code != 503 || !strings.Contains(body, "not running") {
		t.Errorf("before start: %d %q, want 503", code, body)
	}
	s.SetRunning(true)
	if code, body := get(t, url); code != 200 {
		t.Errorf("running: %d %q, want 200", code, body)
	}
	failed.Add(5)
	if code, body := get(t, url); code != 503 || !strings.Contains(body, "pktpipe_sink_failed_events_total") {
		t.Errorf("after sink failure: %d %q, want 503 naming the counter", code, body)
	}
	s.SetRunning(false)
}

func TestCheckAddr(t *testing.T) {
	for _, c := range []struct {
		addr   string
		remote bool
		ok     bool
	}{
		{"127.0.0.1:9477", false, true},
		{"[::1]:9477", false, true},
		{"localhost:9477", false, true},
		{"127.0.0.2:9477", false, true},
		{"0.0.0.0:9477", false, false},
		{":9477", false, false},
		{"192.0.2.1:9477", false, false},
		{"0.0.0.0:9477", true, true},
		{":9477", true, true},
		{"9477", false, false},
		{"127.0.0.1:", false, false},
	} {
		err := CheckAddr(c.addr, c.remote)
		if (err == nil) != c.ok {
			t.Errorf("CheckAddr(%q, remote=%v) = %v, want ok=%v", c.addr, c.remote, err, c.ok)
		}
	}
}
