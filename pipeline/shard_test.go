package pipeline

import (
	"testing"

	"github.com/pktpipe/pktpipe/pipeline/packet"
)

func TestShardSet(t *testing.T) {
	for _, bad := range []string{"1", "a/2", "2/2", "-1/2", "0/0", "0/70000", "1/2/3"} {
		var s Shard
		if err := s.Set(bad); err == nil {
			t.Errorf("Set(%q) = %+v, want an error", bad, s)
		}
	}
	var s Shard
	if err := s.Set("3/5"); err != nil || s != (Shard{3, 5}) || s.String() != "3/5" {
		t.Fatalf("Set(3/5) = %+v, %v", s, err)
	}
}

// Every hash belongs to exactly one shard of N, shards are about even, and
// inside one shard the low bits that pick a worker are still spread.
func TestShardPartition(t *testing.T) {
	const flows = 60000
	for _, n := range []int{1, 2, 3, 5} {
		perShard := make([]int, n)
		perWorker := make([][2]int, n)
		for f := range flows {
			k := packet.FlowKey{SrcPort: uint16(f), DstPort: uint16(f >> 16), Proto: 6}
			h := k.Hash()
			owners := 0
			for i := range n {
				if (Shard{i, n}).Owns(h) {
					owners++
					perShard[i]++
					perWorker[i][h%2]++
				}
			}
			if owners != 1 {
				t.Fatalf("N=%d: flow %d has %d owners", n, f, owners)
			}
		}
		for i, c := range perShard {
			if c < flows/n*9/10 || c > flows/n*11/10 {
				t.Errorf("N=%d: shard %d has %d of %d flows", n, i, c, flows)
			}
			if w := perWorker[i]; w[0] < c*4/10 || w[1] < c*4/10 {
				t.Errorf("N=%d: shard %d splits %v between 2 workers", n, i, w)
			}
		}
	}
}
