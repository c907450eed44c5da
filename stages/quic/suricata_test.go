package quic

import (
	"path/filepath"
	"testing"

	"github.com/pktpipe/pktpipe/internal/testenv"
)

// clientEvents and serverEvents split a run's quic events by the hello
// they report.
func (r *result) clientEvents() []quicEvent {
	var out []quicEvent
	for _, e := range r.events {
		if e.JA4 != "" || e.SNI != "" {
			out = append(out, e)
		}
	}
	return out
}

func (r *result) serverEvents() []quicEvent {
	var out []quicEvent
	for _, e := range r.events {
		if e.JA3SHash != "" {
			out = append(out, e)
		}
	}
	return out
}

// extCheck is one quic.extensions[i] expectation of a test.yaml.
type extCheck struct {
	i     int
	name  string
	value string // values[0], "" = not checked
}

// TestSuricataVerify checks the EVE expectations of suricata-verify's
// QUIC tests (test.yaml of each): the number of quic events with the
// given JA4, and, for the fragmentation tests, the packet that completed
// the hello (pcap_cnt, from feeding packets one at a time: packet.Packet
// carries no capture index, so the event itself has no pcap_cnt) and the
// extension names and values.
func TestSuricataVerify(t *testing.T) {
	root := testenv.Conformance(t, "suricata-verify", "tests")
	const quicJA4 = "q13d0310h3_55b375c5d22e_cd85d2d88918"
	for _, tc := range []struct {
		name    string
		count   int    // quic events matching ja4 (0 = not checked)
		ja4     string // with count
		pcapCnt int    // of the one event matching exts
		server  bool   // the matching event is the server hello's
		exts    []extCheck
	}{
		{name: "ja4-quic", count: 11, ja4: quicJA4},
		{name: "ja4-tls-quic", count: 1, ja4: quicJA4},
		{name: "quic-frag", pcapCnt: 2, exts: []extCheck{{0, "status_request", ""}, {4, "alpn", "h3"}}},
		{name: "quic-frag-middle-gap", pcapCnt: 3, exts: []extCheck{{0, "key_share", ""}, {8, "server_name", "optimizationguide-pa.googleapis.com"}}},
		{name: "quic-frag-unordered", pcapCnt: 2, exts: []extCheck{{0, "supported_groups", ""}, {7, "server_name", "mastodon.social"}}},
		// The ServerHello, in two CRYPTO frames received in reverse
		// order (packets 4 and 6), with a post-quantum key share.
		{name: "quic-frag-wait", pcapCnt: 6, server: true, exts: []extCheck{{0, "key_share", ""}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := runCapture(t, filepath.Join(root, tc.name, "input.pcap"))
			if tc.count > 0 {
				n := 0
				for _, e := range res.events {
					if e.JA4 == tc.ja4 {
						n++
					}
				}
				if n != tc.count {
					for _, e := range res.events {
						t.Logf("event at %d: sni %q ja4 %q", e.pcapCnt, e.SNI, e.JA4)
					}
					t.Errorf("%d quic events with ja4 %s, want %d", n, tc.ja4, tc.count)
				}
			}
			if tc.exts == nil {
				return
			}
			// Exactly one event matches, as the test.yaml filter requires.
			matches := 0
			for _, e := range res.events {
				if e.pcapCnt != tc.pcapCnt || (e.JA3SHash != "") != tc.server {
					continue
				}
				ok := true
				for _, c := range tc.exts {
					if c.i >= len(e.Extensions) || e.Extensions[c.i].Name != c.name ||
						c.value != "" && (len(e.Extensions[c.i].Values) == 0 || e.Extensions[c.i].Values[0] != c.value) {
						ok = false
					}
				}
				if ok {
					matches++
				}
			}
			if matches != 1 {
				for _, e := range res.events {
					t.Logf("event at packet %d: sni %q ja4 %q ja3s %q exts %+v", e.pcapCnt, e.SNI, e.JA4, e.JA3SHash, e.Extensions)
				}
				t.Errorf("%d events match pcap_cnt %d and %+v, want 1", matches, tc.pcapCnt, tc.exts)
			}
		})
	}
}
