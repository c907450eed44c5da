package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// The flows-1m measurement (issue 16's memory figure): a capture of 1M
// TCP SYNs, each from its own source address and port to one server, all
// within one second of packet time, so that every flow is live at once
// when the last SYN is read, as a hostile sender would make them. The
// pipeline runs on it like pipeline-discard; the figure is its peak RSS.
const (
	modeFlows  = "flows-1m"
	floodFlows = 1 << 20
)

// floodCapture writes (once, into the cache) the SYN capture and returns
// its path.
func floodCapture(cache string) (string, error) {
	path := filepath.Join(cache, fmt.Sprintf("synflood-n%d.pcap", floodFlows))
	if fi, err := os.Stat(path); err == nil && fi.Size() == int64(24+floodFlows*(16+54)) {
		return path, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(cache, ".flood-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriterSize(tmp, 1<<20)
	w := pcapgo.NewWriterNanos(bw)
	err = w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var frame [54]byte
	for i := 0; err == nil && i < floodFlows; i++ {
		synFrame(&frame, uint32(i))
		ci := gopacket.CaptureInfo{Timestamp: start.Add(time.Duration(i) * time.Microsecond / 2), CaptureLength: len(frame), Length: len(frame)}
		err = w.WritePacket(ci, frame[:])
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("writing the SYN capture: %w", err)
	}
	return path, os.Rename(tmp.Name(), path)
}

// synFrame fills f with SYN number i: source 10.64.0.0/10 + i, port
// 1024 + i%60000, to 10.0.0.1:443.
func synFrame(f *[54]byte, i uint32) {
	copy(f[0:6], []byte{0x02, 0, 0, 0, 0, 1})
	copy(f[6:12], []byte{0x02, 0, 0, 0, 0, 2})
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0], ip[1] = 0x45, 0
	binary.BigEndian.PutUint16(ip[2:], 40)
	binary.BigEndian.PutUint16(ip[4:], uint16(i))
	ip[6], ip[7], ip[8], ip[9] = 0x40, 0, 64, 6
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint32(ip[12:], 10<<24|64<<16+i)
	binary.BigEndian.PutUint32(ip[16:], 10<<24|1)
	var sum uint32
	for j := 0; j < 20; j += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[j:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	tcp := f[34:54]
	binary.BigEndian.PutUint16(tcp[0:], uint16(1024+i%60000))
	binary.BigEndian.PutUint16(tcp[2:], 443)
	binary.BigEndian.PutUint32(tcp[4:], i*2654435761)
	binary.BigEndian.PutUint32(tcp[8:], 0)
	tcp[12], tcp[13] = 5<<4, 0x02 // SYN
	binary.BigEndian.PutUint16(tcp[14:], 64240)
}
