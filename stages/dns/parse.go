// Package dns is pktpipe's minimal DNS decoder and the flow analyzer that
// emits EVE-style dns events.
//
// The decoder reads what the pipeline needs and nothing more: the header
// (id, QR, opcode, flags, rcode, section counts) and the first question
// (name, type, class). It follows compression pointers in the name (only
// backwards, at most 64 hops), never allocates, never panics on any
// input (FuzzParse), and rejects what is not DNS-shaped, so that a
// message's fields can be trusted once Parse returns nil.
//
// The analyzer (Analyzer) looks at UDP and TCP flows on port 53 (DNS) and
// 5353 (mDNS), either side. Over TCP each segment may carry one or more
// length-prefixed messages; a message must start at a segment's start or
// right after the previous message in the same segment, and its header and
// question must be in that segment (they always are in practice: the
// question is a few dozen bytes). Segments that continue a longer message
// are skipped by tracking the remaining length in sequence order.
//
// Each query becomes a dns event with type "query", each response one with
// type "answer"; an answer that matches an outstanding query of the same
// flow and id (stages/rtt.Pending: the latest query with that id, as
// Wireshark's dns.time does) carries the query→response time. Unanswered
// queries expire after 10 s of packet time or when the flow ends.
package dns

import "strconv"

import "errors"

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

// MaxName is the longest name Message keeps, in presentation form (a wire
// name is at most 255 bytes; escaping may make it up to four times longer).
const MaxName = 1024

// Message is a decoded header and first question. Reuse one Message for
// many Parse calls: it holds the name in a fixed array.
type Message struct {
	Header
	HasQuestion   bool
	QType, QClass uint16
	nameLen       int
	name          [MaxName]byte
}

// Errors returned by Parse.
var (
	ErrShort   = errors.New("dns: message shorter than its header or question")
	ErrName    = errors.New("dns: bad name in the question")
	ErrNotDNS  = errors.New("dns: header is not DNS-shaped")
	errPointer = errors.New("dns: bad compression pointer")
)

// Name returns the first question's name in presentation form, without the
// trailing dot ("<root>" for the root). The slice is valid until the next
// Parse.
func (m *Message) Name() []byte { return m.name[:m.nameLen] }

// Parse decodes b's header and first question (if QDCount > 0). It allocates
// nothing.
func (m *Message) Parse(b []byte) error {
	m.HasQuestion, m.QType, m.QClass, m.nameLen = false, 0, 0, 0
	if len(b) < 12 {
		return ErrShort
	}
	m.Header = Header{
		ID: be16(b), Flags: be16(b[2:]),
		QDCount: be16(b[4:]), ANCount: be16(b[6:]), NSCount: be16(b[8:]), ARCount: be16(b[10:]),
	}
	// Opcodes 0–6 are assigned (3 is unassigned, kept as harmless); the Z
	// bit (0x0040) must be zero; a query carries no answers in practice
	// but updates do, so only the opcode and Z are checked.
	if m.Opcode() > 6 || m.Flags&0x0040 != 0 {
		return ErrNotDNS
	}
	if m.QDCount == 0 {
		return nil
	}
	end, err := m.readName(b, 12)
	if err != nil {
		return err
	}
	if end+4 > len(b) {
		return ErrShort
	}
	m.QType, m.QClass = be16(b[end:]), be16(b[end+2:])
	m.HasQuestion = true
	return nil
}

// readName decodes the name at off into m.name and returns the offset just
// after it in the message (after the first pointer, if any).
func (m *Message) readName(b []byte, off int) (int, error) {
	next := -1 // where the question continues, once a pointer was followed
	wire := 0  // wire length of the name so far (≤ 255)
	for hops := 0; ; {
		if off >= len(b) {
			return 0, ErrShort
		}
		l := int(b[off])
		switch l & 0xc0 {
		case 0x00:
			if l == 0 {
				if next < 0 {
					next = off + 1
				}
				if m.nameLen == 0 {
					m.nameLen = copy(m.name[:], "<root>")
				}
				return next, nil
			}
			if off+1+l > len(b) {
				return 0, ErrShort
			}
			wire += l + 1
			if wire > 255 {
				return 0, ErrName
			}
			if m.nameLen > 0 {
				m.name[m.nameLen] = '.'
				m.nameLen++
			}
			for _, c := range b[off+1 : off+1+l] {
				m.appendByte(c)
			}
			off += 1 + l
		case 0xc0:
			if off+2 > len(b) {
				return 0, ErrShort
			}
			ptr := int(be16(b[off:]) & 0x3fff)
			if ptr >= off || hops >= 64 { // only backwards: no loops
				return 0, errPointer
			}
			hops++
			if next < 0 {
				next = off + 2
			}
			off = ptr
		default: // 0x40, 0x80: extended/reserved label types
			return 0, ErrName
		}
	}
}

// appendByte writes one label byte in presentation form: printable ASCII
// as is ('.' and '\' escaped), anything else as \DDD.
func (m *Message) appendByte(c byte) {
	n := m.nameLen
	switch {
	case c == '.' || c == '\\':
		m.name[n], m.name[n+1] = '\\', c
		m.nameLen += 2
	case c > 0x20 && c < 0x7f:
		m.name[n] = c
		m.nameLen++
	default:
		m.name[n] = '\\'
		m.name[n+1] = '0' + c/100
		m.name[n+2] = '0' + c/10%10
		m.name[n+3] = '0' + c%10
		m.nameLen += 4
	}
}

func be16(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }

// TypeName returns the mnemonic of an RR type ("A", "AAAA"...), or its
// decimal number.
func TypeName(t uint16) string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return itoa(int(t))
}

var typeNames = map[uint16]string{
	1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 13: "HINFO", 15: "MX", 16: "TXT",
	17: "RP", 18: "AFSDB", 24: "SIG", 25: "KEY", 28: "AAAA", 29: "LOC", 33: "SRV", 35: "NAPTR",
	36: "KX", 37: "CERT", 39: "DNAME", 41: "OPT", 42: "APL", 43: "DS", 44: "SSHFP", 45: "IPSECKEY",
	46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 49: "DHCID", 50: "NSEC3", 51: "NSEC3PARAM", 52: "TLSA",
	53: "SMIMEA", 55: "HIP", 59: "CDS", 60: "CDNSKEY", 61: "OPENPGPKEY", 62: "CSYNC", 63: "ZONEMD",
	64: "SVCB", 65: "HTTPS", 99: "SPF", 249: "TKEY", 250: "TSIG", 251: "IXFR", 252: "AXFR",
	255: "ANY", 256: "URI", 257: "CAA",
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
