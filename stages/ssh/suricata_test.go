package ssh

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/pipeline/stats"
	"github.com/pktpipe/pktpipe/stages/appproto/svtest"
	"github.com/pktpipe/pktpipe/stages/flow"
	"github.com/pktpipe/pktpipe/stages/reassembly"
)

func runSSH(t testing.TB, file string) []map[string]any {
	return svtest.Run(t, file, func(reg *stats.Registry) []flow.Analyzer {
		return []flow.Analyzer{New(reassembly.NewBudget(reassembly.DefaultProcessBytes, reg), reg)}
	})
}

// TestSuricataVerify runs every suricata-verify test with a check on
// event_type ssh: the number of ssh events matching all of a check's keys
// must be its count.
func TestSuricataVerify(t *testing.T) {
	root := testenv.Conformance(t, "suricata-verify", "tests")
	tests, err := svtest.Load(root)
	if err != nil {
		t.Fatal(err)
	}
	pass := 0
	skipped := map[string]int{}
	for _, tc := range tests {
		var run []int
		for i, c := range tc.Check {
			if c.Match["event_type"] == "ssh" {
				if _, err := os.Stat(tc.Pcap); err != nil {
					skipped["pcap absent"]++
					continue
				}
				run = append(run, i)
			}
		}
		if len(run) == 0 {
			continue
		}
		t.Run(tc.Name, func(t *testing.T) {
			evs := runSSH(t, tc.Pcap)
			for _, i := range run {
				c := tc.Check[i]
				n := 0
				for _, ev := range evs {
					ok := true
					for k, want := range c.Match {
						got, found := svtest.Lookup(ev, k)
						ok = ok && found && svtest.Equal(got, want)
					}
					if ok {
						n++
					}
				}
				if n != c.Count {
					t.Errorf("check %d %v: %d ssh events match, want %d", i, c.Match, n, c.Count)
					for _, ev := range evs {
						t.Logf("  %v", ev)
					}
					continue
				}
				pass++
			}
		})
	}
	var rs []string
	for r, n := range skipped {
		rs = append(rs, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(rs)
	t.Logf("ssh checks: %d pass; skipped: %s", pass, strings.Join(rs, ", "))
}
