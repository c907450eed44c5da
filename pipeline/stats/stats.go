// Package stats holds pktpipe's counters and gauges: one registry per
// process, cheap atomic values on the hot path, and a snapshot for the
// exit summary, the status line and the Prometheus exporter.
//
// Every place that can drop or fail registers a counter here, so nothing is
// dropped silently. Hot paths add once per batch, not once per packet.
package stats

import (
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Counter only goes up.
type Counter struct{ v atomic.Uint64 }

func (c *Counter) Add(n uint64) { c.v.Add(n) }
func (c *Counter) Inc()         { c.v.Add(1) }
func (c *Counter) Load() uint64 { return c.v.Load() }

// Gauge goes up and down.
type Gauge struct{ v atomic.Int64 }

func (g *Gauge) Set(n int64) { g.v.Store(n) }
func (g *Gauge) Add(n int64) { g.v.Add(n) }
func (g *Gauge) Load() int64 { return g.v.Load() }

// Kind tells counters from gauges.
type Kind uint8

const (
	KindCounter Kind = iota
	KindGauge
)

// Desc describes one metric series.
type Desc struct {
	Name   string // Prometheus-style, e.g. "pktpipe_source_packets_total"
	Help   string
	Labels []string // name=value pairs, flattened: {"reason", "truncated_ip"}
	Kind   Kind
	// Loss marks a counter whose non-zero value means data was lost; the
	// exit code is non-zero when any such counter is.
	Loss bool
}

// ID is the series' unique name with its labels.
func (d *Desc) ID() string {
	if len(d.Labels) == 0 {
		return d.Name
	}
	var b strings.Builder
	b.WriteString(d.Name)
	b.WriteByte('{')
	for i := 0; i+1 < len(d.Labels); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(d.Labels[i])
		b.WriteString(`="`)
		b.WriteString(d.Labels[i+1])
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

type entry struct {
	desc    Desc
	counter *Counter
	gauge   *Gauge
}

// Registry holds every series by ID. Registering the same ID twice returns
// the same value, so per-worker code can register without coordination.
type Registry struct {
	mu      sync.Mutex
	entries map[string]*entry
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{entries: map[string]*entry{}} }

// Counter registers (or finds) a counter.
func (r *Registry) Counter(name, help string, labels ...string) *Counter {
	return r.get(Desc{Name: name, Help: help, Labels: labels, Kind: KindCounter}).counter
}

// LossCounter registers a counter whose non-zero value means lost data.
func (r *Registry) LossCounter(name, help string, labels ...string) *Counter {
	return r.get(Desc{Name: name, Help: help, Labels: labels, Kind: KindCounter, Loss: true}).counter
}

// Gauge registers (or finds) a gauge.
func (r *Registry) Gauge(name, help string, labels ...string) *Gauge {
	return r.get(Desc{Name: name, Help: help, Labels: labels, Kind: KindGauge}).gauge
}

func (r *Registry) get(d Desc) *entry {
	if len(d.Labels)%2 != 0 {
		panic("stats: labels must be name/value pairs: " + d.Name)
	}
	id := d.ID()
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.entries[id]; ok {
		return e
	}
	e := &entry{desc: d}
	if d.Kind == KindGauge {
		e.gauge = new(Gauge)
	} else {
		e.counter = new(Counter)
	}
	r.entries[id] = e
	return e
}

// Sample is one series' value at snapshot time.
type Sample struct {
	Desc
	Value float64
}

// Snapshot returns every series, sorted by ID.
func (r *Registry) Snapshot() []Sample {
	r.mu.Lock()
	out := make([]Sample, 0, len(r.entries))
	for _, e := range r.entries {
		s := Sample{Desc: e.desc}
		if e.gauge != nil {
			s.Value = float64(e.gauge.Load())
		} else {
			s.Value = float64(e.counter.Load())
		}
		out = append(out, s)
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID() < out[j].ID() })
	return out
}

// Value returns the current value of the series with that ID (name plus
// labels as Desc.ID formats them), and whether it exists.
func (r *Registry) Value(id string) (float64, bool) {
	r.mu.Lock()
	e, ok := r.entries[id]
	r.mu.Unlock()
	if !ok {
		return 0, false
	}
	if e.gauge != nil {
		return float64(e.gauge.Load()), true
	}
	return float64(e.counter.Load()), true
}

// Losses returns the loss counters that are not zero.
func (r *Registry) Losses() []Sample {
	var out []Sample
	for _, s := range r.Snapshot() {
		if s.Loss && s.Value != 0 {
			out = append(out, s)
		}
	}
	return out
}
