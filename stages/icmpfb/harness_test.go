package icmpfb

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sinks/memsink"
	"github.com/pktpipe/pktpipe/sources/pcapfile"
	"github.com/pktpipe/pktpipe/stages/decode"
	"github.com/pktpipe/pktpipe/stages/flow"
)

// run runs the real engine on a capture: pcapfile → decode → flow with
// this analyzer → memsink, and returns the JSON lines in sink order.
func run(t *testing.T, file string, workers int) ([]string, *stats.Registry) {
	t.Helper()
	reg := stats.NewRegistry()
	src, err := pcapfile.New(pcapfile.Config{Files: []string{file}, Stats: reg})
	if err != nil {
		t.Fatal(err)
	}
	sink := memsink.New(nil)
	eng, err := pipeline.New(pipeline.Config{Workers: workers, Stats: reg}, pipeline.Parts{
		Sources:    []pipeline.Source{src},
		NewDecoder: func() pipeline.Decoder { return decode.New() },
		NewProcessor: func(w int) pipeline.Processor {
			return flow.NewProcessor(flow.Config{Workers: workers, Stats: reg}, New(Config{Stats: reg}))
		},
		Sink: sink,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range sink.Lines() {
		out = append(out, string(l))
	}
	return out, reg
}

// Parsed views of our output.
type quotedJSON struct {
	SrcIP    string  `json:"src_ip"`
	SrcPort  *int    `json:"src_port"`
	DestIP   string  `json:"dest_ip"`
	DestPort *int    `json:"dest_port"`
	Proto    string  `json:"proto"`
	TTL      int     `json:"ttl"`
	IPLen    int     `json:"ip_len"`
	Seq      *uint32 `json:"seq"`
}

type fbJSON struct {
	Class       string      `json:"class"`
	Detail      string      `json:"detail"`
	Reporter    string      `json:"reporter"`
	Quoted      *quotedJSON `json:"quoted"`
	QuotedTTL   *int        `json:"quoted_ttl"`
	Truncated   bool        `json:"truncated"`
	Matched     bool        `json:"matched"`
	Direction   string      `json:"direction"`
	Verified    *bool       `json:"verified"`
	MTU         *int        `json:"mtu"`
	Pointer     *int        `json:"pointer"`
	Gateway     string      `json:"gateway"`
	SinceLastMs *float64    `json:"since_last_ms"`
	// items[] entries
	Timestamp string `json:"timestamp"`
	ICMPType  int    `json:"icmp_type"`
	ICMPCode  int    `json:"icmp_code"`
}

type flowFBJSON struct {
	Count      int      `json:"count"`
	Unverified int      `json:"unverified"`
	Summary    string   `json:"summary"`
	PathMTU    int      `json:"path_mtu"`
	Items      []fbJSON `json:"items"`
}

type lineJSON struct {
	raw         string
	EventType   string          `json:"event_type"`
	Timestamp   string          `json:"timestamp"`
	FlowID      uint64          `json:"flow_id"`
	SrcIP       string          `json:"src_ip"`
	SrcPort     int             `json:"src_port"`
	DestIP      string          `json:"dest_ip"`
	DestPort    int             `json:"dest_port"`
	Proto       string          `json:"proto"`
	CommunityID string          `json:"community_id"`
	ICMPType    *int            `json:"icmp_type"`
	ICMPCode    *int            `json:"icmp_code"`
	RawFB       json.RawMessage `json:"icmp_feedback"`
	FB          *fbJSON         `json:"-"` // icmp_feedback events
	FlowFB      *flowFBJSON     `json:"-"` // flow records
}

func parse(t *testing.T, lines []string) (fbs, flows []lineJSON) {
	t.Helper()
	for _, l := range lines {
		var v lineJSON
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		v.raw = l
		switch v.EventType {
		case "icmp_feedback":
			v.FB = new(fbJSON)
			if err := json.Unmarshal(v.RawFB, v.FB); err != nil {
				t.Fatalf("%v: %s", err, l)
			}
			fbs = append(fbs, v)
		case "flow":
			if v.RawFB != nil {
				v.FlowFB = new(flowFBJSON)
				if err := json.Unmarshal(v.RawFB, v.FlowFB); err != nil {
					t.Fatalf("%v: %s", err, l)
				}
			}
			flows = append(flows, v)
		}
	}
	// Errors in packet order (workers interleave).
	sort.SliceStable(fbs, func(i, j int) bool { return fbs[i].Timestamp < fbs[j].Timestamp })
	return fbs, flows
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	sort.Strings(c)
	return c
}

func flowByID(flows []lineJSON, id uint64) *lineJSON {
	for i := range flows {
		if flows[i].FlowID == id {
			return &flows[i]
		}
	}
	return nil
}
