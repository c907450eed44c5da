package kafka

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

func gauge(reg *stats.Registry, name string) float64 { return counter(reg, name) }

// watchWaiting records whether pktpipe_kafka_write_waiting was ever 1
// while the test writes: with a spool, Write must not push back.
func watchWaiting(t *testing.T, s *Sink) *atomic.Bool {
	var seen atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		for ctx.Err() == nil {
			if s.m.waiting.Load() != 0 {
				seen.Store(true)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return &seen
}

// The broker is down: the budget fills and every later event goes to the
// spool, without Write waiting. Once the broker is back, the drainer sends
// the spool in order until it is empty (its gauges say so, and its files
// are gone), and kcat reads back every event, with the bytes, key and
// headers the sink made.
func TestSpoolOutageDrainsToEmpty(t *testing.T) {
	needBroker(t)
	topic := uniqueTopic("spool")
	createTopic(t, topic, 3)
	fd := &faultDialer{}
	fd.setDown(true)
	reg := stats.NewRegistry()
	dir := filepath.Join(t.TempDir(), "spool")
	s := newSink(t, Config{Topic: topic, Stats: reg, MaxInflight: 200, SpoolDir: dir, SpoolMax: 64 << 20,
		MaxBlock: time.Hour, RetryBackoffMax: 200 * time.Millisecond, DrainTimeout: 60 * time.Second, dial: fd.DialContext})
	waited := watchWaiting(t, s)
	const n = 20000
	evs := flows(1, n)
	start := time.Now()
	writeAll(t, s, evs)
	if waited.Load() {
		t.Fatal("Write waited for budget although the spool had room")
	}
	in := counter(reg, "pktpipe_kafka_spool_records_in_total")
	inflight := gauge(reg, "pktpipe_kafka_inflight_events")
	bytes, segs := gauge(reg, "pktpipe_kafka_spool_bytes"), gauge(reg, "pktpipe_kafka_spool_segments")
	if in+inflight != n || bytes == 0 || segs == 0 {
		t.Fatalf("broker down: spool records in %v + in flight %v != %d; bytes %v, segments %v", in, inflight, n, bytes, segs)
	}
	t.Logf("broker down: %d events written in %v; spool: %v records in, %v bytes, %v segments", n, time.Since(start).Round(time.Millisecond), in, bytes, segs)

	fd.setDown(false)
	waitFor(t, "the spool to drain", func() bool {
		return gauge(reg, "pktpipe_kafka_spool_bytes") == 0 && counter(reg, "pktpipe_kafka_spool_records_out_total") >= in
	})
	if out := counter(reg, "pktpipe_kafka_spool_records_out_total"); out != in {
		t.Fatalf("spool records out %v, in %v", out, in)
	}
	if segs := gauge(reg, "pktpipe_kafka_spool_segments"); segs != 0 {
		t.Fatalf("segments %v after the drain", segs)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if names, _ := filepath.Glob(filepath.Join(dir, "*.seg")); len(names) != 0 {
		t.Fatalf("segment files left after the drain: %v", names)
	}
	if counter(reg, "pktpipe_kafka_spilled_total") != 0 || counter(reg, "pktpipe_kafka_spool_dropped_total") != 0 {
		t.Fatal("spilled or dropped events")
	}
	want := map[int]string{}
	for _, ev := range evs {
		want[int(ev.Head().FlowID)] = string((&encodeOnce{}).json(t, ev))
	}
	got := map[int]int{}
	for _, m := range consume(t, topic, 0) {
		id := flowID(t, []byte(m.value))
		got[id]++
		if m.value != want[id] {
			t.Fatalf("flow %d: value %.120q, want %.120q", id, m.value, want[id])
		}
		if k := evs[id-1].Head().CommunityID; m.key != k {
			t.Fatalf("flow %d: key %q, want %q", id, m.key, k)
		}
		// The event_id header is the event's own event_id field.
		var body struct {
			EventID string `json:"event_id"`
		}
		if err := json.Unmarshal([]byte(m.value), &body); err != nil || len(body.EventID) != 16 {
			t.Fatalf("flow %d: no event_id in %.200q (%v)", id, m.value, err)
		}
		if !strings.Contains(m.headers, "event_type=flow") || !strings.Contains(m.headers, "schema_version=1") ||
			!strings.Contains(m.headers, "event_id="+body.EventID) ||
			body.EventID != fmt.Sprintf("%016x", evs[id-1].Head().EventID) {
			t.Fatalf("flow %d: headers %q, event_id %s", id, m.headers, body.EventID)
		}
	}
	dups := 0
	for id := 1; id <= n; id++ {
		if got[id] == 0 {
			t.Fatalf("flow %d missing from Kafka", id)
		}
		dups += got[id] - 1
	}
	t.Logf("drained: %d events in Kafka (%d duplicates), spool empty", n, dups)
}

// encodeOnce encodes an event as the sink does (JSON).
type encodeOnce struct{}

func (encodeOnce) json(t *testing.T, ev event.Event) []byte {
	t.Helper()
	c := Config{Brokers: []string{deadBroker}}
	c.defaults()
	b, err := c.build()
	if err != nil {
		t.Fatal(err)
	}
	return b.enc.Append(nil, ev)
}

// A spool left by a run that crashed mid-write: the last segment ends in
// half a record. The next sink cuts it off (counted, with its size),
// sends every whole record first, and removes the segments once the
// broker has acknowledged them.
func TestSpoolTornTailRecovered(t *testing.T) {
	needBroker(t)
	topic := uniqueTopic("spool-torn")
	createTopic(t, topic, 3)
	dir := filepath.Join(t.TempDir(), "spool")
	const n = 3000
	evs := flows(1, n)
	{
		s, _ := deadSink(t, Config{Topic: topic, MaxInflight: 100, SpoolDir: dir})
		writeAll(t, s, evs)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	info, err := InspectSpool(dir, nil)
	if err != nil || info.Records != n || info.TornBytes != 0 {
		t.Fatalf("spool after the first run: %+v, %v; want %d records, nothing torn", info, err, n)
	}
	// Tear the last record: cut the last segment in the middle of it.
	names, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	last := names[len(names)-1]
	st, _ := os.Stat(last)
	const cut = 100
	if err := os.Truncate(last, st.Size()-cut); err != nil {
		t.Fatal(err)
	}
	kept := map[int]bool{}
	info, _ = InspectSpool(dir, func(r SpoolRecord) { kept[flowID(t, r.Value)] = true })
	if info.Records != n-1 || info.TornSegs != 1 {
		t.Fatalf("torn spool: %+v", info)
	}
	torn := 0
	for id := 1; id <= n; id++ {
		if !kept[id] {
			torn = id
		}
	}
	tornBytes := info.TornBytes
	t.Logf("torn tail: %d bytes (the last record, flow %d, less %d bytes)", tornBytes, torn, cut)

	reg := stats.NewRegistry()
	lb := &logBuffer{}
	s := newSink(t, Config{Topic: topic, Stats: reg, SpoolDir: dir, Log: lb.logger(), DrainTimeout: 30 * time.Second})
	if got := counter(reg, "pktpipe_kafka_spool_torn_bytes_total"); got != float64(tornBytes) || counter(reg, "pktpipe_kafka_spool_torn_total") != 1 {
		t.Fatalf("torn bytes %v (want %d), torn %v", got, tornBytes, counter(reg, "pktpipe_kafka_spool_torn_total"))
	}
	if got := counter(reg, "pktpipe_kafka_spool_recovered_total"); got != n-1 {
		t.Fatalf("recovered %v, want %d", got, n-1)
	}
	if !strings.Contains(lb.String(), "torn_bytes="+strconv.FormatInt(tornBytes, 10)) {
		t.Fatalf("log does not report the torn tail:\n%s", lb.String())
	}
	// New events queue behind the spooled ones.
	writeAll(t, s, flows(n+1, 100))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if names, _ := filepath.Glob(filepath.Join(dir, "*.seg")); len(names) != 0 {
		t.Fatalf("segments left: %v", names)
	}
	got := map[int]bool{}
	for _, m := range consume(t, topic, 0) {
		got[flowID(t, []byte(m.value))] = true
	}
	for id := 1; id <= n+100; id++ {
		if got[id] != (id != torn) {
			t.Fatalf("flow %d in Kafka: %v (only flow %d, the torn record, should be missing)", id, got[id], torn)
		}
	}
}

// The spool is full (the broker is down): each policy does what it says,
// and every event is accounted for: in flight, in the spool, or dropped
// (a loss counter).
func TestSpoolFullPolicies(t *testing.T) {
	const n, budget = 5000, 100
	for _, policy := range []string{SpoolDropNewest, SpoolDropOldest, SpoolBlock} {
		t.Run(policy, func(t *testing.T) {
			reg := stats.NewRegistry()
			dir := t.TempDir()
			s, lb := deadSink(t, Config{Stats: reg, MaxInflight: budget, SpoolDir: dir, SpoolMax: minSpoolMax,
				SpoolFull: policy, MaxBlock: 300 * time.Millisecond})
			evs := flows(1, n)
			writeAll(t, s, evs)
			in := counter(reg, "pktpipe_kafka_spool_records_in_total")
			inflight := int(gauge(reg, "pktpipe_kafka_inflight_events"))
			dropped := counter(reg, "pktpipe_kafka_spool_dropped_total")
			spilled := counter(reg, "pktpipe_kafka_spilled_total")
			info, err := InspectSpool(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			if info.Bytes > minSpoolMax {
				t.Fatalf("spool holds %d bytes, over its limit %d", info.Bytes, minSpoolMax)
			}
			switch policy {
			case SpoolDropNewest:
				// The spool keeps the first events; the rest is dropped.
				if dropped == 0 || float64(inflight)+in+dropped != n || float64(info.Records) != in {
					t.Fatalf("in flight %d + spooled %v + dropped %v != %d (spool holds %d)", inflight, in, dropped, n, info.Records)
				}
			case SpoolDropOldest:
				// The spool keeps the last events.
				var first, last int
				InspectSpool(dir, func(r SpoolRecord) {
					if first == 0 {
						first = flowID(t, r.Value)
					}
					last = flowID(t, r.Value)
				})
				if last != n || first <= inflight+1 || float64(inflight+info.Records)+dropped != n {
					t.Fatalf("spool holds flows %d-%d (%d records), dropped %v; want the newest, and all %d accounted for", first, last, info.Records, dropped, n)
				}
			case SpoolBlock:
				// Write waited for room, max_block each time, then spilled.
				if dropped != 0 || spilled == 0 || float64(inflight+info.Records)+spilled != n || !strings.Contains(lb.String(), "no room for max_block") {
					t.Fatalf("block: dropped %v, spilled %v, spooled %d", dropped, spilled, info.Records)
				}
			}
			if policy != SpoolBlock && !strings.Contains(lb.String(), "spool="+dir) {
				t.Fatalf("the drop log does not name the spool:\n%s", lb.String())
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %v spooled, %d in the spool, %v dropped, %v spilled", policy, in, info.Records, dropped, spilled)
		})
	}
}

// A 1 MiB tmpfs as the spool (its limit far above): the disk fills. The
// log names the spool and the cause, the errors and the drops are
// counted, and the segments hold whole records only.
func TestSpoolDiskFull(t *testing.T) {
	dir := mountTmpfs(t, "size=1m")
	reg := stats.NewRegistry()
	s, lb := deadSink(t, Config{Stats: reg, MaxInflight: 100, SpoolDir: dir, SpoolFull: SpoolDropNewest})
	const n = 10000
	writeAll(t, s, flows(1, n))
	errs, dropped := counter(reg, "pktpipe_kafka_spool_errors_total"), counter(reg, "pktpipe_kafka_spool_dropped_total")
	inflight := gauge(reg, "pktpipe_kafka_inflight_events")
	if errs == 0 || dropped == 0 {
		t.Fatalf("errors %v, dropped %v", errs, dropped)
	}
	log := lb.String()
	if !strings.Contains(log, "spool="+dir) || !strings.Contains(log, "no space left on device") {
		t.Fatalf("log does not name the spool and the cause:\n%s", log)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	info, err := InspectSpool(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.TornBytes != 0 || float64(info.Records)+dropped+inflight != n {
		t.Fatalf("spool %+v, dropped %v: want whole records, all %d accounted for", info, dropped, n)
	}
	t.Logf("1 MiB tmpfs: %d records spooled (%d bytes), %v dropped, %v I/O errors; log: %s", info.Records, info.Bytes, dropped, errs, firstLine(log, "no space"))
}

func firstLine(log, with string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, with) {
			return l
		}
	}
	return ""
}

// The spool is checked at start: a file, a read-only file system, a bad
// policy or limit are usage errors; a spool in use by another sink is
// refused.
func TestSpoolCheckedAtStart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o644)
	for _, c := range []Config{
		{SpoolDir: file},
		{SpoolDir: filepath.Join(file, "sub")},
		{SpoolDir: t.TempDir(), SpoolFull: "drop-middle"},
		{SpoolDir: t.TempDir(), SpoolMax: 1000},
	} {
		c.Brokers = []string{deadBroker}
		c.SpillPath = filepath.Join(t.TempDir(), "spill")
		if _, err := New(c); err == nil || !isUsage(err) {
			t.Errorf("%+v: %v, want a usage error", c.SpoolDir, err)
		}
	}
	dir := t.TempDir()
	s, _ := deadSink(t, Config{SpoolDir: dir})
	defer s.Close()
	_, err := New(Config{Brokers: []string{deadBroker}, SpoolDir: dir, SpillPath: filepath.Join(t.TempDir(), "spill")})
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a second sink on one spool: %v", err)
	}
}

func TestSpoolReadOnlyFS(t *testing.T) {
	ro := mountReadOnly(t)
	_, err := New(Config{Brokers: []string{deadBroker}, SpoolDir: ro, SpillPath: filepath.Join(t.TempDir(), "spill")})
	if err == nil || !isUsage(err) || !strings.Contains(err.Error(), ro) {
		t.Fatalf("read-only spool: %v", err)
	}
}

func isUsage(err error) bool { return registry.IsUsage(err) }

// Segment framing round trip, and the scan's cut at the first bad record.
func TestSegmentFraming(t *testing.T) {
	dir := t.TempDir()
	reg := stats.NewRegistry()
	m := newMetrics(reg)
	c := Config{SpoolDir: dir}
	c.defaults()
	sp, err := openSpool(&c, &m, func(err error) { t.Error(err) })
	if err != nil {
		t.Fatal(err)
	}
	recs := []*record{
		{typ: "flow", id: 1, topic: "t", key: []byte("k1"), value: []byte(`{"a":1}`)},
		{typ: "dns", id: 2, topic: "pktpipe.dns", value: []byte(`{"b":2}`)},
		{typ: "flow", id: 1<<64 - 1, topic: "t", key: []byte{}, value: []byte{0x81, 0xa1}},
	}
	if err := sp.append(recs); err != nil {
		t.Fatal(err)
	}
	if err := sp.close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	info, err := InspectSpool(dir, func(r SpoolRecord) {
		k := "<nil>"
		if r.Key != nil {
			k = string(r.Key)
		}
		got = append(got, r.Topic+"|"+r.EventType+"|"+k+"|"+string(r.Value)+"|"+strconv.FormatUint(r.EventID, 10))
	})
	if err != nil || info.Records != 3 || info.TornBytes != 0 {
		t.Fatalf("%+v %v", info, err)
	}
	want := []string{`t|flow|k1|{"a":1}|1`, `pktpipe.dns|dns|<nil>|{"b":2}|2`, "t|flow||\x81\xa1|18446744073709551615"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("record %d: %q, want %q", i, got[i], want[i])
		}
	}
	// Flip a byte of the second record's payload: the scan keeps the
	// first record only and cuts the rest.
	names, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	b, _ := os.ReadFile(names[0])
	first := spoolHeaderLen + spoolRecHdr + int(le32(b[spoolHeaderLen:]))
	b[first+spoolRecHdr+3] ^= 0xff
	os.WriteFile(names[0], b, 0o640)
	cs, err := checkSegment(names[0])
	if err != nil || cs.records != 1 || cs.torn != int64(len(b)-first) {
		t.Fatalf("checkSegment: %+v %v; want 1 record and %d bytes cut", cs, err, len(b)-first)
	}
	if st, _ := os.Stat(names[0]); st.Size() != int64(first) {
		t.Fatalf("segment is %d bytes after the cut, want %d", st.Size(), first)
	}
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// FuzzSegment: any bytes as a segment file: the scan and the decoder
// never panic, the scan keeps only records whose CRC holds, and what it
// keeps reads back the same.
func FuzzSegment(f *testing.F) {
	var seg []byte
	seg = append(seg, spoolMagic...)
	seg = append(seg, make([]byte, 8)...)
	seg = appendRecord(seg, &record{topic: "t", key: []byte("k"), value: []byte("v")}, "flow")
	seg = appendRecord(seg, &record{topic: "u", value: []byte("{}")}, "dns")
	f.Add(seg)
	f.Add(seg[:len(seg)-3])
	f.Add([]byte(spoolMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "00000000000000000001.seg")
		if err := os.WriteFile(path, data, 0o640); err != nil {
			t.Fatal(err)
		}
		cs, err := checkSegment(path)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := os.Stat(path)
		if cs.torn+st.Size() != int64(len(data)) {
			t.Fatalf("cut %d, left %d, of %d", cs.torn, st.Size(), len(data))
		}
		f2, _ := os.Open(path)
		defer f2.Close()
		r := bufio.NewReader(f2)
		io.CopyN(io.Discard, r, spoolHeaderLen)
		var buf []byte
		n := 0
		for {
			p, err := readRecord(r, &buf)
			if err != nil {
				break
			}
			n++
			decodePayload(p)
		}
		if n != cs.records {
			t.Fatalf("read back %d records, scan kept %d", n, cs.records)
		}
	})
}

// A second signal with a spool: Abandon puts what is unacknowledged into
// the spool (synced, not the spill file), where the next run finds it.
func TestAbandonKeepsUnacknowledgedInSpool(t *testing.T) {
	reg := stats.NewRegistry()
	dir := t.TempDir()
	s, _ := deadSink(t, Config{Stats: reg, SpoolDir: dir, MaxInflight: 300, DrainTimeout: time.Hour})
	writeAll(t, s, flows(1, 700))
	attrs := s.Abandon()
	t.Logf("Abandon: %v", attrs)
	info, err := InspectSpool(dir, nil)
	if err != nil || info.Records != 700 {
		t.Fatalf("spool after Abandon: %+v %v, want 700 records", info, err)
	}
	if ids, _ := spilled(t, s.SpillPath()); len(ids) != 0 || counter(reg, "pktpipe_kafka_spilled_total") != 0 {
		t.Fatalf("%d events spilled; want them in the spool", len(ids))
	}
	s.Close()
	// The next run finds them all.
	s2, _ := deadSink(t, Config{Stats: stats.NewRegistry(), SpoolDir: dir})
	if got := counter(s2.Stats(), "pktpipe_kafka_spool_recovered_total"); got != 700 {
		t.Fatalf("recovered %v, want 700", got)
	}
	s2.Close()
}

// BenchmarkSpoolWrite: Write into the spool (the broker is down, the
// budget full): encoding, framing, one write(2) per batch and the fsyncs.
// Each op is 50k flow events.
func BenchmarkSpoolWrite(b *testing.B) {
	evs := flows(1, 50000)
	var bytes int64
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		c := Config{Brokers: []string{deadBroker}, SpoolDir: dir, MaxInflight: 1, Log: testLogger(),
			SpillPath: filepath.Join(b.TempDir(), "spill"), DrainTimeout: time.Millisecond}
		s, err := New(c)
		if err != nil {
			b.Fatal(err)
		}
		for j := 0; j < len(evs); j += event.MaxBatchEvents {
			if err := s.Write(evs[j:min(j+event.MaxBatchEvents, len(evs))]); err != nil {
				b.Fatal(err)
			}
		}
		bytes = int64(s.m.spoolBytes.Load())
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(len(evs)*b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(bytes*int64(b.N))/b.Elapsed().Seconds()/(1<<20), "MiB/s")
}

// fsync by bytes and by interval: with a byte threshold smaller than a
// batch, every spooled batch is synced; with a huge one and an hour's
// interval, none is; with a short interval, what was written is synced.
func TestSpoolSync(t *testing.T) {
	for _, c := range []struct {
		name     string
		bytes    int64
		interval time.Duration
	}{{"bytes", 1, time.Hour}, {"none", 1 << 40, time.Hour}, {"interval", 1 << 40, 20 * time.Millisecond}} {
		t.Run(c.name, func(t *testing.T) {
			reg := stats.NewRegistry()
			s, _ := deadSink(t, Config{Stats: reg, SpoolDir: t.TempDir(), MaxInflight: 1, SpoolSyncBytes: c.bytes, SpoolSyncInterval: c.interval})
			defer s.Close()
			const batches = 10
			writeAll(t, s, flows(1, batches*event.MaxBatchEvents))
			if c.name == "bytes" {
				// The first batch is admitted (an empty budget takes any
				// batch); each other one is a write and an fsync.
				if got := counter(reg, "pktpipe_kafka_spool_syncs_total"); got != batches-1 {
					t.Fatalf("%v fsyncs for %d spooled batches", got, batches-1)
				}
				return
			}
			if c.name == "none" {
				if got := counter(reg, "pktpipe_kafka_spool_syncs_total"); got != 0 {
					t.Fatalf("%v fsyncs, want none before the interval or the bytes", got)
				}
				return
			}
			waitFor(t, "the interval's fsync", func() bool { return counter(reg, "pktpipe_kafka_spool_syncs_total") >= 1 })
		})
	}
}
