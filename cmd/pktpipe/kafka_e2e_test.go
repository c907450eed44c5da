package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pktpipe/pktpipe/internal/kafkatest"
	"github.com/pktpipe/pktpipe/internal/testenv"
)

// TestKafkaSinkMatchesFileSink replays a synthetic capture into a real
// broker and into a file: kcat, an independent client, must read back
// exactly the events the file holds, and all events of one flow
// (community_id) must sit on one partition.
func TestKafkaSinkMatchesFileSink(t *testing.T) {
	testenv.NeedCommand(t, "kcat")
	addr := kafkatest.Addr()
	unlock, err := kafkatest.Lock(addr, 10*time.Minute)
	testenv.Need(t, err == nil, fmt.Sprint("the Kafka test lock: ", err))
	defer unlock()
	err = kafkatest.Up(addr)
	testenv.Need(t, err == nil, fmt.Sprint("a Kafka broker: ", err))

	path := synth(t, 60_000)
	dir := t.TempDir()
	fileOut := filepath.Join(dir, "events.json")
	if code, _, errs := runCmd(t, nil, "-r", path, "--workers", "2", "-o", "file:"+fileOut); code != exitOK {
		t.Fatalf("file run: exit %d\n%s", code, errs)
	}
	want, err := os.ReadFile(fileOut)
	if err != nil {
		t.Fatal(err)
	}
	n := strings.Count(string(want), "\n")

	topic := fmt.Sprintf("pktpipe-e2e-%d", time.Now().UnixNano())
	url := fmt.Sprintf("kafka://%s/%s?compression=zstd", addr, topic)
	code, _, errs := runCmd(t, nil, "-r", path, "--workers", "2", "-o", url,
		"--kafka-spill", filepath.Join(dir, "spill.jsonl"))
	if code != exitOK {
		t.Fatalf("kafka run: exit %d\n%s", code, errs)
	}
	out, err := exec.Command("kcat", "-C", "-b", addr, "-t", topic, "-o", "beginning",
		"-c", fmt.Sprint(n), "-e", "-q", "-f", "%p\t%k\t%s\n").Output()
	if err != nil {
		t.Fatalf("kcat: %v", err)
	}
	var got bytes.Buffer
	partOf := map[string]string{}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	for _, l := range lines {
		p, rest, _ := strings.Cut(l, "\t")
		key, val, _ := strings.Cut(rest, "\t")
		if key != "" {
			if q, ok := partOf[key]; ok && q != p {
				t.Fatalf("flow %s on partitions %s and %s", key, q, p)
			}
			partOf[key] = p
		}
		got.WriteString(val + "\n")
	}
	if len(lines) != n {
		t.Fatalf("kcat read %d events, the file sink wrote %d", len(lines), n)
	}
	if sortedLines(got.String()) != sortedLines(string(want)) {
		t.Fatal("the events in Kafka differ from the file sink's")
	}
	t.Logf("%d events, %d flows (keys), all on one partition each", n, len(partOf))
}
