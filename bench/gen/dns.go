package gen

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"strings"
)

var (
	nameHosts = []string{"www", "api", "cdn", "static", "img", "mail", "auth", "login", "assets", "edge", "app", "m", "video", "push", "telemetry", "update"}
	nameWords = []string{"acme", "globex", "initech", "umbrella", "hooli", "vandelay", "stark", "wayne", "tyrell", "cyberdyne", "soylent", "wonka", "oscorp", "aperture", "massive", "gringotts", "pied-piper", "dunder", "monarch", "nakatomi"}
	nameTLDs  = []string{"com", "net", "org", "io", "example", "test", "internal"}
)

// hostname returns a generated DNS name such as "api.hooli42.net".
func hostname(r *rand.Rand) string {
	var sb strings.Builder
	if r.IntN(5) != 0 {
		sb.WriteString(nameHosts[r.IntN(len(nameHosts))])
		sb.WriteByte('.')
	}
	sb.WriteString(nameWords[r.IntN(len(nameWords))])
	if r.IntN(2) == 0 {
		sb.WriteString(itoa(r.IntN(100)))
	}
	sb.WriteByte('.')
	sb.WriteString(nameTLDs[r.IntN(len(nameTLDs))])
	return sb.String()
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	n := len(b)
	for i > 0 {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
	}
	return string(b[n:])
}

func appendName(b []byte, name string) []byte {
	for _, label := range strings.Split(name, ".") {
		b = append(b, byte(len(label)))
		b = append(b, label...)
	}
	return append(b, 0)
}

// dnsQuery builds a standard recursive query for name/qtype.
func dnsQuery(id uint16, name string, qtype uint16) []byte {
	b := make([]byte, 12, 12+len(name)+6)
	binary.BigEndian.PutUint16(b[0:], id)
	binary.BigEndian.PutUint16(b[2:], 0x0100) // RD
	binary.BigEndian.PutUint16(b[4:], 1)
	b = appendName(b, name)
	return binary.BigEndian.AppendUint32(b, uint32(qtype)<<16|1)
}

// dnsResponse answers query q (as built by dnsQuery) with addrs, or with
// NXDOMAIN when addrs is empty.
func dnsResponse(q []byte, qtype uint16, addrs []netip.Addr, ttl uint32) []byte {
	b := append([]byte(nil), q...)
	if len(addrs) == 0 {
		binary.BigEndian.PutUint16(b[2:], 0x8183) // QR RD RA, NXDOMAIN
		return b
	}
	binary.BigEndian.PutUint16(b[2:], 0x8180)
	binary.BigEndian.PutUint16(b[6:], uint16(len(addrs)))
	for _, a := range addrs {
		b = binary.BigEndian.AppendUint16(b, 0xc00c) // pointer to the question name
		b = binary.BigEndian.AppendUint16(b, qtype)
		b = binary.BigEndian.AppendUint16(b, 1)
		b = binary.BigEndian.AppendUint32(b, ttl)
		if a.Is4() {
			v := a.As4()
			b = binary.BigEndian.AppendUint16(b, 4)
			b = append(b, v[:]...)
		} else {
			v := a.As16()
			b = binary.BigEndian.AppendUint16(b, 16)
			b = append(b, v[:]...)
		}
	}
	return b
}
