package quic_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pktpipe/pktpipe/internal/app"
	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/sinks/memsink"
)

// runApp runs the pipeline pktpipe -r runs (internal/app: pcapfile source,
// decoder, every analyzer, workers) into a memsink, and returns the
// decoded events.
func runApp(t *testing.T, file string, workers int) []map[string]any {
	t.Helper()
	sink := memsink.New(nil)
	p, err := app.Build(app.Options{Files: []string{file}, Workers: workers, Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Engine.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return sink.Events()
}

// field follows a suricata-verify path ("quic.extensions[4].values[0]")
// into a decoded event; nil when it is absent.
func field(ev map[string]any, path string) any {
	var v any = ev
	for _, part := range strings.Split(path, ".") {
		name, idx, _ := strings.Cut(part, "[")
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[name]
		for idx != "" {
			var i int
			var rest string
			if _, err := fmt.Sscanf(idx, "%d", &i); err != nil {
				return nil
			}
			a, ok := v.([]any)
			if !ok || i < 0 || i >= len(a) {
				return nil
			}
			v = a[i]
			_, rest, _ = strings.Cut(idx, "[")
			idx = rest
		}
	}
	return v
}

// matches is a suricata-verify filter's match: every path has the value
// (numbers compared as their text).
func matches(ev map[string]any, match map[string]string) bool {
	for path, want := range match {
		if got := field(ev, path); got == nil || fmt.Sprint(got) != want {
			return false
		}
	}
	return true
}

// TestSuricataVerify checks the EVE expectations of suricata-verify's
// QUIC tests (the filters of each test.yaml) on the events of a normal
// pipeline run, with 1 and 4 workers: the number of quic events with the
// JA4, and, for the fragmentation tests, exactly one quic event with the
// pcap_cnt of the packet that completed the hello and the extension names
// and values.
func TestSuricataVerify(t *testing.T) {
	root := testenv.Conformance(t, "suricata-verify", "tests")
	const quicJA4 = "q13d0310h3_55b375c5d22e_cd85d2d88918"
	for _, tc := range []struct {
		name  string
		count int
		match map[string]string
	}{
		{"ja4-quic", 11, map[string]string{"event_type": "quic", "quic.ja4": quicJA4}},
		{"ja4-tls-quic", 1, map[string]string{"event_type": "quic", "quic.ja4": quicJA4}},
		{"quic-frag", 1, map[string]string{"event_type": "quic", "pcap_cnt": "2",
			"quic.extensions[0].name": "status_request", "quic.extensions[4].name": "alpn", "quic.extensions[4].values[0]": "h3"}},
		{"quic-frag-middle-gap", 1, map[string]string{"event_type": "quic", "pcap_cnt": "3",
			"quic.extensions[0].name": "key_share", "quic.extensions[8].name": "server_name",
			"quic.extensions[8].values[0]": "optimizationguide-pa.googleapis.com"}},
		{"quic-frag-unordered", 1, map[string]string{"event_type": "quic", "pcap_cnt": "2",
			"quic.extensions[0].name": "supported_groups", "quic.extensions[7].name": "server_name",
			"quic.extensions[7].values[0]": "mastodon.social"}},
		// The ServerHello, in two CRYPTO frames received in reverse
		// order (packets 4 and 6), with a post-quantum key share.
		{"quic-frag-wait", 1, map[string]string{"event_type": "quic", "pcap_cnt": "6", "quic.extensions[0].name": "key_share"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(root, tc.name, "input.pcap")
			var first []string
			for _, workers := range []int{1, 4} {
				evs := runApp(t, file, workers)
				n := 0
				var quic []string
				for _, e := range evs {
					if e["event_type"] == "quic" {
						quic = append(quic, fmt.Sprintf("pcap_cnt %v sni %v ja4 %v ja3s %v exts %v",
							e["pcap_cnt"], field(e, "quic.sni"), field(e, "quic.ja4"), field(e, "quic.ja3s.hash"), field(e, "quic.extensions")))
					}
					if matches(e, tc.match) {
						n++
					}
				}
				if n != tc.count {
					t.Errorf("workers %d: %d events match %v, want %d; quic events:\n%s", workers, n, tc.match, tc.count, strings.Join(quic, "\n"))
				}
				slices.Sort(quic)
				if first == nil {
					first = quic
				} else if !slices.Equal(first, quic) {
					t.Errorf("quic events differ with 1 and %d workers:\n%s\n---\n%s", workers, strings.Join(first, "\n"), strings.Join(quic, "\n"))
				}
			}
		})
	}
}

// TestFieldPath checks the path reader the filters rely on, so that a
// broken reader cannot make every filter vacuously fail or pass.
func TestFieldPath(t *testing.T) {
	ev := map[string]any{"pcap_cnt": 6, "quic": map[string]any{"extensions": []any{
		map[string]any{"name": "alpn", "values": []any{"h3"}},
	}}}
	for path, want := range map[string]any{
		"pcap_cnt": 6, "quic.extensions[0].name": "alpn", "quic.extensions[0].values[0]": "h3",
		"quic.extensions[1].name": nil, "quic.sni": nil, "tls.sni": nil,
	} {
		if got := field(ev, path); got != want {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}
	if !matches(ev, map[string]string{"pcap_cnt": "6", "quic.extensions[0].values[0]": "h3"}) ||
		matches(ev, map[string]string{"pcap_cnt": "2"}) {
		t.Error("matches disagrees with field")
	}
}
