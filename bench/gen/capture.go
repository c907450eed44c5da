package gen

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Container is the capture file format.
type Container uint8

const (
	PCAP   Container = iota // pcap with the nanosecond magic (0xa1b23c4d)
	PCAPUs                  // pcap with the classic microsecond magic (timestamps truncated)
	PCAPNG                  // pcapng, one Ethernet interface with if_tsresol=9, EPBs
)

// Compression wraps the capture in a compressed stream.
type Compression uint8

const (
	None Compression = iota
	Gzip
	Zstd
)

// Format is how the capture is written.
type Format struct {
	Container   Container
	Compression Compression
}

// ParseContainer maps "pcap", "pcap-us" and "pcapng" to a Container.
func ParseContainer(s string) (Container, error) {
	switch s {
	case "pcap", "":
		return PCAP, nil
	case "pcap-us":
		return PCAPUs, nil
	case "pcapng":
		return PCAPNG, nil
	}
	return 0, fmt.Errorf("gen: unknown capture format %q (pcap, pcap-us, pcapng)", s)
}

const snaplen = 262144

// capWriter writes capture records to a buffered (and maybe compressed)
// stream.
type capWriter struct {
	bw    *bufio.Writer
	c     Container
	close func() error // closes the compressor, if any
	hdr   [28]byte
}

func newCapWriter(w io.Writer, f Format) (*capWriter, error) {
	cw := &capWriter{c: f.Container, close: func() error { return nil }}
	switch f.Compression {
	case None:
	case Gzip:
		// The gzip header carries no name and a zero mtime, so the output
		// depends only on the input.
		zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
		if err != nil {
			return nil, err
		}
		w, cw.close = zw, zw.Close
	case Zstd:
		// One encoder goroutine: output must not depend on scheduling.
		zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		w, cw.close = zw, zw.Close
	default:
		return nil, fmt.Errorf("gen: unknown compression %d", f.Compression)
	}
	cw.bw = bufio.NewWriterSize(w, 1<<20)
	return cw, cw.header()
}

func (cw *capWriter) header() error {
	le := binary.LittleEndian
	switch cw.c {
	case PCAP, PCAPUs:
		var h [24]byte
		magic := uint32(0xa1b23c4d)
		if cw.c == PCAPUs {
			magic = 0xa1b2c3d4
		}
		le.PutUint32(h[0:], magic)
		le.PutUint16(h[4:], 2)
		le.PutUint16(h[6:], 4)
		le.PutUint32(h[16:], snaplen)
		le.PutUint32(h[20:], 1) // LINKTYPE_ETHERNET
		_, err := cw.bw.Write(h[:])
		return err
	case PCAPNG:
		// Section Header Block, no options, section length unknown (-1).
		var shb [28]byte
		le.PutUint32(shb[0:], 0x0a0d0d0a)
		le.PutUint32(shb[4:], 28)
		le.PutUint32(shb[8:], 0x1a2b3c4d)
		le.PutUint16(shb[12:], 1)
		le.PutUint16(shb[14:], 0)
		le.PutUint64(shb[16:], ^uint64(0))
		le.PutUint32(shb[24:], 28)
		// Interface Description Block: Ethernet, if_tsresol=9 (ns).
		var idb [32]byte
		le.PutUint32(idb[0:], 1)
		le.PutUint32(idb[4:], 32)
		le.PutUint16(idb[8:], 1)
		le.PutUint32(idb[12:], snaplen)
		le.PutUint16(idb[16:], 9) // if_tsresol
		le.PutUint16(idb[18:], 1)
		idb[20] = 9
		// idb[24:28] is opt_endofopt
		le.PutUint32(idb[28:], 32)
		if _, err := cw.bw.Write(shb[:]); err != nil {
			return err
		}
		_, err := cw.bw.Write(idb[:])
		return err
	}
	return fmt.Errorf("gen: unknown container %d", cw.c)
}

var pad [4]byte

// record writes one packet captured at ts (ns since the epoch).
func (cw *capWriter) record(ts int64, data []byte) error {
	le := binary.LittleEndian
	n := uint32(len(data))
	switch cw.c {
	case PCAP, PCAPUs:
		h := cw.hdr[:16]
		le.PutUint32(h[0:], uint32(ts/1e9))
		if cw.c == PCAP {
			le.PutUint32(h[4:], uint32(ts%1e9))
		} else {
			le.PutUint32(h[4:], uint32(ts%1e9/1e3))
		}
		le.PutUint32(h[8:], n)
		le.PutUint32(h[12:], n)
		cw.bw.Write(h)
		_, err := cw.bw.Write(data)
		return err
	default:
		padN := (4 - n%4) % 4
		total := 28 + n + padN + 4
		h := cw.hdr[:28]
		le.PutUint32(h[0:], 6) // Enhanced Packet Block
		le.PutUint32(h[4:], total)
		le.PutUint32(h[8:], 0)
		le.PutUint32(h[12:], uint32(uint64(ts)>>32))
		le.PutUint32(h[16:], uint32(ts))
		le.PutUint32(h[20:], n)
		le.PutUint32(h[24:], n)
		cw.bw.Write(h)
		cw.bw.Write(data)
		cw.bw.Write(pad[:padN])
		var t [4]byte
		le.PutUint32(t[:], total)
		_, err := cw.bw.Write(t[:])
		return err
	}
}

func (cw *capWriter) finish() error {
	if err := cw.bw.Flush(); err != nil {
		return err
	}
	return cw.close()
}
