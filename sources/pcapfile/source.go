package pcapfile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

// Config configures a Source.
type Config struct {
	Files       []string        // read in order as one stream; "-" is Stdin
	ReplaySpeed float64         // 0: as fast as possible; N: N times the capture's timing
	Progress    io.Writer       // progress bar destination; nil: none (see ProgressWanted)
	Stdin       io.Reader       // what "-" reads; nil: os.Stdin
	Stats       *stats.Registry // nil: a private registry
	Log         *slog.Logger    // warnings (undecodable link types); nil: slog.Default()
}

// Source reads capture files; it implements pipeline.Source.
type Source struct {
	cfg   Config
	total int64 // compressed bytes of all files; 0 when unknown (stdin, pipes)
	clk   clock
	rd    *reader // kept between runs (its 1 MiB buffer)
	op    *opener // kept between runs (its decompressors)
	ifs   *ifTable
	// closed is set by Close: Run then refuses to start.
	closed bool

	packets   *stats.Counter
	bytes     *stats.Counter
	truncated *stats.Counter
	files     *stats.Counter
}

// New checks cfg and returns a Source. Files are stat'ed here so that a
// missing file fails before the pipeline starts; they are opened by Run.
func New(cfg Config) (*Source, error) {
	if len(cfg.Files) == 0 {
		return nil, errors.New("pcapfile: no input files")
	}
	if cfg.ReplaySpeed < 0 || math.IsNaN(cfg.ReplaySpeed) || math.IsInf(cfg.ReplaySpeed, 0) {
		return nil, fmt.Errorf("pcapfile: replay speed %v: want 0 (no pacing) or a positive factor", cfg.ReplaySpeed)
	}
	if cfg.Stdin == nil {
		cfg.Stdin = os.Stdin
	}
	if cfg.Stats == nil {
		cfg.Stats = stats.NewRegistry()
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &Source{cfg: cfg, clk: &wallClock{}}
	stdin := 0
	for _, f := range cfg.Files {
		if f == "-" {
			if stdin++; stdin > 1 {
				return nil, errors.New("pcapfile: stdin (-) given more than once")
			}
			s.total = -1
			continue
		}
		fi, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("pcapfile: %w", err)
		}
		if fi.IsDir() {
			return nil, fmt.Errorf("pcapfile: %s is a directory", f)
		}
		if !fi.Mode().IsRegular() || s.total < 0 {
			s.total = -1
		} else {
			s.total += fi.Size()
		}
	}
	s.total = max(s.total, 0)
	r := cfg.Stats
	s.packets = r.Counter("pktpipe_pcapfile_packets_total", "Packets read from capture files.")
	s.bytes = r.Counter("pktpipe_pcapfile_bytes_total", "Captured bytes read from capture files (after truncation to the batch size).")
	s.truncated = r.LossCounter("pktpipe_pcapfile_truncated_total", "Packets cut to the batch's maximum packet size.")
	s.files = r.Counter("pktpipe_pcapfile_files_total", "Capture files read to the end.")
	s.ifs = newIfTable(r)
	return s, nil
}

// IfName returns the name of an interface as numbered in the packets'
// IfIndex: its pcapng if_name, or "" (classic pcap, no if_name, unknown).
// Safe to call while Run reads.
func (s *Source) IfName(ifIndex int32) string { return s.ifs.Name(ifIndex) }

// Name implements pipeline.Source. Run must not be called concurrently.
func (s *Source) Name() string { return "pcapfile" }

// Close releases the decompressors and the read buffer, and closes a file
// left open. Call it after Run has returned; it is safe to call more than
// once, and Run fails afterwards.
func (s *Source) Close() error {
	if s.op != nil {
		s.op.release()
		s.op = nil
	}
	if s.rd != nil {
		s.rd.br.release()
	}
	s.rd = nil
	s.closed = true
	return nil
}

// run is the state of one Run.
type run struct {
	s    *Source
	ctx  context.Context
	pool *packet.Pool
	send func(*packet.Batch) // the engine's: a channel send, or its dispatcher
	cur  *packet.Batch
	now  int64 // latest packet time sent so far
	pace *pacer
	prog *progress
	done int64  // compressed bytes of the files finished
	idx  uint64 // packets read so far, across files: the last packet's Index

	// counts not yet added to the registry (added once per batch)
	nPkts, nBytes, nTrunc uint64
	sent                  uint64 // packets sent, for the progress bar

	links linkCheck // link types of the current file
}

var errStop = errors.New("stopped") // ctx cancelled: end quietly

// Run reads every file in order and sends their packets on out. It returns
// nil at the end of input or on cancellation, and an *Error (naming the
// file and offset) for bad input, after sending every packet read before
// the fault.
func (s *Source) Run(ctx context.Context, pool *packet.Pool, out chan<- *packet.Batch) error {
	return s.RunDirect(ctx, pool, func(b *packet.Batch) { out <- b })
}

// RunDirect is Run handing each batch to deliver on this goroutine
// (pipeline.DirectSource): the engine decodes and shards it while its
// bytes are still in this core's cache.
func (s *Source) RunDirect(ctx context.Context, pool *packet.Pool, deliver func(*packet.Batch)) error {
	if s.closed {
		return errors.New("pcapfile: source is closed")
	}
	rn := &run{s: s, ctx: ctx, pool: pool, send: deliver}
	if s.cfg.ReplaySpeed > 0 {
		rn.pace = &pacer{speed: s.cfg.ReplaySpeed, clk: s.clk}
	}
	if s.cfg.Progress != nil && s.total > 0 {
		rn.prog = &progress{w: s.cfg.Progress, total: s.total}
	}
	if s.op == nil {
		s.op = &opener{stdin: s.cfg.Stdin}
	}
	op := s.op
	op.ctx = ctx
	defer op.close() // the file; Close frees the decompressors
	if s.rd == nil {
		s.rd = newReader()
		s.rd.ifs = s.ifs
	}
	rd := s.rd
	err := rn.files(op, rd)
	if err == errStop || (ctx.Err() != nil && errors.Is(err, ctx.Err())) {
		err = nil // stopped, not bad input (a read from stdin was cut)
	}
	rn.flush()
	if rn.cur != nil {
		rn.cur.Release()
	}
	rn.prog.update(s.clk.Now(), rn.done+op.cnt.n, rn.sent, true)
	rn.prog.end()
	return err
}

func (rn *run) files(op *opener, rd *reader) error {
	maxPkt := rn.pool.MaxPacketBytes()
	for _, name := range rn.s.cfg.Files {
		if rn.ctx.Err() != nil {
			return errStop
		}
		src, err := op.open(name)
		if err != nil {
			return err
		}
		if err := rd.reset(displayName(name), src, op.comp); err != nil {
			return err
		}
		rn.links.reset(displayName(name))
		for {
			data, rec, err := rd.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			if rec.link != rn.links.last {
				rn.links.see(rec.link, rn.s.cfg.Log)
			}
			if len(data) > maxPkt {
				data = data[:maxPkt]
				rn.nTrunc++
			}
			if rn.pace != nil {
				if d := rn.pace.delay(rec.ts); d > 0 {
					// Deliver what is due before waiting for what is not.
					if err := rn.flushCheck(op); err != nil {
						return err
					}
					if rn.s.clk.Sleep(rn.ctx, d) != nil {
						return errStop
					}
				}
			}
			if rn.cur == nil {
				rn.cur = rn.pool.Get()
			} else if rn.cur.FullShared(len(data)) {
				if err := rn.flushCheck(op); err != nil {
					return err
				}
				rn.cur = rn.pool.Get()
			}
			// The packet stays in the read buffer: the batch holds it.
			p := rn.cur.AppendShared(data, rd.br.chunk())
			p.OrigLen = rec.origLen
			p.Timestamp = rec.ts
			p.LinkType = rec.link
			p.IfIndex = rec.ifIndex
			rn.idx++
			p.Index = rn.idx
			rn.now = max(rn.now, rec.ts)
			rn.nPkts++
			rn.nBytes += uint64(len(data))
		}
		rn.done += op.cnt.n
		op.cnt.n = 0
		op.close()
		rn.s.files.Inc()
	}
	return nil
}

// flushCheck sends the batch in hand, updates the progress bar and checks
// for cancellation (between batches).
func (rn *run) flushCheck(op *opener) error {
	rn.flush()
	rn.prog.update(rn.s.clk.Now(), rn.done+op.cnt.n, rn.sent, false)
	if rn.ctx.Err() != nil {
		return errStop
	}
	return nil
}

// flush sends the batch in hand, if it holds anything. The send blocks
// even after cancellation: the engine drains its sources' batches.
func (rn *run) flush() {
	if rn.cur == nil || rn.cur.Len() == 0 {
		return
	}
	rn.cur.Now = rn.now
	rn.sent += uint64(rn.cur.Len())
	rn.send(rn.cur)
	rn.cur = nil
	s := rn.s
	s.packets.Add(rn.nPkts)
	s.bytes.Add(rn.nBytes)
	if rn.nTrunc > 0 {
		s.truncated.Add(rn.nTrunc)
	}
	rn.nPkts, rn.nBytes, rn.nTrunc = 0, 0, 0
}

// Expand expands glob patterns into file names, keeping the order of the
// patterns (each pattern's matches sorted). "-" and names without glob
// metacharacters pass through unchanged; a glob matching nothing is an
// error, unless a file by that literal name exists.
func Expand(patterns []string) ([]string, error) {
	var out []string
	for _, p := range patterns {
		if p == "-" || !strings.ContainsAny(p, `*?[\`) {
			out = append(out, p)
			continue
		}
		m, err := filepath.Glob(p)
		if err != nil {
			return nil, fmt.Errorf("pcapfile: bad pattern %q: %w", p, err)
		}
		if len(m) == 0 {
			if _, err := os.Stat(p); err == nil {
				out = append(out, p)
				continue
			}
			return nil, fmt.Errorf("pcapfile: no files match %q", p)
		}
		out = append(out, m...)
	}
	return out, nil
}
