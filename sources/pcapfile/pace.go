package pcapfile

import (
	"context"
	"math"
	"time"
)

// clock is the wall clock, replaceable in tests.
type clock interface {
	Now() time.Time
	Sleep(ctx context.Context, d time.Duration) error
}

type wallClock struct{ t *time.Timer }

func (*wallClock) Now() time.Time { return time.Now() }

func (c *wallClock) Sleep(ctx context.Context, d time.Duration) error {
	if c.t == nil {
		c.t = time.NewTimer(d)
	} else {
		c.t.Reset(d)
	}
	select {
	case <-c.t.C:
		return nil
	case <-ctx.Done():
		c.t.Stop()
		return ctx.Err()
	}
}

// pacer spaces packets at speed times their capture timing, measured from
// the first packet of the run.
type pacer struct {
	speed   float64
	clk     clock
	started bool
	ts0     int64
	wall0   time.Time
}

// delay is how long to wait before packet time ts is due (<= 0: now).
func (p *pacer) delay(ts int64) time.Duration {
	if !p.started {
		p.started, p.ts0, p.wall0 = true, ts, p.clk.Now()
		return 0
	}
	off := float64(ts-p.ts0) / p.speed
	if off <= 0 {
		return 0
	}
	off = min(off, math.MaxInt64/2) // float to Duration overflow is undefined
	return p.wall0.Add(time.Duration(off)).Sub(p.clk.Now())
}
