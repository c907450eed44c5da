// Package metrics serves pktpipe's counters to Prometheus, and a health
// check, over HTTP.
//
// The stats registry (pipeline/stats) stays the one place counters live:
// the hot path keeps its cheap atomics, and this package reads them only at
// scrape time through a custom prometheus.Collector. A series registered
// after start-up (a new event type, a new source) appears at the next
// scrape without any registration here. Counters are exported as counters,
// gauges as gauges, with Desc.Labels as labels; the engine's queue fill is
// added as pktpipe_queue_batches{queue} and pktpipe_queue_capacity_batches,
// and the Go runtime and process collectors add go_* and process_*.
//
// /healthz answers 200 while the pipeline runs and no sink has failed, and
// 503 (with the reason in the body) before it starts, after it ends, and
// once any sink failure counter is above zero.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pktpipe/pktpipe/pipeline/registry"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

// QueueFiller reports the fill of the engine's channels
// (pipeline.Engine.QueueFill).
type QueueFiller interface {
	QueueFill() (names []string, used, capacity []int)
}

// SinkFailureMetrics are the counters whose non-zero value makes /healthz
// answer 503: a sink that failed writes, or events a sink gave up on.
var SinkFailureMetrics = []string{
	"pktpipe_sink_failed_events_total",
	"pktpipe_kafka_failed_total",
}

// Collector exports a stats registry, and the engine's queue fill, at
// scrape time. It is an unchecked collector (Describe sends nothing),
// because the set of series grows while the pipeline runs.
type Collector struct {
	reg    *stats.Registry
	queues QueueFiller

	queueUsed *prometheus.Desc
	queueCap  *prometheus.Desc
}

// NewCollector returns a collector over reg; queues may be nil.
func NewCollector(reg *stats.Registry, queues QueueFiller) *Collector {
	return &Collector{
		reg:    reg,
		queues: queues,
		queueUsed: prometheus.NewDesc("pktpipe_queue_batches",
			"Batches waiting in a bounded channel of the engine (source<i>: source to dispatcher, worker<i>: dispatcher to worker, events: workers to sink).",
			[]string{"queue"}, nil),
		queueCap: prometheus.NewDesc("pktpipe_queue_capacity_batches",
			"Capacity, in batches, of a bounded channel of the engine.",
			[]string{"queue"}, nil),
	}
}

// Describe sends nothing: the collector is unchecked.
func (c *Collector) Describe(chan<- *prometheus.Desc) {}

// Collect reads every series of the registry and the queue fill.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	samples := c.reg.Snapshot()
	// One family per name: the first registration's help, and the union
	// of the label names of its series (a series without one of them gets
	// it empty, which Prometheus treats as absent), so that every series
	// of a family has the same dimensions.
	type family struct {
		help   string
		labels []string
		desc   *prometheus.Desc
	}
	fams := map[string]*family{}
	for _, s := range samples {
		f := fams[s.Name]
		if f == nil {
			f = &family{help: s.Help}
			fams[s.Name] = f
		}
		for i := 0; i+1 < len(s.Labels); i += 2 {
			if !slices.Contains(f.labels, s.Labels[i]) {
				f.labels = append(f.labels, s.Labels[i])
			}
		}
	}
	for name, f := range fams {
		f.desc = prometheus.NewDesc(name, f.help, f.labels, nil)
	}
	for _, s := range samples {
		f := fams[s.Name]
		values := make([]string, len(f.labels))
		for i := 0; i+1 < len(s.Labels); i += 2 {
			values[slices.Index(f.labels, s.Labels[i])] = s.Labels[i+1]
		}
		vt := prometheus.CounterValue
		if s.Kind == stats.KindGauge {
			vt = prometheus.GaugeValue
		}
		m, err := prometheus.NewConstMetric(f.desc, vt, s.Value, values...)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(f.desc, err)
			continue
		}
		ch <- m
	}
	if c.queues != nil {
		names, used, capacity := c.queues.QueueFill()
		for i, n := range names {
			ch <- prometheus.MustNewConstMetric(c.queueUsed, prometheus.GaugeValue, float64(used[i]), n)
			ch <- prometheus.MustNewConstMetric(c.queueCap, prometheus.GaugeValue, float64(capacity[i]), n)
		}
	}
}

// Config says what to serve and where.
type Config struct {
	// Addr is host:port. Unless AllowRemote, the host must be a loopback
	// address or "localhost", and the address bound must be loopback
	// (whatever the name resolved to): counters reveal traffic volumes
	// and the endpoint has no authentication.
	Addr        string
	AllowRemote bool
	Stats       *stats.Registry
	Queues      QueueFiller // optional
	Log         *slog.Logger
}

// Server is a running metrics endpoint.
type Server struct {
	ln      net.Listener
	srv     *http.Server
	reg     *stats.Registry
	running atomic.Bool
	done    chan struct{}
}

// CheckAddr refuses an address that is not host:port, and one that is not
// loopback unless allowRemote (usage errors). A name is not resolved here:
// Start checks the address it bound.
func CheckAddr(addr string, allowRemote bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return registry.Usagef("metrics address %q: %v (want host:port, e.g. 127.0.0.1:9477)", addr, err)
	}
	if port == "" {
		return registry.Usagef("metrics address %q: no port", addr)
	}
	if allowRemote {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return registry.Usagef("metrics address %q is not a loopback address; the endpoint has no authentication, so pass --metrics-allow-remote to serve it beyond this host", addr)
	}
	return nil
}

// checkBound refuses a listener bound to an address that is not loopback,
// unless allowRemote. CheckAddr sees only the name: "localhost" (or an
// /etc/hosts entry) may resolve to anything, and only the listener knows
// what was bound.
func checkBound(addr string, bound net.Addr, allowRemote bool) error {
	if allowRemote {
		return nil
	}
	var ip net.IP
	if a, ok := bound.(*net.TCPAddr); ok {
		ip = a.IP
	}
	if ip == nil || !ip.IsLoopback() {
		return registry.Usagef("metrics address %q is bound to %s, which is not a loopback address (what the name resolved to); the endpoint has no authentication, so pass --metrics-allow-remote to serve it beyond this host", addr, bound)
	}
	return nil
}

// Start listens on cfg.Addr and serves /metrics and /healthz until Close.
// The health check answers 503 until SetRunning(true).
func Start(cfg Config) (*Server, error) {
	if err := CheckAddr(cfg.Addr, cfg.AllowRemote); err != nil {
		return nil, err
	}
	if cfg.Stats == nil {
		return nil, errors.New("metrics: no stats registry")
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		NewCollector(cfg.Stats, cfg.Queues),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
	)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if err := checkBound(cfg.Addr, ln.Addr(), cfg.AllowRemote); err != nil {
		ln.Close()
		return nil, err
	}
	s := &Server{ln: ln, reg: cfg.Stats, done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("/healthz", s.healthz)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "pktpipe: /metrics (Prometheus), /healthz")
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	return s, nil
}

// Addr is the address the server listens on (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// SetRunning says whether the pipeline is running (for /healthz).
func (s *Server) SetRunning(v bool) { s.running.Store(v) }

// Health says whether the pipeline is healthy, and if not, why.
func (s *Server) Health() (bool, string) {
	if !s.running.Load() {
		return false, "pipeline not running"
	}
	return SinksHealthy(s.reg)
}

// SinksHealthy reports false, naming the series, when any sink failure
// counter is above zero.
func SinksHealthy(reg *stats.Registry) (bool, string) {
	for _, smp := range reg.Snapshot() {
		for _, n := range SinkFailureMetrics {
			if smp.Name == n && smp.Value > 0 {
				return false, fmt.Sprintf("sink failed: %s = %.0f", smp.ID(), smp.Value)
			}
		}
	}
	return true, "ok"
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ok, why := s.Health()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintln(w, why)
}

// Close stops the server, letting a scrape in progress finish (up to the
// context's deadline).
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}
