package pcapng

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/pktpipe/pktpipe/internal/syncfile"
	"github.com/pktpipe/pktpipe/pipeline/packet"
)

func TestRoundTripWithGopacket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.pcapng")
	w, err := Create(path, Config{Snaplen: 1500, IfName: func(i int32) string { return map[int32]string{3: "veth0"}[i] }})
	if err != nil {
		t.Fatal(err)
	}
	a, b := w.NewTap(), w.NewTap()
	in := []packet.Packet{
		{Data: []byte{1, 2, 3, 4, 5}, OrigLen: 60, Timestamp: 1_700_000_000_123_456_789, LinkType: packet.LinkEthernet, IfIndex: 3, Direction: packet.DirEgress},
		{Data: []byte{0x45, 0, 0, 20}, OrigLen: 4, Timestamp: 1_700_000_001_000_000_001, LinkType: packet.LinkRaw, IfIndex: -1},
		{Data: bytes.Repeat([]byte{7}, 1501), OrigLen: 1501, Timestamp: 1_700_000_002_000_000_000, LinkType: packet.LinkEthernet, IfIndex: 3, Direction: packet.DirIngress},
	}
	a.Write(&in[0])
	b.Write(&in[1])
	a.Write(&in[2])
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r := openNg(t, path)
	var got []packet.Packet
	var links []layers.LinkType
	var names []string
	for {
		d, ci, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ifc, _ := r.Interface(ci.InterfaceIndex)
		links = append(links, ifc.LinkType)
		names = append(names, ifc.Name)
		got = append(got, packet.Packet{Data: d, OrigLen: uint32(ci.Length), Timestamp: ci.Timestamp.UnixNano()})
	}
	// Close merges the taps' buffers by timestamp.
	order := []int{0, 1, 2}
	if len(got) != 3 {
		t.Fatalf("read %d packets", len(got))
	}
	for i, j := range order {
		want := in[j].Data[:min(len(in[j].Data), 1500)] // cut to the snaplen
		if !bytes.Equal(got[i].Data, want) || got[i].OrigLen != in[j].OrigLen || got[i].Timestamp != in[j].Timestamp {
			t.Errorf("packet %d: got %d bytes orig %d ts %d, want %d/%d/%d", i, len(got[i].Data), got[i].OrigLen, got[i].Timestamp, len(want), in[j].OrigLen, in[j].Timestamp)
		}
		if links[i] != layers.LinkType(in[j].LinkType) {
			t.Errorf("packet %d: link type %v", i, links[i])
		}
	}
	if names[0] != "veth0" || names[1] != "" || names[2] != "veth0" {
		t.Errorf("interface names %q", names)
	}
}

func TestTapDoesNotAllocate(t *testing.T) {
	w, err := Create(filepath.Join(t.TempDir(), "x.pcapng"), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	tap := w.NewTap()
	p := packet.Packet{Data: make([]byte, 1000), LinkType: packet.LinkEthernet, IfIndex: 2, Direction: packet.DirIngress}
	tap.Write(&p)
	if n := testing.AllocsPerRun(2000, func() { tap.Write(&p) }); n != 0 {
		t.Fatalf("%v allocations per packet", n)
	}
}

// TestFileSyncedAsItGrows: the -w file is synced in the background while
// it grows (package syncfile), so that Close's fsync waits only for the
// tail; the file still reads back whole.
func TestFileSyncedAsItGrows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.pcapng")
	w, err := Create(path, Config{Snaplen: 1500})
	if err != nil {
		t.Fatal(err)
	}
	tap := w.NewTap()
	p := packet.Packet{Data: bytes.Repeat([]byte{7}, 1400), OrigLen: 1400, LinkType: packet.LinkEthernet, IfIndex: -1}
	n := 0
	for w.out.Size() < syncfile.Every+1<<20 {
		p.Timestamp = int64(n) * 1000
		tap.Write(&p)
		n++
	}
	deadline := time.Now().Add(30 * time.Second)
	for w.out.Syncs() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // the sync runs on its own goroutine
	}
	if w.out.Syncs() == 0 {
		t.Errorf("no background sync after %d bytes", w.out.Size())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r := openNg(t, path)
	got := 0
	for {
		_, _, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got++
	}
	if got != n {
		t.Errorf("read back %d packets, wrote %d", got, n)
	}
}

// openNg opens a pcapng file with gopacket's reader, closed at the test's end.
func openNg(t *testing.T, path string) *pcapgo.NgReader {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	r, err := pcapgo.NewNgReader(f, pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		t.Fatal(err)
	}
	return r
}
