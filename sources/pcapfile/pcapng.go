package pcapfile

import (
	"bytes"
	"errors"
	"io"
	"math/bits"

	"github.com/pktpipe/pktpipe/pipeline/packet"
)

// pcapng block types.
const (
	ngSHB = 0x0a0d0d0a // section header
	ngIDB = 0x00000001 // interface description
	ngPB  = 0x00000002 // packet (obsolete)
	ngSPB = 0x00000003 // simple packet
	ngEPB = 0x00000006 // enhanced packet
)

// iface is one pcapng interface of the current section.
type iface struct {
	link    packet.LinkType
	snaplen uint32
	units   uint64 // timestamp units per second (if_tsresol)
	offset  int64  // seconds added to every timestamp (if_tsoffset)
	index   int32  // source-wide number (ifTable)
}

// ns converts a raw 64-bit pcapng timestamp to nanoseconds since the epoch.
func (f *iface) ns(ts uint64) int64 {
	off := f.offset * 1e9
	switch f.units {
	case 1e9:
		return int64(ts) + off
	case 1e6:
		return int64(ts)*1e3 + off
	}
	sec, frac := ts/f.units, ts%f.units
	// frac < units, so the 128-bit quotient fits in 64 bits; this is exact
	// for power-of-two resolutions finer than a nanosecond too.
	hi, lo := bits.Mul64(frac, 1e9)
	q, _ := bits.Div64(hi, lo, f.units)
	return int64(sec)*1e9 + int64(q) + off
}

func (r *reader) nextPcapng() ([]byte, record, error) {
	for {
		h, err := r.br.Peek(12)
		if len(h) < 12 {
			if len(h) == 0 && errors.Is(err, io.EOF) {
				return nil, record{}, io.EOF
			}
			return nil, record{}, r.short(err, "block header", 12, len(h))
		}
		typ := r.u32(h)
		if typ == ngSHB {
			switch [4]byte(h[8:12]) {
			case [4]byte{0x4d, 0x3c, 0x2b, 0x1a}:
				r.be = false
			case [4]byte{0x1a, 0x2b, 0x3c, 0x4d}:
				r.be = true
			default:
				return nil, record{}, r.errf(r.off, "section header with bad byte-order magic % x", h[8:12])
			}
		} else if r.sections == 0 {
			return nil, record{}, r.errf(r.off, "pcapng block type 0x%08x before the first section header", typ)
		}
		blen := r.u32(h[4:])
		if blen < 12 || blen%4 != 0 || blen > maxBlock {
			return nil, record{}, r.errf(r.off, "bad block length %d (block type 0x%08x)", blen, typ)
		}
		n := int(blen)
		if n > bufSize {
			switch typ {
			case ngSHB, ngIDB, ngPB, ngSPB, ngEPB:
				return nil, record{}, r.errf(r.off, "block of type 0x%08x too large: %d bytes", typ, n)
			}
			if err := r.skipLarge(n); err != nil {
				return nil, record{}, err
			}
			continue
		}
		b, err := r.br.Peek(n)
		if len(b) < n {
			return nil, record{}, r.short(err, "block", n, len(b))
		}
		if t := r.u32(b[n-4:]); t != blen {
			return nil, record{}, r.errf(r.off, "block trailer length %d does not match header length %d (block type 0x%08x)", t, blen, typ)
		}
		body := b[8 : n-4]
		var (
			data []byte
			rec  record
		)
		switch typ {
		case ngSHB:
			err = r.sectionHeader(body)
		case ngIDB:
			err = r.interfaceDesc(body)
		case ngEPB:
			data, rec, err = r.enhancedPacket(body)
		case ngSPB:
			data, rec, err = r.simplePacket(body)
		case ngPB:
			data, rec, err = r.obsoletePacket(body)
		}
		if err != nil {
			return nil, record{}, err
		}
		if data != nil {
			r.skip = n
			r.lastTs = rec.ts
			return data, rec, nil
		}
		r.discard(n)
	}
}

// skipLarge skips a block too large to peek, checking its trailer.
func (r *reader) skipLarge(n int) error {
	start := r.off
	d, err := r.br.Discard(n - 4)
	r.off += int64(d)
	if d < n-4 {
		r.off = start
		return r.short(err, "block", n, d)
	}
	t, err := r.br.Peek(4)
	if len(t) < 4 {
		r.off = start
		return r.short(err, "block", n, n-4+len(t))
	}
	if r.u32(t) != uint32(n) {
		return r.errf(start, "block trailer length %d does not match header length %d", r.u32(t), n)
	}
	r.discard(4)
	return nil
}

func (r *reader) sectionHeader(body []byte) error {
	if len(body) < 16 {
		return r.errf(r.off, "section header block too short (%d bytes)", len(body)+12)
	}
	if major, minor := r.u16(body[4:]), r.u16(body[6:]); major != 1 {
		return r.errf(r.off, "unsupported pcapng version %d.%d", major, minor)
	}
	r.sections++
	r.ifaces = r.ifaces[:0] // interface ids are per section
	return nil
}

func (r *reader) interfaceDesc(body []byte) error {
	if len(body) < 8 {
		return r.errf(r.off, "interface description block too short (%d bytes)", len(body)+12)
	}
	if len(r.ifaces) >= maxIfaces {
		return r.errf(r.off, "more than %d interfaces in one section", maxIfaces)
	}
	f := iface{link: packet.LinkType(r.u16(body)), snaplen: r.u32(body[4:]), units: 1e6}
	var name []byte
	for opts := body[8:]; len(opts) >= 4; {
		code, l := r.u16(opts), int(r.u16(opts[2:]))
		if code == 0 { // opt_endofopt
			break
		}
		if 4+l > len(opts) {
			return r.errf(r.off, "interface description option %d overruns its block (length %d)", code, l)
		}
		v := opts[4 : 4+l]
		switch {
		case code == 9 && l == 1: // if_tsresol
			e := uint(v[0] & 0x7f)
			if v[0]&0x80 != 0 {
				if e > 63 {
					return r.errf(r.off, "unsupported if_tsresol 2^-%d", e)
				}
				f.units = 1 << e
			} else {
				if e > 19 {
					return r.errf(r.off, "unsupported if_tsresol 10^-%d", e)
				}
				f.units = 1
				for range e {
					f.units *= 10
				}
			}
		case code == 14 && l == 8: // if_tsoffset, signed seconds
			f.offset = int64(r.u64(v))
		case code == 2: // if_name, UTF-8; some writers count a NUL
			name = bytes.TrimRight(v, "\x00")
		}
		opts = opts[4+(l+3)&^3:]
	}
	f.index = r.ifs.index(int32(len(r.ifaces)), r.ifName(name))
	r.ifaces = append(r.ifaces, f)
	return nil
}

func (r *reader) iface(id uint32) (*iface, error) {
	if id >= uint32(len(r.ifaces)) {
		return nil, r.errf(r.off, "packet block refers to interface %d, but the section has %d", id, len(r.ifaces))
	}
	return &r.ifaces[id], nil
}

// packetData checks that caplen bytes follow the fixed fields.
func (r *reader) packetData(rest []byte, caplen uint32) ([]byte, error) {
	if caplen > uint32(len(rest)) {
		return nil, r.errf(r.off, "caplen %d overruns its block (%d bytes of packet data)", caplen, len(rest))
	}
	return rest[:caplen:caplen], nil
}

func (r *reader) enhancedPacket(body []byte) ([]byte, record, error) {
	if len(body) < 20 {
		return nil, record{}, r.errf(r.off, "enhanced packet block too short (%d bytes)", len(body)+12)
	}
	id := r.u32(body)
	f, err := r.iface(id)
	if err != nil {
		return nil, record{}, err
	}
	data, err := r.packetData(body[20:], r.u32(body[12:]))
	if err != nil {
		return nil, record{}, err
	}
	ts := uint64(r.u32(body[4:]))<<32 | uint64(r.u32(body[8:]))
	return data, record{ts: f.ns(ts), origLen: r.u32(body[16:]), link: f.link, ifIndex: f.index}, nil
}

// simplePacket: interface 0, no timestamp (the previous packet's is used),
// and a caplen implied by the original length, the snaplen and the block.
func (r *reader) simplePacket(body []byte) ([]byte, record, error) {
	if len(body) < 4 {
		return nil, record{}, r.errf(r.off, "simple packet block too short (%d bytes)", len(body)+12)
	}
	f, err := r.iface(0)
	if err != nil {
		return nil, record{}, err
	}
	orig := r.u32(body)
	caplen := min(orig, uint32(len(body)-4))
	if f.snaplen != 0 {
		caplen = min(caplen, f.snaplen)
	}
	return body[4 : 4+caplen : 4+caplen], record{ts: r.lastTs, origLen: orig, link: f.link, ifIndex: f.index}, nil
}

func (r *reader) obsoletePacket(body []byte) ([]byte, record, error) {
	if len(body) < 20 {
		return nil, record{}, r.errf(r.off, "packet block too short (%d bytes)", len(body)+12)
	}
	id := uint32(r.u16(body))
	f, err := r.iface(id)
	if err != nil {
		return nil, record{}, err
	}
	data, err := r.packetData(body[20:], r.u32(body[12:]))
	if err != nil {
		return nil, record{}, err
	}
	ts := uint64(r.u32(body[4:]))<<32 | uint64(r.u32(body[8:]))
	return data, record{ts: f.ns(ts), origLen: r.u32(body[16:]), link: f.link, ifIndex: f.index}, nil
}

// ifName returns an if_name as text, allocating only when the table does
// not already hold it at this section's number (the usual repeat).
func (r *reader) ifName(b []byte) string {
	if r.ifs != nil {
		if n := r.ifs.Name(int32(len(r.ifaces))); n == string(b) {
			return n
		}
	}
	return string(b)
}
