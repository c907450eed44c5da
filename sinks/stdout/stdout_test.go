package stdout

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline"
	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/sinks/encode"
	"github.com/vmihailenco/msgpack/v5"
)

var _ pipeline.Sink = (*Sink)(nil)

func flows(n int) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = &event.Flow{
			Header: event.Header{
				Timestamp: int64(i) * 1e9, FlowID: uint64(i + 1), IfIndex: -1,
				SrcIP: netip.MustParseAddr("10.0.0.1"), DestIP: netip.MustParseAddr("10.0.0.2"),
				SrcPort: uint16(i), DestPort: 53, Proto: 17,
			},
			State: "new", Reason: "timeout",
		}
	}
	return evs
}

func mustEnc(t testing.TB, f string) encode.Encoder {
	enc, err := encode.New(f)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

func TestJSONLines(t *testing.T) {
	var out bytes.Buffer
	s := New(&out, mustEnc(t, "json"))
	if err := s.Write(flows(3)); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Fatalf("wrote %d bytes before Flush; output should be buffered", out.Len())
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(flows(2)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
		t.Fatal("output does not end with a newline")
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines, want 5:\n%s", len(lines), out.String())
	}
	for i, l := range lines {
		var m struct {
			FlowID uint64 `json:"flow_id"`
			Type   string `json:"event_type"`
		}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", i, err, l)
		}
		if want := uint64(i%3 + 1); m.FlowID != want || m.Type != "flow" {
			t.Errorf("line %d: flow_id %d type %q, want %d flow", i, m.FlowID, m.Type, want)
		}
	}
}

func TestMsgpackStream(t *testing.T) {
	var out bytes.Buffer
	s := New(&out, mustEnc(t, "msgpack"))
	if err := s.Write(flows(4)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	d := msgpack.NewDecoder(&out)
	for i := range 4 {
		m, err := d.DecodeMap()
		if err != nil {
			t.Fatalf("map %d: %v", i, err)
		}
		if m["event_type"] != "flow" {
			t.Errorf("map %d: %v", i, m)
		}
	}
	if _, err := d.DecodeInterface(); err != io.EOF {
		t.Errorf("after 4 maps: %v, want EOF (no separators or trailing data)", err)
	}
}

type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }

func TestWriteErrorIsSticky(t *testing.T) {
	boom := errors.New("device gone")
	s := New(failWriter{boom}, mustEnc(t, "json"))
	_ = s.Write(flows(1))
	err := s.Flush()
	if !errors.Is(err, boom) {
		t.Fatalf("Flush = %v, want it to wrap %v", err, boom)
	}
	if err2 := s.Write(flows(1)); !errors.Is(err2, boom) {
		t.Errorf("Write after failure = %v, want the same error", err2)
	}
	if err3 := s.Close(); !errors.Is(err3, boom) {
		t.Errorf("Close after failure = %v, want the same error", err3)
	}
}

func TestBrokenPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r.Close()
	s := New(w, mustEnc(t, "json"))
	_ = s.Write(flows(1))
	err = s.Close()
	if !errors.Is(err, ErrBrokenPipe) || !errors.Is(err, syscall.EPIPE) || !errors.Is(err, pipeline.ErrReaderGone) {
		t.Fatalf("Close = %v, want ErrBrokenPipe (pipeline.ErrReaderGone) wrapping EPIPE", err)
	}
	var lost *pipeline.LostError
	if !errors.As(err, &lost) || lost.Accepted != 1 {
		t.Errorf("Close = %#v, want a LostError for the 1 buffered event", err)
	}
}

// TestStdoutBrokenPipe runs this test binary as a child whose stdout is a
// pipe nobody reads: without the sink catching SIGPIPE the runtime would
// kill it; with it, the child sees ErrBrokenPipe and exits 3.
func TestStdoutBrokenPipe(t *testing.T) {
	if os.Getenv("PKTPIPE_STDOUT_CHILD") == "1" {
		s := New(os.Stdout, encode.NewJSON())
		_ = s.Write(flows(10))
		err := s.Close()
		fmt.Fprintln(os.Stderr, err)
		if errors.Is(err, ErrBrokenPipe) && errors.Is(err, pipeline.ErrReaderGone) {
			os.Exit(3)
		}
		os.Exit(4)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestStdoutBrokenPipe$")
	cmd.Env = append(os.Environ(), "PKTPIPE_STDOUT_CHILD=1")
	cmd.Stdout = w
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	w.Close()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("child: %v (want exit status 3); stderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "stdout: broken pipe") {
		t.Errorf("child's error does not name stdout and the broken pipe: %s", stderr.String())
	}
}

func TestLargeEventCrossesBuffer(t *testing.T) {
	var out bytes.Buffer
	s := New(&out, mustEnc(t, "json"))
	big := flows(1)[0].(*event.Flow)
	big.CommunityID = strings.Repeat("x", 3*BufferSize)
	if err := s.Write([]event.Event{big, big}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&out)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		if !json.Valid(sc.Bytes()) {
			t.Fatalf("line %d is not JSON", n)
		}
		n++
	}
	if n != 2 {
		t.Errorf("%d lines, want 2", n)
	}
}

func TestWriteAllocs(t *testing.T) {
	for _, f := range []string{"json", "msgpack"} {
		s := New(io.Discard, mustEnc(t, f))
		evs := flows(256)
		_ = s.Write(evs)
		if a := testing.AllocsPerRun(100, func() { _ = s.Write(evs) }); a != 0 {
			t.Errorf("%s: %v allocations per batch of 256, want 0", f, a)
		}
	}
}

func BenchmarkWrite(b *testing.B) {
	s := New(io.Discard, encode.NewJSON())
	evs := flows(256)
	b.ReportAllocs()
	for b.Loop() {
		_ = s.Write(evs)
	}
}
