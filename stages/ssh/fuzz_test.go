package ssh

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/reassembly"
)

// kexinitPacket builds an SSH binary packet holding a KEXINIT with the
// given name-lists (kex, hostkey, enc x2, mac x2, comp x2, lang x2).
func kexinitPacket(lists ...string) []byte {
	p := []byte{20}
	p = append(p, make([]byte, 16)...)
	for i := range 10 {
		s := ""
		if i < len(lists) {
			s = lists[i]
		}
		p = binary.BigEndian.AppendUint32(p, uint32(len(s)))
		p = append(p, s...)
	}
	p = append(p, 0, 0, 0, 0, 0) // first_kex_packet_follows, reserved
	pad := 8 - (len(p)+5)%8
	if pad < 4 {
		pad += 8
	}
	out := binary.BigEndian.AppendUint32(nil, uint32(1+len(p)+pad))
	out = append(out, byte(pad))
	out = append(out, p...)
	return append(out, make([]byte, pad)...)
}

var sampleKex = kexinitPacket("curve25519-sha256,ext-info-c", "ssh-ed25519", "aes128-ctr,aes256-gcm@openssh.com", "aes256-ctr", "hmac-sha2-256", "hmac-sha1", "none,zlib@openssh.com", "none")

func newTracker(budget int64) (*tracker, *Analyzer, *reassembly.Budget) {
	reg := stats.NewRegistry()
	b := reassembly.NewBudget(budget, reg)
	a := New(b, reg)
	return a.get(), a, b
}

// feed sends data on a direction in segments of n bytes, in order.
func feed(tr *tracker, dir int, seq uint32, data []byte, n int) {
	for len(data) > 0 && tr.d[dir].st != stDone {
		k := min(n, len(data))
		tr.segment(&tr.d[dir], dir == 0, seq, 0, data[:k])
		seq += uint32(k)
		data = data[k:]
	}
}

func TestKexInitSplit(t *testing.T) {
	stream := append([]byte("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"), sampleKex...)
	for _, n := range []int{1, 2, 7, 100, 2000} {
		tr, a, b := newTracker(1 << 20)
		feed(tr, 0, 1000, stream, n)
		h := tr.d[0].host
		if h.ProtoVersion != "2.0" || h.SoftwareVersion != "OpenSSH_9.2p1" ||
			h.HASSHString != "curve25519-sha256,ext-info-c;aes128-ctr,aes256-gcm@openssh.com;hmac-sha2-256;none,zlib@openssh.com" {
			t.Fatalf("segments of %d: %+v", n, h)
		}
		a.put(tr)
		if b.Used() != 0 {
			t.Fatalf("budget holds %d after release", b.Used())
		}
	}
	// Out of order: the KEXINIT's second half before its first.
	tr, _, _ := newTracker(1 << 20)
	banner := []byte("SSH-2.0-x\r\n")
	feed(tr, 1, 5000, banner, 100)
	mid := len(sampleKex) / 2
	tr.segment(&tr.d[1], false, 5000+uint32(len(banner)+mid), 0, sampleKex[mid:])
	tr.segment(&tr.d[1], false, 5000+uint32(len(banner)), 0, sampleKex[:mid])
	if h := tr.d[1].host; h.HASSHString != "curve25519-sha256,ext-info-c;aes256-ctr;hmac-sha1;none" {
		t.Fatalf("out of order: %+v", h)
	}
}

// TestCaps: an endless banner line and a KEXINIT whose length is larger
// than the buffer end the direction with at most MaxBuffer held, counted;
// the budget gets everything back.
func TestCaps(t *testing.T) {
	for name, stream := range map[string][]byte{
		"endless line":  append([]byte("SSH-2.0-"), bytes.Repeat([]byte("A"), 1<<20)...),
		"huge kexinit":  append([]byte("SSH-2.0-x\r\n\x00\x00\x80\x00\x04\x14"), bytes.Repeat([]byte("B"), 1<<20)...),
		"many lines":    bytes.Repeat([]byte("hello\r\n"), 1000),
		"large kexinit": append([]byte("SSH-2.0-x\r\n"), kexinitPacket(string(bytes.Repeat([]byte("k,"), 10000)))...),
	} {
		tr, a, b := newTracker(1 << 20)
		peak := int64(0)
		seq := uint32(1)
		for data := stream; len(data) > 0 && tr.d[1].st != stDone; {
			k := min(1400, len(data))
			tr.segment(&tr.d[1], false, seq, 0, data[:k])
			seq += uint32(k)
			data = data[k:]
			peak = max(peak, b.Used(), int64(cap(tr.d[1].buf)))
		}
		if tr.d[1].st != stDone {
			t.Errorf("%s: direction still open", name)
		}
		if peak > MaxBuffer {
			t.Errorf("%s: %d bytes held, cap %d", name, peak, MaxBuffer)
		}
		if name != "many lines" {
			if v := a.truncated.Load(); v != 1 {
				t.Errorf("%s: truncated counted %v, want 1", name, v)
			}
		}
		a.put(tr)
		if b.Used() != 0 {
			t.Errorf("%s: budget holds %d after release", name, b.Used())
		}
	}
}

// TestBudgetGivesUp: with a budget smaller than two buffers, the older
// direction is given up (counted) and the budget ends at zero.
func TestBudgetGivesUp(t *testing.T) {
	reg := stats.NewRegistry()
	b := reassembly.NewBudget(MaxBuffer, reg)
	a := New(b, reg)
	t1, t2 := a.get(), a.get()
	half := kexinitPacket(string(bytes.Repeat([]byte("k,"), 5000)))
	s := append([]byte("SSH-2.0-x\r\n"), half[:len(half)-10]...)
	feed(t1, 0, 1, s, 1000)
	feed(t2, 0, 1, s, 1000)
	if !t1.d[0].gaveUp || t1.d[0].st != stDone {
		t.Errorf("older direction not given up: %+v", t1.d[0].st)
	}
	if b.Used() > MaxBuffer {
		t.Errorf("budget %d over its limit", b.Used())
	}
	a.put(t1)
	a.put(t2)
	if b.Used() != 0 {
		t.Errorf("budget holds %d", b.Used())
	}
}

func FuzzTracker(f *testing.F) {
	f.Add(append([]byte("SSH-2.0-OpenSSH_9.2p1\r\n"), sampleKex...), uint8(7), uint8(3))
	f.Add([]byte("SSH-1.99-x\r\n\x00\x00\x00\x0c\x04\x14abcdefgh"), uint8(1), uint8(0))
	f.Add([]byte("line\r\nSSH-2.0-y\n"), uint8(2), uint8(9))
	f.Fuzz(func(t *testing.T, data []byte, step, skip uint8) {
		tr, a, b := newTracker(4 << 10) // smaller than a buffer: exercises giving up
		n := int(step)%64 + 1
		seq := uint32(0xfffffff0) // wraps
		for i := 0; len(data) > 0; i++ {
			k := min(n, len(data))
			dir := i & 1
			s := seq
			if skip != 0 && i%int(skip) == 0 {
				s += uint32(k) // out of order
			}
			tr.segment(&tr.d[dir], dir == 0, s, 0, data[:k])
			seq += uint32(k)
			data = data[k:]
		}
		for i := range tr.d {
			if len(tr.d[i].buf) > MaxBuffer || len(tr.d[i].pend) > maxPending {
				t.Fatalf("over the caps: %d bytes, %d pending", len(tr.d[i].buf), len(tr.d[i].pend))
			}
		}
		a.put(tr)
		if b.Used() != 0 {
			t.Fatalf("budget holds %d after release", b.Used())
		}
	})
}

func FuzzParse(f *testing.F) {
	f.Add(sampleKex[5:])
	f.Add([]byte("SSH-2.0-OpenSSH_9.2p1 Debian"))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseBanner(b)
		if k, ok := parseKexInit(b); ok {
			k.hassh(true)
			k.hassh(false)
		}
	})
}

// TestSegmentAllocs: reading a KEXINIT split over segments allocates only the
// event's strings, nothing per segment once the buffer has grown.
func TestSegmentAllocs(t *testing.T) {
	stream := append([]byte("SSH-2.0-x\r\n"), sampleKex...)
	n := testing.AllocsPerRun(100, func() {
		tr, a, _ := newTracker(1 << 20)
		feed(tr, 0, 1, stream[:len(stream)-1], 64)
		a.put(tr)
	})
	// newTracker's budget, registry and analyzer, the banner's two
	// strings and the buffer: a fixed count, whatever the segment count.
	m := testing.AllocsPerRun(100, func() {
		tr, a, _ := newTracker(1 << 20)
		feed(tr, 0, 1, stream[:len(stream)-1], 8)
		a.put(tr)
	})
	if n != m {
		t.Fatalf("%v allocations with 64-byte segments, %v with 8-byte ones: some are per segment", n, m)
	}
}
