package decode

import (
	"testing"

	"github.com/pktpipe/pktpipe/pipeline/packet"
)

// fuzzLinks are the link types FuzzDecode spreads its inputs over; the
// last is one the decoder does not know.
var fuzzLinks = []packet.LinkType{
	packet.LinkEthernet, packet.LinkRaw, packet.LinkIPv4, packet.LinkIPv6,
	packet.LinkSLL, packet.LinkSLL2, packet.LinkNull, packet.LinkLoop, 9999,
}

func linkIndex(lt packet.LinkType) uint8 {
	for i, l := range fuzzLinks {
		if l == lt {
			return uint8(i)
		}
	}
	return uint8(len(fuzzLinks) - 1)
}

// FuzzDecode feeds arbitrary bytes, as each link type, to the decoder: it
// must not panic and the decoded Meta must stay consistent with the bytes.
// Seeds: every hand-built table case, plus testdata/fuzz/FuzzDecode (a few
// conformance packets: tunnels, ICMP quotes, IPv6 extension headers).
func FuzzDecode(f *testing.F) {
	for _, cases := range [][]tcase{linkCases(), ipCases(), l4Cases(), tunnelCases(), quoteCases()} {
		for _, c := range cases {
			f.Add(c.data, linkIndex(c.link))
		}
	}
	d := New()
	f.Fuzz(func(t *testing.T, data []byte, link uint8) {
		p := &packet.Packet{Data: data, LinkType: fuzzLinks[int(link)%len(fuzzLinks)]}
		d.Decode(p)
		checkInvariants(t, p)
		// Decoding is a pure function of the bytes (Meta.X by what it
		// holds: each decode makes its own).
		first, firstX := p.Meta, p.Meta.X
		d.Decode(p)
		second, secondX := p.Meta, p.Meta.X
		if (firstX == nil) != (secondX == nil) || (firstX != nil && *firstX != *secondX) {
			t.Fatalf("second decode's Extra differs:\n%+v\n%+v", firstX, secondX)
		}
		first.X, second.X = nil, nil
		if second != first {
			t.Fatalf("second decode differs:\n%+v\n%+v", first, second)
		}
	})
}
