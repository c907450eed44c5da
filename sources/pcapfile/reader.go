package pcapfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/pktpipe/pktpipe/pipeline/packet"
)

const (
	bufSize   = 1 << 20   // the largest record (pcapng packet block)
	maxCapLen = 256 << 10 // Wireshark's WTAP_MAX_PACKET_SIZE_STANDARD
	maxBlock  = 16 << 20  // largest non-packet pcapng block we skip
	maxIfaces = 1 << 16   // interfaces per pcapng section
)

// chunkSize is the read buffer's size: small enough to stay in a core's
// L2 cache while the dispatcher decodes what was just read, as the chunks
// come back from the pool most recently used first (1 MiB chunks measured
// 1,420-1,460 CPU ns/packet in the pipeline benchmark, 256 KiB 1,310-1,400,
// medians of 5 at load 5; 64 and 128 KiB no better).
var chunkSize = 256 << 10

type fileKind uint8

const (
	kindPcap fileKind = iota + 1
	kindPcapng
)

// record is what the reader knows about a packet besides its bytes.
type record struct {
	ts      int64 // ns since the epoch
	origLen uint32
	link    packet.LinkType
	ifIndex int32
}

// reader parses one decompressed capture stream. next hands out each record
// as a slice of the read buffer, valid until the following call.
type reader struct {
	name string
	comp string // compression of the stream ("" plain): offsets are into its decompressed bytes
	br   *chunkReader
	off  int64 // stream offset of br's next unread byte
	skip int   // bytes of the record last returned, discarded on the next call
	kind fileKind
	be   bool // big-endian (classic header, or current pcapng section)

	// classic pcap
	fracMul int64 // ns per unit of the sub-second field: 1000 or 1
	link    packet.LinkType
	snaplen uint32
	limit   int   // largest acceptable caplen
	index   int32 // the file's source-wide interface number

	// pcapng
	ifaces   []iface
	sections int
	lastTs   int64 // for Simple Packet Blocks, which carry no timestamp

	ifs *ifTable // the source's interface numbers and names (nil: none)
}

func newReader() *reader {
	return &reader{br: newChunkReader(chunkSize, bufSize), ifaces: make([]iface, 0, 8)}
}

func (r *reader) u16(b []byte) uint16 {
	if r.be {
		return binary.BigEndian.Uint16(b)
	}
	return binary.LittleEndian.Uint16(b)
}

func (r *reader) u32(b []byte) uint32 {
	if r.be {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

func (r *reader) u64(b []byte) uint64 {
	if r.be {
		return binary.BigEndian.Uint64(b)
	}
	return binary.LittleEndian.Uint64(b)
}

func (r *reader) errf(off int64, format string, args ...any) error {
	return &Error{File: r.name, Offset: off, Compression: r.comp, Msg: fmt.Sprintf(format, args...)}
}

// short reports a Peek that returned fewer than want bytes: at EOF the
// record is truncated; otherwise reading failed (I/O or decompression).
func (r *reader) short(err error, what string, want, have int) error {
	if err == nil || errors.Is(err, io.EOF) {
		return r.errf(r.off, "truncated %s (want %d bytes, have %d)", what, want, have)
	}
	return &Error{File: r.name, Offset: r.off, Compression: r.comp, Msg: "reading " + what, Err: err}
}

// reset starts reading a new stream (decompressed from comp, "" when
// plain) and parses its file header.
func (r *reader) reset(name string, src io.Reader, comp string) error {
	*r = reader{name: name, comp: comp, br: r.br, ifaces: r.ifaces[:0], ifs: r.ifs}
	r.br.Reset(src)
	m, err := r.br.Peek(4)
	switch {
	case len(m) == 0 && errors.Is(err, io.EOF):
		return r.errf(0, "empty file: no pcap or pcapng header")
	case len(m) < 4:
		return r.short(err, "file header", 4, len(m))
	}
	switch binary.LittleEndian.Uint32(m) {
	case ngSHB: // byte-order palindrome; the section header decides
		r.kind = kindPcapng
		return nil
	case 0xa1b2c3d4:
		r.fracMul = 1000
	case 0xd4c3b2a1:
		r.fracMul, r.be = 1000, true
	case 0xa1b23c4d:
		r.fracMul = 1
	case 0x4d3cb2a1:
		r.fracMul, r.be = 1, true
	case 0xa1b2cd34, 0x34cdb2a1:
		return r.errf(0, "modified (Kuznetzov) pcap format is not supported")
	default:
		return r.errf(0, "not a pcap or pcapng file (starts with % x)", m)
	}
	r.kind = kindPcap
	h, err := r.br.Peek(24)
	if len(h) < 24 {
		return r.short(err, "pcap file header", 24, len(h))
	}
	if major, minor := r.u16(h[4:]), r.u16(h[6:]); major != 2 {
		return r.errf(0, "unsupported pcap version %d.%d", major, minor)
	}
	r.snaplen = r.u32(h[16:])
	// The top bits of the link-type field hold FCS information.
	r.link = packet.LinkType(r.u32(h[20:]) & 0xffff)
	r.limit = capLimit(r.snaplen)
	r.index = r.ifs.index(0, "") // one interface, no name
	r.discard(24)
	return nil
}

// capLimit is the largest caplen a record may declare: the snaplen, but
// at least maxCapLen (writers exist that exceed a small snaplen) and at
// most what the read buffer can hold.
func capLimit(snaplen uint32) int {
	l := max(int64(snaplen), maxCapLen)
	return int(min(l, bufSize-64))
}

// discard drops n bytes that Peek has already buffered.
func (r *reader) discard(n int) {
	d, _ := r.br.Discard(n)
	r.off += int64(d)
}

// next returns the next packet, or io.EOF at a clean end of the stream.
func (r *reader) next() ([]byte, record, error) {
	if r.skip > 0 {
		r.discard(r.skip)
		r.skip = 0
	}
	if r.kind == kindPcap {
		return r.nextPcap()
	}
	return r.nextPcapng()
}

func (r *reader) nextPcap() ([]byte, record, error) {
	h, err := r.br.Peek(16)
	if len(h) < 16 {
		if len(h) == 0 && errors.Is(err, io.EOF) {
			return nil, record{}, io.EOF
		}
		return nil, record{}, r.short(err, "packet record header", 16, len(h))
	}
	caplen := r.u32(h[8:])
	if caplen > uint32(r.limit) {
		return nil, record{}, r.errf(r.off, "impossible caplen %d (snaplen %d, limit %d)", caplen, r.snaplen, r.limit)
	}
	n := 16 + int(caplen)
	b, err := r.br.Peek(n)
	if len(b) < n {
		return nil, record{}, r.short(err, "packet record", int(caplen), len(b)-16)
	}
	rec := record{
		ts:      int64(r.u32(b[0:]))*1e9 + int64(r.u32(b[4:]))*r.fracMul,
		origLen: r.u32(b[12:]),
		link:    r.link,
		ifIndex: r.index,
	}
	r.skip = n
	return b[16:n:n], rec, nil
}
