package kafka

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/segmentio/kafka-go/protocol"
)

// TestRecordBatchEncoding: the sink's record batches, with every codec,
// read back by kafka-go's own decoder (which checks the CRC-32C and
// decompresses with its codecs) with the same keys, values, headers,
// offsets and timestamp; wireSize is each record's exact size.
func TestRecordBatchEncoding(t *testing.T) {
	var recs []*record
	shared := newTypeHeaders([]kafkago.Header{{Key: "schema_version", Value: []byte("1")}, {Key: "event_type", Value: []byte("flow")}, {Key: "format", Value: []byte("json")}})
	for i := range 300 {
		r := &record{}
		r.value = bytes.Repeat([]byte(fmt.Sprintf(`{"n":%d}`, i)), 1+i%50)
		if i%7 != 0 { // a null key now and then
			r.setKey([]byte(fmt.Sprintf("1:key%d", i%13)))
		}
		if i%11 == 0 {
			r.setKey([]byte{}) // empty, not null
		}
		r.hdrs, r.id = shared, uint64(i)*0x9e3779b97f4a7c15
		if i%2 == 1 {
			r.body = recordBody(r, 0) // as assign leaves it
		}
		recs = append(recs, r)
	}
	var raw []byte
	for i, r := range recs {
		n := len(raw)
		raw = appendWireRecord(raw, r, int64(i))
		if i < 64 && len(raw)-n != wireSize(r) {
			t.Fatalf("record %d: %d bytes, wireSize %d", i, len(raw)-n, wireSize(r))
		}
		if len(raw)-n > wireSize(r)+2 {
			t.Fatalf("record %d: %d bytes, more than wireSize+2 (%d)", i, len(raw)-n, wireSize(r)+2)
		}
	}
	now := time.UnixMilli(1_700_000_000_123)
	bl := &builder{}
	for _, codec := range []compress.Compression{0, compress.Zstd, compress.Lz4, compress.Snappy, compress.Gzip} {
		t.Run(fmt.Sprint(codec), func(t *testing.T) {
			for round := range 2 { // the builder and the buffer reused
				data, err := bl.encode([]byte("junk")[:0], recs, codec, now)
				if err != nil {
					t.Fatal(err)
				}
				var rs protocol.RecordSet
				if _, err := rs.ReadFrom(bytes.NewReader(data)); err != nil {
					t.Fatalf("round %d: read back: %v", round, err)
				}
				if got := rs.Attributes.Compression(); got != codec {
					t.Fatalf("compression %v, want %v", got, codec)
				}
				i := 0
				for {
					r, err := rs.Records.ReadRecord()
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					want := recs[i]
					if r.Offset != int64(i) || !r.Time.Equal(now) {
						t.Fatalf("record %d: offset %d time %v", i, r.Offset, r.Time)
					}
					if got := readAll(t, r.Value); !bytes.Equal(got, want.value) {
						t.Fatalf("record %d: value %q", i, got)
					}
					if (r.Key == nil) != (want.msgKey() == nil) {
						t.Fatalf("record %d: key nil %v, want %v", i, r.Key == nil, want.msgKey() == nil)
					}
					if r.Key != nil {
						if got := readAll(t, r.Key); !bytes.Equal(got, want.msgKey()) {
							t.Fatalf("record %d: key %q", i, got)
						}
					}
					if len(r.Headers) != 4 {
						t.Fatalf("record %d: %d headers", i, len(r.Headers))
					}
					wantH := want.headers()
					for j, h := range r.Headers {
						if h.Key != wantH[j].Key || !bytes.Equal(h.Value, wantH[j].Value) {
							t.Fatalf("record %d header %d: %s=%q", i, j, h.Key, h.Value)
						}
					}
					i++
				}
				if i != len(recs) {
					t.Fatalf("%d records read, want %d", i, len(recs))
				}
			}
		})
	}
}

func readAll(t *testing.T, b protocol.Bytes) []byte {
	t.Helper()
	p, err := protocol.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
