package kafkae2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Issue 17 part 3: two pktpipe processes with different --sensor-name
// write the same capture into one topic of 6 partitions at the same time.
// Read back with kcat:
//   - each sensor's events are exactly what its file sink writes (nothing
//     lost, nothing twice), told apart by host;
//   - every message is keyed by its community_id, and all the events of a
//     community_id, both sensors', are on one partition, in each sensor's
//     order;
//   - event_id is distinct over both sensors' events, so de-duplicating by
//     it never merges two sensors.
func TestTwoSensorsOneTopic(t *testing.T) {
	needBroker(t)
	path := capture(t, 60_000)
	sensors := []string{"sensor-a", "sensor-b"}
	want := map[string][]string{}
	for _, s := range sensors {
		want[s] = fileEvents(t, path, "--workers", "2", "--sensor-name", s)
	}
	topic := fmt.Sprintf("pktpipe-two-sensors-%d", time.Now().UnixNano())
	createTopic(t, topic, 6)
	t.Cleanup(func() { deleteTopic(topic) })

	var wg sync.WaitGroup
	codes := make([]int, len(sensors))
	runs := make([]*run, len(sensors))
	for i, s := range sensors {
		runs[i] = start(t, false, "-r", path, "--workers", "2", "--no-progress", "--sensor-name", s,
			"-o", "kafka://"+brokerAddr+"/"+topic)
	}
	for i := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-runs[i].done:
			case <-time.After(5 * time.Minute):
				runs[i].cmd.Process.Kill()
			}
			runs[i].cmd.Wait()
			codes[i] = runs[i].cmd.ProcessState.ExitCode()
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != 0 {
			t.Fatalf("%s: exit %d\n%s", sensors[i], c, runs[i].log())
		}
	}

	msgs := consume(t, topic)
	type ev struct {
		Host        string `json:"host"`
		CommunityID string `json:"community_id"`
		EventID     string `json:"event_id"`
	}
	got := map[string][]string{}          // host -> values, in partition order
	partOf := map[string]int{}            // community_id -> partition
	seq := map[string][]string{}          // community_id + host -> values in order
	byCID := map[string]map[string]bool{} // community_id -> hosts
	ids := map[string]string{}            // event_id -> value
	parts := map[int]int{}
	for _, m := range msgs {
		var e ev
		if err := json.Unmarshal([]byte(m.value), &e); err != nil {
			t.Fatalf("partition %d: %v: %.200s", m.partition, err, m.value)
		}
		got[e.Host] = append(got[e.Host], m.value)
		parts[m.partition]++
		if m.key != e.CommunityID {
			t.Fatalf("key %q, community_id %q: %.200s", m.key, e.CommunityID, m.value)
		}
		if !strings.Contains(m.headers, "event_id="+e.EventID) {
			t.Fatalf("headers %q without the event's event_id %s", m.headers, e.EventID)
		}
		if o, dup := ids[e.EventID]; dup && o != m.value {
			t.Fatalf("event_id %s on two events:\n%.200s\n%.200s", e.EventID, o, m.value)
		}
		ids[e.EventID] = m.value
		if e.CommunityID == "" {
			continue // no key: any partition
		}
		if p, ok := partOf[e.CommunityID]; ok && p != m.partition {
			t.Fatalf("community_id %s on partitions %d and %d", e.CommunityID, p, m.partition)
		}
		partOf[e.CommunityID] = m.partition
		seq[e.CommunityID+"\x00"+e.Host] = append(seq[e.CommunityID+"\x00"+e.Host], m.value)
		if byCID[e.CommunityID] == nil {
			byCID[e.CommunityID] = map[string]bool{}
		}
		byCID[e.CommunityID][e.Host] = true
	}
	for _, s := range sensors {
		a, b := slices.Clone(got[s]), slices.Clone(want[s])
		slices.Sort(a)
		slices.Sort(b)
		if !slices.Equal(a, b) {
			t.Fatalf("%s: Kafka holds %d events, its file sink wrote %d (or they differ)", s, len(a), len(b))
		}
		// Each sensor's order, per community_id: the file sink's.
		wantSeq := map[string][]string{}
		for _, v := range want[s] {
			var e ev
			json.Unmarshal([]byte(v), &e)
			if e.CommunityID != "" {
				wantSeq[e.CommunityID] = append(wantSeq[e.CommunityID], v)
			}
		}
		for cid, vs := range wantSeq {
			if !slices.Equal(seq[cid+"\x00"+s], vs) {
				t.Fatalf("%s, community_id %s: the partition's order is not the sensor's", s, cid)
			}
		}
	}
	both := 0
	for _, hosts := range byCID {
		if len(hosts) == len(sensors) {
			both++
		}
	}
	if both != len(byCID) || len(ids) != len(msgs) {
		t.Fatalf("%d of %d community_ids from both sensors; %d distinct event_ids for %d messages", both, len(byCID), len(ids), len(msgs))
	}
	t.Logf("%d messages (%d per sensor), %d community_ids each on one partition with both sensors' events in each sensor's order; messages per partition %v; %d distinct event_ids",
		len(msgs), len(want[sensors[0]]), len(byCID), parts, len(ids))
}
