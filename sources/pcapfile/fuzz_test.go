package pcapfile

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/pipeline/packet"
)

// FuzzReader feeds arbitrary bytes as a capture file (through stdin, so
// compressed inputs are fuzzed too). It must never panic, every error must
// be an *Error naming stdin, and packets must respect the pool's size.
func FuzzReader(f *testing.F) {
	pc, _ := genPcap(f, false, 3, base, time.Millisecond)
	pn, _ := genPcap(f, true, 2, base, time.Millisecond)
	ng := (&ngb{}).shb(false).idb(1, 0).idb(101, 64, w9()).epb(0, 1, frame(0, 60), 60).epb(1, 2, frame(1, 200), 200).spb(frame(2, 30), 30).pb(1, 3, frame(3, 10))
	ng.block(0x0badf00d, []byte("xyz"))
	ngbe := (&ngb{}).shb(true).idb(1, 0, (&ngb{be: true}).opt(9, []byte{0x80 | 30})).epb(0, 1<<40, frame(0, 40), 40)
	for _, s := range [][]byte{pc, pn, ng.buf, ngbe.buf, gz(f, pc), zst(f, ng.buf), pc[:len(pc)-7], ng.buf[:len(ng.buf)-3], nil, []byte("garbage")} {
		f.Add(s)
	}
	pool := packet.NewPool(4, 128) // small: exercises batch turnover and truncation
	src, err := New(Config{Files: []string{"-"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		src.cfg.Stdin = bytes.NewReader(data)
		n, err := runDiscard(src, pool)
		if err != nil {
			var fe *Error
			if !errors.As(err, &fe) || fe.File != "stdin" || fe.Offset < 0 {
				t.Fatalf("error %v (%T) is not an *Error about stdin", err, err)
			}
		}
		_ = n
	})
}
