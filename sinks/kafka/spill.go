package kafka

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
)

// spillFile receives what could not be delivered, one JSON object a line:
//
//	{"reason":"undelivered","topic":"pktpipe.flow","key":"1:...","event_id":"…","attempts":3,"value":{...}}
//
// value is the encoded event itself when the format is JSON, and
// value_base64 holds it otherwise. Replay, for example:
//
//	jq -r '[.key, (.value|tojson)] | @tsv' spill.jsonl | kcat -P -b HOST -t TOPIC -K '\t'
//
// The file is created on the first spill, appended to if it exists (never
// truncated), and synced on close. After a write error it takes nothing
// more: the sink counts what it could not take as lost.
type spillFile struct {
	path string
	json bool // values are JSON and can be embedded as they are

	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	n    int
	good int64 // the file's size after the last complete write
	line []byte
	err  error
}

func (s *spillFile) write(reason string, recs []*record) error {
	if len(recs) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if s.f == nil {
		f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			s.err = fmt.Errorf("kafka: spill file: %w", err)
			return s.err
		}
		if s.good, err = f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			s.err = fmt.Errorf("kafka: spill file: %w", err)
			return s.err
		}
		s.f, s.w = f, bufio.NewWriterSize(f, 256<<10)
	}
	for _, r := range recs {
		b := append(s.line[:0], `{"reason":`...)
		b = strconv.AppendQuote(b, reason) // reasons are plain ASCII
		b = append(b, `,"topic":`...)
		b = appendJSONString(b, r.topic)
		if key := r.msgKey(); key != nil {
			b = append(b, `,"key":`...)
			b = appendJSONString(b, string(key))
		}
		b = append(b, `,"event_id":"`...)
		b = appendEventID(b, r.id)
		b = append(b, '"')
		b = append(b, `,"attempts":`...)
		b = strconv.AppendInt(b, int64(r.attempts), 10)
		if s.json && json.Valid(r.value) {
			b = append(b, `,"value":`...)
			b = append(b, r.value...)
		} else {
			b = append(b, `,"value_base64":"`...)
			b = base64.StdEncoding.AppendEncode(b, r.value)
			b = append(b, '"')
		}
		b = append(b, "}\n"...)
		s.line = b
		if _, err := s.w.Write(b); err != nil {
			return s.fail(err)
		}
	}
	// Flushed per call: a spill is rare, and a crash should not lose it.
	if err := s.w.Flush(); err != nil {
		return s.fail(err)
	}
	s.n += len(recs)
	end, err := s.f.Seek(0, io.SeekCurrent)
	if err != nil {
		return s.fail(err)
	}
	s.good = end
	return nil
}

// fail stops the file after a write error, cutting it back to its last
// complete write so that it holds only whole lines (the caller counts the
// whole call as lost); s.mu is held.
func (s *spillFile) fail(err error) error {
	s.err = fmt.Errorf("kafka: spill file %s: %w", s.path, err)
	s.w.Reset(s.f) // drop what the full disk did not take
	_ = s.f.Truncate(s.good)
	return s.err
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}

// close syncs and closes the file; it returns how many records it holds.
func (s *spillFile) close() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return s.n, s.err
	}
	err := s.w.Flush()
	if e := s.f.Sync(); err == nil {
		err = e
	}
	if e := s.f.Close(); err == nil {
		err = e
	}
	s.f = nil
	if s.err == nil && err != nil {
		s.err = fmt.Errorf("kafka: spill file %s: %w", s.path, err)
	}
	return s.n, s.err
}

// failure is the error that stopped the file, if any.
func (s *spillFile) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
