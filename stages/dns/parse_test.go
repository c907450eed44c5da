package dns

import (
	"encoding/hex"
	"strings"
	"testing"
)

// query for www.example.com A with RD, as dig sends it (no EDNS).
const wwwQuery = "abcd01000001000000000000" + "03777777076578616d706c6503636f6d00" + "00010001"

func mustHex(t testing.TB, s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// richResponse answers www.example.com with a CNAME, A, AAAA, MX, TXT
// (two strings), SRV, HTTPS and an unknown type (99 SPF, kept without
// rdata... SPF is type 99; 999 is unassigned), an SOA authority and an
// OPT additional with a cookie option. Names point back at the question
// (offset 12).
var richResponse = "abcd8180 0001 0009 0001 0001" +
	"03777777076578616d706c6503636f6d00 0001 0001" +
	"c00c 0005 0001 0000012c 0006 03 776562 c010" + // CNAME web.example.com
	"c00c 0001 0001 0000003c 0004 c0000201" + // A 192.0.2.1
	"c00c 001c 0001 0000003c 0010 20010db8000000000000000000000001" + // AAAA
	"c00c 000f 0001 00000e10 0004 000a c010" + // MX 10 example.com
	"c00c 0010 0001 00000e10 0008 03 616263 03 646566" + // TXT "abc" "def"
	"c00c 0021 0001 00000e10 0008 0001 0002 0035 c010" + // SRV 1 2 53 example.com
	"c00c 0041 0001 00000e10 0013 0001 00 0001 0006 026832 026833 0003 0002 01bb" + // HTTPS 1 . alpn=h2,h3 port=443
	"c00c 03e7 0001 00000e10 0002 abcd" + // type 999
	"c00c 002c 0001 00000e10 0004 0101 beef" + // SSHFP 1 1 beef
	"c010 0006 0001 00000384 0018 c010 c010 00000001 00001c20 00000384 00127500 00015180" + // SOA
	"00 0029 04d0 00000000 000c 000a 0008 0102030405060708" // OPT cookie

func TestParseRich(t *testing.T) {
	var m Message
	b := mustHex(t, richResponse)
	if err := m.Parse(b); err != nil {
		t.Fatal(err)
	}
	if !m.QR() || m.RCode() != 0 || len(m.Questions) != 1 || string(m.Name()) != "www.example.com" || m.Truncated {
		t.Fatalf("%+v %q", m.Header, m.Name())
	}
	type row struct{ sec, typ, name, data, data2 string }
	want := []row{
		{"0", "CNAME", "www.example.com", "web.example.com", ""},
		{"0", "A", "www.example.com", "192.0.2.1", ""},
		{"0", "AAAA", "www.example.com", "2001:0db8:0000:0000:0000:0000:0000:0001", ""},
		{"0", "MX", "www.example.com", "example.com", ""},
		{"0", "TXT", "www.example.com", "abc", ""},
		{"0", "TXT", "www.example.com", "def", ""},
		{"0", "SRV", "www.example.com", "example.com", ""},
		{"0", "HTTPS", "www.example.com", "", ""},
		{"0", "999", "www.example.com", "", ""},
		{"0", "SSHFP", "www.example.com", "", ""},
		{"1", "SOA", "example.com", "example.com", "example.com"},
		{"2", "OPT", "", "", ""},
	}
	if len(m.RRs) != len(want) {
		t.Fatalf("%d records, want %d", len(m.RRs), len(want))
	}
	for i, w := range want {
		r := &m.RRs[i]
		got := row{itoa(int(r.Section)), TypeName(r.Type), string(m.Str(r.Name)), string(m.Str(r.Data)), string(m.Str(r.Data2))}
		if got != w {
			t.Errorf("record %d: %+v, want %+v", i, got, w)
		}
	}
	if r := m.RRs[6]; r.N[0] != 1 || r.N[1] != 2 || r.N[2] != 53 || r.TTL != 3600 {
		t.Errorf("SRV %+v", r)
	}
	if r := m.RRs[7]; r.Kind != KindSVCB || r.N[0] != 1 || r.N[1] != 443 || string(m.Bytes(r.Raw)) != "\x02h2\x02h3" {
		t.Errorf("HTTPS %+v %q", r, m.Bytes(r.Raw))
	}
	if r := m.RRs[10]; r.N != [5]uint32{1, 7200, 900, 1209600, 86400} {
		t.Errorf("SOA %+v", r)
	}
	if r := m.RRs[11]; r.Kind != KindOPT || len(m.Bytes(r.Raw)) != 12 {
		t.Errorf("OPT %+v", r)
	}
	// Every prefix of the message fails or decodes fewer records, and
	// never panics.
	for i := range b {
		_ = m.Parse(b[:i])
	}
}

func TestParseErrors(t *testing.T) {
	var m Message
	if err := m.Parse(mustHex(t, wwwQuery)); err != nil || m.ID != 0xabcd || m.QR() || !m.RD() ||
		string(m.Name()) != "www.example.com" || TypeName(m.Questions[0].Type) != "A" {
		t.Fatalf("%v %+v %q", err, m.Header, m.Name())
	}
	cases := map[string]string{
		// A question name that points at itself, and one that points forward.
		"self pointer":    "abcd81830001000000000000 c00c 001c0001",
		"forward pointer": "abcd81830001000000000000 c00e 001c0001 00",
		// Two pointers pointing at each other: only backwards pointers are
		// followed, so this is an error, not a loop.
		"loop":             "abcd81800001000100000000 00 0001 0001 c011 0001 0001 00000001 0004 c00c",
		"rdata past end":   "abcd81800001000100000000 00 0001 0001 00 0001 0001 00000001 0010 01020304",
		"A of 5 bytes":     "abcd81800001000100000000 00 0001 0001 00 0001 0001 00000001 0005 0102030405",
		"CNAME past rdata": "abcd81800001000100000000 00 0001 0001 00 0005 0001 00000001 0002 03616263 00",
		"TXT past rdata":   "abcd81800001000100000000 00 0001 0001 00 0010 0001 00000001 0002 0561",
		"Z bit":            "000101400001000000000000 00 00010001",
		"label type 01":    "000101000001000000000000 40 00010001",
	}
	for name, h := range cases {
		if err := m.Parse(mustHex(t, h)); err == nil {
			t.Errorf("%s: accepted (%d records)", name, len(m.RRs))
		}
	}
	if err := m.Parse(mustHex(t, wwwQuery)[:11]); err != ErrShort {
		t.Errorf("short header: %v", err)
	}
	// A chain of 100 backwards pointers is cut at 64 hops.
	b := mustHex(t, "abcd01000001000000000000 00 0001 0001")
	b[5] = 0 // no question: the chain is only read by the record below
	msg := append([]byte{}, b[:12]...)
	msg[7] = 1 // one answer
	msg = append(msg, 0)
	for i := 0; i < 100; i++ {
		p := len(msg) - 2
		if i == 0 {
			p = 12
		}
		msg = append(msg, 0xc0|byte(p>>8), byte(p))
	}
	msg = append(msg, mustHex(t, "0001 0001 00000001 0004 01020304")...)
	if err := m.Parse(msg); err == nil {
		t.Error("100 pointer hops accepted")
	}
	// Root name, escaped bytes, NXDOMAIN.
	if err := m.Parse(mustHex(t, "00018183000100000000000000001c0001")); err != nil || string(m.Name()) != "" ||
		RCodeName(m.RCode()) != "NXDOMAIN" || !m.QR() {
		t.Errorf("root: %v %q", err, m.Name())
	}
	if err := m.Parse(mustHex(t, "000100000001000000000000"+"03612e0003623f5c00"+"00100001")); err != nil || string(m.Name()) != `a\.\000.b?\\` {
		t.Errorf("escape: %v %q", err, m.Name())
	}
	// A bad additional section keeps the answers and marks the message.
	bad := mustHex(t, "abcd81800001000100000001 00 0001 0001 00 0001 0001 00000001 0004 01020304 00 0029")
	if err := m.Parse(bad); err != nil || len(m.RRs) != 1 || !m.Truncated {
		t.Errorf("bad additional: %v %d %v", err, len(m.RRs), m.Truncated)
	}
}

// TestParseManyStrings: a TXT record of 1000 empty strings is cut at
// MaxRecords.
func TestParseManyStrings(t *testing.T) {
	b := mustHex(t, "abcd81800001000100000000 00 0010 0001 00 0010 0001 00000001 03e8")
	b = append(b, make([]byte, 1000)...)
	var m Message
	if err := m.Parse(b); err != nil || len(m.RRs) != MaxRecords-1 || !m.Truncated {
		t.Fatalf("%v: %d records, truncated %v", err, len(m.RRs), m.Truncated)
	}
}

func TestParseAllocs(t *testing.T) {
	var m Message
	b := mustHex(t, richResponse)
	_ = m.Parse(b)
	if n := testing.AllocsPerRun(100, func() { _ = m.Parse(b) }); n != 0 {
		t.Errorf("%v allocs per Parse", n)
	}
}

// FuzzParse: any bytes decode or fail, never panic, and what decodes is
// consistent (spans inside the text, at most MaxRecords records). The
// seed corpus is in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add(mustHex(f, wwwQuery))
	f.Add(mustHex(f, richResponse))
	f.Add(mustHex(f, "abcd81830001000000000000c00c001c0001"))
	f.Add(mustHex(f, "00018183000100000000000000001c0001"))
	f.Add(mustHex(f, "abcd81800001000100000000 00 0001 0001 c011 0001 0001 00000001 0004 c00c"))
	f.Add(mustHex(f, "abcd81800001000100000000 00 0001 0001 00 0001 0001 00000001 0010 01020304"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		if err := m.Parse(b); err != nil {
			return
		}
		if len(m.Questions)+len(m.RRs) > MaxRecords {
			t.Fatalf("%d records", len(m.RRs))
		}
		for _, r := range m.RRs {
			for _, s := range []Span{r.Name, r.Data, r.Data2} {
				_ = m.Str(s)
			}
			_ = m.Bytes(r.Raw)
		}
	})
}
