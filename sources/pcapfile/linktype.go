package pcapfile

import (
	"log/slog"

	"github.com/pktpipe/pktpipe/pipeline/packet"
)

// decodable reports whether pktpipe's decoder (stages/decode) reads link
// type l. A capture of any other link type is read, but each of its
// packets ends as malformed=unknown_link and makes no event, which a run
// would otherwise finish without a word about: the source warns. The list
// must follow the link switch in stages/decode (which exports none).
func decodable(l packet.LinkType) bool {
	switch l {
	case packet.LinkNull, packet.LinkEthernet, packet.LinkRaw, packet.LinkLoop,
		packet.LinkSLL, packet.LinkSLL2, packet.LinkIPv4, packet.LinkIPv6:
		return true
	}
	return false
}

// maxLinkWarnings bounds the warnings for one file: a crafted pcapng can
// declare thousands of interfaces of as many link types.
const maxLinkWarnings = 4

// linkCheck warns once per file about each link type the decoder cannot
// read. Run calls see only when a packet's link type differs from the
// previous packet's, so the common case costs one comparison per packet.
type linkCheck struct {
	file   string
	last   packet.LinkType
	warned []packet.LinkType
}

func (c *linkCheck) reset(file string) {
	// decodable, so that the first packet of an undecodable type is seen
	// even when it is the file's first.
	c.file, c.last, c.warned = file, packet.LinkEthernet, c.warned[:0]
}

func (c *linkCheck) see(l packet.LinkType, log *slog.Logger) {
	c.last = l
	if decodable(l) || len(c.warned) >= maxLinkWarnings {
		return
	}
	for _, w := range c.warned {
		if w == l {
			return
		}
	}
	c.warned = append(c.warned, l)
	log.Warn("pcapfile: the capture's link type cannot be decoded: its packets are counted as malformed (unknown_link) and produce no events",
		"file", c.file, "link_type", int(l))
}
