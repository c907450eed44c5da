package kafka

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"runtime"
	"slices"
	"time"

	"github.com/klauspost/compress/zstd"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/metadata"
	"github.com/segmentio/kafka-go/protocol/produce"
	"github.com/segmentio/kafka-go/protocol/rawproduce"
)

// The produce path. kafka-go's Writer compresses each partition's batch
// inside its request, one request per partition and one partition at a
// time, so compression never overlaps the wait for the broker, and it
// streams every record field through the compressor. The sink builds
// its record batches itself instead and sends them with kafka-go's
// Transport (connections, TLS, SASL, metadata, routing to the leader):
//
//   - The sender (sendLoop) assigns each accepted record a partition
//     (murmur2, as before) and queues it on that partition, in order.
//   - A partition's queue is sealed into a batch when it holds BatchSize
//     records or BatchBytes bytes, or BatchTimeout after its first record
//     (at once after Close) once nothing of the partition is in flight. At most maxBuilding (one per core, up to 4)
//     batches are encoded and compressed at once, each in a goroutine of
//     its own, while earlier batches are at the broker: compressing the
//     next batch overlaps the network wait.
//   - The ready batches of all partitions with the same leader go in one
//     ProduceRequest (acks=all), so one request carries every partition.
//   - Order: a partition has at most one batch in flight. A batch that
//     fails goes back in front of that partition's queue and the
//     partition waits out its backoff; nothing behind it is sent
//     before it. So records stay in order on their partition even across
//     retries (a lost ack still duplicates: delivery is at least once).
//   - Memory: each partition holds at most two encoded batches (the one
//     in flight or failed, and the next), each under BatchBytes
//     uncompressed; the records themselves count against the in-flight
//     budget as before.

// maxBuilding bounds the batches being encoded and compressed at once
// (each holds a scratch buffer of up to BatchBytes): one per core, at
// most 4. More than the cores only makes the compressions, the encoding
// in Write and (on a shared machine) the broker take turns: with 2 cores,
// 2 gave 0.92-1.07x kcat's events/s and 4 gave 0.80-1.00x (make
// kafka-throughput, three alternating sets of 3 runs).
var maxBuilding = min(max(runtime.GOMAXPROCS(0), 1), 4)

// metaRefresh is how long a topic's partitions and leaders are used
// before they are read again from the transport's metadata cache (which
// the transport refreshes from the brokers every MetadataTTL).
const metaRefresh = time.Second

// batchHeaderLen is a record batch's header (magic 2) before its records.
const batchHeaderLen = 61

// partition is one topic partition's queue and batches; the sender's.
type partition struct {
	topic     string
	id        int32
	leader    int32
	queue     []*record // assigned, in order, not yet in a batch
	queueB    int       // their encoded size
	since     time.Time // when the oldest of them was queued
	ready     []*batch  // sealed, in order (a failed batch goes back in front)
	inflight  *batch
	notBefore time.Time // after a failure, nothing is sent before this
	fails     int       // failed attempts in a row, for the backoff
}

// batch is one partition's record batch.
type batch struct {
	p     *partition
	recs  []*record
	data  []byte // the size-prefixed record batch, as sent
	built bool
	err   error // it could not be encoded
}

type topicInfo struct {
	ids     []int // partition ids in order: what the balancer picks from
	parts   map[int32]*partition
	fetched time.Time
	stale   bool // a produce error said the metadata may have changed
}

type answer struct {
	batches []*batch
	res     protocol.Message
	err     error
}

// producer is the sender's state.
type producer struct {
	tr       *kafkago.Transport
	addr     net.Addr
	codec    compress.Compression
	bal      kafkago.Murmur2Balancer
	topics   map[string]*topicInfo
	parts    []*partition // every partition used so far
	building int
	built    chan *batch // cap maxBuilding
	answers  chan answer
	builders chan *builder // idle
	free     []*batch      // done batches, with their buffers
	in       []*record
}

func newProducer(tr *kafkago.Transport, addr net.Addr, codec compress.Compression) *producer {
	return &producer{
		tr: tr, addr: addr, codec: codec,
		topics:   map[string]*topicInfo{},
		built:    make(chan *batch, maxBuilding),
		answers:  make(chan answer, 16),
		builders: make(chan *builder, maxBuilding),
	}
}

// sendLoop is the sender: it queues accepted records on their
// partitions, seals and builds batches, sends them and handles the
// answers. It is the only goroutine that touches the producer, so a
// broker that does not answer delays it, never Write.
func (s *Sink) sendLoop() {
	defer close(s.senderDone)
	p := s.prod
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		s.takeNew(now)
		s.seal(now)
		s.sendReady(now)
		timer.Reset(s.nextWake(now))
		select {
		case <-s.wake:
		case b := <-p.built:
			s.onBuilt(b)
		case a := <-p.answers:
			s.onAnswer(a)
		case <-timer.C:
		case <-s.senderCtx.Done():
			return
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// takeNew moves accepted records and due retries onto their partitions.
func (s *Sink) takeNew(now time.Time) {
	p := s.prod
	s.mu.Lock()
	in := p.in[:0]
	for _, r := range s.pending {
		if r.state != stateDone {
			in = append(in, r)
		}
	}
	clear(s.pending)
	s.pending = s.pending[:0]
	if cap(s.pending) > 1<<16 {
		s.pending = nil // let a large backing array go
	}
	for len(s.retries) > 0 && !s.retries[0].due.After(now) {
		if r := heap.Pop(&s.retries).(*record); r.state != stateDone {
			in = append(in, r)
		}
	}
	for _, r := range in {
		r.state = statePending
	}
	s.mu.Unlock()
	if len(in) > 0 {
		s.assign(in, now)
	}
	clear(in)
	p.in = in[:0]
}

// assign queues records on their partitions; those of a topic whose
// metadata cannot be had wait for a retry.
func (s *Sink) assign(in []*record, now time.Time) {
	p := s.prod
	var failed []*record
	var failErr error
	var lastTopic string
	var ti *topicInfo
	var bad map[string]error
	for _, r := range in {
		if r.topic != lastTopic || ti == nil {
			if err := bad[r.topic]; err != nil {
				failed = append(failed, r)
				continue
			}
			var err error
			if ti, err = s.topicInfo(r.topic, now); err != nil {
				if bad == nil {
					bad = map[string]error{}
				}
				bad[r.topic], failErr = err, err
				failed = append(failed, r)
				continue
			}
			lastTopic = r.topic
		}
		pt := ti.parts[int32(p.bal.Balance(kafkago.Message{Key: r.msgKey()}, ti.ids...))]
		if len(pt.queue) == 0 {
			pt.since = now
		}
		r.body = recordBody(r, 0)
		r.wire = varintLen(int64(r.body)) + r.body + 2 // the offset delta and so the length may take 2 more bytes
		pt.queue = append(pt.queue, r)
		pt.queueB += r.wire
	}
	if len(failed) > 0 {
		s.m.produceErrs.Inc()
		s.logRetry(failErr, len(failed))
		s.mu.Lock()
		if s.senderCtx.Err() == nil {
			s.lastErr = failErr
		}
		s.scheduleRetry(failed, now)
		s.mu.Unlock()
	}
}

// topicInfo returns topic's partitions, from the transport's metadata
// (a metadata request also creates the topic, unless NoAutoCreateTopics).
func (s *Sink) topicInfo(topic string, now time.Time) (*topicInfo, error) {
	p := s.prod
	ti := p.topics[topic]
	if ti != nil && !ti.stale && now.Sub(ti.fetched) < metaRefresh {
		return ti, nil
	}
	m, err := s.metadata(topic)
	// A topic the sink has not used yet may be one the broker is creating
	// now (at our metadata request): give it a second to show up, as
	// kafka-go's Writer did, rather than log a failed produce.
	for i := 0; ti == nil && !s.cfg.NoAutoCreateTopics && i < 20 && s.senderCtx.Err() == nil &&
		(errors.Is(err, kafkago.UnknownTopicOrPartition) || errors.Is(err, kafkago.LeaderNotAvailable)); i++ {
		time.Sleep(50 * time.Millisecond)
		m, err = s.metadata(topic)
	}
	if err != nil {
		if ti != nil && !ti.stale {
			// Keep what was known; ask again later.
			ti.fetched = now
			return ti, nil
		}
		return nil, err
	}
	if ti == nil {
		ti = &topicInfo{parts: map[int32]*partition{}}
		p.topics[topic] = ti
	}
	ti.ids = ti.ids[:0]
	for _, mp := range m.Partitions {
		pt := ti.parts[mp.PartitionIndex]
		if pt == nil {
			pt = &partition{topic: topic, id: mp.PartitionIndex}
			ti.parts[mp.PartitionIndex] = pt
			p.parts = append(p.parts, pt)
		}
		pt.leader = mp.LeaderID
		ti.ids = append(ti.ids, int(mp.PartitionIndex))
	}
	slices.Sort(ti.ids)
	ti.fetched, ti.stale = now, false
	return ti, nil
}

// metadata asks the transport (its cache, or the brokers when the topic
// is new and may be created) for topic's partitions.
func (s *Sink) metadata(topic string) (*metadata.ResponseTopic, error) {
	ctx, cancel := context.WithTimeout(s.senderCtx, s.cfg.WriteTimeout)
	defer cancel()
	res, err := s.prod.tr.RoundTrip(ctx, s.prod.addr, &metadata.Request{
		TopicNames:             []string{topic},
		AllowAutoTopicCreation: !s.cfg.NoAutoCreateTopics,
	})
	if err != nil {
		return nil, err
	}
	for i := range res.(*metadata.Response).Topics {
		m := &res.(*metadata.Response).Topics[i]
		switch {
		case m.Name != topic:
		case m.ErrorCode != 0:
			return nil, fmt.Errorf("kafka: topic %s: %w", topic, kafkago.Error(m.ErrorCode))
		case len(m.Partitions) == 0:
			return nil, fmt.Errorf("kafka: topic %s has no partitions", topic)
		default:
			return m, nil
		}
	}
	return nil, fmt.Errorf("kafka: topic %s: %w", topic, kafkago.UnknownTopicOrPartition)
}

// seal makes batches of the partitions' queues and starts building them.
func (s *Sink) seal(now time.Time) {
	p := s.prod
	for _, pt := range p.parts {
		if p.building >= maxBuilding {
			return
		}
		if len(pt.queue) == 0 || len(pt.ready) > 0 {
			continue
		}
		full := len(pt.queue) >= s.cfg.BatchSize || pt.queueB >= s.cfg.BatchBytes-batchHeaderLen
		if !full && (pt.inflight != nil || (now.Sub(pt.since) < s.cfg.BatchTimeout && !s.flushing.Load())) {
			continue
		}
		n, size := 0, 0
		for n < len(pt.queue) && n < s.cfg.BatchSize {
			w := pt.queue[n].wire
			if n > 0 && size+w > s.cfg.BatchBytes-batchHeaderLen {
				break
			}
			size += w
			n++
		}
		b := p.newBatch(pt)
		s.mu.Lock()
		for _, r := range pt.queue[:n] {
			if r.state != stateDone { // spilled meanwhile (Abandon)
				r.state = stateSent
				b.recs = append(b.recs, r)
			}
		}
		s.mu.Unlock()
		rest := copy(pt.queue, pt.queue[n:])
		clear(pt.queue[rest:])
		pt.queue = pt.queue[:rest]
		pt.queueB -= size
		pt.since = now
		if len(b.recs) == 0 {
			p.freeBatch(b)
			continue
		}
		pt.ready = append(pt.ready, b)
		p.building++
		go s.build(b)
	}
}

// build encodes and compresses b (in a goroutine of its own).
func (s *Sink) build(b *batch) {
	p := s.prod
	var bl *builder
	select {
	case bl = <-p.builders:
	default:
		bl = &builder{}
	}
	b.data, b.err = bl.encode(b.data[:0], b.recs, p.codec, time.Now())
	select {
	case p.builders <- bl:
	default:
	}
	p.built <- b // never blocks: cap maxBuilding
}

func (s *Sink) onBuilt(b *batch) {
	s.prod.building--
	b.built = true
	if b.err != nil {
		// Cannot happen (the codecs write to memory); counted as a
		// failed attempt all the same.
		s.failed(b, b.err, time.Now())
	}
}

// sendReady sends every partition's next built batch that may go, one
// request per leader.
func (s *Sink) sendReady(now time.Time) {
	p := s.prod
	var leaders []int32
	var groups [][]*batch
	for _, pt := range p.parts {
		if pt.inflight != nil || len(pt.ready) == 0 || !pt.ready[0].built || now.Before(pt.notBefore) {
			continue
		}
		b := pt.ready[0]
		copy(pt.ready, pt.ready[1:])
		pt.ready[len(pt.ready)-1] = nil
		pt.ready = pt.ready[:len(pt.ready)-1]
		pt.inflight = b
		i := slices.Index(leaders, pt.leader)
		if i < 0 {
			i = len(leaders)
			leaders = append(leaders, pt.leader)
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], b)
	}
	for _, bs := range groups {
		req := &rawproduce.Request{Acks: -1, Timeout: int32(s.cfg.WriteTimeout.Milliseconds())}
		for _, b := range bs {
			ti := len(req.Topics) - 1
			if ti < 0 || req.Topics[ti].Topic != b.p.topic {
				req.Topics = append(req.Topics, rawproduce.RequestTopic{Topic: b.p.topic})
				ti++
			}
			req.Topics[ti].Partitions = append(req.Topics[ti].Partitions, rawproduce.RequestPartition{
				Partition: b.p.id,
				RecordSet: protocol.RawRecordSet{Reader: bytes.NewReader(b.data)},
			})
		}
		go func() {
			ctx, cancel := context.WithTimeout(s.senderCtx, s.cfg.WriteTimeout)
			res, err := p.tr.RoundTrip(ctx, p.addr, req)
			cancel()
			select {
			case p.answers <- answer{bs, res, err}:
			case <-s.senderDone:
			}
		}()
	}
}

// onAnswer handles a produce request's response or error.
func (s *Sink) onAnswer(a answer) {
	now := time.Now()
	if a.err != nil {
		for _, b := range a.batches {
			s.failed(b, a.err, now)
		}
		return
	}
	res, _ := a.res.(*produce.Response)
	for _, b := range a.batches {
		err := errors.New("kafka: no answer for the partition")
		if res != nil {
			for _, t := range res.Topics {
				if t.Topic != b.p.topic {
					continue
				}
				for _, rp := range t.Partitions {
					if rp.Partition == b.p.id {
						err = nil
						if rp.ErrorCode != 0 {
							err = kafkago.Error(rp.ErrorCode)
						}
					}
				}
			}
		}
		if err == nil || isTooLarge(err) {
			b.p.inflight = nil
			b.p.fails = 0
			s.completion(b.recs, err)
			s.prod.freeBatch(b)
			continue
		}
		s.failed(b, err, now)
	}
}

func isTooLarge(err error) bool {
	return errors.Is(err, kafkago.MessageSizeTooLarge) || errors.Is(err, kafkago.RecordListTooLarge)
}

// failed puts a batch that failed back in front of its partition, which
// waits out a backoff: nothing behind it goes first.
func (s *Sink) failed(b *batch, err error, now time.Time) {
	pt := b.p
	if pt.inflight == b {
		pt.inflight = nil
	} else if i := slices.Index(pt.ready, b); i >= 0 {
		pt.ready = slices.Delete(pt.ready, i, i+1)
	}
	stopping := s.senderCtx.Err() != nil
	s.mu.Lock()
	live := 0
	for _, r := range b.recs {
		if r.state != stateDone {
			r.attempts++
			live++
		}
	}
	if !stopping {
		// Close cancelled the request: keep the error that explains the
		// outage for Close's message.
		s.lastErr = err
	}
	s.mu.Unlock()
	if live == 0 { // all spilled meanwhile
		s.prod.freeBatch(b)
		return
	}
	if !stopping {
		s.m.produceErrs.Inc()
		s.m.retried.Add(uint64(live))
		s.logRetry(err, live)
	}
	if ti := s.prod.topics[pt.topic]; ti != nil && leaderError(err) {
		ti.stale = true
	}
	pt.fails++
	pt.notBefore = now.Add(s.backoff(pt.fails))
	if b.err != nil {
		b.built, b.err = false, nil
		s.prod.building++
		go s.build(b)
	}
	pt.ready = slices.Insert(pt.ready, 0, b)
}

// leaderError says whether err may mean that the topic's metadata
// changed (a new leader, a new or deleted topic) or the connection is
// gone: anything but an error about the batch itself.
func leaderError(err error) bool {
	var ke kafkago.Error
	if errors.As(err, &ke) {
		switch ke {
		case kafkago.NotLeaderForPartition, kafkago.LeaderNotAvailable, kafkago.UnknownTopicOrPartition,
			kafkago.NotEnoughReplicas, kafkago.NotEnoughReplicasAfterAppend, kafkago.BrokerNotAvailable,
			kafkago.ReplicaNotAvailable, kafkago.FencedLeaderEpoch, kafkago.UnknownLeaderEpoch, kafkago.KafkaStorageError:
			return true
		}
		return false
	}
	return true
}

// nextWake is when the sender has something to do without being woken:
// a lingering queue to seal, a backoff that ends, a retry that is due.
func (s *Sink) nextWake(now time.Time) time.Duration {
	next := time.Hour
	for _, pt := range s.prod.parts {
		switch {
		case len(pt.ready) > 0 && pt.ready[0].built && pt.inflight == nil:
			next = min(next, pt.notBefore.Sub(now))
		case len(pt.queue) > 0 && len(pt.ready) == 0 && pt.inflight == nil && s.prod.building < maxBuilding:
			// (With maxBuilding batches being built, the next one built
			// wakes the sender.)
			next = min(next, pt.since.Add(s.cfg.BatchTimeout).Sub(now))
		}
	}
	s.mu.Lock()
	if len(s.retries) > 0 {
		next = min(next, s.retries[0].due.Sub(now))
	}
	s.mu.Unlock()
	return max(next, 100*time.Microsecond)
}

func (p *producer) newBatch(pt *partition) *batch {
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		b.p = pt
		return b
	}
	return &batch{p: pt}
}

// maxFreeBatches bounds the done batches kept for their buffers.
const maxFreeBatches = 8

func (p *producer) freeBatch(b *batch) {
	clear(b.recs)
	*b = batch{recs: b.recs[:0], data: b.data[:0]}
	if len(p.free) < maxFreeBatches && cap(b.data) <= 4<<20 {
		p.free = append(p.free, b)
	}
}

// builder encodes record batches; one per batch being built.
type builder struct {
	raw  []byte // the records, uncompressed
	zstd *zstd.Encoder
	buf  bytes.Buffer
}

// encode appends recs as a size-prefixed record batch (magic 2) to dst,
// compressed with codec, all with the timestamp now.
func (bl *builder) encode(dst []byte, recs []*record, codec compress.Compression, now time.Time) ([]byte, error) {
	raw := bl.raw[:0]
	for i, r := range recs {
		raw = appendWireRecord(raw, r, int64(i))
	}
	bl.raw = raw
	start := len(dst)
	dst = append(dst, make([]byte, 4+batchHeaderLen)...)
	switch codec {
	case 0:
		dst = append(dst, raw...)
	case compress.Zstd:
		if bl.zstd == nil {
			enc, err := newZstdEncoder()
			if err != nil {
				return dst[:start], err
			}
			bl.zstd = enc
		}
		dst = bl.zstd.EncodeAll(raw, dst)
	default:
		bl.buf.Reset()
		w := codec.Codec().NewWriter(&bl.buf)
		if _, err := w.Write(raw); err != nil {
			return dst[:start], err
		}
		if err := w.Close(); err != nil {
			return dst[:start], err
		}
		dst = append(dst, bl.buf.Bytes()...)
	}
	if cap(bl.raw) > 8<<20 {
		bl.raw = nil // an unusually large batch: do not keep its buffer
	}
	h := dst[start:]
	ts := now.UnixMilli()
	be := binary.BigEndian
	be.PutUint32(h[0:], uint32(len(h)-4))                  // size of what follows
	be.PutUint64(h[4:], 0)                                 // base offset
	be.PutUint32(h[12:], uint32(len(h)-4-12))              // batch length
	be.PutUint32(h[16:], 0xffffffff)                       // partition leader epoch: -1
	h[20] = 2                                              // magic
	be.PutUint16(h[25:], uint16(codec))                    // attributes: compression, CreateTime
	be.PutUint32(h[27:], uint32(len(recs)-1))              // last offset delta
	be.PutUint64(h[31:], uint64(ts))                       // first timestamp
	be.PutUint64(h[39:], uint64(ts))                       // max timestamp
	be.PutUint64(h[47:], 0xffffffffffffffff)               // producer id: -1
	be.PutUint16(h[55:], 0xffff)                           // producer epoch: -1
	be.PutUint32(h[57:], 0xffffffff)                       // base sequence: -1
	be.PutUint32(h[61:], uint32(len(recs)))                // records
	be.PutUint32(h[21:], crc32.Checksum(h[25:], crcTable)) // from the attributes on
	return dst, nil
}

// wireSize is r's size in a record batch, its length prefix included.
func wireSize(r *record) int {
	n := recordBody(r, 0)
	return varintLen(int64(n)) + n
}

// recordBody is the size of r's record after its length, at offset
// delta off (timestamp delta 0).
func recordBody(r *record, off int64) int {
	n := 1 + 1 + varintLen(off) // attributes, timestamp delta, offset delta
	if key := r.msgKey(); key == nil {
		n += 1
	} else {
		n += varintLen(int64(len(key))) + len(key)
	}
	n += varintLen(int64(len(r.value))) + len(r.value)
	if r.hdrs == nil {
		return n + 1
	}
	return n + len(r.hdrs.wire) + eventIDLen
}

// appendWireRecord appends r as a record (Kafka's zigzag varints) at
// offset delta off.
func appendWireRecord(b []byte, r *record, off int64) []byte {
	body := r.body
	if body == 0 {
		body = recordBody(r, 0)
	}
	body += varintLen(off) - 1
	b = binary.AppendVarint(b, int64(body))
	b = append(b, 0, 0) // attributes, timestamp delta 0
	b = binary.AppendVarint(b, off)
	if key := r.msgKey(); key == nil {
		b = binary.AppendVarint(b, -1)
	} else {
		b = binary.AppendVarint(b, int64(len(key)))
		b = append(b, key...)
	}
	b = binary.AppendVarint(b, int64(len(r.value)))
	b = append(b, r.value...)
	if r.hdrs == nil {
		return append(b, 0) // no headers
	}
	b = append(b, r.hdrs.wire...)
	return appendEventID(b, r.id)
}

// varintLen is the length of x as a zigzag varint.
func varintLen(x int64) int {
	u := uint64(x<<1) ^ uint64(x>>63)
	n := 1
	for u >= 0x80 {
		u >>= 7
		n++
	}
	return n
}
