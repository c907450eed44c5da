// Package memsink is a pipeline.Sink that keeps every event, encoded, in
// memory, so tests of other stages can run the real engine and inspect
// what reached the sink.
//
// Events are encoded when Write is called, because the engine reuses the
// events and their slice after Write returns. Decoded views (Events,
// ByType) use json.Number for numbers, whichever the format, so a 64-bit
// flow_id survives exactly: compare with json.Number("443") or use Int.
package memsink

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/sinks/encode"
)

// Sink records encoded events. Its methods may be called concurrently
// (the engine writes from one goroutine while a test may look).
type Sink struct {
	mu      sync.Mutex
	enc     encode.Encoder
	lines   [][]byte
	flushes int
	closed  bool
	// FailWrite, if set, is returned by Write instead of recording (to
	// test how a stage or the engine handles a failing sink).
	FailWrite error
}

// New returns a sink that encodes with enc (nil: JSON).
func New(enc encode.Encoder) *Sink {
	if enc == nil {
		enc = encode.NewJSON()
	}
	return &Sink{enc: enc}
}

func (s *Sink) Write(events []event.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.FailWrite != nil {
		return s.FailWrite
	}
	if s.closed {
		return fmt.Errorf("memsink: Write after Close")
	}
	for _, ev := range events {
		s.lines = append(s.lines, s.enc.Append(nil, ev))
	}
	return nil
}

func (s *Sink) Flush() error {
	s.mu.Lock()
	s.flushes++
	s.mu.Unlock()
	return nil
}

func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("memsink: closed twice")
	}
	s.closed = true
	return nil
}

// Lines returns each event's encoding (JSON: an object without newline;
// msgpack: a map), in the order written.
func (s *Sink) Lines() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.lines...)
}

// Len is the number of events written.
func (s *Sink) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.lines)
}

// Closed reports whether Close was called; Flushes how often Flush was.
func (s *Sink) Closed() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.closed }
func (s *Sink) Flushes() int { s.mu.Lock(); defer s.mu.Unlock(); return s.flushes }

// Events decodes every event into a generic map (numbers as json.Number).
// It panics if an encoding does not decode, which would be an encoder bug.
func (s *Sink) Events() []map[string]any {
	lines := s.Lines()
	out := make([]map[string]any, len(lines))
	for i, l := range lines {
		m, err := decode(s.enc.Format(), l)
		if err != nil {
			panic(fmt.Sprintf("memsink: event %d does not decode: %v", i, err))
		}
		out[i] = m
	}
	return out
}

// ByType returns the decoded events whose event_type is t.
func (s *Sink) ByType(t event.Type) []map[string]any {
	var out []map[string]any
	for _, m := range s.Events() {
		if m["event_type"] == string(t) {
			out = append(out, m)
		}
	}
	return out
}

// Int returns a decoded json.Number as an int64 (0 and false otherwise),
// for tests: memsink.Int(ev["src_port"]).
func Int(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := n.Int64()
	return i, err == nil
}

func decode(format string, b []byte) (map[string]any, error) {
	var v any
	if format == encode.FormatMsgpack {
		var err error
		if v, err = msgpack.NewDecoder(bytes.NewReader(b)).DecodeInterface(); err != nil {
			return nil, err
		}
		v = numbers(v)
	} else {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			return nil, err
		}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("top level is %T, not an object", v)
	}
	return m, nil
}

// numbers turns msgpack's integer and float types into json.Number, as the
// JSON decoding has them.
func numbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
	case int8, int16, int32, int64:
		return json.Number(fmt.Sprint(x))
	case uint8, uint16, uint32, uint64:
		return json.Number(fmt.Sprint(x))
	case float32:
		return json.Number(strconv.FormatFloat(float64(x), 'g', -1, 32))
	case float64:
		return json.Number(strconv.FormatFloat(x, 'g', -1, 64))
	}
	return v
}
