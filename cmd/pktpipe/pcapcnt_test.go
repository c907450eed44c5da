package main

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"
)

// oracleRecord is one record of the input, read by gopacket's pcapgo.
type oracleRecord struct {
	ts       time.Time
	src, dst string
}

// readOracle returns the records of the files, in order, as one stream.
func readOracle(t *testing.T, files ...string) []oracleRecord {
	t.Helper()
	var out []oracleRecord
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		r, err := pcapgo.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		for {
			data, ci, err := r.ReadPacketData()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			rec := oracleRecord{ts: ci.Timestamp}
			pk := gopacket.NewPacket(data, r.LinkType(), gopacket.NoCopy)
			if nl := pk.NetworkLayer(); nl != nil {
				s, d := nl.NetworkFlow().Endpoints()
				rec.src, rec.dst = net.IP(s.Raw()).String(), net.IP(d.Raw()).String()
			}
			out = append(out, rec)
		}
		f.Close()
	}
	return out
}

// TestPcapCnt: every event a packet produced carries pcap_cnt, the
// 1-based position of that packet in the input (across -r files), and
// nothing else does: the record at that position has the event's
// timestamp and addresses (for icmp_feedback, the reporter sent it);
// flow records, and tls records of handshakes still open when their flow
// ended (stamped with the flow's end), have none. The same with 1 and 4
// workers.
func TestPcapCnt(t *testing.T) {
	// In time order: the engine's clock is packet time, and a stream
	// going back in time is expired differently by different worker
	// counts.
	files := []string{synth(t, 3000), sample}
	recs := readOracle(t, files...)
	nFirst := int64(len(readOracle(t, files[0])))
	var outs [2][]string
	for i, w := range []int{1, 4} {
		code, out, errs := runCmd(t, nil, "-r", files[0], "-r", files[1], "--workers", strconv.Itoa(w))
		if code != exitOK {
			t.Fatalf("workers %d: exit %d\n%s", w, code, errs)
		}
		outs[i] = slices.Sorted(slices.Values(lines(parseLines(t, out))))
	}
	if !slices.Equal(outs[0], outs[1]) {
		t.Fatal("events differ with 1 and 4 workers")
	}
	_, out, _ := runCmd(t, nil, "-r", files[0], "-r", files[1])
	evs := parseLines(t, out)
	flowEnd := map[string]any{}
	for _, e := range evs {
		if f, ok := e["flow"].(map[string]any); ok && e["event_type"] == "flow" {
			flowEnd[string(e["flow_id"].(json.Number))] = f["end"]
		}
	}
	byType := map[string]int{}
	inSecond, atFlowEnd := 0, 0
	for _, e := range evs {
		typ, _ := e["event_type"].(string)
		cnt, has := e["pcap_cnt"]
		if typ == "flow" {
			if has {
				t.Errorf("flow record with pcap_cnt: %s", toJSON(e))
			}
			continue
		}
		if !has && typ == "tls" && flowEnd[string(e["flow_id"].(json.Number))] == e["timestamp"] {
			atFlowEnd++
			continue
		}
		if !has {
			t.Errorf("%s event without pcap_cnt: %s", typ, toJSON(e))
			continue
		}
		byType[typ]++
		n := num(cnt)
		if n < 1 || n > int64(len(recs)) {
			t.Errorf("pcap_cnt %d outside 1..%d: %s", n, len(recs), toJSON(e))
			continue
		}
		if n > nFirst {
			inSecond++
		}
		rec := recs[n-1]
		if ts := rec.ts.UTC().Format("2006-01-02T15:04:05.000000+0000"); ts != e["timestamp"] {
			t.Errorf("pcap_cnt %d: record time %s, event time %v: %s", n, ts, e["timestamp"], toJSON(e))
		}
		if typ == "icmp_feedback" {
			fb, _ := e["icmp_feedback"].(map[string]any)
			if rec.src != fb["reporter"] {
				t.Errorf("pcap_cnt %d: record from %s, reporter %v", n, rec.src, fb["reporter"])
			}
		} else if !(rec.src == e["src_ip"] && rec.dst == e["dest_ip"]) && !(rec.src == e["dest_ip"] && rec.dst == e["src_ip"]) {
			t.Errorf("pcap_cnt %d: record %s → %s is not of the event's flow: %s", n, rec.src, rec.dst, toJSON(e))
		}
	}
	for _, typ := range []string{"tls", "dns", "rtt", "icmp_feedback"} {
		if byType[typ] == 0 {
			t.Errorf("no %s event checked (%v)", typ, byType)
		}
	}
	if inSecond == 0 {
		t.Error("no event from the second file: counting across files is not checked")
	}
	if atFlowEnd > byType["tls"]/4 {
		t.Errorf("%d tls records at flow end, %d completed by a packet", atFlowEnd, byType["tls"])
	}
	t.Logf("%d packets; events checked by type: %v (%d from the second file); %d tls records at flow end", len(recs), byType, inSecond, atFlowEnd)
}

var pcapCntField = regexp.MustCompile(`"pcap_cnt":\d+,|"event_id":"[0-9a-f]{16}",`)

// withoutPcapCnt removes pcap_cnt (and event_id, which hashes it) from
// JSON lines, to compare the events of two inputs that hold the same
// packets at other positions.
func withoutPcapCnt(s string) string { return pcapCntField.ReplaceAllString(s, "") }
