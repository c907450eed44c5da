package dns

import (
	"encoding/hex"
	"testing"
)

// query for www.example.com A with RD, as dig sends it (no EDNS).
const wwwQuery = "abcd01000001000000000000" + "03777777076578616d706c6503636f6d00" + "00010001"

func mustHex(t testing.TB, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParse(t *testing.T) {
	var m Message
	if err := m.Parse(mustHex(t, wwwQuery)); err != nil {
		t.Fatal(err)
	}
	if m.ID != 0xabcd || m.QR() || !m.RD() || m.Opcode() != 0 || !m.HasQuestion ||
		string(m.Name()) != "www.example.com" || TypeName(m.QType) != "A" || m.QClass != 1 {
		t.Fatalf("%+v %q", m.Header, m.Name())
	}
	// A response whose question name is a pointer back into... itself is
	// impossible at offset 12; a pointer to the header is followed but
	// reads garbage labels, which must not panic.
	resp := mustHex(t, "abcd81830001000000000000"+"c00c"+"001c0001")
	if err := m.Parse(resp); err == nil {
		t.Errorf("forward/self pointer accepted: %q", m.Name())
	}
	if err := m.Parse(resp[:11]); err != ErrShort {
		t.Errorf("short header: %v", err)
	}
	// Root name, NXDOMAIN answer, AAAA.
	if err := m.Parse(mustHex(t, "00018183000100000000000000001c0001")); err != nil || string(m.Name()) != "<root>" ||
		RCodeName(m.RCode()) != "NXDOMAIN" || TypeName(m.QType) != "AAAA" || !m.QR() {
		t.Errorf("root: %v %q", err, m.Name())
	}
	// Odd bytes are escaped.
	if err := m.Parse(mustHex(t, "000100000001000000000000"+"03612e0003623f5c00"+"00100001")); err != nil || string(m.Name()) != `a\.\000.b?\\` {
		t.Errorf("escape: %v %q", err, m.Name())
	}
	// Z bit set: not DNS.
	if err := m.Parse(mustHex(t, "000101400001000000000000"+"00"+"00010001")); err != ErrNotDNS {
		t.Errorf("Z bit: %v", err)
	}
}

func TestParseAllocs(t *testing.T) {
	var m Message
	b := mustHex(t, wwwQuery)
	if n := testing.AllocsPerRun(100, func() { _ = m.Parse(b) }); n != 0 {
		t.Errorf("%v allocs per Parse", n)
	}
}

func TestTCPFramer(t *testing.T) {
	q := mustHex(t, wwwQuery)
	msg := append([]byte{0, byte(len(q))}, q...)
	two := append(append([]byte{}, msg...), msg...)
	var f TCPFramer
	f.SYN(999)
	f.Segment(1000, two[:len(msg)+5]) // one whole message and the start of the next
	var got []bool
	for {
		m, complete, ok := f.Next()
		if !ok {
			break
		}
		got = append(got, complete)
		if complete && len(m) != len(q) {
			t.Fatalf("short message %x", m)
		}
	}
	if len(got) != 2 || !got[0] || got[1] {
		t.Fatalf("messages %v", got)
	}
	if f.Segment(1000, two[:10]) { // retransmission
		t.Error("retransmission completed a message")
	}
	if _, _, ok := f.Next(); ok {
		t.Error("retransmission yielded a message")
	}
	if !f.Segment(uint32(1000+len(msg)+5), two[len(msg)+5:]) {
		t.Error("the rest did not complete the message")
	}
	if _, _, ok := f.Next(); ok {
		t.Error("the rest yielded a message")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(mustHex(f, wwwQuery))
	f.Add(mustHex(f, "abcd81830001000000000000c00c001c0001"))
	f.Add(mustHex(f, "00018183000100000000000000001c0001"))
	f.Add(mustHex(f, "000100000001000000000000c00c"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		if err := m.Parse(b); err != nil {
			return
		}
		if len(m.Name()) > MaxName {
			t.Fatalf("name of %d bytes", len(m.Name()))
		}
		var fr TCPFramer
		fr.Segment(0, b)
		for n := 0; ; n++ {
			if _, _, ok := fr.Next(); !ok || n > len(b) {
				break
			}
		}
	})
}
