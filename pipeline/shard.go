package pipeline

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// Shard selects the flows one process of a scale-out keeps: shard Index of
// Count (0-based, as a Kubernetes Indexed Job's JOB_COMPLETION_INDEX). A
// flow belongs to the shard its symmetric flow hash falls in, so N
// processes reading the same input each keep whole flows and between them
// keep every flow once. The zero value (Count 0 or 1) keeps everything.
//
// Shard is a flag.Value: "I/N".
type Shard struct {
	Index, Count int
}

// MaxShards bounds N (a typo such as 1/1000000 would otherwise pass).
const MaxShards = 1 << 16

// Owns reports whether the flow whose FlowKey.Hash is h belongs to s. It
// takes the hash's high bits (a multiply-shift onto [0, Count)), so the
// low bits the engine uses to pick a worker stay evenly spread inside a
// shard.
func (s Shard) Owns(h uint64) bool {
	if s.Count <= 1 {
		return true
	}
	hi, _ := bits.Mul64(h, uint64(s.Count))
	return int(hi) == s.Index
}

// Sharded reports whether s keeps only part of the flows.
func (s Shard) Sharded() bool { return s.Count > 1 }

func (s *Shard) String() string {
	if s == nil || s.Count == 0 {
		return ""
	}
	return strconv.Itoa(s.Index) + "/" + strconv.Itoa(s.Count)
}

// Set parses "I/N" with 0 <= I < N <= MaxShards ("" = everything).
func (s *Shard) Set(v string) error {
	if v == "" {
		*s = Shard{}
		return nil
	}
	i, n, ok := strings.Cut(v, "/")
	idx, err1 := strconv.Atoi(i)
	cnt, err2 := strconv.Atoi(n)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("%q: want I/N, e.g. 0/4 (shard I of N, counting from 0)", v)
	}
	if cnt < 1 || cnt > MaxShards || idx < 0 || idx >= cnt {
		return fmt.Errorf("%q: want 0 <= I < N <= %d", v, MaxShards)
	}
	*s = Shard{Index: idx, Count: cnt}
	return nil
}
