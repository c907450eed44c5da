package kafka

// Tests against a real broker. TestMain uses PKTPIPE_KAFKA (host:port) if
// it answers, or else starts test/kafka/kafka.sh's broker; tests that stop
// or kill the broker need the latter. A missing broker skips locally and
// fails under PKTPIPE_CI=1 (internal/testenv). Everything read back is read
// by kcat, an independent client.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/pktpipe/pktpipe/internal/kafkatest"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

var (
	brokerAddr string
	brokerErr  error  // why there is no broker
	kafkaSh    string // set when the broker is ours to stop and restart
)

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	brokerAddr = os.Getenv("PKTPIPE_KAFKA")
	if brokerAddr == "" {
		brokerAddr = "127.0.0.1:9092"
	}
	if sh, err := findKafkaSh(); err == nil && os.Getenv("PKTPIPE_KAFKA") == "" {
		kafkaSh = sh
		// Some tests stop and kill the broker: two runs of this package
		// at once (several developers on one machine) would break each
		// other, so they take turns.
		unlock, err := lockBroker(brokerAddr, 10*time.Minute)
		if err != nil {
			brokerErr = err
			return m.Run()
		}
		defer unlock()
		// Always: up is quick when the broker runs, and it restarts one
		// that runs another configuration (without the TLS listeners).
		out, err := exec.Command("bash", sh, "up").CombinedOutput()
		if err != nil {
			if answers(brokerAddr) {
				// A broker kafka.sh did not start: usable, not ours to stop.
				fmt.Fprintf(os.Stderr, "kafka.sh up: %v\n%s", err, out)
				kafkaSh = ""
			} else {
				brokerErr = fmt.Errorf("kafka.sh up: %v\n%s", err, out)
			}
		}
	}
	if brokerErr == nil && !answers(brokerAddr) {
		brokerErr = fmt.Errorf("no broker answers on %s", brokerAddr)
	}
	return m.Run()
}

func lockBroker(addr string, wait time.Duration) (func(), error) { return kafkatest.Lock(addr, wait) }
func findKafkaSh() (string, error)                               { return kafkatest.Script() }
func answers(addr string) bool                                   { return kafkatest.Answers(addr) }

func needBroker(t *testing.T) {
	t.Helper()
	testenv.NeedCommand(t, "kcat")
	testenv.Need(t, brokerErr == nil, fmt.Sprint("a Kafka broker: ", brokerErr))
}

// needOwnBroker is for tests that stop the broker.
func needOwnBroker(t *testing.T) {
	t.Helper()
	needBroker(t)
	testenv.Need(t, kafkaSh != "", "a broker started by test/kafka/kafka.sh (PKTPIPE_KAFKA is set)")
	t.Cleanup(func() { kafkaCtl(t, "up") })
}

func kafkaCtl(t *testing.T, verb string) {
	t.Helper()
	start := time.Now()
	out, err := exec.Command("bash", kafkaSh, verb).CombinedOutput()
	if err != nil {
		t.Fatalf("kafka.sh %s: %v\n%s", verb, err, out)
	}
	t.Logf("kafka.sh %s: %s (%.1fs)", verb, strings.TrimSpace(string(out)), time.Since(start).Seconds())
}

var topicSeq int

func uniqueTopic(name string) string {
	topicSeq++
	return fmt.Sprintf("pktpipe-test-%s-%d-%d", name, time.Now().UnixNano(), topicSeq)
}

func createTopic(t testing.TB, name string, partitions int) {
	t.Helper()
	c := &kafkago.Client{Addr: kafkago.TCP(brokerAddr), Timeout: 20 * time.Second}
	// A broker that has just (re)started can drop the first admin request.
	var err error
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		var res *kafkago.CreateTopicsResponse
		res, err = c.CreateTopics(context.Background(), &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{
			{Topic: name, NumPartitions: partitions, ReplicationFactor: 1},
		}})
		if err == nil {
			err = res.Errors[name]
		}
		if err == nil || errors.Is(err, kafkago.TopicAlreadyExists) {
			return
		}
	}
	t.Fatalf("create topic %s: %v", name, err)
}

// flows returns n flow events with FlowID first..first+n-1 and
// community IDs shared by a few events each, stamped with their event_id
// as a worker's emitter does.
func flows(first, n int) []event.Event {
	var ids event.IDStamper
	out := make([]event.Event, n)
	for i := range out {
		id := first + i
		f := &event.Flow{
			Header: event.Header{
				Timestamp: 1_700_000_000_000_000_000 + int64(id)*1000,
				FlowID:    uint64(id),
				SrcIP:     netip.AddrFrom4([4]byte{10, 0, byte(id >> 8), byte(id)}),
				DestIP:    netip.MustParseAddr("192.0.2.1"),
				SrcPort:   uint16(1024 + id%50000),
				DestPort:  443,
				Proto:     6,
				IfIndex:   -1,
			},
			PktsToServer: uint64(id % 97), BytesToServer: uint64(id * 13),
			Start: 1_700_000_000_000_000_000, End: 1_700_000_001_000_000_000,
			State: "closed", Reason: "fin", TCPFlags: 0x1b,
		}
		// About three events per key; some events have none.
		if id%29 != 0 {
			f.CommunityID = fmt.Sprintf("1:%08x%020d=", id/3*2654435761%(1<<32), id/3)
		}
		ids.Stamp(f)
		out[i] = f
	}
	return out
}

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func newSink(t *testing.T, c Config) *Sink {
	t.Helper()
	c.Brokers = []string{brokerAddr}
	if c.Stats == nil {
		c.Stats = stats.NewRegistry()
	}
	if c.SpillPath == "" {
		c.SpillPath = filepath.Join(t.TempDir(), "spill.jsonl")
	}
	if c.Log == nil {
		c.Log = testLogger()
	}
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func writeAll(t *testing.T, s *Sink, evs []event.Event) {
	t.Helper()
	for i := 0; i < len(evs); i += event.MaxBatchEvents {
		if err := s.Write(evs[i:min(i+event.MaxBatchEvents, len(evs))]); err != nil {
			t.Fatal(err)
		}
	}
}

type kmsg struct {
	partition int
	key       string
	value     string
	headers   string
}

// consume reads a topic from the beginning to its end with kcat. With
// n > 0 it also stops after n messages.
func consume(t *testing.T, topic string, n int) []kmsg {
	t.Helper()
	args := []string{"-C", "-b", brokerAddr, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%p\t%k\t%h\t%s\n"}
	if n > 0 {
		args = append(args, "-c", strconv.Itoa(n))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "kcat", args...).Output()
	if err != nil {
		t.Fatalf("kcat -C %s: %v", topic, err)
	}
	var msgs []kmsg
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(nil, 8<<20)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), "\t", 4)
		if len(f) != 4 {
			t.Fatalf("kcat line %q", sc.Text())
		}
		p, _ := strconv.Atoi(f[0])
		msgs = append(msgs, kmsg{p, f[1], f[3], f[2]})
	}
	return msgs
}

// flowID is the flow_id inside an encoded event.
func flowID(t *testing.T, value []byte) int {
	t.Helper()
	var v struct {
		FlowID int `json:"flow_id"`
	}
	if err := json.Unmarshal(value, &v); err != nil {
		t.Fatalf("value %.80q: %v", value, err)
	}
	return v.FlowID
}

// javaMurmur2 is the Java client's Utils.murmur2, written from its
// source with Java's int32 arithmetic (independent of kafka-go's port).
func javaMurmur2(data []byte) int32 {
	const seed, m, r = int32(-1756908916), int32(0x5bd1e995), 24
	n := len(data)
	h := seed ^ int32(n)
	for i := 0; i+4 <= n; i += 4 {
		k := int32(data[i]) | int32(data[i+1])<<8 | int32(data[i+2])<<16 | int32(data[i+3])<<24
		k *= m
		k ^= int32(uint32(k) >> r)
		k *= m
		h *= m
		h ^= k
	}
	tail := n &^ 3
	switch n % 4 {
	case 3:
		h ^= int32(data[tail+2]) << 16
		fallthrough
	case 2:
		h ^= int32(data[tail+1]) << 8
		fallthrough
	case 1:
		h ^= int32(data[tail])
		h *= m
	}
	h ^= int32(uint32(h) >> 13)
	h *= m
	h ^= int32(uint32(h) >> 15)
	return h
}

func javaPartition(key string, partitions int) int {
	return int(javaMurmur2([]byte(key))&0x7fffffff) % partitions
}

// Values printed by org.apache.kafka.common.utils.Utils.murmur2 from
// kafka-clients 4.1.2 (and toPositive(h) % 6).
func TestJavaMurmur2Vectors(t *testing.T) {
	for _, c := range []struct {
		key  string
		h    int32
		part int
	}{
		{"21", -973932308, 0},
		{"foobar", -790332482, 0},
		{"a-little-bit-long-string", -985981536, 2},
		{"abc", 479470107, 3},
		{"1:LQU9qZlK+B5F3KDmev6m5PMibrg=", 93084721, 1},
		{"1:x", 1765673471, 5},
	} {
		if h := javaMurmur2([]byte(c.key)); h != c.h {
			t.Errorf("murmur2(%q) = %d, want %d", c.key, h, c.h)
		}
		if p := javaPartition(c.key, 6); p != c.part {
			t.Errorf("partition(%q) = %d, want %d", c.key, p, c.part)
		}
	}
}

// (a) N events arrive once each, intact, keyed by community_id, on the
// partition the Java client would choose.
func TestDeliverKeyedMurmur2(t *testing.T) {
	needBroker(t)
	const n, partitions = 5000, 6
	topic := uniqueTopic("keyed")
	createTopic(t, topic, partitions)
	reg := stats.NewRegistry()
	s := newSink(t, Config{Topic: topic, Stats: reg})
	evs := flows(1, n)
	writeAll(t, s, evs)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := s.m.delivered.Load(); got != n {
		t.Fatalf("delivered counter %d, want %d", got, n)
	}
	if l := reg.Losses(); len(l) != 0 {
		t.Fatalf("losses: %+v", l)
	}

	want := map[int]string{} // flow id -> encoded value
	for _, ev := range evs {
		want[int(ev.Head().FlowID)] = string(s.enc.Append(nil, ev))
	}
	msgs := consume(t, topic, n)
	if len(msgs) != n {
		t.Fatalf("kcat read %d messages, want %d", len(msgs), n)
	}
	seen := map[int]bool{}
	keyPart := map[string]int{}
	keyless := 0
	for _, m := range msgs {
		id := flowID(t, []byte(m.value))
		if seen[id] {
			t.Fatalf("flow %d twice", id)
		}
		seen[id] = true
		if m.value != want[id] {
			t.Fatalf("flow %d: value\n got %s\nwant %s", id, m.value, want[id])
		}
		if wantKey := evs[id-1].Head().CommunityID; m.key != wantKey {
			t.Fatalf("flow %d: key %q, want %q", id, m.key, wantKey)
		}
		if !strings.Contains(m.headers, "schema_version=1") || !strings.Contains(m.headers, "event_type=flow") {
			t.Fatalf("flow %d: headers %q", id, m.headers)
		}
		if m.key == "" {
			keyless++
			continue
		}
		if p, ok := keyPart[m.key]; ok && p != m.partition {
			t.Fatalf("key %s on partitions %d and %d", m.key, p, m.partition)
		}
		keyPart[m.key] = m.partition
		if jp := javaPartition(m.key, partitions); jp != m.partition {
			t.Fatalf("key %s on partition %d, the Java client would use %d", m.key, m.partition, jp)
		}
	}
	t.Logf("%d events, %d keys, %d without key, all on their murmur2 partition", n, len(keyPart), keyless)
}

// dnsLike is a second event type for the per-type topic template.
type dnsLike struct {
	event.Header
	Query string
}

func (*dnsLike) Type() event.Type { return event.TypeDNS }
func (d *dnsLike) EncodeBody(w event.Writer) {
	w.Key("dns")
	w.BeginObject()
	w.Key("rrname")
	w.String(d.Query)
	w.EndObject()
}

func TestTopicPerEventType(t *testing.T) {
	needBroker(t)
	base := uniqueTopic("tmpl")
	s := newSink(t, Config{Topic: base + ".{event_type}", Compression: "lz4"})
	evs := flows(1, 300)
	for i := range 200 {
		evs = append(evs, &dnsLike{Header: event.Header{FlowID: uint64(1000 + i), CommunityID: "1:dns" + strconv.Itoa(i), IfIndex: -1}, Query: "example.org"})
	}
	writeAll(t, s, evs)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for typ, n := range map[string]int{"flow": 300, "dns": 200} {
		msgs := consume(t, base+"."+typ, 0)
		if len(msgs) != n {
			t.Fatalf("topic %s.%s: %d messages, want %d", base, typ, len(msgs), n)
		}
		for _, m := range msgs {
			if !strings.Contains(m.headers, "event_type="+typ) || !strings.Contains(m.value, `"event_type":"`+typ+`"`) {
				t.Fatalf("topic %s.%s holds %s / %s", base, typ, m.headers, m.value)
			}
		}
	}
}

// (b) The broker is killed in the middle of a stream and comes back ~10 s
// later: nothing is lost, the budget holds, duplicates are reported.
func TestBrokerKilledMidStream(t *testing.T) {
	needOwnBroker(t)
	const n, budget = 40000, 4000
	topic := uniqueTopic("kill")
	createTopic(t, topic, 3)
	reg := stats.NewRegistry()
	s := newSink(t, Config{Topic: topic, Stats: reg, MaxInflight: budget, DrainTimeout: 90 * time.Second,
		RetryBackoffMax: time.Second})
	evs := flows(1, n)

	// Sample the in-flight gauge while the stream runs.
	stop := make(chan struct{})
	maxSeen := make(chan int64, 1)
	go func() {
		var peak int64
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				maxSeen <- peak
				return
			case <-tick.C:
				peak = max(peak, s.m.inflightN.Load())
			}
		}
	}()

	written := make(chan error, 1)
	go func() {
		// Paced so that the stream is still running when the broker dies.
		pace := time.NewTicker(10 * time.Millisecond)
		defer pace.Stop()
		for i := 0; i < n; i += event.MaxBatchEvents {
			<-pace.C
			if err := s.Write(evs[i:min(i+event.MaxBatchEvents, n)]); err != nil {
				written <- err
				return
			}
		}
		written <- nil
	}()
	time.Sleep(time.Second)
	kafkaCtl(t, "kill")
	killedAt := s.m.delivered.Load()
	time.Sleep(10 * time.Second)
	kafkaCtl(t, "up")
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	closeErr := s.Close()
	close(stop)
	peak := <-maxSeen
	if closeErr != nil {
		t.Fatalf("close: %v", closeErr)
	}
	if peak > budget {
		t.Fatalf("in-flight gauge reached %d, budget %d", peak, budget)
	}
	msgs := consume(t, topic, 0)
	seen := map[int]int{}
	for _, m := range msgs {
		seen[flowID(t, []byte(m.value))]++
	}
	var missing []int
	for id := 1; id <= n; id++ {
		if seen[id] == 0 {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d events missing (first %v)", len(missing), n, missing[:min(10, len(missing))])
	}
	if l := reg.Losses(); len(l) != 0 {
		t.Fatalf("losses: %+v", l)
	}
	t.Logf("delivered before kill %d; read back %d messages for %d events: %d duplicates; retried %d, produce errors %d, "+
		"peak in-flight %d (budget %d), Write blocked %.1fs in all",
		killedAt, len(msgs), n, len(msgs)-n, s.m.retried.Load(), s.m.produceErrs.Load(), peak, budget,
		float64(s.m.blockedUS.Load())/1e6)
}

// spilled reads a spill file's flow ids.
func spilled(t *testing.T, path string) (ids map[int]bool, reasons map[string]int) {
	t.Helper()
	ids, reasons = map[int]bool{}, map[string]int{}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	for {
		var line struct {
			Reason string          `json:"reason"`
			Topic  string          `json:"topic"`
			Value  json.RawMessage `json:"value"`
		}
		if err := dec.Decode(&line); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("spill file: %v", err)
		}
		ids[flowID(t, line.Value)] = true
		reasons[line.Reason]++
	}
	return
}

// (c) The broker is down at Close: Close gives up after DrainTimeout,
// spills the rest, and logs so; the spill is a loss (exit 3), not an
// error (exit 1). Kafka plus the spill file hold everything.
func TestBrokerDownAtClose(t *testing.T) {
	needOwnBroker(t)
	const before, after = 1000, 3000
	const drain = 3 * time.Second
	topic := uniqueTopic("down")
	createTopic(t, topic, 3)
	reg := stats.NewRegistry()
	lb := &logBuffer{}
	s := newSink(t, Config{Topic: topic, Stats: reg, DrainTimeout: drain, Log: lb.logger()})
	evs := flows(1, before+after)
	writeAll(t, s, evs[:before])
	// Let the first part be acknowledged.
	for deadline := time.Now().Add(30 * time.Second); s.m.delivered.Load() < before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d delivered while the broker was up", s.m.delivered.Load(), before)
		}
	}
	kafkaCtl(t, "down")
	writeAll(t, s, evs[before:])
	start := time.Now()
	err := s.Close()
	took := time.Since(start)
	if took > drain+time.Second {
		t.Errorf("Close took %s, DrainTimeout is %s", took, drain)
	}
	if err != nil {
		t.Fatalf("Close: %v (a spill is a loss, not a failure)", err)
	}
	log := lb.String()
	t.Logf("Close after %.2fs", took.Seconds())
	if got := s.m.spilled.Load(); got == 0 || !strings.Contains(log, s.SpillPath()) || !strings.Contains(log, "events="+strconv.FormatUint(got, 10)) {
		t.Fatalf("spilled counter %d; the log does not name the spill file and the count:\n%s", got, log)
	}
	if l := reg.Losses(); len(l) == 0 {
		t.Fatal("spilled events not reported as a loss")
	}
	ids, reasons := spilled(t, s.SpillPath())

	kafkaCtl(t, "up")
	inKafka := map[int]bool{}
	for _, m := range consume(t, topic, 0) {
		inKafka[flowID(t, []byte(m.value))] = true
	}
	both := 0
	for id := 1; id <= before+after; id++ {
		if !ids[id] && !inKafka[id] {
			t.Fatalf("flow %d neither in Kafka nor in the spill file", id)
		}
		if ids[id] && inKafka[id] {
			both++
		}
	}
	// Both: acks lost in the shutdown, or kafka-go's abandoned writer
	// getting through once the broker is back (counted as late).
	t.Logf("%d in Kafka, %d spilled (%v), %d in both; acknowledged after the spill so far: %d",
		len(inKafka), len(ids), reasons, both, s.m.late.Load())
}

// bigExt makes a flow record as large as we like.
type bigExt string

func (bigExt) Key() string             { return "padding" }
func (b bigExt) Encode(w event.Writer) { w.String(string(b)) }

func randomText(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	b := make([]byte, n)
	x := uint64(0x9e3779b97f4a7c15)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = alphabet[x%64]
	}
	return string(b)
}

// (d) Too large: refused by the sink's own limit, and by the broker when
// the sink's limit is set above the broker's. Both are failed and spilled;
// the events around them are delivered.
func TestMessageTooLarge(t *testing.T) {
	needBroker(t)
	for _, c := range []struct {
		name   string
		maxMsg int
	}{
		{"sink-limit", 0},         // default 1000000
		{"broker-limit", 4 << 20}, // the broker's message.max.bytes is ~1 MiB
	} {
		t.Run(c.name, func(t *testing.T) {
			topic := uniqueTopic("big")
			createTopic(t, topic, 1)
			reg := stats.NewRegistry()
			s := newSink(t, Config{Topic: topic, Stats: reg, MaxMessageBytes: c.maxMsg})
			small := flows(1, 100)
			big := flows(101, 1)[0].(*event.Flow)
			big.Extra = []event.Extension{bigExt(randomText(2 << 20))}
			writeAll(t, s, small[:50])
			// The broker refuses a whole batch: keep the big one alone.
			for s.m.delivered.Load() < 50 {
				time.Sleep(5 * time.Millisecond)
			}
			writeAll(t, s, []event.Event{big})
			for s.m.failed.Load() == 0 && s.m.delivered.Load() < 51 {
				time.Sleep(5 * time.Millisecond)
			}
			writeAll(t, s, small[50:])
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if s.m.failed.Load() != 1 || s.m.spilled.Load() != 1 || s.m.delivered.Load() != 100 {
				t.Fatalf("failed %d spilled %d delivered %d", s.m.failed.Load(), s.m.spilled.Load(), s.m.delivered.Load())
			}
			ids, reasons := spilled(t, s.SpillPath())
			if len(ids) != 1 || !ids[101] || reasons["too_large"] != 1 {
				t.Fatalf("spill file: %v %v", ids, reasons)
			}
			if msgs := consume(t, topic, 0); len(msgs) != 100 {
				t.Fatalf("kcat read %d, want 100", len(msgs))
			}
		})
	}
}
