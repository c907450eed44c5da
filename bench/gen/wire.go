package gen

import (
	"encoding/binary"
	"net/netip"
)

// Headers are written by hand rather than with gopacket.SerializeLayers:
// the generator writes millions of frames, and building them in place in
// one reused buffer keeps it allocation-free and makes the byte layout
// (and therefore determinism) obvious.

const (
	etherIPv4 = 0x0800
	etherIPv6 = 0x86dd
	etherVLAN = 0x8100
	etherQinQ = 0x88a8

	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

// TCP flag bits.
const (
	fFIN = 0x01
	fSYN = 0x02
	fRST = 0x04
	fPSH = 0x08
	fACK = 0x10
)

// link is a frame's Ethernet header: MACs and up to two VLAN tags.
type link struct {
	dst, src [6]byte
	vlan     [2]uint16 // outer, inner; 0 = absent
}

// putLink writes the Ethernet header (with tags) for an IP packet of the
// given version and returns the bytes written.
func putLink(b []byte, l *link, v6 bool) int {
	copy(b[0:6], l.dst[:])
	copy(b[6:12], l.src[:])
	n := 12
	switch {
	case l.vlan[1] != 0: // QinQ: 802.1ad S-tag, then C-tag
		binary.BigEndian.PutUint16(b[n:], etherQinQ)
		binary.BigEndian.PutUint16(b[n+2:], l.vlan[0])
		binary.BigEndian.PutUint16(b[n+4:], etherVLAN)
		binary.BigEndian.PutUint16(b[n+6:], l.vlan[1])
		n += 8
	case l.vlan[0] != 0:
		binary.BigEndian.PutUint16(b[n:], etherVLAN)
		binary.BigEndian.PutUint16(b[n+2:], l.vlan[0])
		n += 4
	}
	if v6 {
		binary.BigEndian.PutUint16(b[n:], etherIPv6)
	} else {
		binary.BigEndian.PutUint16(b[n:], etherIPv4)
	}
	return n + 2
}

// ipHdr describes the network header of one packet.
type ipHdr struct {
	src, dst  netip.Addr
	proto     uint8
	ttl       uint8
	id        uint16 // IPv4 identification
	df        bool
	flowLabel uint32 // IPv6
}

func ipHdrLen(v6 bool) int {
	if v6 {
		return 40
	}
	return 20
}

// putIP writes the IP header for a payload of plen bytes (the IPv4
// checksum included) and returns the header length.
func putIP(b []byte, h *ipHdr, plen int) int {
	if h.src.Is6() {
		binary.BigEndian.PutUint32(b[0:], 6<<28|h.flowLabel&0xfffff)
		binary.BigEndian.PutUint16(b[4:], uint16(plen))
		b[6] = h.proto
		b[7] = h.ttl
		s, d := h.src.As16(), h.dst.As16()
		copy(b[8:24], s[:])
		copy(b[24:40], d[:])
		return 40
	}
	b[0] = 0x45
	b[1] = 0
	binary.BigEndian.PutUint16(b[2:], uint16(20+plen))
	binary.BigEndian.PutUint16(b[4:], h.id)
	if h.df {
		binary.BigEndian.PutUint16(b[6:], 0x4000)
	} else {
		binary.BigEndian.PutUint16(b[6:], 0)
	}
	b[8] = h.ttl
	b[9] = h.proto
	b[10], b[11] = 0, 0
	s, d := h.src.As4(), h.dst.As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	binary.BigEndian.PutUint16(b[10:], fold(sum(b[:20], 0)))
	return 20
}

// sum adds b to a one's-complement running sum (RFC 1071), unfolded.
func sum(b []byte, acc uint64) uint64 {
	for len(b) >= 8 {
		v := binary.BigEndian.Uint64(b)
		acc += v >> 32
		acc += v & 0xffffffff
		b = b[8:]
	}
	for len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	return acc
}

// fold reduces a running sum to the 16-bit checksum field value.
func fold(acc uint64) uint16 {
	for acc>>16 != 0 {
		acc = acc&0xffff + acc>>16
	}
	return ^uint16(acc)
}

// pseudo is the TCP/UDP/ICMPv6 pseudo-header sum.
func pseudo(h *ipHdr, l4len int) uint64 {
	var acc uint64
	if h.src.Is6() {
		s, d := h.src.As16(), h.dst.As16()
		acc = sum(s[:], acc)
		acc = sum(d[:], acc)
	} else {
		s, d := h.src.As4(), h.dst.As4()
		acc = sum(s[:], acc)
		acc = sum(d[:], acc)
	}
	return acc + uint64(h.proto) + uint64(l4len)
}

// tcpHdr is a TCP header's fields; opts is written as is (a multiple of 4).
type tcpHdr struct {
	sport, dport uint16
	seq, ack     uint32
	flags        uint8
	win          uint16
	opts         []byte
}

// putTCP writes the TCP header before payload (already at b[hl:]) and the
// checksum over both.
func putTCP(b []byte, ip *ipHdr, h *tcpHdr, plen int) int {
	hl := 20 + len(h.opts)
	binary.BigEndian.PutUint16(b[0:], h.sport)
	binary.BigEndian.PutUint16(b[2:], h.dport)
	binary.BigEndian.PutUint32(b[4:], h.seq)
	binary.BigEndian.PutUint32(b[8:], h.ack)
	b[12] = byte(hl/4) << 4
	b[13] = h.flags
	binary.BigEndian.PutUint16(b[14:], h.win)
	b[16], b[17], b[18], b[19] = 0, 0, 0, 0
	copy(b[20:], h.opts)
	binary.BigEndian.PutUint16(b[16:], fold(sum(b[:hl+plen], pseudo(ip, hl+plen))))
	return hl
}

// putUDP writes the UDP header before payload (at b[8:]) and its checksum.
func putUDP(b []byte, ip *ipHdr, sport, dport uint16, plen int) {
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+plen))
	b[6], b[7] = 0, 0
	c := fold(sum(b[:8+plen], pseudo(ip, 8+plen)))
	if c == 0 {
		c = 0xffff // 0 means "no checksum" in UDP
	}
	binary.BigEndian.PutUint16(b[6:], c)
}

// putICMP writes an ICMP or ICMPv6 header (type, code, 4 "rest" bytes)
// before the body at b[8:] and its checksum.
func putICMP(b []byte, ip *ipHdr, typ, code uint8, rest uint32, blen int) {
	b[0], b[1] = typ, code
	b[2], b[3] = 0, 0
	binary.BigEndian.PutUint32(b[4:], rest)
	var acc uint64
	if ip.src.Is6() {
		acc = pseudo(ip, 8+blen)
	}
	binary.BigEndian.PutUint16(b[2:], fold(sum(b[:8+blen], acc)))
}

// synOpts are a SYN's options: MSS, SACK permitted, window scale 7.
func synOpts(mss uint16) []byte {
	return []byte{2, 4, byte(mss >> 8), byte(mss), 1, 3, 3, 7, 1, 1, 4, 2}
}
