package pipeline

import (
	"errors"
	"time"

	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

// output is one sink with its queue and its own accounting. With one sink
// its queue is the workers' event channel; with several, a fan-out
// goroutine hands each batch to every queue (shared, released by each).
type output struct {
	name  string
	sink  Sink
	in    <-chan *event.Batch
	queue chan *event.Batch // its own queue, when the fan-out feeds it

	accepted, failed, unwritten *stats.Counter
	lostAccepted                uint64 // accepted earlier, lost in the sink's buffer

	err        error // first error; the sink gets no more writes after it
	readerGone bool  // err means the output's reader left on purpose
}

func newOutput(o Output, events <-chan *event.Batch, cfg Config) *output {
	r := cfg.Stats
	return &output{
		name: o.Name, sink: o.Sink, in: events,
		accepted:  r.Counter("pktpipe_sink_events_total", "Events a sink accepted (those it later lost in its buffer when its output failed are also counted as failed).", "sink", o.Name),
		failed:    r.LossCounter("pktpipe_sink_failed_events_total", "Events a sink did not deliver because it failed.", "sink", o.Name),
		unwritten: r.Counter("pktpipe_sink_unwritten_events_total", "Events not written because the output's reader went away (pktpipe | head).", "sink", o.Name),
	}
}

func (o *output) result() SinkResult {
	acc := o.accepted.Load()
	lost := o.failed.Load() + o.unwritten.Load()
	return SinkResult{
		Name: o.name, Delivered: acc - min(acc, o.lostAccepted), Lost: lost,
		ReaderGone: o.readerGone, Err: o.err,
	}
}

// fanOut hands every batch of the workers to every sink's queue.
func (e *Engine) fanOut() {
	queues := make([]chan *event.Batch, len(e.outputs))
	for i, o := range e.outputs {
		queues[i] = o.queue
	}
	for b := range e.events {
		e.count(b)
		b.Share(len(queues))
		for _, q := range queues {
			q <- b
		}
	}
	for _, q := range queues {
		close(q)
	}
}

// runOutput writes one sink's queue until it closes, then closes the sink.
// A failed sink keeps draining its queue, counting what it could not
// deliver, so that it never holds up the others or the drain.
func (e *Engine) runOutput(o *output) {
	tick := time.NewTicker(e.cfg.FlushInterval)
	defer tick.Stop()
	single := len(e.outputs) == 1
	for {
		select {
		case b, ok := <-o.in:
			if !ok {
				if o.err == nil {
					if err := o.sink.Close(); err != nil {
						e.fail(o, err, 0)
					}
				} else {
					_ = o.sink.Close()
				}
				return
			}
			if single {
				e.count(b)
			}
			n := uint64(len(b.Events))
			switch {
			case o.err != nil:
				e.lose(o, n)
			default:
				if err := o.sink.Write(b.Events); err != nil {
					e.fail(o, err, n)
				} else {
					o.accepted.Add(n)
				}
			}
			b.Release()
		case <-tick.C:
			if o.err == nil {
				if err := o.sink.Flush(); err != nil {
					e.fail(o, err, 0)
				}
			}
		}
	}
}

// fail records o's first error and counts n events (plus those its buffer
// lost) as not delivered. When no sink is left, the sources stop.
func (e *Engine) fail(o *output, err error, n uint64) {
	var le *LostError
	if errors.As(err, &le) {
		o.lostAccepted += le.Accepted
		n += le.Accepted
	}
	first := o.err == nil
	if first {
		o.err = err
		o.readerGone = errors.Is(err, ErrReaderGone)
	}
	e.lose(o, n)
	if !first {
		return
	}
	left := e.live.Add(-1)
	switch {
	case o.readerGone:
		e.cfg.Log.Info("the output's reader went away; stopping", "sink", o.name, "err", err)
	case left > 0:
		e.cfg.Log.Error("sink failed; its events from here on are counted as lost, the other sinks carry on", "sink", o.name, "err", err)
	default:
		e.cfg.Log.Error("sink failed; no sink is left, so reading stops and what is in flight is counted as lost", "sink", o.name, "err", err)
	}
	if left == 0 {
		e.stopInput()
	}
}

func (e *Engine) lose(o *output, n uint64) {
	if o.readerGone {
		o.unwritten.Add(n)
	} else {
		o.failed.Add(n)
	}
}

// count counts a batch's events once, by type. Only one goroutine counts
// (the fan-out, or the only sink's output), so its cache of counters by
// type needs no lock: a short scan instead of a sync.Map lookup (which
// hashed the type's name for every event).
func (e *Engine) count(b *event.Batch) {
	e.emitted.Add(uint64(len(b.Events)))
	for _, ev := range b.Events {
		t := ev.Type()
		var c *stats.Counter
		for _, k := range e.counters {
			if k.t == t {
				c = k.c
				break
			}
		}
		if c == nil {
			c = e.typeCounter(t)
			e.counters = append(e.counters, typeCount{t, c})
		}
		c.Inc()
	}
}

// typeCount is one entry of count's cache.
type typeCount struct {
	t event.Type
	c *stats.Counter
}
