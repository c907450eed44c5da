package event

// DNS is one DNS message (stages/dns), as Suricata 8's EVE dns object,
// version 3: a request (QR clear) or a response. Src is the flow's
// client, as for every flow-bound event; the timestamp is the packet
// that carried (or, over TCP, completed) the message.
type DNS struct {
	Header
	// AppProto is the flow's app_proto when the event was written, as
	// stages/appproto had named it ("" when it had not, or does not run).
	AppProto string
	Response bool // type "response" (QR set), else "request"
	ID       uint16
	Flags    uint16
	// Truncated: the message had more than stages/dns.MaxRecords
	// questions and records, or a section after the answers did not
	// decode; what decoded is kept (pktpipe's own field).
	Truncated   bool
	Queries     []DNSQuery
	Answers     []DNSRR
	Authorities []DNSRR
	Additionals []DNSRR
	// RTT of a response: the time since the first query with its id on
	// the flow (HasRTT false when no query was outstanding).
	RTTNS  int64
	HasRTT bool

	// Storage for the common single question, so that it costs no
	// allocation of its own.
	Q1 [1]DNSQuery
}

// DNSQuery is one question.
type DNSQuery struct {
	RRName, RRType string
}

// DNSRR kinds: which of DNSRR's fields describe its rdata.
const (
	DNSNone  uint8 = iota // type only, no rdata (as Suricata for types it does not decode)
	DNSText               // RData
	DNSSOA                // SOA: RData mname, RData2 rname, N serial, refresh, retry, expire, minimum
	DNSSRV                // SRV: RData target, N priority, weight, port
	DNSSVCB               // SVCB/HTTPS: RData target, N[0] priority, N[1] port if N[2] == 1, Raw the alpn value
	DNSOPT                // OPT: Raw the options
	DNSSSHFP              // SSHFP: N algo, type; Raw the fingerprint
)

// DNSRR is one resource record of an answer, authority or additional
// section.
type DNSRR struct {
	RRName, RRType string
	TTL            uint32
	Kind           uint8
	RData, RData2  string
	Raw            string // wire bytes (see Kind)
	N              [5]uint32
}

func (*DNS) Type() Type { return TypeDNS }

func (d *DNS) EncodeBody(w Writer) {
	optString(w, "app_proto", d.AppProto)
	w.Key("dns")
	w.BeginObject()
	w.Key("version")
	w.Uint(3)
	w.Key("type")
	if d.Response {
		w.String("response")
	} else {
		w.String("request")
	}
	w.Key("id")
	w.Uint(uint64(d.ID))
	w.Key("flags")
	w.String(hexFlags(d.Flags))
	for _, fl := range dnsFlagNames {
		if d.Flags&fl.bit != 0 {
			w.Key(fl.name)
			w.Bool(true)
		}
	}
	w.Key("opcode")
	w.Uint(uint64(d.Flags>>11) & 0xf)
	w.Key("rcode")
	w.String(dnsRCode(uint8(d.Flags & 0xf)))
	if d.Truncated {
		w.Key("truncated")
		w.Bool(true)
	}
	if len(d.Queries) > 0 {
		w.Key("queries")
		w.BeginArray()
		for i := range d.Queries {
			w.BeginObject()
			w.Key("rrname")
			w.String(d.Queries[i].RRName)
			w.Key("rrtype")
			w.String(d.Queries[i].RRType)
			w.EndObject()
		}
		w.EndArray()
	}
	encodeRRs(w, "answers", d.Answers)
	encodeRRs(w, "authorities", d.Authorities)
	encodeRRs(w, "additionals", d.Additionals)
	if d.HasRTT {
		durMS(w, "rtt_ms", "rtt_ns", d.RTTNS)
	}
	w.EndObject()
}

func encodeRRs(w Writer, key string, rrs []DNSRR) {
	// As Suricata: an OPT record without options is not logged, and a
	// section with nothing to log is absent.
	n := 0
	for i := range rrs {
		if rrs[i].Kind != DNSOPT || rrs[i].Raw != "" {
			n++
		}
	}
	if n == 0 {
		return
	}
	w.Key(key)
	w.BeginArray()
	for i := range rrs {
		r := &rrs[i]
		if r.Kind == DNSOPT && r.Raw == "" {
			continue
		}
		w.BeginObject()
		w.Key("rrname")
		w.String(r.RRName)
		w.Key("rrtype")
		w.String(r.RRType)
		w.Key("ttl")
		w.Uint(uint64(r.TTL))
		switch r.Kind {
		case DNSText:
			w.Key("rdata")
			w.String(r.RData)
		case DNSSOA:
			w.Key("soa")
			w.BeginObject()
			w.Key("mname")
			w.String(r.RData)
			w.Key("rname")
			w.String(r.RData2)
			for i, k := range [...]string{"serial", "refresh", "retry", "expire", "minimum"} {
				w.Key(k)
				w.Uint(uint64(r.N[i]))
			}
			w.EndObject()
		case DNSSRV:
			w.Key("srv")
			w.BeginObject()
			w.Key("priority")
			w.Uint(uint64(r.N[0]))
			w.Key("weight")
			w.Uint(uint64(r.N[1]))
			w.Key("port")
			w.Uint(uint64(r.N[2]))
			w.Key("name")
			w.String(r.RData)
			w.EndObject()
		case DNSSVCB:
			// pktpipe's own: Suricata logs no rdata for SVCB/HTTPS.
			w.Key("svcb")
			w.BeginObject()
			w.Key("priority")
			w.Uint(uint64(r.N[0]))
			w.Key("target")
			w.String(r.RData)
			if r.Raw != "" {
				w.Key("alpn")
				w.BeginArray()
				for p := 0; p < len(r.Raw); {
					l := int(r.Raw[p])
					if p+1+l > len(r.Raw) {
						break
					}
					w.String(r.Raw[p+1 : p+1+l])
					p += 1 + l
				}
				w.EndArray()
			}
			if r.N[2] == 1 {
				w.Key("port")
				w.Uint(uint64(r.N[1]))
			}
			w.EndObject()
		case DNSOPT:
			w.Key("opt")
			w.BeginArray()
			for p := 0; p+4 <= len(r.Raw); {
				l := int(r.Raw[p+2])<<8 | int(r.Raw[p+3])
				if p+4+l > len(r.Raw) {
					break
				}
				w.BeginObject()
				w.Key("code")
				w.Uint(uint64(r.Raw[p])<<8 | uint64(r.Raw[p+1]))
				w.Key("data")
				w.String(hexString(r.Raw[p+4:p+4+l], 0))
				w.EndObject()
				p += 4 + l
			}
			w.EndArray()
		case DNSSSHFP:
			w.Key("sshfp")
			w.BeginObject()
			w.Key("fingerprint")
			w.String(hexString(r.Raw, ':'))
			w.Key("algo")
			w.Uint(uint64(r.N[0]))
			w.Key("type")
			w.Uint(uint64(r.N[1]))
			w.EndObject()
		}
		w.EndObject()
	}
	w.EndArray()
}

// hexString is s in lower-case hex, bytes separated by sep (0: none).
func hexString(s string, sep byte) string {
	const hx = "0123456789abcdef"
	b := make([]byte, 0, 3*len(s))
	for i := 0; i < len(s); i++ {
		if i > 0 && sep != 0 {
			b = append(b, sep)
		}
		b = append(b, hx[s[i]>>4], hx[s[i]&0xf])
	}
	return string(b)
}

// hexFlags writes the flags as Suricata does ("%x": lower case, no
// leading zeros).
func hexFlags(f uint16) string {
	const hx = "0123456789abcdef"
	var b [4]byte
	i := len(b)
	for {
		i--
		b[i] = hx[f&0xf]
		f >>= 4
		if f == 0 {
			break
		}
	}
	return string(b[i:])
}

var dnsRCodes = [...]string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
	"YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE", "11", "12", "13", "14", "15"}

// dnsRCode names a 4-bit response code as Suricata does.
func dnsRCode(r uint8) string { return dnsRCodes[r&0xf] }

// DNS header flags written as booleans when set: Suricata's qr, aa, tc,
// rd, ra, z, then pktpipe's own ad and cd.
var dnsFlagNames = [...]struct {
	bit  uint16
	name string
}{
	{0x8000, "qr"}, {0x0400, "aa"}, {0x0200, "tc"}, {0x0100, "rd"}, {0x0080, "ra"}, {0x0040, "z"},
	{0x0020, "ad"}, {0x0010, "cd"},
}
