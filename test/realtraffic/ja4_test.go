package realtraffic

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// The expected JA4 of a ClientHello, computed here from tshark's fields
// after FoxIO's specification (technical_details/JA4.md), independently of
// stages/tlsfp: tshark 4.0 has no JA4.
//
//	JA4_a = t + version + (d: SNI present | i) + 2-digit cipher count +
//	        2-digit extension count + first and last character of the
//	        first ALPN value (00 without ALPN)
//	JA4_b = sha256 of the cipher suites as 4 hex digits, sorted, comma-joined, first 12 hex
//	JA4_c = sha256 of the extensions (sorted, less SNI and ALPN) "_" the
//	        signature algorithms (as offered), first 12 hex
//
// GREASE values are left out everywhere. _r is the raw form, _o keeps the
// original order (and SNI and ALPN), _ro both.
type ja4Set struct{ ja4, r, o, ro string }

func grease(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

func noGrease(v []uint16) []uint16 {
	return slices.DeleteFunc(slices.Clone(v), grease)
}

func hexList(v []uint16) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%04x", x)
	}
	return strings.Join(s, ",")
}

func hash12(s string) string {
	if s == "" {
		return "000000000000"
	}
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])[:12]
}

func ja4Version(v uint16) string {
	switch v {
	case 0x0304:
		return "13"
	case 0x0303:
		return "12"
	case 0x0302:
		return "11"
	case 0x0301:
		return "10"
	case 0x0300:
		return "s3"
	}
	return "00"
}

func isAlnum(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
}

func expectedJA4(h tsHello) ja4Set {
	ver := h.legacy
	if vs := noGrease(h.versions); len(vs) > 0 {
		ver = slices.Max(vs)
	}
	sni := "i"
	if h.sni != "" {
		sni = "d"
	}
	ciphers, exts, sigs := noGrease(h.ciphers), noGrease(h.exts), noGrease(h.sigAlgs)
	alpn := "00"
	if len(h.alpn) > 0 && h.alpn[0] != "" {
		a := h.alpn[0]
		f, l := a[0], a[len(a)-1]
		if isAlnum(f) && isAlnum(l) {
			alpn = string([]byte{f, l})
		} else {
			x := hex.EncodeToString([]byte(a))
			alpn = x[:1] + x[len(x)-1:]
		}
	}
	a := fmt.Sprintf("t%s%s%02d%02d%s", ja4Version(ver), sni, min(len(ciphers), 99), min(len(exts), 99), alpn)

	sortedC := slices.Clone(ciphers)
	slices.Sort(sortedC)
	var sortedE []uint16
	for _, e := range exts {
		if e != 0x0000 && e != 0x0010 {
			sortedE = append(sortedE, e)
		}
	}
	slices.Sort(sortedE)
	withSigs := func(e string) string {
		if len(sigs) == 0 || e == "" {
			return e
		}
		return e + "_" + hexList(sigs)
	}
	bR, cR := hexList(sortedC), withSigs(hexList(sortedE))
	bO, cO := hexList(ciphers), withSigs(hexList(exts))
	return ja4Set{
		ja4: a + "_" + hash12(bR) + "_" + hash12(cR),
		r:   a + "_" + bR + "_" + cR,
		o:   a + "_" + hash12(bO) + "_" + hash12(cO),
		ro:  a + "_" + bO + "_" + cO,
	}
}
