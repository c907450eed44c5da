// Package dns is pktpipe's DNS decoder and the flow analyzer that emits
// Suricata EVE v3 dns events.
//
// The decoder reads a whole message: the header, every question and the
// answer, authority and additional records, with the rdata of A, AAAA,
// CNAME, PTR, NS, MX, TXT, SOA, SRV, SSHFP, HTTPS/SVCB and OPT decoded
// (other types keep their type, ttl and name, without rdata, as Suricata
// does). It follows compression pointers only backwards and at most 64
// hops per name, so a pointer loop is an error, not a hang; it never
// allocates once its scratch has grown, never panics on any input
// (FuzzParse), and rejects what is not DNS-shaped, so that a message's
// fields can be trusted once Parse returns nil.
//
// The analyzer (Analyzer) looks at UDP and TCP flows on port 53 (DNS) and
// 5353 (mDNS), either side. Over TCP, each direction's length-prefixed
// messages are reassembled in sequence order (a message split over
// segments, several in one segment), the partial message held in a
// buffer accounted to the worker's reassembly budget (stages/reassembly).
//
// Each query becomes a dns event with type "request", each response one
// with type "response"; a response that matches an outstanding query of
// the same flow and id (stages/rtt.Pending: the first query with that id,
// as Wireshark's dns.time does) carries the query→response time.
// Unanswered queries expire after 10 s of packet time or when the flow
// ends.
package dns

import (
	"errors"
	"strconv"
)

// Header is the fixed 12-byte DNS header.
type Header struct {
	ID                                 uint16
	Flags                              uint16
	QDCount, ANCount, NSCount, ARCount uint16
}

// QR reports whether the message is a response.
func (h *Header) QR() bool { return h.Flags&0x8000 != 0 }

// Opcode is the 4-bit opcode (0 query, 4 notify, 5 update...).
func (h *Header) Opcode() uint8 { return uint8(h.Flags>>11) & 0xf }

// RCode is the 4-bit response code of the header.
func (h *Header) RCode() uint8 { return uint8(h.Flags & 0xf) }

// AA, TC, RD, RA are the header's flag bits.
func (h *Header) AA() bool { return h.Flags&0x0400 != 0 }
func (h *Header) TC() bool { return h.Flags&0x0200 != 0 }
func (h *Header) RD() bool { return h.Flags&0x0100 != 0 }
func (h *Header) RA() bool { return h.Flags&0x0080 != 0 }

// MaxRecords bounds the questions plus records kept from one message (a
// 64 KiB message could hold ~5000 tiny records); the rest are not
// decoded and the message is marked Truncated.
const MaxRecords = 256

// Span locates a piece of presentation text in Message.Text.
type Span struct{ Off, Len int32 }

// Question is one entry of the question section.
type Question struct {
	Name        Span
	Type, Class uint16
}

// Section of a record.
const (
	SecAnswer = iota
	SecAuthority
	SecAdditional
)

// Kind says which decoded form a record's rdata has.
const (
	KindNone  = iota // type kept without rdata
	KindText         // Data: address, name or one TXT string
	KindSOA          // Data: mname, Data2: rname, N: serial refresh retry expire minimum
	KindSRV          // Data: target; N: priority weight port
	KindSVCB         // Data: target; N: priority, port (N[2] = 1 when present); Raw: alpn value
	KindOPT          // Raw: the options (code, length, data)*
	KindSSHFP        // N: algo, type; Raw: fingerprint
)

// RR is one decoded resource record. Text fields are Spans of the
// message's Text; Raw is a Span of the message itself (Message.Raw).
type RR struct {
	Section     uint8
	Kind        uint8
	Name        Span
	Type, Class uint16
	TTL         uint32
	Data, Data2 Span
	Raw         Span
	N           [5]uint32
}

// Message is a decoded DNS message. Reuse one Message for many Parse
// calls: its scratch slices keep their capacity.
type Message struct {
	Header
	Questions []Question
	RRs       []RR // answers, then authorities, then additionals
	// Truncated: records beyond MaxRecords, or a section that failed to
	// decode after the answers (kept as far as they decoded).
	Truncated bool
	Text      []byte // presentation text of names and rdata
	raw       []byte // the message Parse was given
}

// Errors returned by Parse.
var (
	ErrShort   = errors.New("dns: message shorter than its header or records")
	ErrName    = errors.New("dns: bad name")
	ErrNotDNS  = errors.New("dns: header is not DNS-shaped")
	errPointer = errors.New("dns: bad compression pointer")
	errRData   = errors.New("dns: bad rdata")
)

// Str returns the text of a Span.
func (m *Message) Str(s Span) []byte { return m.Text[s.Off : s.Off+s.Len] }

// Bytes returns the message bytes a Raw Span covers (valid until the
// message's buffer is reused).
func (m *Message) Bytes(s Span) []byte { return m.raw[s.Off : s.Off+s.Len] }

// Name returns the first question's name ("" for none or the root).
func (m *Message) Name() []byte {
	if len(m.Questions) == 0 {
		return nil
	}
	return m.Str(m.Questions[0].Name)
}

// Parse decodes b. It allocates only to grow the Message's scratch.
func (m *Message) Parse(b []byte) error {
	m.Questions, m.RRs, m.Text, m.Truncated, m.raw = m.Questions[:0], m.RRs[:0], m.Text[:0], false, b
	if len(b) < 12 {
		return ErrShort
	}
	m.Header = Header{
		ID: be16(b), Flags: be16(b[2:]),
		QDCount: be16(b[4:]), ANCount: be16(b[6:]), NSCount: be16(b[8:]), ARCount: be16(b[10:]),
	}
	// Opcodes 0–6 are assigned (3 is unassigned, kept as harmless); the Z
	// bit (0x0040) must be zero.
	if m.Opcode() > 6 || m.Flags&0x0040 != 0 {
		return ErrNotDNS
	}
	off := 12
	for i := 0; i < int(m.QDCount); i++ {
		if len(m.Questions) >= MaxRecords {
			m.Truncated = true
			return nil
		}
		name, end, err := m.name(b, off)
		if err != nil {
			return err
		}
		if end+4 > len(b) {
			return ErrShort
		}
		m.Questions = append(m.Questions, Question{Name: name, Type: be16(b[end:]), Class: be16(b[end+2:])})
		off = end + 4
	}
	counts := [3]uint16{m.ANCount, m.NSCount, m.ARCount}
	for sec, n := range counts {
		for i := 0; i < int(n); i++ {
			if len(m.Questions)+len(m.RRs) >= MaxRecords {
				m.Truncated = true
				return nil
			}
			end, err := m.record(b, off, uint8(sec))
			if err != nil {
				// As Suricata: bad answers fail the message; bad
				// authorities or additionals only end the decoding.
				if sec == SecAnswer {
					return err
				}
				m.Truncated = true
				return nil
			}
			off = end
		}
	}
	return nil
}

// record decodes the record at off (appending one RR, or one per string
// for TXT) and returns the offset after it.
func (m *Message) record(b []byte, off int, sec uint8) (int, error) {
	name, end, err := m.name(b, off)
	if err != nil {
		return 0, err
	}
	if end+10 > len(b) {
		return 0, ErrShort
	}
	r := RR{Section: sec, Name: name, Type: be16(b[end:]), Class: be16(b[end+2:]), TTL: be32(b[end+4:])}
	rdl := int(be16(b[end+8:]))
	start := end + 10
	stop := start + rdl
	if stop > len(b) {
		return 0, ErrShort
	}
	rd := b[start:stop]
	switch r.Type {
	case 1: // A
		if rdl != 4 {
			return 0, errRData
		}
		r.Kind, r.Data = KindText, m.ipv4(rd)
	case 28: // AAAA
		if rdl != 16 {
			return 0, errRData
		}
		r.Kind, r.Data = KindText, m.ipv6(rd)
	case 2, 5, 12: // NS, CNAME, PTR
		if r.Data, _, err = m.nameIn(b, start, stop); err != nil {
			return 0, err
		}
		r.Kind = KindText
	case 15: // MX: as Suricata, the exchange only
		if rdl < 3 {
			return 0, errRData
		}
		if r.Data, _, err = m.nameIn(b, start+2, stop); err != nil {
			return 0, err
		}
		r.Kind, r.N[0] = KindText, uint32(be16(rd))
	case 16: // TXT: one record per string, as Suricata logs them
		r.Kind = KindText
		for p := 0; p < rdl; {
			l := int(rd[p])
			if p+1+l > rdl {
				return 0, errRData
			}
			if len(m.Questions)+len(m.RRs) >= MaxRecords {
				m.Truncated = true // 65535 empty strings would be as many records
				return stop, nil
			}
			r.Data = m.text(rd[p+1 : p+1+l])
			m.RRs = append(m.RRs, r)
			p += 1 + l
		}
		if rdl == 0 { // no string at all: keep the record
			r.Kind = KindNone
			m.RRs = append(m.RRs, r)
		}
		return stop, nil
	case 6: // SOA
		var p int
		if r.Data, p, err = m.nameIn(b, start, stop); err != nil {
			return 0, err
		}
		if r.Data2, p, err = m.nameIn(b, p, stop); err != nil {
			return 0, err
		}
		if p+20 != stop {
			return 0, errRData
		}
		for i := range r.N {
			r.N[i] = be32(b[p+4*i:])
		}
		r.Kind = KindSOA
	case 33: // SRV
		if rdl < 7 {
			return 0, errRData
		}
		if r.Data, _, err = m.nameIn(b, start+6, stop); err != nil {
			return 0, err
		}
		r.Kind = KindSRV
		r.N[0], r.N[1], r.N[2] = uint32(be16(rd)), uint32(be16(rd[2:])), uint32(be16(rd[4:]))
	case 64, 65: // SVCB, HTTPS (RFC 9460): target is never compressed
		if err := m.svcb(&r, b, start, stop); err != nil {
			return 0, err
		}
	case 41: // OPT (EDNS): options are code, length, data
		for p := 0; p < rdl; {
			if p+4 > rdl || p+4+int(be16(rd[p+2:])) > rdl {
				return 0, errRData
			}
			p += 4 + int(be16(rd[p+2:]))
		}
		r.Kind, r.Raw = KindOPT, Span{int32(start), int32(rdl)}
	case 44: // SSHFP
		if rdl < 2 {
			return 0, errRData
		}
		r.Kind, r.N[0], r.N[1], r.Raw = KindSSHFP, uint32(rd[0]), uint32(rd[1]), Span{int32(start + 2), int32(rdl - 2)}
	}
	m.RRs = append(m.RRs, r)
	return stop, nil
}

// svcb decodes an SVCB/HTTPS rdata: priority, target, and the alpn
// (key 1) and port (key 3) parameters.
func (m *Message) svcb(r *RR, b []byte, start, stop int) error {
	if stop-start < 3 {
		return errRData
	}
	r.N[0] = uint32(be16(b[start:]))
	var err error
	var p int
	if r.Data, p, err = m.nameIn(b[:stop], start+2, stop); err != nil {
		return err
	}
	for p < stop {
		if p+4 > stop {
			return errRData
		}
		key, l := be16(b[p:]), int(be16(b[p+2:]))
		v := p + 4
		if v+l > stop {
			return errRData
		}
		switch key {
		case 1:
			for q := v; q < v+l; q += 1 + int(b[q]) {
				if q+1+int(b[q]) > v+l {
					return errRData
				}
			}
			r.Raw = Span{int32(v), int32(l)}
		case 3:
			if l == 2 {
				r.N[1], r.N[2] = uint32(be16(b[v:])), 1
			}
		}
		p = v + l
	}
	r.Kind = KindSVCB
	return nil
}

// nameIn decodes a name that must lie inside rdata [start, stop) (its
// pointers may lead anywhere before it) and returns the offset after it.
func (m *Message) nameIn(b []byte, start, stop int) (Span, int, error) {
	if start >= stop {
		return Span{}, 0, errRData
	}
	s, end, err := m.name(b, start)
	if err == nil && end > stop {
		err = errRData
	}
	return s, end, err
}

// name decodes the name at off into Text and returns it and the offset
// just after it in the message (after the first pointer, if any).
func (m *Message) name(b []byte, off int) (Span, int, error) {
	start := len(m.Text)
	fail := func(err error) (Span, int, error) {
		m.Text = m.Text[:start]
		return Span{}, 0, err
	}
	next := -1 // where the message continues, once a pointer was followed
	wire := 0  // wire length of the name so far (≤ 255)
	for hops := 0; ; {
		if off >= len(b) {
			return fail(ErrShort)
		}
		l := int(b[off])
		switch l & 0xc0 {
		case 0x00:
			if l == 0 {
				if next < 0 {
					next = off + 1
				}
				return Span{int32(start), int32(len(m.Text) - start)}, next, nil
			}
			if off+1+l > len(b) {
				return fail(ErrShort)
			}
			wire += l + 1
			if wire > 255 {
				return fail(ErrName)
			}
			if len(m.Text) > start {
				m.Text = append(m.Text, '.')
			}
			for _, c := range b[off+1 : off+1+l] {
				m.appendByte(c)
			}
			off += 1 + l
		case 0xc0:
			if off+2 > len(b) {
				return fail(ErrShort)
			}
			ptr := int(be16(b[off:]) & 0x3fff)
			// Only backwards, and a bounded number of hops: no loops.
			if ptr >= off || hops >= 64 {
				return fail(errPointer)
			}
			hops++
			if next < 0 {
				next = off + 2
			}
			off = ptr
		default: // 0x40, 0x80: extended/reserved label types
			return fail(ErrName)
		}
	}
}

// appendByte writes one label byte in presentation form: printable ASCII
// as is ('.' and '\' escaped), anything else as \DDD.
func (m *Message) appendByte(c byte) {
	switch {
	case c == '.' || c == '\\':
		m.Text = append(m.Text, '\\', c)
	case c > 0x20 && c < 0x7f:
		m.Text = append(m.Text, c)
	default:
		m.Text = append(m.Text, '\\', '0'+c/100, '0'+c/10%10, '0'+c%10)
	}
}

// text appends a TXT string. Printable bytes (and space) are kept as they
// are, as Suricata and tshark show them; others as \DDD.
func (m *Message) text(s []byte) Span {
	start := len(m.Text)
	for _, c := range s {
		if c >= 0x20 && c < 0x7f {
			m.Text = append(m.Text, c)
		} else {
			m.Text = append(m.Text, '\\', '0'+c/100, '0'+c/10%10, '0'+c%10)
		}
	}
	return Span{int32(start), int32(len(m.Text) - start)}
}

func (m *Message) ipv4(a []byte) Span {
	start := len(m.Text)
	for i, c := range a {
		if i > 0 {
			m.Text = append(m.Text, '.')
		}
		m.Text = strconv.AppendUint(m.Text, uint64(c), 10)
	}
	return Span{int32(start), int32(len(m.Text) - start)}
}

// ipv6 writes the address as Suricata does: eight groups of four hex
// digits, nothing compressed.
func (m *Message) ipv6(a []byte) Span {
	const hx = "0123456789abcdef"
	start := len(m.Text)
	for i, c := range a {
		if i > 0 && i%2 == 0 {
			m.Text = append(m.Text, ':')
		}
		m.Text = append(m.Text, hx[c>>4], hx[c&0xf])
	}
	return Span{int32(start), int32(len(m.Text) - start)}
}

func be16(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }
func be32(b []byte) uint32 { return uint32(be16(b))<<16 | uint32(be16(b[2:])) }

// TypeName returns the mnemonic of an RR type ("A", "AAAA"...), or its
// decimal number.
func TypeName(t uint16) string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return itoa(int(t))
}

var typeNames = map[uint16]string{
	1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 10: "NULL", 11: "WKS", 12: "PTR", 13: "HINFO", 14: "MINFO",
	15: "MX", 16: "TXT", 17: "RP", 18: "AFSDB", 24: "SIG", 25: "KEY", 28: "AAAA", 29: "LOC", 33: "SRV",
	35: "NAPTR", 36: "KX", 37: "CERT", 39: "DNAME", 41: "OPT", 42: "APL", 43: "DS", 44: "SSHFP",
	45: "IPSECKEY", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 49: "DHCID", 50: "NSEC3", 51: "NSEC3PARAM",
	52: "TLSA", 53: "SMIMEA", 55: "HIP", 59: "CDS", 60: "CDNSKEY", 61: "OPENPGPKEY", 62: "CSYNC",
	63: "ZONEMD", 64: "SVCB", 65: "HTTPS", 99: "SPF", 249: "TKEY", 250: "TSIG", 251: "IXFR",
	252: "AXFR", 255: "ANY", 256: "URI", 257: "CAA",
}

// RCodeName returns the name of a response code as Suricata writes it
// ("NOERROR", "NXDOMAIN"...), or its decimal number.
func RCodeName(r uint8) string {
	if int(r) < len(rcodeNames) {
		return rcodeNames[r]
	}
	return itoa(int(r))
}

var rcodeNames = [...]string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
	"YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE"}

var smallNums = func() (t [256]string) {
	for i := range t {
		t[i] = strconv.Itoa(i)
	}
	return
}()

func itoa(i int) string {
	if i >= 0 && i < len(smallNums) {
		return smallNums[i]
	}
	return strconv.Itoa(i)
}
