package kafka_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/bench/gen"
	"github.com/pktpipe/pktpipe/internal/app"
	"github.com/pktpipe/pktpipe/internal/kafkatest"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	_ "github.com/pktpipe/pktpipe/sinks/all"
	_ "github.com/pktpipe/pktpipe/sources/all"
	_ "github.com/pktpipe/pktpipe/stages/all"
)

// BenchmarkPipelineToKafka runs the whole pipeline in-process on a bench
// capture without bulk transfers (many events per packet) into the local
// broker, as `pktpipe -r` does: the profile of test/kafka/throughput's
// pktpipe run.
//
//	go test -run '^$' -bench PipelineToKafka -benchtime 2x -cpuprofile cpu.prof ./sinks/kafka/
//
// PKTPIPE_KAFKA_BENCH_CAPTURE names another capture.
func BenchmarkPipelineToKafka(b *testing.B) {
	addr := kafkatest.Addr()
	if !kafkatest.Answers(addr) {
		b.Skip("no broker on " + addr)
	}
	file := os.Getenv("PKTPIPE_KAFKA_BENCH_CAPTURE")
	if file == "" {
		file = filepath.Join(b.TempDir(), "bench.pcap")
		f, err := os.Create(file)
		if err != nil {
			b.Fatal(err)
		}
		w := bufio.NewWriter(f)
		if _, err := gen.Write(w, gen.Config{Seed: 1, Packets: 300_000, BulkShare: -1}, gen.Format{}); err != nil {
			b.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	var events uint64
	for i := 0; b.Loop(); i++ {
		reg := stats.NewRegistry()
		o := app.Options{Files: []string{file}, Workers: 2, Stats: reg,
			Outputs: []string{fmt.Sprintf("kafka://%s/pktpipe-bench-%d-%d", addr, time.Now().UnixNano(), i)}}
		p, err := app.Build(o)
		if err != nil {
			b.Fatal(err)
		}
		res, err := p.Run(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		_ = res
		for _, s := range reg.Snapshot() {
			if s.Name == "pktpipe_kafka_delivered_total" {
				events += uint64(s.Value)
			}
		}
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}
