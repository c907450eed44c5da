package kafka

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/pipeline/stats"
)

// faultDialer is the transport's dialer with an outage switch: down closes
// every connection it made and refuses new ones (ECONNREFUSED, as a killed
// broker's port does), up lets them through again. Unlike kafka.sh kill it
// costs no broker restart, and the metadata the writer cached while the
// broker was up stays, as it does when a real broker dies.
type faultDialer struct {
	down  atomic.Bool
	mu    sync.Mutex
	conns []net.Conn
}

func (d *faultDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if d.down.Load() {
		return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.conns = append(d.conns, c)
	d.mu.Unlock()
	return c, nil
}

func (d *faultDialer) setDown(down bool) {
	d.down.Store(down)
	if down {
		d.mu.Lock()
		for _, c := range d.conns {
			c.Close()
		}
		d.conns = nil
		d.mu.Unlock()
	}
}

// heapInuse is the heap's in-use spans (runtime/metrics would do too).
func heapInuse() int64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// TestOutageMemoryWithinBudget: the broker goes away after the writer has
// its metadata (as when it is killed) while events keep coming. The sink's
// budget holds the events; what kafka-go holds for them (per-partition
// batches) must stay bounded too, during the outage and after it.
func TestOutageMemoryWithinBudget(t *testing.T) {
	needBroker(t)
	const (
		budget = 8 << 20
		per    = 64                    // events per Write
		every  = 20 * time.Millisecond // 3200 events/s
	)
	topic := uniqueTopic("outage")
	createTopic(t, topic, 3)
	fd := &faultDialer{}
	reg := stats.NewRegistry()
	s := newSink(t, Config{Topic: topic, Stats: reg, MaxInflight: 50000, MaxInflightBytes: budget,
		RetryBackoffMax: time.Second, DrainTimeout: 60 * time.Second, dial: fd.DialContext})
	profDir := os.Getenv("PKTPIPE_KAFKA_HEAPPROF")

	var phase atomic.Int32 // 0 before, 1 outage, 2 after
	var peaks [3]atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			h := heapInuse()
			p := &peaks[phase.Load()]
			if h > p.Load() {
				p.Store(h)
			}
		}
	}()
	profile := func(name string) {
		if profDir == "" {
			return
		}
		f, err := os.Create(filepath.Join(profDir, name))
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		runtime.GC()
		pprof.WriteHeapProfile(f)
	}

	var sent atomic.Int64
	written := make(chan error, 1)
	stopWriting := make(chan struct{})
	go func() {
		pace := time.NewTicker(every)
		defer pace.Stop()
		id := 1
		for {
			select {
			case <-stopWriting:
				written <- nil
				return
			case <-pace.C:
			}
			if err := s.Write(flows(id, per)); err != nil {
				written <- err
				return
			}
			id += per
			sent.Store(int64(id - 1))
		}
	}()

	time.Sleep(3 * time.Second)
	before := heapInuse()
	fd.setDown(true)
	phase.Store(1)
	time.Sleep(5 * time.Second)
	profile("heap-outage-5s.pb.gz")
	time.Sleep(5 * time.Second)
	profile("heap-outage-10s.pb.gz")
	fd.setDown(false)
	phase.Store(2)
	time.Sleep(2 * time.Second)
	profile("heap-after-2s.pb.gz")
	time.Sleep(3 * time.Second)
	close(stopWriting)
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	closeErr := s.Close()
	close(stop)
	<-sampled
	if closeErr != nil {
		t.Fatalf("close: %v", closeErr)
	}
	n := int(sent.Load())
	msgs := consume(t, topic, 0)
	seen := map[int]bool{}
	for _, m := range msgs {
		seen[flowID(t, []byte(m.value))] = true
	}
	missing := 0
	for id := 1; id <= n; id++ {
		if !seen[id] {
			missing++
		}
	}
	mb := func(b int64) float64 { return float64(b) / (1 << 20) }
	t.Logf("%d events, %d messages read back, %d missing; retried %d, produce errors %d; heap in use: %.1f MiB before the outage (peak %.1f), peak %.1f during, %.1f after",
		n, len(msgs), missing, s.m.retried.Load(), s.m.produceErrs.Load(), mb(before), mb(peaks[0].Load()), mb(peaks[1].Load()), mb(peaks[2].Load()))
	if missing > 0 {
		t.Fatalf("%d of %d events missing", missing, n)
	}
	// The heap may reach twice what is live (GOGC=100); live grows by the
	// budget plus kafka-go's open batches and zstd encoders (a few MiB).
	// Before open calls were bounded, this reached 1.5 GB.
	ceiling := peaks[0].Load() + 2*(budget+outageFixed)
	for i, name := range []string{"during", "after"} {
		if p := peaks[i+1].Load(); p > ceiling {
			t.Errorf("heap in use reached %.1f MiB %s the outage; ceiling %.1f MiB (%.1f before + 2 × (%d MiB budget + %d MiB))",
				mb(p), name, mb(ceiling), mb(peaks[0].Load()), budget>>20, outageFixed>>20)
		}
	}
}

const outageFixed = 8 << 20
