// Package pcapng writes the packets a pipeline read to a pcapng file (the
// CLI's -w), so that a live session can be replayed later with -r.
//
// One Writer owns the file; each dispatcher writes through its own Tap,
// which encodes Enhanced Packet Blocks into a private 256 KiB buffer and
// hands the buffer to the Writer (one lock per buffer, not per packet)
// when it fills and at Close. No allocation per packet once a tap's buffer
// has grown. Packets of different taps (AF_PACKET fanout sockets) are
// therefore interleaved in buffer-sized runs in the file, each run in its
// socket's order (every packet of one flow comes from one socket, so
// per-flow order is kept); what the taps hold at Close is merged by
// timestamp, so a short capture is in time order throughout.
//
// Interfaces: one Interface Description Block per (link type, interface
// index) pair seen, written before the first packet that uses it, with
// if_tsresol = 9 (nanosecond timestamps), if_name when Config.IfName knows
// it, and the snap length. Each packet's direction, where the source knows
// it, goes into epb_flags (inbound/outbound).
//
// Counters: pktpipe_pcapng_packets_total and the loss counter
// pktpipe_pcapng_failed_packets_total (packets that could not be written;
// the first error is also returned by Close).
package pcapng

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"sync"

	"github.com/pktpipe/pktpipe/internal/syncfile"
	"github.com/pktpipe/pktpipe/pipeline/packet"
	"github.com/pktpipe/pktpipe/pipeline/stats"
)

// Config configures a Writer.
type Config struct {
	Snaplen int                        // written in each IDB; 0 = no limit
	IfName  func(ifIndex int32) string // optional: the name of an interface index
	Stats   *stats.Registry
}

type ifKey struct {
	link  packet.LinkType
	index int32
}

// Writer is one pcapng output file.
type Writer struct {
	cfg    Config
	path   string
	mu     sync.Mutex
	f      *os.File
	out    *syncfile.Writer // synced as it grows: see package syncfile
	bw     *bufio.Writer
	ifaces map[ifKey]uint32
	taps   []*Tap
	err    error
	closed bool

	packets, failed *stats.Counter
}

const tapBuffer = 256 << 10

// Create creates (truncates) path and writes the section header.
func Create(path string, cfg Config) (*Writer, error) {
	if cfg.Stats == nil {
		cfg.Stats = stats.NewRegistry()
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pcapng: %w", err)
	}
	out := syncfile.New(f)
	w := &Writer{cfg: cfg, path: path, f: f, out: out, bw: bufio.NewWriterSize(out, 1<<20), ifaces: map[ifKey]uint32{}}
	w.packets = cfg.Stats.Counter("pktpipe_pcapng_packets_total", "Packets written to the -w pcapng file.")
	w.failed = cfg.Stats.LossCounter("pktpipe_pcapng_failed_packets_total", "Packets that could not be written to the -w pcapng file.")
	// Section Header Block: byte-order magic, version 1.0, unknown length.
	var shb [28]byte
	le := binary.LittleEndian
	le.PutUint32(shb[0:], 0x0a0d0d0a)
	le.PutUint32(shb[4:], 28)
	le.PutUint32(shb[8:], 0x1a2b3c4d)
	le.PutUint16(shb[12:], 1)
	le.PutUint16(shb[14:], 0)
	le.PutUint64(shb[16:], ^uint64(0))
	le.PutUint32(shb[24:], 28)
	if _, err := w.bw.Write(shb[:]); err != nil {
		out.Stop()
		f.Close()
		return nil, fmt.Errorf("pcapng: %w", err)
	}
	return w, nil
}

// Path is the file written.
func (w *Writer) Path() string { return w.path }

// NewTap returns a tap for one goroutine.
func (w *Writer) NewTap() *Tap {
	t := &Tap{w: w, buf: make([]byte, 0, tapBuffer+1<<16)}
	w.mu.Lock()
	w.taps = append(w.taps, t)
	w.mu.Unlock()
	return t
}

// iface returns the id of (link, index), writing its IDB first if it is
// new. Called with w.mu held.
func (w *Writer) iface(k ifKey) uint32 {
	if id, ok := w.ifaces[k]; ok {
		return id
	}
	id := uint32(len(w.ifaces))
	w.ifaces[k] = id
	name := ""
	if w.cfg.IfName != nil && k.index >= 0 {
		name = w.cfg.IfName(k.index)
	}
	b := make([]byte, 0, 64+len(name))
	le := binary.LittleEndian
	b = le.AppendUint32(b, 1) // IDB
	b = le.AppendUint32(b, 0) // length, set below
	b = le.AppendUint16(b, uint16(k.link))
	b = le.AppendUint16(b, 0)
	b = le.AppendUint32(b, uint32(max(w.cfg.Snaplen, 0)))
	if name != "" {
		b = appendOpt(b, 2, []byte(name)) // if_name
	}
	b = appendOpt(b, 9, []byte{9}) // if_tsresol: 10^-9
	b = le.AppendUint32(b, 0)      // opt_endofopt
	b = le.AppendUint32(b, uint32(len(b)+4))
	le.PutUint32(b[4:], uint32(len(b)))
	w.write(b)
	return id
}

func appendOpt(b []byte, code uint16, v []byte) []byte {
	b = binary.LittleEndian.AppendUint16(b, code)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
	b = append(b, v...)
	return append(b, zero[:(4-len(v)%4)%4]...)
}

// write appends to the file's buffer; called with w.mu held.
func (w *Writer) write(b []byte) bool {
	if w.err != nil || w.closed {
		return false
	}
	if _, err := w.bw.Write(b); err != nil {
		w.err = fmt.Errorf("pcapng %s: %w", w.path, err)
		return false
	}
	return true
}

// Close writes what every tap holds, syncs and closes the file. Taps must
// not be used during or after Close.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.err
	}
	w.mergeTaps()
	w.closed = true
	err := w.bw.Flush()
	if serr := w.out.Stop(); err == nil {
		err = serr
	}
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if w.err == nil && err != nil {
		w.err = fmt.Errorf("pcapng %s: %w", w.path, err)
	}
	return w.err
}

// mergeTaps writes what the taps still hold in timestamp order (a k-way
// merge of their runs, each in its own order), so that the end of a
// capture — all of a short one — is ordered across fanout sockets: an
// ICMP error that another socket saw stays after the packet it quotes.
// Called with w.mu held.
func (w *Writer) mergeTaps() {
	type run struct {
		t   *Tap
		off int
	}
	var runs []*run
	for _, t := range w.taps {
		if len(t.buf) > 0 {
			runs = append(runs, &run{t: t})
		}
	}
	le := binary.LittleEndian
	ts := func(r *run) uint64 {
		return uint64(le.Uint32(r.t.buf[r.off+12:]))<<32 | uint64(le.Uint32(r.t.buf[r.off+16:]))
	}
	for len(runs) > 0 {
		best := 0
		for i := 1; i < len(runs); i++ {
			if ts(runs[i]) < ts(runs[best]) {
				best = i
			}
		}
		r := runs[best]
		n := int(le.Uint32(r.t.buf[r.off+4:]))
		if w.write(r.t.buf[r.off : r.off+n]) {
			w.packets.Inc()
		} else {
			w.failed.Inc()
		}
		r.off += n
		if r.off >= len(r.t.buf) {
			r.t.buf, r.t.n = r.t.buf[:0], 0
			runs = append(runs[:best], runs[best+1:]...)
		}
	}
}

// Tap writes packets for one goroutine.
type Tap struct {
	w     *Writer
	buf   []byte
	n     uint64 // packets in buf
	cache [4]struct {
		k  ifKey
		id uint32
		ok bool
	}
}

// Write appends p as an Enhanced Packet Block.
func (t *Tap) Write(p *packet.Packet) {
	k := ifKey{p.LinkType, p.IfIndex}
	var id uint32
	found := false
	for i := range t.cache {
		if c := &t.cache[i]; c.ok && c.k == k {
			id, found = c.id, true
			break
		}
	}
	if !found {
		t.w.mu.Lock()
		id = t.w.iface(k)
		t.w.mu.Unlock()
		copy(t.cache[1:], t.cache[:len(t.cache)-1])
		t.cache[0].k, t.cache[0].id, t.cache[0].ok = k, id, true
	}
	data := p.Data
	if s := t.w.cfg.Snaplen; s > 0 && len(data) > s {
		data = data[:s]
	}
	n := len(data)
	pad := (4 - n%4) % 4
	total := 32 + n + pad // 28 of header, the data, 4 of trailing length
	if p.Direction != packet.DirUnknown {
		total += 8 + 4 // epb_flags + opt_endofopt
	}
	le := binary.LittleEndian
	b := t.buf
	b = le.AppendUint32(b, 6)
	b = le.AppendUint32(b, uint32(total))
	b = le.AppendUint32(b, id)
	ts := uint64(p.Timestamp)
	b = le.AppendUint32(b, uint32(ts>>32))
	b = le.AppendUint32(b, uint32(ts))
	b = le.AppendUint32(b, uint32(n))
	b = le.AppendUint32(b, max(p.OrigLen, uint32(len(p.Data))))
	b = append(b, data...)
	b = append(b, zero[:pad]...)
	if p.Direction != packet.DirUnknown {
		flags := uint32(1) // inbound
		if p.Direction == packet.DirEgress {
			flags = 2
		}
		b = le.AppendUint16(b, 2)
		b = le.AppendUint16(b, 4)
		b = le.AppendUint32(b, flags)
		b = le.AppendUint32(b, 0)
	}
	b = le.AppendUint32(b, uint32(total))
	t.buf = b
	t.n++
	if len(t.buf) >= tapBuffer {
		t.Flush()
	}
}

var zero [4]byte

// Flush hands the tap's buffer to the file.
func (t *Tap) Flush() {
	if len(t.buf) == 0 {
		return
	}
	w := t.w
	w.mu.Lock()
	ok := w.write(t.buf)
	w.mu.Unlock()
	if ok {
		w.packets.Add(t.n)
	} else {
		w.failed.Add(t.n)
	}
	t.buf, t.n = t.buf[:0], 0
}
