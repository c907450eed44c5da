package kafka

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pktpipe/pktpipe/pipeline/event"
)

// The spool is a directory of append-only segment files that hold the
// events the in-flight budget has no room for (the broker is slow or
// down). A segment is
//
//	header:  "PKTSPOOL" (8 bytes), creation time (int64 ns, little endian)
//	records: length (uint32 LE) | CRC-32C of the payload (uint32 LE) | payload
//	payload: topic length (uint16) | topic | event type length (uint8) |
//	         event type | event id (uint64) | key length (uint32,
//	         0xFFFFFFFF: no key) | key | value (the rest)
//
// Segments are named by a sequence number (%020d.seg) and drained oldest
// first. Appends are whole batches, one write(2) each; fsync runs every
// SpoolSyncInterval and after SpoolSyncBytes. A segment is removed once
// the drainer has read all of it and the broker has acknowledged every
// record read from it, so a crash re-sends at most the unacknowledged
// segments (at least once). At start the segments are checked record by
// record: a record whose length or CRC does not hold ends its segment
// there (a torn tail), the file is cut back to its last good record and
// the cut is counted. A lock file (flock) keeps two processes off one
// spool.

const (
	spoolMagic     = "PKTSPOOL"
	spoolHeaderLen = 16
	spoolRecHdr    = 8
	spoolMaxRecord = 64 << 20 // larger lengths are corruption
	noKey          = 0xFFFFFFFF
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errSpoolFull is append's answer when the batch would pass SpoolMax.
var errSpoolFull = errors.New("spool full")

// segment is one spool file.
type segment struct {
	seq     uint64
	path    string
	created time.Time
	size    int64 // bytes written (whole records only)
	records int   // records written
	read    int   // records the drainer has taken
	readOff int64 // where the drainer's next record starts
	acked   int   // records acknowledged (or given up) since it was read
	sealed  bool  // no more appends
	dropped bool  // removed by drop-oldest before it was drained
}

// spool is the on-disk queue; its methods are safe for concurrent use.
type spool struct {
	dir                 string
	max, segMax         int64
	syncEvery           time.Duration
	syncBytes           int64
	lock                *os.File
	m                   *metrics
	failed              func(error) // logs and counts an I/O error
	mu                  sync.Mutex
	segs                []*segment // oldest first; the last may be active
	active              *os.File   // open for appends: segs[len-1], not sealed
	bytes, peak         int64
	unread              int // records written and not yet taken by the drainer
	unsynced            int64
	nextSeq             uint64
	buf                 []byte
	data, room          chan struct{} // cap 1: appended / space freed
	closed              bool
	stopSync            chan struct{}
	syncDone            chan struct{}
	recovered, tornRecs int
	tornBytes           int64
}

// segMaxFor is the segment size for a spool of max bytes: an eighth of it
// (so that drop-oldest frees at most an eighth), within [64 KiB, 64 MiB].
func segMaxFor(limit int64) int64 { return min(max(limit/8, 64<<10), 64<<20) }

// openSpool takes dir (created if missing), locks it and scans the
// segments left by an earlier run, cutting torn tails.
func openSpool(c *Config, m *metrics, failed func(error)) (*spool, error) {
	dir := c.SpoolDir
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("kafka: spool %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("kafka: spool %s: %w", dir, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("kafka: spool %s is in use by another process: %w", dir, err)
	}
	sp := &spool{
		dir: dir, max: c.SpoolMax, segMax: segMaxFor(c.SpoolMax),
		syncEvery: c.SpoolSyncInterval, syncBytes: c.SpoolSyncBytes,
		lock: lock, m: m, failed: failed, nextSeq: 1,
		data: make(chan struct{}, 1), room: make(chan struct{}, 1),
		stopSync: make(chan struct{}), syncDone: make(chan struct{}),
	}
	if err := sp.scan(); err != nil {
		lock.Close()
		return nil, err
	}
	sp.gauges()
	go sp.syncLoop()
	return sp, nil
}

// scan loads the existing segments in order, checking every record.
func (sp *spool) scan() error {
	ents, err := os.ReadDir(sp.dir)
	if err != nil {
		return fmt.Errorf("kafka: spool %s: %w", sp.dir, err)
	}
	var seqs []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".seg")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		if n, err := strconv.ParseUint(name, 10, 64); err == nil {
			seqs = append(seqs, n)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for _, seq := range seqs {
		sg, err := checkSegment(filepath.Join(sp.dir, segName(seq)))
		if err != nil {
			return fmt.Errorf("kafka: spool: %w", err)
		}
		sg.seq = seq
		sp.nextSeq = seq + 1
		if sg.torn > 0 {
			sp.tornRecs++
			sp.tornBytes += sg.torn
		}
		if sg.records == 0 {
			os.Remove(sg.path)
			continue
		}
		sg.sealed = true
		sp.segs = append(sp.segs, &sg.segment)
		sp.bytes += sg.size
		sp.unread += sg.records
		sp.recovered += sg.records
	}
	return nil
}

func segName(seq uint64) string { return fmt.Sprintf("%020d.seg", seq) }

type checkedSegment struct {
	segment
	torn int64 // bytes cut off the end
}

// checkSegment reads path record by record and truncates it after the
// last record whose length and CRC hold.
func checkSegment(path string) (checkedSegment, error) {
	cs := checkedSegment{segment: segment{path: path}}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return cs, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return cs, err
	}
	total := st.Size()
	r := bufio.NewReaderSize(f, 256<<10)
	var hdr [spoolHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil || string(hdr[:8]) != spoolMagic {
		// Not even a header: a crash right after creating it.
		cs.torn = total
		return cs, f.Truncate(0)
	}
	cs.created = time.Unix(0, int64(binary.LittleEndian.Uint64(hdr[8:])))
	good := int64(spoolHeaderLen)
	var payload []byte
	for {
		p, err := readRecord(r, &payload)
		if err != nil {
			break
		}
		good += int64(spoolRecHdr + len(p))
		cs.records++
	}
	cs.size = good
	cs.readOff = spoolHeaderLen
	if good < total {
		cs.torn = total - good
		if err := f.Truncate(good); err != nil {
			return cs, fmt.Errorf("%s: cut the torn tail: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			return cs, fmt.Errorf("%s: %w", path, err)
		}
	}
	return cs, nil
}

// readRecord reads one framed record into *buf and returns its payload;
// any error (EOF, short, bad length or CRC) ends the segment.
func readRecord(r *bufio.Reader, buf *[]byte) ([]byte, error) {
	var h [spoolRecHdr]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(h[:4])
	if n == 0 || n > spoolMaxRecord {
		return nil, errors.New("bad record length")
	}
	if cap(*buf) < int(n) {
		*buf = make([]byte, n)
	}
	p := (*buf)[:n]
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, err
	}
	if crc32.Checksum(p, crcTable) != binary.LittleEndian.Uint32(h[4:]) {
		return nil, errors.New("bad record CRC")
	}
	return p, nil
}

// appendRecord frames r onto b.
func appendRecord(b []byte, r *record, typ string) []byte {
	start := len(b)
	b = append(b, make([]byte, spoolRecHdr)...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(r.topic)))
	b = append(b, r.topic...)
	b = append(b, byte(len(typ)))
	b = append(b, typ...)
	b = binary.LittleEndian.AppendUint64(b, r.id)
	if key := r.msgKey(); key == nil {
		b = binary.LittleEndian.AppendUint32(b, noKey)
	} else {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(key)))
		b = append(b, key...)
	}
	b = append(b, r.value...)
	p := b[start+spoolRecHdr:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(p)))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(p, crcTable))
	return b
}

// decodePayload splits a record's payload; the slices alias p.
func decodePayload(p []byte) (d decoded, err error) {
	bad := errors.New("kafka: spool: malformed record")
	if len(p) < 2 {
		return d, bad
	}
	n := int(binary.LittleEndian.Uint16(p))
	p = p[2:]
	if len(p) < n+1 {
		return d, bad
	}
	d.topic, p = string(p[:n]), p[n:]
	n = int(p[0])
	p = p[1:]
	if len(p) < n+12 {
		return d, bad
	}
	d.typ, p = string(p[:n]), p[n:]
	d.id = binary.LittleEndian.Uint64(p)
	k := binary.LittleEndian.Uint32(p[8:])
	p = p[12:]
	if k != noKey {
		if uint64(len(p)) < uint64(k) {
			return d, bad
		}
		d.key, p = p[:k:k], p[k:]
	}
	d.value = p
	return d, nil
}

// decoded is a spool record's payload; the slices alias it.
type decoded struct {
	topic, typ string
	id         uint64
	key, value []byte
}

// hasUnread reports whether records wait in the spool: new events must
// queue behind them.
func (sp *spool) hasUnread() bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return sp.unread > 0
}

// append writes recs as one write; errSpoolFull when they would pass the
// limit, or the I/O error (the segment is cut back to whole records).
func (sp *spool) append(recs []*record) error {
	sp.mu.Lock()
	var syncF *os.File
	defer func() {
		sp.mu.Unlock()
		sp.syncOutside(syncF)
	}()
	if sp.closed {
		return errors.New("kafka: spool closed")
	}
	b := sp.buf[:0]
	for _, r := range recs {
		b = appendRecord(b, r, string(r.typ))
	}
	sp.buf = b
	if len(b) > cap(b)/4 && cap(b) > 4<<20 {
		sp.buf = nil // a one-off huge batch: do not keep its buffer
	}
	need := int64(len(b))
	if sp.bytes+need+spoolHeaderLen > sp.max && sp.bytes > 0 {
		return errSpoolFull
	}
	last := sp.tail()
	if last == nil || last.sealed || last.size+need > sp.segMax {
		if err := sp.rotate(); err != nil {
			return err
		}
		last = sp.tail()
	}
	if _, err := sp.active.Write(b); err != nil {
		// Keep whole records only: cut back what the disk took of it.
		_ = sp.active.Truncate(last.size)
		_, _ = sp.active.Seek(last.size, io.SeekStart)
		return fmt.Errorf("kafka: spool segment %s: %w", last.path, err)
	}
	last.size += need
	last.records += len(recs)
	sp.bytes += need
	sp.peak = max(sp.peak, sp.bytes)
	sp.unread += len(recs)
	sp.unsynced += need
	sp.m.spoolIn.Add(uint64(len(recs)))
	if sp.unsynced >= sp.syncBytes {
		// The records are written either way: a failed fsync is logged
		// and counted, not a failed append.
		syncF = sp.prepSync()
	}
	sp.gaugesLocked()
	signal(sp.data)
	return nil
}

func (sp *spool) tail() *segment {
	if len(sp.segs) == 0 {
		return nil
	}
	return sp.segs[len(sp.segs)-1]
}

// rotate seals the active segment and starts a new one; sp.mu is held.
func (sp *spool) rotate() error {
	if err := sp.sealLocked(); err != nil {
		return err
	}
	seq := sp.nextSeq
	path := filepath.Join(sp.dir, segName(seq))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("kafka: spool segment %s: %w", path, err)
	}
	now := time.Now()
	var hdr [spoolHeaderLen]byte
	copy(hdr[:], spoolMagic)
	binary.LittleEndian.PutUint64(hdr[8:], uint64(now.UnixNano()))
	if _, err := f.Write(hdr[:]); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("kafka: spool segment %s: %w", path, err)
	}
	sp.nextSeq++
	sp.active = f
	sp.segs = append(sp.segs, &segment{seq: seq, path: path, created: now,
		size: spoolHeaderLen, readOff: spoolHeaderLen})
	sp.bytes += spoolHeaderLen
	sp.unsynced += spoolHeaderLen
	return nil
}

// sealLocked closes the active segment for appends (synced).
func (sp *spool) sealLocked() error {
	if sp.active == nil {
		return nil
	}
	err := sp.syncLocked()
	if e := sp.active.Close(); err == nil {
		err = e
	}
	sp.active = nil
	if t := sp.tail(); t != nil {
		t.sealed = true
	}
	return err
}

func (sp *spool) syncLocked() error {
	if sp.active == nil || sp.unsynced == 0 {
		return nil
	}
	sp.unsynced = 0
	sp.m.spoolSyncs.Inc()
	if err := sp.active.Sync(); err != nil {
		return fmt.Errorf("kafka: spool segment %s: fsync: %w", sp.tail().path, err)
	}
	return nil
}

// prepSync returns the active file if it has unsynced bytes (and counts
// them synced), for syncOutside; sp.mu is held.
func (sp *spool) prepSync() *os.File {
	if sp.active == nil || sp.unsynced == 0 {
		return nil
	}
	sp.unsynced = 0
	return sp.active
}

// syncOutside fsyncs f without holding sp.mu: an fsync can take tens of
// milliseconds, and neither Write nor the broker's acks should wait for
// it. A segment sealed meanwhile was synced by sealLocked (ErrClosed).
func (sp *spool) syncOutside(f *os.File) {
	if f == nil {
		return
	}
	sp.m.spoolSyncs.Inc()
	if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
		sp.failed(fmt.Errorf("kafka: spool segment %s: fsync: %w", f.Name(), err))
	}
}

// syncLoop fsyncs every syncEvery and keeps the oldest-age gauge fresh.
func (sp *spool) syncLoop() {
	defer close(sp.syncDone)
	t := time.NewTicker(sp.syncEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-sp.stopSync:
			return
		}
		sp.mu.Lock()
		f := sp.prepSync()
		sp.gaugesLocked()
		sp.mu.Unlock()
		sp.syncOutside(f)
	}
}

func (sp *spool) gauges() {
	sp.mu.Lock()
	sp.gaugesLocked()
	sp.mu.Unlock()
}

func (sp *spool) gaugesLocked() {
	sp.m.spoolBytes.Set(sp.bytes)
	sp.m.spoolSegments.Set(int64(len(sp.segs)))
	sp.m.spoolRecords.Set(int64(sp.unread))
	age := int64(0)
	if len(sp.segs) > 0 {
		age = int64(time.Since(sp.segs[0].created).Seconds())
	}
	sp.m.spoolAge.Set(age)
}

// take returns the segment the drainer reads next and where, or nil when
// nothing is unread. A caught-up active segment is sealed, so that the
// next append starts a new one and this one can go once acknowledged.
func (sp *spool) take() (sg *segment, off, limit int64) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.closed {
		return nil, 0, 0
	}
	for _, s := range sp.segs {
		if s.read < s.records {
			return s, s.readOff, s.size
		}
		if !s.sealed && s.read == s.records {
			if err := sp.sealLocked(); err != nil {
				sp.failed(err)
			}
			sp.maybeRemoveLocked(s)
			return nil, 0, 0
		}
	}
	return nil, 0, 0
}

// taken records that the drainer took n records of sg, up to off.
func (sp *spool) taken(sg *segment, n int, off int64) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sg.dropped {
		return
	}
	sg.read += n
	sg.readOff = off
	sp.unread -= n
	sp.gaugesLocked()
	sp.maybeRemoveLocked(sg)
}

// skipRest gives up the rest of sg (corrupt on disk) and returns how many
// records that is.
func (sp *spool) skipRest(sg *segment) int {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sg.dropped {
		return 0
	}
	n := sg.records - sg.read
	sg.read += n
	sg.acked += n
	sg.readOff = sg.size
	sp.unread -= n
	sp.maybeRemoveLocked(sg)
	sp.gaugesLocked()
	return n
}

// ack notes n records of sg acknowledged (or given up); a sealed segment
// whose records are all read and acknowledged is removed.
func (sp *spool) ack(sg *segment, n int) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sg.acked += n
	sp.m.spoolOut.Add(uint64(n))
	sp.maybeRemoveLocked(sg)
}

func (sp *spool) maybeRemoveLocked(sg *segment) {
	if sg.dropped || !sg.sealed || sg.read < sg.records || sg.acked < sg.read {
		return
	}
	sp.removeLocked(sg)
}

// removeLocked deletes sg's file and forgets it.
func (sp *spool) removeLocked(sg *segment) {
	if sg == sp.tail() && !sg.sealed {
		_ = sp.sealLocked()
	}
	if err := os.Remove(sg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		sp.failed(err)
	}
	for i, s := range sp.segs {
		if s == sg {
			sp.segs = append(sp.segs[:i], sp.segs[i+1:]...)
			break
		}
	}
	sp.bytes -= sg.size
	sg.dropped = true
	sp.gaugesLocked()
	signal(sp.room)
}

// dropOldest removes the oldest segment (for drop-oldest) and returns how
// many of its records had not been sent: they are lost. The records the
// drainer has taken stay in flight.
func (sp *spool) dropOldest() (int, bool) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if len(sp.segs) == 0 {
		return 0, false
	}
	sg := sp.segs[0]
	lost := sg.records - sg.read
	sp.unread -= lost
	sp.removeLocked(sg)
	return lost, true
}

// peakBytes is the largest the spool has been since it was opened.
func (sp *spool) peakBytes() int64 {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return max(sp.peak, sp.bytes)
}

// remaining is what is still on disk: records and segments.
func (sp *spool) remaining() (records, segs int, bytes int64) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	for _, s := range sp.segs {
		records += s.records - s.acked
	}
	return records, len(sp.segs), sp.bytes
}

// drained reports whether nothing is left to read or acknowledge (or the
// spool is closed: Abandon, nothing more will be sent from it).
func (sp *spool) drained() bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.closed {
		return true
	}
	for _, s := range sp.segs {
		if s.read < s.records || s.acked < s.read {
			return false
		}
	}
	return true
}

// close syncs the active segment and releases the lock. Segments stay:
// the next run drains them.
func (sp *spool) close() error {
	sp.mu.Lock()
	if sp.closed {
		sp.mu.Unlock()
		return nil
	}
	sp.closed = true
	err := sp.sealLocked()
	// An empty trailing segment is of no use to the next run.
	for len(sp.segs) > 0 && sp.tail().records == 0 {
		sp.removeLocked(sp.tail())
	}
	sp.gaugesLocked()
	sp.mu.Unlock()
	close(sp.stopSync)
	<-sp.syncDone
	sp.lock.Close()
	return err
}

// drainer reads spooled records in order and admits them to the in-flight
// budget, waiting for room; it is the only reader of the spool.
func (s *Sink) drainer() {
	defer close(s.drainDone)
	sp := s.spool
	headers := map[string]*typeHeaders{}
	var (
		cur    *segment
		f      *os.File
		r      *bufio.Reader
		off    int64
		limit  int64
		buf    []byte
		batch  []*record
		reuse  []*record // recycled records for the batch
		size   int64
		closeF = func() {
			if f != nil {
				f.Close()
				f = nil
			}
		}
	)
	defer closeF()
	for {
		sg, from, lim := sp.take()
		if sg == nil {
			closeF()
			cur = nil
			select {
			case <-sp.data:
				continue
			case <-s.drainStop:
				return
			}
		}
		if sg != cur || from != off || f == nil {
			closeF()
			var err error
			if f, err = os.Open(sg.path); err != nil {
				s.spoolFailed(err)
				// Give up the segment: nothing else can be done with it.
				n, _ := sp.dropOldest()
				s.m.spoolDropped.Add(uint64(n))
				continue
			}
			cur, off, limit = sg, from, 0
		}
		if lim != limit {
			r = bufio.NewReaderSize(io.NewSectionReader(f, off, lim-off), 256<<10)
			limit = lim
		}
		// Read only what the budget has room for: records the drainer
		// holds are neither in flight nor on disk for drop-oldest.
		room := s.room()
		if room == 0 {
			select {
			case <-s.drainSpace:
				continue
			case <-s.drainStop:
				return
			}
		}
		batch, size = batch[:0], 0
		skipped, corrupt := 0, false
		reuse = s.takeFree(reuse[:0], min(room, 1000))
		for len(batch)+skipped < min(room, 1000) && off < limit {
			p, err := readRecord(r, &buf)
			if err != nil {
				// Corrupt in the middle (the disk, not a crash, which
				// the scan at start handles): give up the rest of the
				// segment, counted.
				s.spoolFailed(fmt.Errorf("kafka: spool segment %s at offset %d: %w", sg.path, off, err))
				corrupt = true
				break
			}
			off += int64(spoolRecHdr + len(p))
			d, err := decodePayload(p)
			if err != nil {
				skipped++
				continue
			}
			h, ok := headers[d.typ]
			if !ok {
				h = s.headersForName(d.typ)
				headers[d.typ] = h
			}
			var rec *record
			if len(reuse) > 0 {
				rec = reuse[len(reuse)-1]
				reuse[len(reuse)-1] = nil
				reuse = reuse[:len(reuse)-1]
				rec.reset()
			} else {
				rec = &record{}
			}
			rec.accepted, rec.seg, rec.typ, rec.topic, rec.hdrs, rec.id = time.Now(), sg, event.Type(d.typ), d.topic, h, d.id
			rec.value = append(rec.value, d.value...)
			rec.setKey(d.key)
			rec.size = int64(len(rec.key) + len(rec.value))
			rec.cost = recordCost(rec)
			size += rec.cost
			batch = append(batch, rec)
		}
		s.giveBack(reuse)
		reuse = reuse[:0]
		if len(batch)+skipped == 0 && !corrupt {
			continue
		}
		// Taken before they are admitted: a stop in between leaves them
		// on disk for the next run either way.
		sp.taken(sg, len(batch)+skipped, off)
		if skipped > 0 {
			s.m.spoolDropped.Add(uint64(skipped))
			sp.ack(sg, skipped)
		}
		if corrupt {
			s.m.spoolDropped.Add(uint64(sp.skipRest(sg)))
			off = limit
		}
		if len(batch) == 0 {
			continue
		}
		for !s.admit(batch, size) {
			select {
			case <-s.drainSpace:
			case <-s.drainStop:
				return
			}
		}
		batch = make([]*record, 0, 1000) // admitted records belong to the sink now
	}
}

// spoolFailed logs an I/O error of the spool (at most once a second) and
// counts it.
func (s *Sink) spoolFailed(err error) {
	s.m.spoolErrors.Inc()
	if !s.spoolLog.due() {
		return
	}
	s.cfg.Log.Error("kafka: spool I/O error", "spool", s.cfg.SpoolDir, "err", err, "errors_so_far", s.m.spoolErrors.Load())
}

// spoolWriteFailed is spoolFailed for a batch the spool did not take.
func (s *Sink) spoolWriteFailed(err error) {
	s.m.spoolErrors.Inc()
	if !s.spoolLog.due() {
		return
	}
	s.cfg.Log.Error("kafka: spool write failed (disk full or I/O error); applying --kafka-spool-full", "spool", s.cfg.SpoolDir, "policy", s.cfg.SpoolFull, "err", err, "errors_so_far", s.m.spoolErrors.Load())
}

// SpoolRecord is one record of the spool, as InspectSpool reads it; Key
// and Value are valid during the call only.
type SpoolRecord struct {
	Topic, EventType string
	EventID          uint64
	Key, Value       []byte // Key nil: none
}

// SpoolInfo is what InspectSpool found in a spool directory.
type SpoolInfo struct {
	Segments  int
	Records   int   // whole records whose CRC holds
	Bytes     int64 // the segment files' size
	TornBytes int64 // bytes after the last good record of each segment (what the next start cuts)
	TornSegs  int   // segments with such a tail
}

// InspectSpool reads the spool in dir without changing it (an open sink
// may be appending) and calls fn, when not nil, for each good record in
// order; the slices are valid during the call only.
func InspectSpool(dir string, fn func(r SpoolRecord)) (SpoolInfo, error) {
	var info SpoolInfo
	ents, err := os.ReadDir(dir)
	if err != nil {
		return info, err
	}
	var names []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".seg") && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names) // zero-padded sequence numbers
	var buf []byte
	for _, name := range names {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return info, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return info, err
		}
		info.Segments++
		info.Bytes += st.Size()
		r := bufio.NewReaderSize(f, 256<<10)
		var hdr [spoolHeaderLen]byte
		good := int64(0)
		if _, err := io.ReadFull(r, hdr[:]); err == nil && string(hdr[:8]) == spoolMagic {
			good = spoolHeaderLen
			for {
				p, err := readRecord(r, &buf)
				if err != nil {
					break
				}
				good += int64(spoolRecHdr + len(p))
				info.Records++
				if fn != nil {
					if d, err := decodePayload(p); err == nil {
						fn(SpoolRecord{Topic: d.topic, EventType: d.typ, EventID: d.id, Key: d.key, Value: d.value})
					}
				}
			}
		}
		f.Close()
		if good < st.Size() {
			info.TornBytes += st.Size() - good
			info.TornSegs++
		}
	}
	return info, nil
}
