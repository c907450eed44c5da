package tlsfp

import (
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"strings"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// CertInfo describes the server's leaf certificate in Suricata's formats.
type CertInfo struct {
	Subject, Issuer     string   // "C=US, O=Google Inc, CN=..."
	Serial              string   // raw DER integer bytes, "00:E1:0B:..."
	Fingerprint         string   // SHA-1 of the DER, "b2:e7:5a:..."
	NotBefore, NotAfter string   // "2016-02-23T09:26:45", UTC
	SANs                []string // DNS names, then IP addresses, e-mails, URIs
}

// leafFromCertificateMsg returns the leaf certificate's DER from a TLS ≤
// 1.2 Certificate body, which may be a prefix of the whole message: only
// the leaf needs to be complete.
func leafFromCertificateMsg(body []byte) ([]byte, bool) {
	s := cryptobyte.String(body)
	var total uint32
	var der cryptobyte.String
	if !s.ReadUint24(&total) || !s.ReadUint24LengthPrefixed(&der) || len(der) == 0 {
		return nil, false
	}
	return der, true
}

const dnTimeFormat = "2006-01-02T15:04:05"

// parseCert reads the fields Suricata logs from a DER certificate. It walks
// the TBSCertificate itself (crypto/x509 rejects some certificates seen in
// the wild, such as negative serials) and asks crypto/x509 only for SANs.
func parseCert(der []byte) (*CertInfo, bool) {
	s := cryptobyte.String(der)
	var cert, tbs cryptobyte.String
	if !s.ReadASN1(&cert, cbasn1.SEQUENCE) || !cert.ReadASN1(&tbs, cbasn1.SEQUENCE) {
		return nil, false
	}
	var serial, sigAlg, issuer, validity, subject cryptobyte.String
	if !tbs.SkipOptionalASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!tbs.ReadASN1(&serial, cbasn1.INTEGER) ||
		!tbs.ReadASN1(&sigAlg, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1(&issuer, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1(&validity, cbasn1.SEQUENCE) ||
		!tbs.ReadASN1(&subject, cbasn1.SEQUENCE) {
		return nil, false
	}
	c := &CertInfo{
		Subject:     formatDN(subject),
		Issuer:      formatDN(issuer),
		Serial:      colonHex(serial, true),
		Fingerprint: sha1Colon(der),
	}
	if nb, ok := readTime(&validity); ok {
		c.NotBefore = nb.UTC().Format(dnTimeFormat)
	}
	if na, ok := readTime(&validity); ok {
		c.NotAfter = na.UTC().Format(dnTimeFormat)
	}
	if x, err := x509.ParseCertificate(der); err == nil {
		c.SANs = append(c.SANs, x.DNSNames...)
		for _, ip := range x.IPAddresses {
			c.SANs = append(c.SANs, ip.String())
		}
		c.SANs = append(c.SANs, x.EmailAddresses...)
		for _, u := range x.URIs {
			c.SANs = append(c.SANs, u.String())
		}
	}
	return c, true
}

func readTime(s *cryptobyte.String) (time.Time, bool) {
	var t time.Time
	switch {
	case s.PeekASN1Tag(cbasn1.UTCTime):
		return t, s.ReadASN1UTCTime(&t)
	case s.PeekASN1Tag(cbasn1.GeneralizedTime):
		return t, s.ReadASN1GeneralizedTime(&t)
	}
	return t, false
}

func sha1Colon(der []byte) string {
	sum := sha1.Sum(der)
	return colonHex(sum[:], false)
}

func colonHex(b []byte, upper bool) string {
	digits := "0123456789abcdef"
	if upper {
		digits = "0123456789ABCDEF"
	}
	out := make([]byte, 0, len(b)*3)
	for i, c := range b {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// attrNames are the short names Suricata (x509-parser) prints.
var attrNames = map[string]string{
	"2.5.4.3":                    "CN",
	"2.5.4.6":                    "C",
	"2.5.4.7":                    "L",
	"2.5.4.8":                    "ST",
	"2.5.4.10":                   "O",
	"2.5.4.11":                   "OU",
	"0.9.2342.19200300.100.1.25": "DC",
	"1.2.840.113549.1.9.1":       "Email",
	"2.5.4.5":                    "serialNumber",
	"2.5.4.9":                    "street",
	"2.5.4.17":                   "postalCode",
	"2.5.4.4":                    "SN",
	"2.5.4.42":                   "GN",
	"2.5.4.12":                   "title",
	"2.5.4.15":                   "businessCategory",
}

// formatDN renders an RDNSequence the way Suricata logs it: RDNs in
// certificate order joined by ", ", attributes of one RDN joined by " + ",
// each as NAME=value.
func formatDN(rdns cryptobyte.String) string {
	var sb strings.Builder
	for !rdns.Empty() {
		var set cryptobyte.String
		if !rdns.ReadASN1(&set, cbasn1.SET) {
			break
		}
		firstAttr := true
		for !set.Empty() {
			var atv cryptobyte.String
			var oid asn1.ObjectIdentifier
			var tag cbasn1.Tag
			var val cryptobyte.String
			if !set.ReadASN1(&atv, cbasn1.SEQUENCE) || !atv.ReadASN1ObjectIdentifier(&oid) ||
				!atv.ReadAnyASN1(&val, &tag) {
				return sb.String()
			}
			if sb.Len() > 0 {
				if firstAttr {
					sb.WriteString(", ")
				} else {
					sb.WriteString(" + ")
				}
			}
			firstAttr = false
			o := oid.String()
			if n, ok := attrNames[o]; ok {
				sb.WriteString(n)
			} else {
				sb.WriteString(o)
			}
			sb.WriteByte('=')
			switch tag {
			case cbasn1.Tag(30): // BMPString: UTF-16BE
				for i := 0; i+1 < len(val); i += 2 {
					sb.WriteRune(rune(val[i])<<8 | rune(val[i+1]))
				}
			default:
				sb.Write(val)
			}
		}
	}
	return sb.String()
}
