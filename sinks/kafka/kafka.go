// Package kafka is pktpipe's Kafka sink: events are encoded once (JSON or
// msgpack), keyed by community_id and produced by the sink's own produce
// path (produce.go: record batches built and compressed by the sink, sent
// with kafka-go's Transport; acks=all, murmur2 partitioning like the Java
// client, zstd by default, a 10 ms batch timeout).
//
// The sink owns delivery:
//
//   - An in-flight budget (events and bytes) is taken when Write accepts a
//     batch and given back when the broker acknowledges it (completion).
//     While the budget is used up Write blocks, up to MaxBlock: that is the
//     backpressure on the pipeline. Memory is bounded by the budget,
//     which counts each event's buffers and bookkeeping; the produce
//     path's share by two encoded batches per partition and maxBuilding
//     scratch buffers.
//   - Write never fails for want of budget. Past MaxBlock the batch is
//     spilled, and so is every later batch that finds no room, at once,
//     until the broker acknowledges again (then Write blocks again). Once
//     Config.Ctx is done (the first SIGTERM) Write stops waiting and
//     spills what finds no room, so the drain is bounded by DrainTimeout.
//   - A batch that fails is not dropped: it goes back in front of its
//     partition, which waits (exponential backoff with jitter) and sends
//     it again, with no limit on attempts; retries hold their budget.
//     Nothing behind it on the partition goes first, so order holds on
//     each partition. Delivery is at least once: a retry after a lost ack
//     duplicates.
//   - A message too large for the broker is counted as failed and written
//     to the spill file, never silently dropped.
//   - Close waits up to DrainTimeout for outstanding acks, then writes
//     whatever is unacknowledged to the spill file and logs, as an error,
//     how many events went there and why. A spill is not a failure of the
//     run: it is counted in a loss counter (the command exits 3). Close
//     returns an error only when events could not be spilled either.
//   - The spill file's path is checked when the sink is made. An event
//     that can be neither delivered nor spilled (the disk is full) is
//     counted in pktpipe_kafka_lost_total: every accepted event ends up
//     delivered, spilled or counted lost.
//   - Abandon is for a second signal (the process exits at once): it
//     spills every accepted and unacknowledged event without waiting.
//   - With a spool (Config.SpoolDir, spool.go), what finds no room in the
//     budget goes to disk instead of waiting, and so does every later
//     event while older ones wait there (their order is kept); a drainer
//     reads the spool in order into the budget as acks free it. A
//     segment file is removed once every record read from it is
//     acknowledged. At Close and Abandon, unacknowledged events go to the
//     spool rather than the spill file (those read from it are still
//     there), so the next run sends them. When the spool cannot take a
//     batch (SpoolMax, disk full, I/O error), Config.SpoolFull decides:
//     block (the above, without a spool), drop-newest or drop-oldest,
//     counted in pktpipe_kafka_spool_dropped_total (a loss).
//
// Keys: the event's community_id. An event without one gets a null key,
// which the murmur2 balancer spreads over the partitions at random (as
// librdkafka's murmur2_random; the Java client's sticky partitioner also
// spreads them): no flow ties such events together, and a constant key
// would make one hot partition.
//
// Headers: schema_version, event_type, format ("json" or "msgpack") and
// event_id (event.ID, 16 hex digits: the event's own event_id field, the
// same for every copy of an event, for de-duplication downstream; it
// travels through the spool and the spill file with the event).
//
// Metrics (pipeline/stats): pktpipe_kafka_{delivered,retried,batches,
// produce_errors,delivered_after_spill,failed}_total, the loss counters
// pktpipe_kafka_{spilled,lost}_total, the gauges
// pktpipe_kafka_inflight_{events,bytes}, pktpipe_kafka_write_waiting (1
// while Write waits for budget), pktpipe_kafka_blocked_us_total
// (time Write waited for budget) and the ack latency histogram
// pktpipe_kafka_ack_latency_seconds_{bucket,count} with _sum_us. The
// spool's: pktpipe_kafka_spool_{bytes,segments,records,oldest_age_seconds}
// (gauges), pktpipe_kafka_spool_{records_in,records_out,recovered,torn,
// torn_bytes,errors,syncs}_total and the loss counter
// pktpipe_kafka_spool_dropped_total.
package kafka

import (
	"container/heap"
	"context"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/sinks/encode"
)

var _ pipeline.Sink = (*Sink)(nil)

// Encoder is what the sink needs from sinks/encode.
type Encoder = encode.Encoder

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("kafka: sink closed")

// closeGrace bounds the wait for the sender to stop once the sink has
// settled.
const closeGrace = 500 * time.Millisecond

type recState uint8

const (
	statePending recState = iota // accepted, waiting for the sender
	stateSent                    // in a batch (produce.go)
	stateRetry                   // its topic's metadata failed: waiting for its backoff
	stateDone                    // acknowledged, failed or spilled
)

// record is one message and its delivery state, from Write through its
// partition's batch (produce.go) to completion. What every stage reads
// comes first and the record is kept small (four cache lines): with
// 100k events in flight, each stage finds most records out of the
// cache, and a record's lines are fetched again by every stage that
// touches it.
type record struct {
	value    []byte
	key      []byte // the key (nil: none) or, with noKey, its buffer kept for reuse
	noKey    bool
	state    recState
	topic    string
	hdrs     *typeHeaders // its event type's headers; nil: none (tests)
	id       uint64       // event_id (event.ID): the fourth header
	size     int64        // key + value, as the broker sees it
	cost     int64        // what it holds in memory: see recordCost
	body     int          // its record's size after the length, at offset delta 0 (produce.go)
	wire     int          // its size in a record batch, at most
	slot     int          // its index in Sink.outstanding + 1 (0: not there)
	accepted time.Time
	// Seldom read.
	due      time.Time // when a retry may go
	attempts int
	typ      event.Type // for the spool
	seg      *segment   // the spool segment it was read from, or nil
}

// reset makes r a record for another event, keeping its buffers.
func (r *record) reset() {
	*r = record{value: r.value[:0], key: r.key[:0]}
}

// msgKey is the message key: nil for none.
func (r *record) msgKey() []byte {
	if r.noKey {
		return nil
	}
	return r.key
}

// setKey sets the message key (none for "").
func (r *record) setKey(k []byte) {
	r.key = append(r.key[:0], k...)
	r.noKey = len(k) == 0
}

// typeHeaders are the headers of every message of an event type:
// schema_version, event_type and format, then event_id, whose value is
// each message's own. They are encoded once as a record carries them.
type typeHeaders struct {
	list []kafkago.Header // the first three
	// wire is the header count, the three headers and event_id's key and
	// value length: a record adds the 16 hex digits of its id.
	wire []byte
}

// eventIDLen is the length of the event_id header's value.
const eventIDLen = 16

func newTypeHeaders(list []kafkago.Header) *typeHeaders {
	th := &typeHeaders{list: list}
	b := binary.AppendVarint(nil, int64(len(list)+1))
	for _, h := range list {
		b = binary.AppendVarint(b, int64(len(h.Key)))
		b = append(b, h.Key...)
		b = binary.AppendVarint(b, int64(len(h.Value)))
		b = append(b, h.Value...)
	}
	b = binary.AppendVarint(b, int64(len("event_id")))
	b = append(b, "event_id"...)
	th.wire = binary.AppendVarint(b, eventIDLen)
	return th
}

// appendEventID appends id as event_id's 16 hex digits.
func appendEventID(b []byte, id uint64) []byte {
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], id)
	return hex.AppendEncode(b, v[:])
}

// headers are r's message headers (for tests).
func (r *record) headers() []kafkago.Header {
	if r.hdrs == nil {
		return nil
	}
	return append(slices.Clone(r.hdrs.list), kafkago.Header{Key: "event_id", Value: appendEventID(nil, r.id)})
}

// recordOverhead is the memory an accepted event holds besides its key
// and value buffers: the record (with its kafka-go Message), its entry
// in the outstanding list and its slots in the pending queue, its
// partition's queue and its batch.
const recordOverhead = int64(unsafe.Sizeof(record{})) + 64

// recordCost is what r counts against the byte budget: memory, not
// message size, so that the budget bounds the sink's memory. For a
// 600-byte event the buffers' size classes and the overhead add ~50%.
func recordCost(r *record) int64 {
	return int64(cap(r.key)+cap(r.value)) + recordOverhead
}

// Acknowledged records are kept for reuse, with their key and value
// buffers, so that a steady stream allocates no record or buffer per
// event (a third of the sink's garbage-collection work before). At most
// maxFree records, none with a value buffer over maxFreeValue: about
// 5 MiB outside the budget.
const (
	maxFree      = 4096
	maxFreeValue = 4096
)

// takeFree appends up to n recycled records to dst.
func (s *Sink) takeFree(dst []*record, n int) []*record {
	s.mu.Lock()
	k := min(n, len(s.free))
	rest := len(s.free) - k
	dst = append(dst, s.free[rest:]...)
	clear(s.free[rest:])
	s.free = s.free[:rest]
	s.mu.Unlock()
	return dst
}

// giveBack returns records takeFree gave and that were not used.
func (s *Sink) giveBack(recs []*record) {
	if len(recs) == 0 {
		return
	}
	s.mu.Lock()
	for _, r := range recs {
		s.recycle(r)
	}
	s.mu.Unlock()
	clear(recs)
}

// recycle keeps r for reuse once the broker has acknowledged it; s.mu is
// held. Nothing refers to r any more: the sender drops a batch once it is
// acknowledged.
func (s *Sink) recycle(r *record) {
	if len(s.free) < maxFree && cap(r.value) <= maxFreeValue {
		s.free = append(s.free, r)
	}
}

// Sink is a pipeline.Sink that produces to Kafka. Write, Flush and Close
// are called from one goroutine; completion runs on the sender's.
type Sink struct {
	cfg     Config
	tr      *kafkago.Transport
	prod    *producer // the sender's (produce.go)
	enc     Encoder
	scratch []byte
	reuse   []*record // Write's: recycled records for the batch
	recs    []*record // Write's: the batch's records
	topic   func(event.Type) string
	headers map[event.Type]*typeHeaders
	spill   *spillFile
	spool   *spool // nil without SpoolDir

	drainStop  chan struct{} // closed by stopDrainer
	drainOnce  sync.Once
	drainDone  chan struct{}
	drainSpace chan struct{} // cap 1: budget was released (for the drainer)
	dropLog    logEvery
	spoolLog   logEvery

	// sender
	wake       chan struct{} // cap 1: pending work or an earlier retry
	space      chan struct{} // cap 1: budget was released
	senderCtx  context.Context
	stopSender context.CancelFunc
	senderDone chan struct{}

	mu          sync.Mutex
	closed      bool
	inflightN   int
	inflightB   int64
	outstanding []*record // accepted and not yet released, each at its slot-1
	free        []*record // acknowledged, for reuse (recycle)
	pending     []*record
	retries     retryHeap // records whose topic's metadata failed, waiting for a retry
	lastErr     error     // the latest failed produce, for Close's log

	// overflow is set when a Write waited MaxBlock in vain: later batches
	// that find no room are spilled at once. An ack or an admitted batch
	// clears it.
	overflow atomic.Bool
	// flushing is set by Close: the sender makes batches without waiting
	// for BatchTimeout.
	flushing atomic.Bool
	// spilledBy counts spilled events by reason, for Close's log.
	spilledMu sync.Mutex
	spilledBy map[string]uint64

	m metrics
}

type metrics struct {
	delivered, retried, failed, spilled, lost, batches, produceErrs, late *stats.Counter
	blockedUS, latSumUS, latCount                                         *stats.Counter
	latBuckets                                                            []*stats.Counter
	inflightN, inflightB, waiting                                         *stats.Gauge

	spoolIn, spoolOut, spoolRecovered, spoolTorn, spoolTornBytes *stats.Counter
	spoolDropped, spoolErrors, spoolSyncs                        *stats.Counter
	spoolBytes, spoolSegments, spoolRecords, spoolAge            *stats.Gauge
}

// Latency bucket bounds, in seconds.
var latencyBounds = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60}

func newMetrics(r *stats.Registry) metrics {
	m := metrics{
		delivered:   r.Counter("pktpipe_kafka_delivered_total", "Events the broker acknowledged."),
		retried:     r.Counter("pktpipe_kafka_retried_total", "Events queued again after a failed produce."),
		failed:      r.Counter("pktpipe_kafka_failed_total", "Events that cannot be produced (too large); they are spilled."),
		spilled:     r.LossCounter("pktpipe_kafka_spilled_total", "Events written to the spill file instead of Kafka."),
		lost:        r.LossCounter("pktpipe_kafka_lost_total", "Events neither delivered nor spilled: the spill file could not be written."),
		batches:     r.Counter("pktpipe_kafka_batches_total", "Produce batches acknowledged."),
		produceErrs: r.Counter("pktpipe_kafka_produce_errors_total", "Failed produce attempts (batches or writes) that were retried."),
		late:        r.Counter("pktpipe_kafka_delivered_after_spill_total", "Events acknowledged after Close had spilled them (duplicates)."),
		blockedUS:   r.Counter("pktpipe_kafka_blocked_us_total", "Microseconds Write waited for in-flight budget."),
		latSumUS:    r.Counter("pktpipe_kafka_ack_latency_seconds_sum_us", "Sum of accept-to-ack latency, microseconds."),
		latCount:    r.Counter("pktpipe_kafka_ack_latency_seconds_count", "Acknowledged events measured."),
		inflightN:   r.Gauge("pktpipe_kafka_inflight_events", "Events accepted and not yet acknowledged."),
		inflightB:   r.Gauge("pktpipe_kafka_inflight_bytes", "Memory held for events accepted and not yet acknowledged: key and value buffers plus each event's bookkeeping."),
		waiting:     r.Gauge("pktpipe_kafka_write_waiting", "1 while a Write waits for in-flight budget (the sink pushes back on the pipeline)."),
	}
	m.spoolIn = r.Counter("pktpipe_kafka_spool_records_in_total", "Events written to the disk spool (the in-flight budget had no room).")
	m.spoolOut = r.Counter("pktpipe_kafka_spool_records_out_total", "Spooled events the broker acknowledged.")
	m.spoolRecovered = r.Counter("pktpipe_kafka_spool_recovered_total", "Events found in the spool at start (left by an earlier run).")
	m.spoolTorn = r.Counter("pktpipe_kafka_spool_torn_total", "Torn tails cut off spool segments at start (a crash during a write).")
	m.spoolTornBytes = r.Counter("pktpipe_kafka_spool_torn_bytes_total", "Bytes cut off spool segments at start.")
	m.spoolDropped = r.LossCounter("pktpipe_kafka_spool_dropped_total", "Events dropped because the spool was full or could not be written (--kafka-spool-full drop-newest/drop-oldest), or unreadable in it.")
	m.spoolErrors = r.Counter("pktpipe_kafka_spool_errors_total", "Spool I/O errors (disk full, write, fsync, read).")
	m.spoolSyncs = r.Counter("pktpipe_kafka_spool_syncs_total", "fsyncs of spool segments.")
	m.spoolBytes = r.Gauge("pktpipe_kafka_spool_bytes", "Bytes in the spool's segment files.")
	m.spoolSegments = r.Gauge("pktpipe_kafka_spool_segments", "Segment files in the spool.")
	m.spoolRecords = r.Gauge("pktpipe_kafka_spool_records", "Spooled events not yet read by the drainer.")
	m.spoolAge = r.Gauge("pktpipe_kafka_spool_oldest_age_seconds", "Age of the oldest spool segment (0: empty).")
	for _, b := range latencyBounds {
		m.latBuckets = append(m.latBuckets, r.Counter("pktpipe_kafka_ack_latency_seconds_bucket",
			"Accept-to-ack latency histogram (cumulative).", "le", strconv.FormatFloat(b, 'g', -1, 64)))
	}
	m.latBuckets = append(m.latBuckets, r.Counter("pktpipe_kafka_ack_latency_seconds_bucket",
		"Accept-to-ack latency histogram (cumulative).", "le", "+Inf"))
	return m
}

// New checks cfg and returns a sink; it does not contact the brokers
// (the first Write does, and retries until they answer).
func New(cfg Config) (*Sink, error) {
	cfg.defaults()
	b, err := cfg.build()
	if err != nil {
		return nil, err
	}
	if err := checkSpill(cfg.SpillPath); err != nil {
		return nil, err
	}
	if cfg.SpoolDir != "" {
		if err := checkSpool(cfg.SpoolDir); err != nil {
			return nil, err
		}
	}
	enc, codec, tlsCfg, mech := b.enc, b.codec, b.tls, b.sasl
	s := &Sink{
		cfg:        cfg,
		enc:        enc,
		headers:    map[event.Type]*typeHeaders{},
		spill:      &spillFile{path: cfg.SpillPath, json: enc.Format() == encode.FormatJSON},
		wake:       make(chan struct{}, 1),
		space:      make(chan struct{}, 1),
		senderDone: make(chan struct{}),
		spilledBy:  map[string]uint64{},
		m:          newMetrics(cfg.Stats),
		drainStop:  make(chan struct{}),
		drainDone:  make(chan struct{}),
		drainSpace: make(chan struct{}, 1),
	}
	if cfg.SpoolDir != "" {
		sp, err := openSpool(&cfg, &s.m, s.spoolFailed)
		if err != nil {
			return nil, registry.Usage(err)
		}
		s.spool = sp
		if sp.recovered > 0 || sp.tornRecs > 0 {
			s.m.spoolRecovered.Add(uint64(sp.recovered))
			s.m.spoolTorn.Add(uint64(sp.tornRecs))
			s.m.spoolTornBytes.Add(uint64(sp.tornBytes))
			lvl := slog.LevelInfo
			if sp.tornRecs > 0 {
				lvl = slog.LevelWarn
			}
			cfg.Log.Log(context.Background(), lvl, "kafka: spool holds events from an earlier run; sending them first",
				"spool", cfg.SpoolDir, "events", sp.recovered, "segments", len(sp.segs), "torn_tails", sp.tornRecs, "torn_bytes", sp.tornBytes)
		}
	}
	dial := cfg.dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: 5 * time.Second}).DialContext
	}
	s.tr = &kafkago.Transport{
		Dial:        dial,
		DialTimeout: 5 * time.Second,
		ClientID:    cfg.ClientID,
		TLS:         tlsCfg,
		SASL:        mech,
		MetadataTTL: 10 * time.Second,
	}
	s.prod = newProducer(s.tr, kafkago.TCP(cfg.Brokers...), codec)
	if prefix, suffix, ok := strings.Cut(cfg.Topic, "{event_type}"); ok {
		names := map[event.Type]string{}
		s.topic = func(t event.Type) string {
			n, ok := names[t]
			if !ok {
				n = prefix + string(t) + suffix
				names[t] = n
			}
			return n
		}
	} else {
		// One topic: set on each message too, for the sender and the
		// spill file.
		s.topic = func(event.Type) string { return cfg.Topic }
	}
	s.senderCtx, s.stopSender = context.WithCancel(context.Background())
	go s.sendLoop()
	if s.spool != nil {
		go s.drainer()
	} else {
		close(s.drainDone)
	}
	return s, nil
}

// Stats returns the registry the sink counts in.
func (s *Sink) Stats() *stats.Registry { return s.cfg.Stats }

// SpillPath is where undeliverable events go (the file exists only if
// something was spilled).
func (s *Sink) SpillPath() string { return s.cfg.SpillPath }

// headersForName makes the headers of event type t (the drainer keeps its
// own cache: headersFor's belongs to Write's goroutine).
func (s *Sink) headersForName(t string) *typeHeaders {
	return newTypeHeaders([]kafkago.Header{
		{Key: "schema_version", Value: []byte(s.cfg.SchemaVersion)},
		{Key: "event_type", Value: []byte(t)},
		{Key: "format", Value: []byte(s.enc.Format())},
	})
}

// headersFor returns the headers of event type t, shared by every
// message of the type (the records only read them).
func (s *Sink) headersFor(t event.Type) *typeHeaders {
	h, ok := s.headers[t]
	if !ok {
		h = s.headersForName(string(t))
		s.headers[t] = h
	}
	return h
}

// Write encodes events (the slice is reused by the caller) and queues
// them, blocking while the in-flight budget is used up. A batch is taken
// whole or spilled whole: after MaxBlock without room, or once Config.Ctx
// is done, it goes to the spill file instead. Write fails only after
// Close.
func (s *Sink) Write(events []event.Event) error {
	return s.WriteContext(s.cfg.Ctx, events)
}

// WriteContext is Write with ctx in place of Config.Ctx.
func (s *Sink) WriteContext(ctx context.Context, events []event.Event) error {
	if len(events) == 0 {
		return nil
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	now := time.Now()
	// recs is not kept past this call: admit copies it, the spool and
	// the spill file copy what the records hold.
	recs := s.recs[:0]
	defer func() { clear(recs); s.recs = recs[:0] }()
	s.reuse = s.takeFree(s.reuse[:0], len(events))
	var tooBig []*record
	var size int64
	for i, ev := range events {
		var r *record
		if i < len(s.reuse) {
			r = s.reuse[i]
			s.reuse[i] = nil
			r.reset()
			r.value = s.enc.Append(r.value, ev)
		} else {
			s.scratch = s.enc.Append(s.scratch[:0], ev)
			r = &record{value: append([]byte(nil), s.scratch...)}
		}
		typ := ev.Type()
		r.accepted, r.typ, r.topic, r.hdrs, r.id = now, typ, s.topic(typ), s.headersFor(typ), event.ID(ev)
		cid := ev.Head().CommunityID // copied by setKey
		r.setKey(unsafe.Slice(unsafe.StringData(cid), len(cid)))
		r.size = int64(len(r.key) + len(r.value))
		if r.size > int64(s.cfg.MaxMessageBytes) {
			r.state = stateDone
			tooBig = append(tooBig, r)
			continue
		}
		r.cost = recordCost(r)
		size += r.cost
		recs = append(recs, r)
	}
	if len(tooBig) > 0 {
		s.m.failed.Add(uint64(len(tooBig)))
		s.cfg.Log.Warn("kafka: event larger than max_message_bytes; spilled", "events", len(tooBig), "max_message_bytes", s.cfg.MaxMessageBytes, "spill", s.cfg.SpillPath)
		s.spillRecs("too_large", tooBig)
	}
	if len(recs) == 0 {
		return nil
	}
	if s.spool != nil {
		return s.writeSpooled(ctx, recs, size)
	}
	if s.admit(recs, size) {
		return nil
	}
	// No room. A sink that has waited MaxBlock in vain, or is told to
	// stop, spills rather than wait (and stall the drain) again.
	if ctx.Err() != nil {
		s.spillRecs("stopping", recs)
		return nil
	}
	if s.overflow.Load() {
		s.spillRecs("max_block", recs)
		return nil
	}
	waitStart := time.Now()
	timer := time.NewTimer(s.cfg.MaxBlock)
	defer timer.Stop()
	s.m.waiting.Set(1)
	defer s.m.waiting.Set(0)
	for {
		select {
		case <-s.space:
			if !s.admit(recs, size) {
				continue
			}
		case <-timer.C:
			n, b := s.inflight()
			s.overflow.Store(true)
			s.cfg.Log.Error("kafka: no acknowledgement for max_block; spilling what finds no room until the broker answers",
				"max_block", s.cfg.MaxBlock, "inflight_events", n, "inflight_bytes", b, "spill", s.cfg.SpillPath)
			s.spillRecs("max_block", recs)
		case <-ctx.Done():
			s.spillRecs("stopping", recs)
		}
		s.m.blockedUS.Add(uint64(time.Since(waitStart).Microseconds()))
		return nil
	}
}

// admit takes budget for the whole batch and queues it, or reports that it
// does not fit. An empty budget admits any batch, so one batch larger than
// the byte budget cannot wait forever.
func (s *Sink) admit(recs []*record, size int64) bool {
	s.mu.Lock()
	if s.inflightN > 0 && (s.inflightN+len(recs) > s.cfg.MaxInflight || s.inflightB+size > s.cfg.MaxInflightBytes) {
		s.mu.Unlock()
		return false
	}
	s.overflow.Store(false)
	s.inflightN += len(recs)
	s.inflightB += size
	for _, r := range recs {
		s.outstanding = append(s.outstanding, r)
		r.slot = len(s.outstanding)
	}
	s.pending = append(s.pending, recs...)
	s.m.inflightN.Set(int64(s.inflightN))
	s.m.inflightB.Set(s.inflightB)
	s.mu.Unlock()
	signal(s.wake)
	return true
}

// room is how many events the budget can take now (the byte budget
// permitting); the drainer reads no more than that.
func (s *Sink) room() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflightN == 0 {
		return s.cfg.MaxInflight
	}
	if s.inflightB >= s.cfg.MaxInflightBytes {
		return 0
	}
	return max(s.cfg.MaxInflight-s.inflightN, 0)
}

func (s *Sink) inflight() (int, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inflightN, s.inflightB
}

// release gives back r's budget; s.mu is held.
func (s *Sink) release(r *record) {
	r.state = stateDone
	if r.slot == 0 {
		return // never admitted
	}
	last := len(s.outstanding) - 1
	moved := s.outstanding[last]
	s.outstanding[r.slot-1], moved.slot = moved, r.slot
	s.outstanding[last] = nil
	s.outstanding = s.outstanding[:last]
	r.slot = 0
	s.inflightN--
	s.inflightB -= r.cost
}

// stopDrainer stops the spool's drainer (once) and waits for it.
func (s *Sink) stopDrainer() {
	s.drainOnce.Do(func() { close(s.drainStop) })
	<-s.drainDone
}

// keepInSpool sorts unacknowledged events at exit: those read from the
// spool are still in it (nothing to do), the others are appended to it;
// it returns what the spool could not take (for the spill file) and how
// many it took.
func (s *Sink) keepInSpool(rest []*record) ([]*record, int) {
	direct := rest[:0]
	for _, r := range rest {
		if r.seg == nil {
			direct = append(direct, r)
		}
	}
	if len(direct) == 0 {
		return nil, 0
	}
	if err := s.spool.append(direct); err != nil {
		if !errors.Is(err, errSpoolFull) {
			s.spoolFailed(err)
		}
		return direct, 0
	}
	return nil, len(direct)
}

// writeSpooled is Write with a spool. What the budget has no room for
// goes to the spool, and so does everything while older events wait in
// it (to keep their order); the drainer feeds them to the budget. When
// the spool cannot take a batch (full, disk full, I/O error),
// Config.SpoolFull decides: block waits for room as Write does without a
// spool (up to MaxBlock, then the spill file), drop-newest drops the
// batch, drop-oldest removes the oldest segment and tries again. Drops
// are counted in pktpipe_kafka_spool_dropped_total, a loss counter.
func (s *Sink) writeSpooled(ctx context.Context, recs []*record, size int64) error {
	var timer *time.Timer
	var waitStart time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
			s.m.waiting.Set(0)
			s.m.blockedUS.Add(uint64(time.Since(waitStart).Microseconds()))
		}
	}()
	for dropped := 0; ; {
		if !s.spool.hasUnread() && s.admit(recs, size) {
			return nil
		}
		err := s.spool.append(recs)
		if err == nil {
			return nil
		}
		full := errors.Is(err, errSpoolFull)
		if !full {
			s.spoolWriteFailed(err)
		}
		switch s.cfg.SpoolFull {
		case SpoolDropNewest:
			s.dropped(len(recs), "newest", err)
			return nil
		case SpoolDropOldest:
			// A full disk also gets room this way; another I/O error
			// would not, so it costs at most one segment per batch.
			if full || errors.Is(err, syscall.ENOSPC) || dropped == 0 {
				if n, ok := s.spool.dropOldest(); ok {
					dropped++
					s.dropped(n, "oldest", err)
					continue
				}
			}
			s.dropped(len(recs), "newest", err)
			return nil
		}
		// block
		if ctx.Err() != nil {
			s.spillRecs("stopping", recs)
			return nil
		}
		if s.overflow.Load() {
			// An earlier batch waited max_block in vain: spill at once
			// until the broker acknowledges again.
			s.spillRecs("max_block", recs)
			return nil
		}
		if timer == nil {
			waitStart = time.Now()
			timer = time.NewTimer(s.cfg.MaxBlock)
			s.m.waiting.Set(1)
		}
		select {
		case <-s.spool.room:
		case <-s.space:
		case <-timer.C:
			s.overflow.Store(true)
			s.cfg.Log.Error("kafka: the spool had no room for max_block; spilling what finds no room until the broker answers",
				"max_block", s.cfg.MaxBlock, "spool", s.cfg.SpoolDir, "spill", s.cfg.SpillPath, "err", err)
			s.spillRecs("max_block", recs)
			return nil
		case <-ctx.Done():
			s.spillRecs("stopping", recs)
			return nil
		}
	}
}

// dropped counts n events dropped by the spool policy and logs it (at
// most once a second).
func (s *Sink) dropped(n int, which string, cause error) {
	if n <= 0 {
		return
	}
	s.m.spoolDropped.Add(uint64(n))
	if !s.dropLog.due() {
		return
	}
	s.cfg.Log.Error("kafka: spool cannot take more; dropping the "+which+" events (counted lost)",
		"spool", s.cfg.SpoolDir, "spool_max", s.cfg.SpoolMax, "events", n, "dropped_so_far", s.m.spoolDropped.Load(), "cause", cause)
}

// logEvery lets a log line through at most once a second.
type logEvery struct {
	mu sync.Mutex
	t  time.Time
}

func (l *logEvery) due() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.t) < time.Second {
		return false
	}
	l.t = time.Now()
	return true
}

// freed tells whoever waits for budget (Write, the drainer, Close) that
// some was released.
func (s *Sink) freed() {
	signal(s.space)
	signal(s.drainSpace)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// scheduleRetry puts recs back with their backoff; s.mu is held.
func (s *Sink) scheduleRetry(recs []*record, now time.Time) {
	for _, r := range recs {
		if r.state == stateDone {
			continue
		}
		r.attempts++
		r.state = stateRetry
		r.due = now.Add(s.backoff(r.attempts))
		heap.Push(&s.retries, r)
	}
	s.m.retried.Add(uint64(len(recs)))
	signal(s.wake)
}

// backoff is exponential in attempts, capped, with jitter in [d/2, d] so
// that partitions that failed together do not retry in lockstep.
func (s *Sink) backoff(attempts int) time.Duration {
	d := s.cfg.RetryBackoffMin << min(attempts-1, 20)
	if d <= 0 || d > s.cfg.RetryBackoffMax {
		d = s.cfg.RetryBackoffMax
	}
	return d/2 + rand.N(d/2+1)
}

var lastRetryLog struct {
	sync.Mutex
	t time.Time
}

// logRetry logs at most once a second, so an outage does not flood stderr.
func (s *Sink) logRetry(err error, n int) {
	lastRetryLog.Lock()
	defer lastRetryLog.Unlock()
	if time.Since(lastRetryLog.t) < time.Second {
		return
	}
	lastRetryLog.t = time.Now()
	inN, inB := s.inflight()
	if h := errHint(err); h != "" {
		// Retrying will not help until the configuration or the broker
		// changes: say so plainly, as an error.
		s.cfg.Log.Error("kafka: "+h+"; will retry", "err", err, "events", n, "inflight_events", inN, "inflight_bytes", inB)
		return
	}
	s.cfg.Log.Warn("kafka: produce failed; will retry", "err", err, "events", n, "inflight_events", inN, "inflight_bytes", inB)
}

// errHint names the cause of authentication and TLS failures in the words
// of the sink's options; other errors get "".
func errHint(err error) string {
	if err == nil {
		return ""
	}
	var unknownCA x509.UnknownAuthorityError
	var badHost x509.HostnameError
	var invalid x509.CertificateInvalidError
	msg := err.Error()
	switch {
	case errors.Is(err, kafkago.SASLAuthenticationFailed) || strings.Contains(msg, "SASL Authentication failed"):
		return "SASL authentication failed (check the user, password and sasl mechanism)"
	case errors.Is(err, kafkago.UnsupportedSASLMechanism) || errors.Is(err, kafkago.IllegalSASLState):
		return "SASL authentication failed: the broker does not accept this sasl mechanism here"
	case errors.As(err, &unknownCA) || errors.As(err, &badHost) || errors.As(err, &invalid) ||
		strings.Contains(msg, "x509: "):
		return "the broker's TLS certificate is not trusted (check tls_ca and tls_server_name)"
	case strings.Contains(msg, "remote error: tls:") || strings.Contains(msg, "tls: "):
		return "the TLS handshake failed (does the broker require a client certificate, tls_cert and tls_key? is the listener TLS at all?)"
	}
	return ""
}

// completion handles the broker's answer to one partition's batch:
// nil (acknowledged) or too large (spilled: retrying cannot help). The
// sender handles other errors (failed, produce.go).
func (s *Sink) completion(recs []*record, err error) {
	now := time.Now()
	tooLarge := err != nil
	var spill []*record
	var buckets [16]uint64
	var latSum uint64
	var delivered, late int
	var segAcks []segAck
	s.mu.Lock()
	for _, r := range recs {
		switch {
		case r.state == stateDone:
			if err == nil {
				late++
			}
		case !tooLarge:
			s.release(r)
			segAcks = addSegAck(segAcks, r.seg)
			delivered++
			lat := now.Sub(r.accepted)
			latSum += uint64(lat.Microseconds())
			sec := lat.Seconds()
			j := 0
			for j < len(latencyBounds) && sec > latencyBounds[j] {
				j++
			}
			buckets[j]++ // made cumulative below
			s.recycle(r)
		default:
			// The broker's limit is below ours.
			s.release(r)
			segAcks = addSegAck(segAcks, r.seg)
			spill = append(spill, r)
		}
	}
	s.m.inflightN.Set(int64(s.inflightN))
	s.m.inflightB.Set(s.inflightB)
	s.mu.Unlock()
	for _, a := range segAcks {
		s.spool.ack(a.seg, a.n)
	}

	if delivered > 0 {
		s.overflow.Store(false) // the broker answers again
		s.m.delivered.Add(uint64(delivered))
		s.m.batches.Inc()
		s.m.latSumUS.Add(latSum)
		s.m.latCount.Add(uint64(delivered))
		var cum uint64
		for j, c := range s.m.latBuckets {
			if cum += buckets[j]; cum > 0 {
				c.Add(cum)
			}
		}
	}
	if late > 0 {
		s.m.late.Add(uint64(late))
	}
	if len(spill) > 0 {
		s.m.failed.Add(uint64(len(spill)))
		s.cfg.Log.Error("kafka: broker refused a batch as too large; spilled (lower max_message_bytes/batch_bytes to the broker's message.max.bytes)", "events", len(spill), "err", err)
		s.spillRecs("too_large", spill)
	}
	if delivered > 0 || len(spill) > 0 {
		s.freed()
	}
}

// spillRecs writes recs to the spill file, or counts them lost when it
// cannot. The caller has released their budget (or never took it).
func (s *Sink) spillRecs(reason string, recs []*record) error {
	if len(recs) == 0 {
		return nil
	}
	err := s.spill.write(reason, recs)
	n := uint64(len(recs))
	if err != nil {
		s.m.lost.Add(n)
		s.logSpillFailed(err, len(recs))
		return err
	}
	s.m.spilled.Add(n)
	s.spilledMu.Lock()
	s.spilledBy[reason] += n
	s.spilledMu.Unlock()
	return nil
}

var lastSpillLog struct {
	sync.Mutex
	t time.Time
}

// logSpillFailed logs at most once a second: a full disk fails every
// batch.
func (s *Sink) logSpillFailed(err error, n int) {
	lastSpillLog.Lock()
	defer lastSpillLog.Unlock()
	if time.Since(lastSpillLog.t) < time.Second {
		return
	}
	lastSpillLog.t = time.Now()
	s.cfg.Log.Error("kafka: events neither delivered nor spilled; counted lost", "events", n, "err", err, "lost_so_far", s.m.lost.Load())
}

// Unacknowledged is how many events the sink has accepted that the broker
// has not acknowledged (and that were not spilled): what exiting without
// Close would lose.
func (s *Sink) Unacknowledged() (events int, bytes int64) { return s.inflight() }

// Abandon is for a second stop signal, right before the process exits
// without draining: it writes every accepted and unacknowledged event to
// the spill file at once (no waiting for the broker), and returns
// attributes for the exit's log line. Safe to call while Write or Close
// run on another goroutine.
func (s *Sink) Abandon() []any {
	// The drainer must not admit what it reads after this: it stays on
	// disk for the next run.
	s.stopDrainer()
	s.mu.Lock()
	rest := s.takeOutstanding()
	s.mu.Unlock()
	s.freed()
	attrs := []any{"kafka_unacknowledged", len(rest)}
	if s.spool != nil {
		var kept int
		rest, kept = s.keepInSpool(rest)
		records, _, _ := s.spool.remaining()
		attrs = append(attrs, "kafka_spooled_at_exit", kept, "kafka_spool_events", records, "kafka_spool", s.cfg.SpoolDir)
		if err := s.spool.close(); err != nil {
			s.spoolFailed(err)
		}
	}
	if len(rest) == 0 {
		return attrs
	}
	if err := s.spillRecs("undelivered", rest); err != nil {
		return append(attrs, "kafka_lost", len(rest), "kafka_spill_error", err.Error())
	}
	return append(attrs, "kafka_spilled", len(rest), "kafka_spill", s.cfg.SpillPath)
}

// takeOutstanding releases and returns every event not yet acknowledged
// or spilled; s.mu is held.
func (s *Sink) takeOutstanding() []*record {
	rest := slices.Clone(s.outstanding)
	for _, r := range rest {
		s.release(r)
	}
	s.pending, s.retries = nil, nil
	s.m.inflightN.Set(int64(s.inflightN))
	s.m.inflightB.Set(s.inflightB)
	return rest
}

// Flush does nothing: batches leave after BatchTimeout on their own, and
// waiting here for acks would stall the pipeline once a second.
func (s *Sink) Flush() error { return nil }

// Close waits up to DrainTimeout for every accepted event to be
// acknowledged, then spills whatever is not, and logs what the spill file
// received since New (how much, why, where). A spill is counted, not
// returned: Close fails only when events could be neither delivered nor
// spilled, or the spill file could not be synced.
func (s *Sink) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	s.mu.Unlock()
	s.flushing.Store(true) // no more lingering: nothing else will come
	signal(s.wake)

	deadline := time.NewTimer(s.cfg.DrainTimeout)
	defer deadline.Stop()
drain:
	for {
		s.mu.Lock()
		n := len(s.outstanding)
		s.mu.Unlock()
		if n == 0 && (s.spool == nil || s.spool.drained()) {
			break
		}
		select {
		case <-s.space:
		case <-deadline.C:
			break drain
		}
	}
	// Close returns within DrainTimeout + closeGrace (+ the spill write).
	s.stopDrainer()
	s.stopSender()
	select {
	case <-s.senderDone:
	case <-time.After(closeGrace):
		s.cfg.Log.Warn("kafka: sender did not stop in time")
	}

	s.mu.Lock()
	rest := s.takeOutstanding()
	s.mu.Unlock()
	if s.spool != nil {
		var kept int
		rest, kept = s.keepInSpool(rest)
		records, segs, bytes := s.spool.remaining()
		if err := s.spool.close(); err != nil {
			s.spoolFailed(err)
		}
		if records > 0 {
			s.cfg.Log.Warn("kafka: events left in the spool; the next run with this spool sends them first",
				"spool", s.cfg.SpoolDir, "events", records, "segments", segs, "bytes", bytes, "spooled_at_close", kept)
		}
		if in, rec := s.m.spoolIn.Load(), s.m.spoolRecovered.Load(); in > 0 || rec > 0 {
			s.cfg.Log.Info("kafka: spool", "spool", s.cfg.SpoolDir, "recovered", rec, "records_in", in,
				"records_out", s.m.spoolOut.Load(), "dropped", s.m.spoolDropped.Load(), "left", records,
				"peak_bytes", s.spool.peakBytes())
		}
	}
	s.spillRecs("undelivered", rest)

	// Requests still out were cancelled with the sender; their
	// connections close once they are idle.
	s.tr.CloseIdleConnections()

	var errs []error
	if _, err := s.spill.close(); err != nil && s.m.lost.Load() == 0 {
		errs = append(errs, err) // the sync failed: what it holds may not be on disk
	}
	s.logSpilled(len(rest))
	if lost := s.m.lost.Load(); lost > 0 {
		errs = append(errs, fmt.Errorf("kafka: %d events lost: neither delivered nor spilled (spill file %s: %w)", lost, s.cfg.SpillPath, s.spill.failure()))
	}
	return errors.Join(errs...)
}

// logSpilled logs, as an error, what the spill file received since New
// and the produce error that explains it.
func (s *Sink) logSpilled(atClose int) {
	n := s.m.spilled.Load()
	if n == 0 {
		return
	}
	attrs := []any{"events", n, "spill", s.cfg.SpillPath}
	s.spilledMu.Lock()
	for _, reason := range []string{"undelivered", "max_block", "stopping", "too_large"} {
		if c := s.spilledBy[reason]; c > 0 {
			attrs = append(attrs, reason, c)
		}
	}
	blocked := s.spilledBy["max_block"] > 0
	s.spilledMu.Unlock()
	s.mu.Lock()
	last := s.lastErr
	s.mu.Unlock()
	if last != nil && (atClose > 0 || blocked) {
		if h := errHint(last); h != "" {
			attrs = append(attrs, "cause", h)
		}
		attrs = append(attrs, "last_produce_error", last.Error())
	}
	s.cfg.Log.Error("kafka: events not delivered were spilled", attrs...)
}

// segAck counts acknowledged records of one spool segment.
type segAck struct {
	seg *segment
	n   int
}

// addSegAck counts one more record of sg (nil: not from the spool).
func addSegAck(a []segAck, sg *segment) []segAck {
	if sg == nil {
		return a
	}
	for i := range a {
		if a[i].seg == sg {
			a[i].n++
			return a
		}
	}
	return append(a, segAck{sg, 1})
}

// retryHeap orders retries by due time.
type retryHeap []*record

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h retryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *retryHeap) Push(x any)        { *h = append(*h, x.(*record)) }
func (h *retryHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return r
}
