// Package packet holds what travels between pktpipe's stages: captured
// packets, their decoded summary, and the pooled batches that carry them.
//
// A Batch owns one byte arena. A packet's Data is a slice of that arena, so a
// batch of 256 packets costs one allocation when the pool is cold and none
// once it is warm. Whoever receives a batch owns it until it calls Release.
package packet

import "net/netip"

// LinkType is the capture's link-layer header type, numbered as in pcap
// (LINKTYPE_* of tcpdump.org), so a pcap header's value can be used as is.
type LinkType uint16

const (
	LinkNull     LinkType = 0   // BSD loopback: 4-byte host-order address family
	LinkEthernet LinkType = 1   // Ethernet II
	LinkRaw      LinkType = 101 // raw IPv4 or IPv6, version from the first nibble
	LinkLoop     LinkType = 108 // OpenBSD loopback: 4-byte network-order family
	LinkSLL      LinkType = 113 // Linux cooked capture v1
	LinkIPv4     LinkType = 228 // raw IPv4
	LinkIPv6     LinkType = 229 // raw IPv6
	LinkSLL2     LinkType = 276 // Linux cooked capture v2
)

// Direction is where a live source saw the packet go, when it knows.
type Direction uint8

const (
	DirUnknown Direction = iota
	DirIngress
	DirEgress
)

// Packet is one captured packet and, once the decode stage has run, its
// decoded summary. It holds no pointers other than Data, so batches of them
// are cheap for the garbage collector to scan.
type Packet struct {
	Data      []byte    // captured bytes; len(Data) is the captured length
	OrigLen   uint32    // length on the wire (>= len(Data) unless the source truncated)
	Timestamp int64     // nanoseconds since the Unix epoch
	LinkType  LinkType  // how to read Data
	IfIndex   int32     // capture interface (pcapng interface id, or ifindex); -1 if unknown
	Direction Direction // ingress/egress where the source knows it
	// Index is the packet's 1-based position in its source's stream, as
	// Suricata's pcap_cnt: for capture files, across all the files read
	// (the frame number in the input, before any filter expression); for
	// a live source, since it started, per socket. 0 = unknown.
	Index uint64
	Meta  Meta // filled by the decode stage
}

// Extra is what few packets carry beyond Meta: the quote of an ICMP error
// and a tunnel's outer addresses (136 bytes). Meta points to it (X), so
// that every other packet's metadata is that much smaller: the source
// writes it, the dispatcher's Batch.Split copies it, a worker reads it.
type Extra struct {
	// Quote is the packet quoted by an ICMP/ICMPv6 error, when Meta is one.
	Quote Quote
	// OuterSrc and OuterDst are the outer packet's addresses when Meta's
	// Tunnel is set (Src/Dst are then the inner packet's).
	OuterSrc, OuterDst netip.Addr
}

// Quoted returns the quote of an ICMP error (Present false when the
// packet is none, or its quote was too short to read).
func (m *Meta) Quoted() Quote {
	if m.X == nil {
		return Quote{}
	}
	return m.X.Quote
}

// Meta is the decoded summary of a packet: everything the flow, ICMP, TLS
// and RTT stages need, in fixed-size fields (no allocation to fill it).
type Meta struct {
	Err Malformed // why decoding stopped early; MalformedNone if it did not

	// Link layer.
	VLAN  [2]uint16 // outer and inner 802.1Q/802.1ad VLAN ids, 0 if absent
	NVLAN uint8

	// Tunnel: when set, Src/Dst below are the inner packet's addresses,
	// and X holds the outer ones.
	Tunnel   Tunnel
	InnerLen uint16 // length of the inner packet (from its first header to the carrier's end)

	// Network layer of the (innermost) packet.
	IPVersion uint8 // 4 or 6; 0 when there is no IP layer (ARP, etc.)

	// Application payload of TCP/UDP (or the ICMP body), as offsets in Data
	// (here, where they fill the struct's padding).
	PayloadOff uint16
	PayloadLen uint16

	Src, Dst netip.Addr
	TTL      uint8  // TTL or hop limit
	IPLen    uint16 // total length from the IP header (IPv6: 40 + payload length)
	L3Off    uint16 // offset of the IP header in Data
	Frag     Fragment
	DF       bool // IPv4 don't-fragment flag (always false for IPv6)

	// Transport layer.
	Proto   uint8 // IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...)
	SrcPort uint16
	DstPort uint16
	HasL4   bool   // the transport header was fully present
	L4Off   uint16 // offset of the transport header in Data

	// TCP.
	Seq, Ack uint32
	TCPFlags uint8 // FIN=0x01 SYN=0x02 RST=0x04 PSH=0x08 ACK=0x10 URG=0x20 ECE=0x40 CWR=0x80
	Window   uint16

	// ICMP / ICMPv6 (Type and Code are also mapped into nothing here:
	// SrcPort/DstPort stay 0 for ICMP; Community ID does its own mapping).
	ICMPType uint8
	ICMPCode uint8
	ICMPID   uint16 // echo identifier (echo request/reply only)
	ICMPSeq  uint16 // echo sequence (echo request/reply only)
	ICMPRest uint32 // the 4 bytes after the checksum: MTU, pointer, gateway (v4)

	// X holds the quote of an ICMP error and a tunnel's outer addresses,
	// nil when the packet has neither (nearly all packets). It lives as
	// long as the packet's batch.
	X *Extra

	// FlowHash is KeyOf(m).Hash(), set by the engine's dispatcher, which
	// computes it to pick the worker, so that the worker's flow table need
	// not compute it again; 0 = not known (an ICMP error, which goes by
	// the flow it quotes, or a packet that did not come through the
	// dispatcher). A hash that happens to be 0 is merely computed again.
	FlowHash uint64
}

// Payload returns the transport payload of p (empty if there is none).
func (p *Packet) Payload() []byte {
	end := int(p.Meta.PayloadOff) + int(p.Meta.PayloadLen)
	if end > len(p.Data) || p.Meta.PayloadLen == 0 {
		return nil
	}
	return p.Data[p.Meta.PayloadOff:end]
}

// Fragment describes IPv4/IPv6 fragmentation of the packet.
type Fragment struct {
	Is     bool   // the packet is a fragment (first or later)
	First  bool   // offset 0: only the first fragment carries ports
	More   bool   // more-fragments flag
	Offset uint16 // in bytes
	ID     uint32
}

// Tunnel names the encapsulation the inner packet was found in.
type Tunnel uint8

const (
	TunnelNone Tunnel = iota
	TunnelGRE
	TunnelERSPAN
	TunnelVXLAN
	TunnelGeneve
	TunnelIPIP // IPv4/IPv6 in IPv4/IPv6
)

var tunnelNames = [...]string{"", "gre", "erspan", "vxlan", "geneve", "ipip"}

func (t Tunnel) String() string {
	if int(t) < len(tunnelNames) {
		return tunnelNames[t]
	}
	return "unknown"
}

// Quote is the IP packet quoted inside an ICMP error: its header and the
// first 8 bytes of its transport header, as far as they are present.
type Quote struct {
	Present   bool // the ICMP message is an error that carries a quote
	IPVersion uint8
	Src, Dst  netip.Addr
	Proto     uint8
	SrcPort   uint16
	DstPort   uint16
	HasPorts  bool   // the quoted transport header held the ports (TCP/UDP/SCTP)
	Seq       uint32 // quoted TCP sequence number (HasSeq)
	HasSeq    bool
	ICMPType  uint8 // quoted ICMP echo: type, id, seq (HasEcho)
	ICMPID    uint16
	ICMPSeq   uint16
	HasEcho   bool
	TTL       uint8  // quoted TTL / hop limit
	IPLen     uint16 // quoted IP total length
	FragOff   uint16
	MF, DF    bool
	Truncated bool // the quote ended before the fields above it could hold
}

// Malformed says why the decoder stopped. Packets with an error still travel
// (they are counted, and their link/IP fields may be partly filled).
type Malformed uint8

const (
	MalformedNone Malformed = iota
	MalformedTruncatedLink
	MalformedUnknownLink
	MalformedTruncatedIP
	MalformedBadIPHeader
	MalformedTruncatedL4
	MalformedBadL4Header
	MalformedTruncatedTunnel
	MalformedTooManyHeaders
	MalformedCount // number of reasons; keep last
)

var malformedNames = [...]string{
	"none", "truncated_link", "unknown_link", "truncated_ip", "bad_ip_header",
	"truncated_l4", "bad_l4_header", "truncated_tunnel", "too_many_headers",
}

func (m Malformed) String() string {
	if int(m) < len(malformedNames) {
		return malformedNames[m]
	}
	return "unknown"
}

// TCP flag bits, as in the TCP header's flags byte.
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPPsh = 0x08
	TCPAck = 0x10
	TCPUrg = 0x20
	TCPEce = 0x40
	TCPCwr = 0x80
)

// IP protocol numbers used across the stages.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
	ProtoSCTP   = 132
)
