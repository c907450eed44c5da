package pcapfile

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline/packet"
)

// TestOracleConformance reads every capture file of the shared conformance
// data with this package and with pcapgo's readers, and requires the same
// packets: bytes, timestamp, lengths, link type and interface.
func TestOracleConformance(t *testing.T) {
	root := testenv.Conformance(t)
	var files []string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && looksLikeCapture(p) {
			files = append(files, p)
		}
		return nil
	})
	if len(files) < 50 {
		t.Fatalf("only %d capture files under %s", len(files), root)
	}
	var compared, pkts int
	for _, f := range files {
		want, ok := oracle(t, f)
		if !ok {
			continue
		}
		got, err := readFiles(t, f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		samePktsName(t, f, got, want)
		compared++
		pkts += len(want)
	}
	t.Logf("compared %d files, %d packets", compared, pkts)
	if compared < 50 || pkts < 1000 {
		t.Fatalf("compared only %d files / %d packets", compared, pkts)
	}
}

func looksLikeCapture(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	var m [4]byte
	if _, err := io.ReadFull(f, m[:]); err != nil {
		return false
	}
	switch {
	case m[0] == 0x1f && m[1] == 0x8b, m == [4]byte{0x0a, 0x0d, 0x0d, 0x0a}:
		return true
	}
	switch m {
	case [4]byte{0xd4, 0xc3, 0xb2, 0xa1}, [4]byte{0xa1, 0xb2, 0xc3, 0xd4}, [4]byte{0x4d, 0x3c, 0xb2, 0xa1}, [4]byte{0xa1, 0xb2, 0x3c, 0x4d}:
		return true
	}
	return false
}

// oracle reads f with pcapgo. ok is false when pcapgo cannot read it whole.
func oracle(t *testing.T, f string) (want []pkt, ok bool) {
	raw, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	type rd interface {
		ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	}
	var (
		r    rd
		link func(gopacket.CaptureInfo) packet.LinkType
	)
	if pr, err := pcapgo.NewReader(bytes.NewReader(raw)); err == nil {
		r = pr
		lt := packet.LinkType(pr.LinkType())
		link = func(gopacket.CaptureInfo) packet.LinkType { return lt }
	} else if nr, err := pcapgo.NewNgReader(bytes.NewReader(raw), pcapgo.NgReaderOptions{WantMixedLinkType: true}); err == nil {
		r = nr
		link = func(ci gopacket.CaptureInfo) packet.LinkType {
			intf, err := nr.Interface(ci.InterfaceIndex)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			return packet.LinkType(intf.LinkType)
		}
	} else {
		t.Logf("skip %s: pcapgo cannot open it: %v", f, err)
		return nil, false
	}
	var prevTS int64
	for {
		d, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return want, true
		}
		if err != nil {
			t.Logf("skip %s: pcapgo fails after %d packets: %v", f, len(want), err)
			return nil, false
		}
		ts := ci.Timestamp.UnixNano()
		if ci.Timestamp.Equal(time.Time{}) {
			ts = prevTS // an SPB: pcapgo gives no time, we repeat the last
		}
		prevTS = ts
		want = append(want, pkt{bytes.Clone(d), uint32(ci.Length), ts, link(ci), int32(ci.InterfaceIndex)})
	}
}

func samePktsName(t *testing.T, name string, got, want []pkt) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %d packets, pcapgo %d", name, len(got), len(want))
		return
	}
	for i := range want {
		g, w := got[i], want[i]
		if !bytes.Equal(g.Data, w.Data) || g.OrigLen != w.OrigLen || g.TS != w.TS || g.Link != w.Link || g.If != w.If {
			t.Errorf("%s: packet %d:\n got    len=%d orig=%d ts=%d link=%d if=%d\n pcapgo len=%d orig=%d ts=%d link=%d if=%d",
				name, i, len(g.Data), g.OrigLen, g.TS, g.Link, g.If, len(w.Data), w.OrigLen, w.TS, w.Link, w.If)
			return
		}
	}
}
