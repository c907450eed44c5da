package pcapfile

import (
	"io"
	"os"
	"strconv"
	"time"

	"golang.org/x/term"
)

// ProgressWanted reports whether a progress bar belongs on f: only when f
// is a terminal.
func ProgressWanted(f *os.File) bool { return f != nil && term.IsTerminal(int(f.Fd())) }

const progressEvery = 200 * time.Millisecond

// progress draws a one-line bar, redrawn in place with \r.
type progress struct {
	w        io.Writer
	total    int64 // compressed bytes of all files
	last     time.Time
	lastPkts uint64
	rate     float64
	drawn    bool
	buf      []byte
}

// update redraws the bar if progressEvery has passed since the last time
// (or force is set).
func (p *progress) update(now time.Time, done int64, pkts uint64, force bool) {
	if p == nil {
		return
	}
	if p.last.IsZero() {
		p.last, p.lastPkts = now, pkts
		if !force {
			return
		}
	}
	el := now.Sub(p.last)
	if el < progressEvery && !force {
		return
	}
	if el >= progressEvery {
		p.rate = float64(pkts-p.lastPkts) / el.Seconds()
		p.last, p.lastPkts = now, pkts
	}
	frac := 1.0
	if p.total > 0 {
		frac = min(float64(done)/float64(p.total), 1)
	}
	const width = 30
	b := append(p.buf[:0], "\rpcapfile ["...)
	fill := int(frac * width)
	for i := range width {
		c := byte(' ')
		if i < fill {
			c = '#'
		}
		b = append(b, c)
	}
	b = append(b, "] "...)
	b = appendPad(b, strconv.FormatFloat(frac*100, 'f', 1, 64), 5)
	b = append(b, "%  "...)
	b = appendPad(b, strconv.FormatUint(pkts, 10), 10)
	b = append(b, " pkts  "...)
	b = appendPad(b, strconv.FormatFloat(p.rate, 'f', 0, 64), 9)
	b = append(b, " pkt/s"...)
	p.buf = b
	p.drawn = true
	p.w.Write(b) // best effort: a broken terminal must not stop the read
}

// end leaves the cursor on a fresh line.
func (p *progress) end() {
	if p != nil && p.drawn {
		p.w.Write([]byte("\n"))
	}
}

func appendPad(b []byte, s string, w int) []byte {
	for i := len(s); i < w; i++ {
		b = append(b, ' ')
	}
	return append(b, s...)
}
