package bpffilter

import (
	"time"

	"github.com/gopacket/gopacket"
)

func gopacketCI(n int) gopacket.CaptureInfo {
	return gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, 0), CaptureLength: n, Length: n}
}
