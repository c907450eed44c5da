package pcapfile

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

// fakeClock advances only when slept on; each sleep overshoots by over
// (a late wake-up) and records how many packets had been sent by then.
type fakeClock struct {
	now    time.Time
	over   time.Duration
	sleeps []time.Duration
	sent   []float64
	reg    *stats.Registry
}

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	v, _ := c.reg.Value("pktpipe_pcapfile_packets_total")
	c.sleeps = append(c.sleeps, d)
	c.sent = append(c.sent, v)
	c.now = c.now.Add(d + c.over)
	return nil
}

func TestReplayPacing(t *testing.T) {
	offs := []time.Duration{0, 0, time.Second, 1500 * time.Millisecond, 1500 * time.Millisecond, 4 * time.Second, 3 * time.Second}
	w := (&ngb{}).shb(false).idb(1, 0, w9())
	var want []pkt
	for i, o := range offs {
		ts := base.Add(o).UnixNano()
		w.epb(0, uint64(ts), frame(i, 60), 60)
		want = append(want, pkt{frame(i, 60), 60, ts, packet.LinkEthernet, 0})
	}
	reg := newStats()
	src, err := New(Config{Files: []string{writeTemp(t, w.buf)}, ReplaySpeed: 2, Stats: reg})
	if err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{now: time.Unix(1e6, 0), over: 100 * time.Millisecond, reg: reg}
	src.clk = clk
	got, err := drain(t, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	samePkts(t, got, want)
	// At 2x: packet 2 is due at 0.5 s, 3 at 0.75 s, 4 with it, 5 at 2 s,
	// 6 (earlier than 5) at once. Due times are measured from the first
	// packet, so each 100 ms oversleep shortens the next wait instead of
	// accumulating.
	wantSleeps := []time.Duration{500 * time.Millisecond, 150 * time.Millisecond, 1150 * time.Millisecond}
	wantSent := []float64{2, 3, 5}
	if len(clk.sleeps) != len(wantSleeps) {
		t.Fatalf("sleeps %v, want %v", clk.sleeps, wantSleeps)
	}
	for i := range wantSleeps {
		if clk.sleeps[i] != wantSleeps[i] || clk.sent[i] != wantSent[i] {
			t.Fatalf("sleep %d: %v with %v packets sent, want %v with %v sent (all: %v %v)",
				i, clk.sleeps[i], clk.sent[i], wantSleeps[i], wantSent[i], clk.sleeps, clk.sent)
		}
	}
}

// w9 is an if_tsresol option for nanoseconds (little-endian section).
func w9() []byte { return (&ngb{}).opt(9, []byte{9}) }

func TestCancel(t *testing.T) {
	data, want := genPcap(t, false, 5000, base, time.Millisecond)
	src, err := New(Config{Files: []string{writeTemp(t, data)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got, err := drainCtx(t, ctx, src, packet.NewPool(16, 0), func(int) { cancel() })
	if err != nil {
		t.Fatalf("cancelled Run returned %v, want nil", err)
	}
	if len(got) == 0 || len(got) >= len(want) {
		t.Fatalf("got %d packets after cancelling at the first batch", len(got))
	}
	// What was sent is an intact prefix.
	samePkts(t, got, want[:len(got)])
}

func TestCancelDuringReplaySleep(t *testing.T) {
	// Packets an hour apart at 1x: only cancellation can end this run.
	data, want := genPcap(t, true, 3, base, time.Hour)
	src, err := New(Config{Files: []string{writeTemp(t, data)}, ReplaySpeed: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got, err := drainCtx(t, ctx, src, nil, func(int) { cancel() })
	if err != nil {
		t.Fatal(err)
	}
	samePkts(t, got, want[:1])
}

func TestProgress(t *testing.T) {
	data, _ := genPcap(t, false, 3000, base, time.Millisecond)
	var out bytes.Buffer
	reg := newStats()
	src, err := New(Config{Files: []string{writeTemp(t, data), writeTemp(t, gz(t, data))}, Progress: &out, Stats: reg})
	if err != nil {
		t.Fatal(err)
	}
	// Every Now call moves 50 ms on, so the bar redraws every 4th batch.
	src.clk = &tickClock{t: time.Unix(1e6, 0), step: 50 * time.Millisecond}
	if _, err := drain(t, src, packet.NewPool(64, 0)); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\r")
	if !strings.HasSuffix(s, "\n") || len(lines) < 5 {
		t.Fatalf("progress output %q", s)
	}
	final := lines[len(lines)-1]
	if !strings.Contains(final, "100.0%") || !strings.Contains(final, " 6000 pkts") {
		t.Fatalf("final progress line %q", final)
	}
	// Percent is monotone and a rate is shown.
	if !strings.Contains(lines[2], "pkt/s") || strings.Contains(lines[2], "100.0%") {
		t.Fatalf("early progress line %q", lines[2])
	}
	// No bar for stdin: its size is unknown.
	out.Reset()
	src, _ = New(Config{Files: []string{"-"}, Stdin: bytes.NewReader(data), Progress: &out})
	if _, err := drain(t, src, nil); err != nil || out.Len() != 0 {
		t.Fatalf("stdin progress: %q, %v", out.String(), err)
	}
}

type tickClock struct {
	t    time.Time
	step time.Duration
}

func (c *tickClock) Now() time.Time                                   { c.t = c.t.Add(c.step); return c.t }
func (c *tickClock) Sleep(ctx context.Context, d time.Duration) error { return nil }
