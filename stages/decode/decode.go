// Package decode fills a packet's Meta from its bytes: link layer (Ethernet
// with VLAN/QinQ, MPLS, PPPoE, Linux SLL/SLL2, raw IP, BSD null/loop), IPv4
// and IPv6 (options, extension headers, fragments), TCP/UDP/SCTP/ICMP, the
// packet quoted by an ICMP error, and the tunnels GRE, ERSPAN II/III, VXLAN,
// Geneve and IP-in-IP.
//
// The parser is hand-written: straight-line, bounds-checked big-endian reads
// over the packet's own bytes, with no interfaces, no per-layer objects and
// no allocation. gopacket's DecodingLayerParser with preallocated layers was
// the alternative; BenchmarkCompare measures both on the same Ethernet,
// VLAN, IPv4/IPv6, TCP/UDP frames: about 100 ns/packet here against about
// 530 ns/packet for DecodingLayerParser (both 0 allocs, 2 shared cores), so
// the hand-written parser is roughly 5x faster, and it also yields what
// DecodingLayerParser does not without extra layers and glue code (ICMP
// quotes, SLL2, tunnels folded into one flat Meta).
//
// Rules the code keeps:
//   - Decode never panics and never allocates. Every read is guarded by a
//     length check against the captured bytes.
//   - On bad input Decode stops, sets Meta.Err to the reason and keeps what
//     it had decoded up to there.
//   - A capture cut short by the snap length is not an error as long as the
//     fixed transport header (ports) was captured; payload offsets are
//     clipped to what was captured and to the IP length (so Ethernet padding
//     is never payload).
//   - A tunnel's inner packet becomes the decoded packet. Tunnel and
//     Meta.X's OuterSrc and OuterDst describe the outermost tunnel;
//     nesting is limited to maxTunnels levels.
//   - A bad ICMP quote never fails the outer ICMP error: the quote is filled
//     as far as it goes and marked Truncated.
package decode

import (
	"encoding/binary"
	"net/netip"

	"github.com/pktpipe/pktpipe/pipeline/packet"
)

// Limits that keep hostile input from making the decoder loop long.
const (
	maxVLANTags   = 8 // tags skipped in one Ethernet header (two are recorded)
	maxMPLSLabels = 8
	maxExtHeaders = 8 // IPv6 extension headers in one packet or quote
	maxTunnels    = 3 // nested encapsulations
)

// EtherTypes and ports the decoder recognises.
const (
	etherIPv4      = 0x0800
	etherARP       = 0x0806
	etherIPv6      = 0x86dd
	etherDot1Q     = 0x8100
	etherQinQ      = 0x88a8
	etherQinQOld   = 0x9100
	etherMPLS      = 0x8847
	etherPPPoE     = 0x8864
	etherTEB       = 0x6558 // transparent Ethernet bridging (GRE, Geneve)
	etherERSPAN2   = 0x88be
	etherERSPAN3   = 0x22eb
	portVXLAN      = 4789
	portGeneve     = 6081
	protoIPIP      = 4
	protoIPv6inIP  = 41
	protoGRE       = 47
	ipv6HopByHop   = 0
	ipv6Routing    = 43
	ipv6Fragment   = 44
	ipv6ESP        = 50
	ipv6AH         = 51
	ipv6NoNext     = 59
	ipv6DestOpts   = 60
	ipv6Mobility   = 135
	pppIPv4        = 0x0021
	pppIPv6        = 0x0057
	maxDecodeBytes = 0xffff // offsets in Meta are uint16
)

var be = binary.BigEndian

// Decoder decodes packets. It keeps no state between packets, so the zero
// value is ready; New exists for the pipeline's NewDecoder.
type Decoder struct{}

// New returns a decoder.
func New() *Decoder { return &Decoder{} }

// Decode resets p.Meta and fills it from p.Data according to p.LinkType.
// A packet that needs Meta.X (an ICMP error's quote, a tunnel's outer
// addresses) gets a new one.
func (d *Decoder) Decode(p *packet.Packet) { d.DecodeIn(p, nil) }

// DecodeIn is Decode with room for Meta.X, which the packet's batch
// provides (Batch.Room), so that no packet allocates; nil allocates.
func (d *Decoder) DecodeIn(p *packet.Packet, room *packet.Extra) {
	m := &p.Meta
	*m = packet.Meta{}
	data := p.Data
	if len(data) > maxDecodeBytes {
		// Meta's offsets are 16-bit; a larger frame (GRO, jumbo loopback)
		// is decoded from its first 64 KiB, which hold every header.
		data = data[:maxDecodeBytes]
	}
	s := state{room: room, m: m, data: data}
	s.link(p.LinkType)
}

// extra returns the packet's Meta.X, making room for it the first time.
func (s *state) extra() *packet.Extra {
	if s.m.X == nil {
		if s.room == nil {
			s.room = new(packet.Extra)
		} else {
			*s.room = packet.Extra{}
		}
		s.m.X = s.room
	}
	return s.m.X
}

// state is one Decode call: the Meta being filled, the bytes, and how many
// tunnels deep it is. It lives on the stack.
type state struct {
	room   *packet.Extra // for m.X
	m      *packet.Meta
	data   []byte
	depth  int
	nVLANs int // tags seen across all Ethernet headers of this packet
}

func (s *state) fail(r packet.Malformed) {
	if s.m.Err == packet.MalformedNone {
		s.m.Err = r
	}
}

func (s *state) link(lt packet.LinkType) {
	data := s.data
	switch lt {
	case packet.LinkEthernet:
		s.ethernet(0)
	case packet.LinkSLL:
		// 16 bytes: packet type, ARPHRD, address length, 8-byte address,
		// protocol (an EtherType for the cases that matter).
		if len(data) < 16 {
			s.fail(packet.MalformedTruncatedLink)
			return
		}
		s.etherType(be.Uint16(data[14:]), 16)
	case packet.LinkSLL2:
		// 20 bytes: protocol first, then reserved, ifindex, ARPHRD, type,
		// address length, 8-byte address.
		if len(data) < 20 {
			s.fail(packet.MalformedTruncatedLink)
			return
		}
		s.etherType(be.Uint16(data[0:]), 20)
	case packet.LinkRaw:
		if len(data) < 1 {
			s.fail(packet.MalformedTruncatedIP)
			return
		}
		s.ipByVersion(0)
	case packet.LinkIPv4:
		s.ipv4(0)
	case packet.LinkIPv6:
		s.ipv6(0)
	case packet.LinkNull, packet.LinkLoop:
		if len(data) < 4 {
			s.fail(packet.MalformedTruncatedLink)
			return
		}
		// Null is in the capturing host's byte order, which the file does
		// not say: take whichever reading is a small number. Loop is in
		// network order, and the same rule reads it correctly.
		fam := binary.LittleEndian.Uint32(data)
		if fam > 0xffff {
			fam = be.Uint32(data)
		}
		switch fam {
		case 2: // AF_INET
			s.ipv4(4)
		case 24, 28, 30: // AF_INET6 on NetBSD/OpenBSD, FreeBSD, Darwin
			s.ipv6(4)
		}
	default:
		s.fail(packet.MalformedUnknownLink)
	}
}

// ethernet decodes an Ethernet II header at off, with any VLAN tags.
func (s *state) ethernet(off int) {
	data := s.data
	if len(data) < off+14 {
		s.fail(packet.MalformedTruncatedLink)
		return
	}
	et := be.Uint16(data[off+12:])
	off += 14
	for et == etherDot1Q || et == etherQinQ || et == etherQinQOld {
		if s.nVLANs == maxVLANTags {
			s.fail(packet.MalformedTooManyHeaders)
			return
		}
		if len(data) < off+4 {
			s.fail(packet.MalformedTruncatedLink)
			return
		}
		s.nVLANs++
		if s.m.NVLAN < 2 {
			s.m.VLAN[s.m.NVLAN] = be.Uint16(data[off:]) & 0x0fff
			s.m.NVLAN++
		}
		et = be.Uint16(data[off+2:])
		off += 4
	}
	s.etherType(et, off)
}

// etherType dispatches on an EtherType whose payload starts at off. Types
// it does not know (ARP, LLDP, ...) leave the packet without an IP layer,
// which is not an error.
func (s *state) etherType(et uint16, off int) {
	switch et {
	case etherIPv4:
		s.ipv4(off)
	case etherIPv6:
		s.ipv6(off)
	case etherMPLS:
		s.mpls(off)
	case etherPPPoE:
		s.pppoe(off)
	}
}

// mpls skips a unicast MPLS label stack and guesses the payload from its
// first nibble, as routers and Wireshark do; anything else (a pseudowire
// control word, say) is left undecoded.
func (s *state) mpls(off int) {
	data := s.data
	for i := 0; ; i++ {
		if i == maxMPLSLabels {
			s.fail(packet.MalformedTooManyHeaders)
			return
		}
		if len(data) < off+4 {
			s.fail(packet.MalformedTruncatedLink)
			return
		}
		bottom := data[off+2]&1 != 0
		off += 4
		if bottom {
			break
		}
	}
	if len(data) > off {
		switch data[off] >> 4 {
		case 4:
			s.ipv4(off)
		case 6:
			s.ipv6(off)
		}
	}
}

// pppoe decodes a PPPoE session header (6 bytes) and its PPP protocol.
func (s *state) pppoe(off int) {
	data := s.data
	if len(data) < off+8 {
		s.fail(packet.MalformedTruncatedLink)
		return
	}
	switch be.Uint16(data[off+6:]) {
	case pppIPv4:
		s.ipv4(off + 8)
	case pppIPv6:
		s.ipv6(off + 8)
	}
}

// ipByVersion decodes an IP header whose version is its first nibble.
func (s *state) ipByVersion(off int) {
	if len(s.data) <= off {
		s.fail(packet.MalformedTruncatedIP)
		return
	}
	switch s.data[off] >> 4 {
	case 4:
		s.ipv4(off)
	case 6:
		s.ipv6(off)
	default:
		s.fail(packet.MalformedBadIPHeader)
	}
}

func addr4(b []byte) netip.Addr { return netip.AddrFrom4([4]byte(b[:4])) }
func addr16(b []byte) netip.Addr {
	return netip.AddrFrom16([16]byte(b[:16]))
}
