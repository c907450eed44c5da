package kafka

import (
	"bufio"
	"os"
	"path/filepath"
	"testing"

	"github.com/pktpipe/pktpipe/pipeline/event"
	"github.com/pktpipe/pktpipe/sinks/encode"
)

const benchEvents = 200000

// BenchmarkProduce sends 200k flow events per op through the sink into the
// local broker (zstd, acks=all) and waits for every ack in Close.
//
//	go test -run '^$' -bench Produce -benchtime 3x ./sinks/kafka/
func BenchmarkProduce(b *testing.B) {
	for _, codec := range []string{"zstd", "lz4", "none"} {
		b.Run(codec, func(b *testing.B) {
			if brokerErr != nil {
				b.Skip(brokerErr)
			}
			evs := flows(1, benchEvents)
			bytes := encodedSize(evs)
			b.SetBytes(bytes)
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				topic := uniqueTopic("bench-" + codec)
				createTopic(b, topic, 3)
				b.StartTimer()
				s, err := New(Config{Brokers: []string{brokerAddr}, Topic: topic,
					Compression: codec, Log: testLogger(), SpillPath: filepath.Join(b.TempDir(), "spill.jsonl")})
				if err != nil {
					b.Fatal(err)
				}
				for i := 0; i < len(evs); i += event.MaxBatchEvents {
					if err := s.Write(evs[i:min(i+event.MaxBatchEvents, len(evs))]); err != nil {
						b.Fatal(err)
					}
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				if d := s.m.delivered.Load(); d != benchEvents {
					b.Fatalf("delivered %d", d)
				}
			}
			b.ReportMetric(float64(benchEvents*b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkFile writes the same events as JSON lines to a file (buffered,
// synced at the end): the baseline without a network.
func BenchmarkFile(b *testing.B) {
	evs := flows(1, benchEvents)
	b.SetBytes(encodedSize(evs))
	enc, _ := encode.New("json")
	b.ResetTimer()
	for range b.N {
		f, err := os.Create(filepath.Join(b.TempDir(), "events.jsonl"))
		if err != nil {
			b.Fatal(err)
		}
		w := bufio.NewWriterSize(f, 1<<20)
		var buf []byte
		for _, ev := range evs {
			buf = append(enc.Append(buf[:0], ev), '\n')
			w.Write(buf)
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	b.ReportMetric(float64(benchEvents*b.N)/b.Elapsed().Seconds(), "events/s")
}

func encodedSize(evs []event.Event) int64 {
	enc, _ := encode.New("json")
	var n int64
	var buf []byte
	for _, ev := range evs {
		buf = enc.Append(buf[:0], ev)
		n += int64(len(buf))
	}
	return n
}
