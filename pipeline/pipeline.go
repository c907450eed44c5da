// Package pipeline is pktpipe's engine: it connects capture sources to
// per-flow workers and the workers to one sink, with bounded channels,
// batches instead of per-packet sends, and an ordered, lossless stop.
//
//	source ─batches─▶ dispatcher (decode, shard) ─batches─▶ worker i (Processor) ─events─▶ sink
//
// Each source gets its own dispatcher goroutine, which decodes packets and
// hands each one to the worker chosen by its flow's symmetric hash (an ICMP
// error goes by the hash of the flow it quotes), so per-flow state has one
// owner and needs no lock. All channels are bounded and every send blocks:
// a slow sink slows the workers, which slow the dispatchers, which slow the
// source. Nothing is dropped by the engine itself.
//
// Stopping: when every source has returned (end of input, error, or the
// context was cancelled), the dispatchers drain and close the worker
// queues; each worker drains its queue and flushes its state (open flows
// become records); then the sink drains, flushes and closes. Run returns
// only after the sink has closed.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

// Source reads packets into batches taken from pool and sends them on out.
// Run returns nil at the end of input or when ctx is cancelled, and an error
// when the input is bad; either way it has sent everything it read before
// returning (a truncated file's good records are delivered, then the error
// is returned). Run must not close out.
//
// Lifecycle, the same for every kind: a source is opened by its kind's
// SourceSpec.Open, run once, then closed by the engine when Run returns;
// if the pipeline is never run, whoever opened it closes it. Close
// releases everything (sockets, rings, attached programs, open files) and
// may be called more than once.
type Source interface {
	Name() string
	Run(ctx context.Context, pool *packet.Pool, out chan<- *packet.Batch) error
	Close() error
}

// DirectSource is a Source that can also hand each batch to a function
// called on its own goroutine instead of sending it on a channel. The
// engine then decodes and shards a file's batches on the goroutine that
// read them: the bytes are still in that core's cache, and the pipeline
// has one goroutine and one queue fewer on the same cores. Live sources
// stay channel-fed, so that draining a ring never waits for decoding.
// RunDirect has Run's contract with deliver in place of the send.
type DirectSource interface {
	Source
	RunDirect(ctx context.Context, pool *packet.Pool, deliver func(*packet.Batch)) error
}

// Decoder fills a packet's Meta from its bytes. Each dispatcher gets its own
// (a decoder may keep scratch state), so DecodeIn needs no lock. room is
// where Meta.X may go (the batch's Batch.Room; nil: allocate).
type Decoder interface {
	DecodeIn(p *packet.Packet, room *packet.Extra)
}

// Filter decides, before decoding, whether a packet goes on (a tcpdump-style
// expression run in user space). Each dispatcher gets its own.
type Filter interface {
	Match(p *packet.Packet) bool
}

// Processor runs inside one worker and owns that worker's per-flow state.
// It sees every packet of the flows that hash to its worker, in the order
// their source produced them.
type Processor interface {
	// Process handles one batch. b.Now is the latest packet time seen by
	// the dispatcher that sent it; processors expire state by packet time
	// only, so that offline runs are reproducible.
	Process(b *packet.Batch, out *Emitter)
	// Flush ends all remaining state at shutdown. now is the latest packet
	// time any dispatcher saw.
	Flush(now int64, out *Emitter)
}

// Sink consumes encoded-at-the-end events. The engine calls it from one
// goroutine only.
type Sink interface {
	// Write takes a batch of events. The slice is reused after Write
	// returns; a sink that keeps events must copy or encode them first.
	Write(events []event.Event) error
	// Flush pushes buffered output to its destination (called at least
	// once per Config.FlushInterval while events flow).
	Flush() error
	// Close flushes, syncs and releases the sink.
	Close() error
}

// Config sizes the engine. Zero values take the defaults.
type Config struct {
	Workers       int           // default: runtime.NumCPU()
	BatchPackets  int           // packets per batch, default 256
	BatchBytes    int           // bytes per batch arena, default 512 KiB
	QueueBatches  int           // batches each channel holds, default 8
	FlushInterval time.Duration // sink flush period, default 1s
	// Shard keeps only the flows of one shard (scale-out over processes;
	// the zero value keeps all). Packets of other shards are read and
	// counted (pcap_cnt stays the frame number) but not dispatched.
	Shard Shard
	Stats *stats.Registry
	Log   *slog.Logger
}

func (c *Config) defaults() {
	if c.Workers <= 0 {
		c.Workers = runtime.NumCPU()
	}
	if c.BatchPackets <= 0 {
		c.BatchPackets = packet.DefaultBatchPackets
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = packet.DefaultBatchBytes
	}
	if c.QueueBatches <= 0 {
		c.QueueBatches = 8
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = time.Second
	}
	if c.Stats == nil {
		c.Stats = stats.NewRegistry()
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// Parts are what a pipeline is made of.
type Parts struct {
	Sources      []Source
	NewDecoder   func() Decoder
	NewFilter    func() Filter // optional
	Taps         []Tap         // optional: see packets after the filter
	NewProcessor func(worker int) Processor
	// Stages run beside the workers (keyed aggregation: see Keyed): they
	// start before the workers and close after every worker has flushed,
	// before the event queue closes.
	Stages []Stage
	// Sinks receive every event, each from its own bounded queue. Sink is
	// shorthand for one output named "sink".
	Sinks []Output
	Sink  Sink
}

// Result summarises a finished run.
type Result struct {
	Packets uint64         // packets read by all sources
	Events  uint64         // events the workers emitted
	Sinks   []SinkResult   // one per output, in Parts order
	Losses  []stats.Sample // loss counters that are not zero
}

// SinkResult is what one output did with the run's events.
type SinkResult struct {
	Name      string
	Delivered uint64 // accepted and not later lost
	Lost      uint64 // not delivered: its write failed, or it had failed before
	// ReaderGone is set when the output's reader left (EPIPE): the run
	// stopped early on purpose, and Lost counts what was not written.
	ReaderGone bool
	Err        error // the first error, nil when ReaderGone
}

// Engine is one configured pipeline. Use New, then Run once.
type Engine struct {
	cfg   Config
	parts Parts
	pool  *packet.Pool

	sourceOut []chan *packet.Batch
	workerIn  []chan *packet.Batch
	events    chan *event.Batch
	outputs   []*output
	live      atomic.Int32 // outputs that have not failed
	stopInput context.CancelFunc

	// counters
	dispatched   *stats.Counter
	emitted      *stats.Counter
	eventsByType sync.Map    // event.Type -> *stats.Counter
	counters     []typeCount // count's cache of eventsByType
}

// New checks the parts and builds an engine.
func New(cfg Config, parts Parts) (*Engine, error) {
	cfg.defaults()
	if parts.Sink != nil {
		parts.Sinks = append([]Output{{Name: "sink", Sink: parts.Sink}}, parts.Sinks...)
		parts.Sink = nil
	}
	if len(parts.Sources) == 0 {
		return nil, errors.New("pipeline: no source")
	}
	if parts.NewDecoder == nil || parts.NewProcessor == nil || len(parts.Sinks) == 0 {
		return nil, errors.New("pipeline: decoder, processor and a sink are required")
	}
	e := &Engine{cfg: cfg, parts: parts, pool: packet.NewPool(cfg.BatchPackets, cfg.BatchBytes)}
	for range parts.Sources {
		e.sourceOut = append(e.sourceOut, make(chan *packet.Batch, cfg.QueueBatches))
	}
	for range cfg.Workers {
		e.workerIn = append(e.workerIn, make(chan *packet.Batch, cfg.QueueBatches))
	}
	e.events = make(chan *event.Batch, cfg.QueueBatches*cfg.Workers)
	r := cfg.Stats
	e.dispatched = r.Counter("pktpipe_dispatch_packets_total", "Packets handed to a worker.")
	e.emitted = r.Counter("pktpipe_events_emitted_total", "Events the workers emitted (each once, whatever the number of sinks).")
	seen := map[string]bool{}
	for _, o := range parts.Sinks {
		if o.Name == "" || seen[o.Name] {
			return nil, fmt.Errorf("pipeline: sink names must be unique and not empty (%q)", o.Name)
		}
		seen[o.Name] = true
		e.outputs = append(e.outputs, newOutput(o, e.events, cfg))
	}
	if len(e.outputs) > 1 {
		for _, o := range e.outputs {
			o.queue = make(chan *event.Batch, cfg.QueueBatches*cfg.Workers)
			o.in = o.queue
		}
	}
	e.live.Store(int32(len(e.outputs)))
	return e, nil
}

// Pool is the batch pool sources draw from (useful to tests and benchmarks).
func (e *Engine) Pool() *packet.Pool { return e.pool }

// QueueFill returns, for each channel, how many batches it holds now and
// its capacity: sources' queues, then workers', then the event queue.
func (e *Engine) QueueFill() (names []string, used, capacity []int) {
	for i, c := range e.sourceOut {
		names = append(names, fmt.Sprintf("source%d", i))
		used, capacity = append(used, len(c)), append(capacity, cap(c))
	}
	for i, c := range e.workerIn {
		names = append(names, fmt.Sprintf("worker%d", i))
		used, capacity = append(used, len(c)), append(capacity, cap(c))
	}
	names = append(names, "events")
	used, capacity = append(used, len(e.events)), append(capacity, cap(e.events))
	return
}

// Run runs the pipeline until every source is done and everything read has
// been processed and written. Cancelling ctx stops the sources; the rest
// still drains. When every sink has failed, the sources are stopped too:
// nothing read after that could be delivered. Each source is closed when
// its Run returns, each tap when every dispatcher is done, each sink at
// the end. The error joins every source, tap and sink error.
func (e *Engine) Run(ctx context.Context) (Result, error) {
	srcCtx, stopInput := context.WithCancel(ctx)
	defer stopInput()
	e.stopInput = stopInput
	var (
		srcErrs  = make([]error, len(e.parts.Sources))
		nows     = make([]int64, len(e.parts.Sources))
		readPkts = make([]uint64, len(e.parts.Sources))
		srcWG    sync.WaitGroup
		dispWG   sync.WaitGroup
		workWG   sync.WaitGroup
		sinkWG   sync.WaitGroup
	)
	// Sinks first, so they are ready before anything flows.
	for _, o := range e.outputs {
		sinkWG.Add(1)
		go func() {
			defer sinkWG.Done()
			e.runOutput(o)
		}()
	}
	if len(e.outputs) > 1 {
		go e.fanOut()
	}

	// Stages after the workers, then the workers.
	for _, st := range e.parts.Stages {
		st.Start(func() *Emitter { return &Emitter{out: e.events, engine: e} })
	}
	var finalNow int64
	for i, in := range e.workerIn {
		proc := e.parts.NewProcessor(i)
		workWG.Add(1)
		go func() {
			defer workWG.Done()
			e.runWorker(i, proc, in, &finalNow)
		}()
	}
	// Dispatchers, one per source: on a goroutine of their own, fed by a
	// queue, unless the source delivers directly.
	for i, src := range e.parts.Sources {
		if _, ok := src.(DirectSource); ok {
			continue
		}
		dispWG.Add(1)
		go func() {
			defer dispWG.Done()
			d := e.newDispatcher(src.Name())
			for b := range e.sourceOut[i] {
				d.dispatch(b)
			}
			nows[i], readPkts[i] = d.now, d.read
		}()
	}
	// Sources.
	for i, src := range e.parts.Sources {
		srcWG.Add(1)
		go func() {
			defer srcWG.Done()
			var err error
			if ds, ok := src.(DirectSource); ok {
				d := e.newDispatcher(src.Name())
				err = ds.RunDirect(srcCtx, e.pool, d.dispatch)
				nows[i], readPkts[i] = d.now, d.read
			} else {
				err = src.Run(srcCtx, e.pool, e.sourceOut[i])
			}
			close(e.sourceOut[i])
			if err != nil && !errors.Is(err, context.Canceled) {
				err = fmt.Errorf("source %s: %w", src.Name(), err)
				e.cfg.Stats.LossCounter("pktpipe_source_errors_total", "Sources that ended with an error.", "source", src.Name()).Inc()
			} else {
				err = nil
			}
			if cerr := src.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("source %s: close: %w", src.Name(), cerr))
			}
			srcErrs[i] = err
		}()
	}
	srcWG.Wait()
	dispWG.Wait()
	var tapErrs []error
	for _, t := range e.parts.Taps {
		if err := t.Close(); err != nil {
			tapErrs = append(tapErrs, fmt.Errorf("tap: %w", err))
		}
	}
	// Every dispatcher is done: the final clock is the latest packet time
	// any of them saw. Workers read it after their queue closes.
	for _, n := range nows {
		finalNow = max(finalNow, n)
	}
	for _, in := range e.workerIn {
		close(in)
	}
	workWG.Wait()
	for _, st := range e.parts.Stages {
		st.Close() // every worker has flushed its senders
	}
	close(e.events)
	sinkWG.Wait()

	var res Result
	for _, n := range readPkts {
		res.Packets += n
	}
	res.Events = e.emitted.Load()
	errs := append(srcErrs, tapErrs...)
	for _, o := range e.outputs {
		res.Sinks = append(res.Sinks, o.result())
		if o.err != nil && !o.readerGone {
			errs = append(errs, fmt.Errorf("sink %s: %w", o.name, o.err))
		}
	}
	res.Losses = e.cfg.Stats.Losses()
	return res, errors.Join(errs...)
}

// skippedHelp is the one HELP text of pktpipe_dispatch_skipped_total (a
// metric family has one): the reason label says why.
const skippedHelp = "Packets handed to no worker, by reason: no IP layer (no_ip), a later IPv4 fragment (non_first_fragment, no ports), or a decode error (malformed), or a flow of another shard (other_shard, --shard)."

// dispatcher decodes, filters and shards one source's batches.
type dispatcher struct {
	e         *Engine
	dec       Decoder
	filter    Filter
	taps      []PacketObserver
	nWorkers  uint64
	shard     Shard
	dest      []uint16 // each packet's worker, for Split
	malformed [packet.MalformedCount]uint64
	malCtr    [packet.MalformedCount]*stats.Counter

	pkts, bytes, filtered, noFlow, frags, badPkt, otherCtr *stats.Counter

	now  int64  // the latest packet timestamp seen
	read uint64 // packets read
}

func (e *Engine) newDispatcher(name string) *dispatcher {
	r := e.cfg.Stats
	d := &dispatcher{
		e:        e,
		dec:      e.parts.NewDecoder(),
		nWorkers: uint64(len(e.workerIn)),
		shard:    e.cfg.Shard,
		pkts:     r.Counter("pktpipe_source_packets_total", "Packets read by a source.", "source", name),
		bytes:    r.Counter("pktpipe_source_bytes_total", "Captured bytes read by a source.", "source", name),
		filtered: r.Counter("pktpipe_filter_rejected_total", "Packets the filter expression rejected.", "source", name),
		noFlow:   r.Counter("pktpipe_dispatch_skipped_total", skippedHelp, "reason", "no_ip"),
		frags:    r.Counter("pktpipe_dispatch_skipped_total", skippedHelp, "reason", "non_first_fragment"),
		badPkt:   r.Counter("pktpipe_dispatch_skipped_total", skippedHelp, "reason", "malformed"),
		otherCtr: r.Counter("pktpipe_dispatch_skipped_total", skippedHelp, "reason", "other_shard"),
	}
	if e.parts.NewFilter != nil {
		d.filter = e.parts.NewFilter()
	}
	d.taps = make([]PacketObserver, len(e.parts.Taps))
	for i, t := range e.parts.Taps {
		d.taps[i] = t.NewObserver()
	}
	for i := packet.Malformed(1); i < packet.MalformedCount; i++ {
		d.malCtr[i] = r.Counter("pktpipe_decode_malformed_total", "Packets the decoder could not fully decode, by reason.", "reason", i.String())
	}
	return d
}

// dispatch decodes, filters and shards b, and hands each worker its
// packets.
func (d *dispatcher) dispatch(b *packet.Batch) {
	e := d.e
	var nBytes, nFiltered, nNoFlow, nFrag, nBad, nOther, nSent uint64
	if cap(d.dest) < len(b.Packets) {
		d.dest = make([]uint16, cap(b.Packets))
	}
	dest := d.dest[:len(b.Packets)]
	now := d.now
	for i := range b.Packets {
		p := &b.Packets[i]
		dest[i] = packet.Skip
		now = max(now, p.Timestamp)
		nBytes += uint64(len(p.Data))
		if d.filter != nil && !d.filter.Match(p) {
			nFiltered++
			continue
		}
		for _, t := range d.taps {
			t.Observe(p)
		}
		d.dec.DecodeIn(p, b.Room(i))
		m := &p.Meta
		if m.Err != packet.MalformedNone {
			d.malformed[m.Err]++
			nBad++
			continue
		}
		if m.Frag.Is && !m.Frag.First {
			nFrag++
			continue
		}
		h, own, ok := packet.ShardHash(m)
		if !ok {
			nNoFlow++
			continue
		}
		if !d.shard.Owns(h) {
			nOther++
			continue
		}
		if own { // the worker's flow table needs it too
			m.FlowHash = h
		}
		dest[i] = uint16(h % d.nWorkers)
		nSent++
	}
	d.now = now
	n := len(b.Packets)
	d.read += uint64(n)
	d.pkts.Add(uint64(n))
	// Each worker gets its packets of this batch at once (no packet
	// waits in a half-full batch behind a quiet live source), as a
	// view of the batch: their bytes are not copied.
	views := b.Split(dest, len(e.workerIn))
	for w := range views {
		if v := &views[w]; v.Len() > 0 {
			v.Now = now
			e.workerIn[w] <- v
		}
	}
	d.bytes.Add(nBytes)
	d.filtered.Add(nFiltered)
	d.noFlow.Add(nNoFlow)
	d.frags.Add(nFrag)
	d.badPkt.Add(nBad)
	d.otherCtr.Add(nOther)
	e.dispatched.Add(nSent)
	for i, n := range d.malformed {
		if n != 0 {
			d.malCtr[i].Add(n)
			d.malformed[i] = 0
		}
	}
}

func (e *Engine) runWorker(i int, proc Processor, in <-chan *packet.Batch, finalNow *int64) {
	em := &Emitter{out: e.events, engine: e}
	pkts := e.cfg.Stats.Counter("pktpipe_worker_packets_total", "Packets processed by a worker.", "worker", fmt.Sprint(i))
	for b := range in {
		proc.Process(b, em)
		em.Flush()
		pkts.Add(uint64(len(b.Packets)))
		b.Release()
	}
	proc.Flush(*finalNow, em)
	em.Flush()
}

func (e *Engine) typeCounter(t event.Type) *stats.Counter {
	if c, ok := e.eventsByType.Load(t); ok {
		return c.(*stats.Counter)
	}
	c := e.cfg.Stats.Counter("pktpipe_events_total", "Events emitted, by event_type.", "type", string(t))
	e.eventsByType.Store(t, c)
	return c
}

// Emitter collects a worker's events into batches for the sink, and
// stamps each with its event_id on the way (event.IDStamper).
type Emitter struct {
	out    chan<- *event.Batch
	cur    *event.Batch
	engine *Engine
	ids    event.IDStamper
}

// NewEmitter returns an emitter that sends to out. Tests and benchmarks
// use it to drive a Processor without an engine.
func NewEmitter(out chan<- *event.Batch) *Emitter { return &Emitter{out: out} }

// Emit queues one event; a full batch is sent on (blocking if the sink is
// behind).
func (em *Emitter) Emit(ev event.Event) {
	em.ids.Stamp(ev)
	if em.cur == nil {
		em.cur = event.GetBatch()
	}
	em.cur.Events = append(em.cur.Events, ev)
	if len(em.cur.Events) == event.MaxBatchEvents {
		em.Flush()
	}
}

// Flush sends the events queued so far.
func (em *Emitter) Flush() {
	if em.cur == nil || len(em.cur.Events) == 0 {
		return
	}
	em.out <- em.cur
	em.cur = nil
}
