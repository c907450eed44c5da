package pcapfile

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// ngFile writes a pcapng with one interface per name (pcapgo writes
// if_name) and one packet on each.
func ngFile(t *testing.T, names ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&buf, pcapgo.NgInterface{Name: names[0], LinkType: layers.LinkTypeEthernet}, pcapgo.NgWriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ids := []int{0}
	for _, n := range names[1:] {
		id, err := w.AddInterface(pcapgo.NgInterface{Name: n, LinkType: layers.LinkTypeEthernet})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for i, id := range ids {
		d := frame(i, 60)
		ci := gopacket.CaptureInfo{Timestamp: base.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(d), Length: len(d), InterfaceIndex: id}
		if err := w.WritePacket(ci, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Interfaces are numbered source-wide: a file that repeats an earlier
// file's interface (same id, same name) shares its number, one that does
// not gets a new one, so that a flow of the first file is never named
// after the second's interface; classic pcap has no name.
func TestInterfaceNames(t *testing.T) {
	dir := t.TempDir()
	classic, _ := genPcap(t, false, 1, base, time.Second)
	files := []struct {
		name string
		data []byte
	}{
		{"a.pcapng", ngFile(t, "eth0", "wlan0")},
		{"b.pcapng", ngFile(t, "eth1")},
		{"c.pcap", classic},
		{"d.pcapng", ngFile(t, "eth0", "wlan0")},
	}
	var paths []string
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	src, err := New(Config{Files: paths})
	if err != nil {
		t.Fatal(err)
	}
	got, err := drain(t, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		index int32
		name  string
	}{{0, "eth0"}, {1, "wlan0"}, {2, "eth1"}, {3, ""}, {0, "eth0"}, {1, "wlan0"}}
	if len(got) != len(want) {
		t.Fatalf("%d packets, want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].If != w.index || src.IfName(got[i].If) != w.name {
			t.Errorf("packet %d: interface %d %q, want %d %q", i, got[i].If, src.IfName(got[i].If), w.index, w.name)
		}
	}
	if n := src.IfName(-1) + src.IfName(99); n != "" {
		t.Errorf("unknown interfaces named %q", n)
	}
}
