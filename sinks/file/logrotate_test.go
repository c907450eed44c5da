package file

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestLogrotateRecipe follows docs/operations.md: logrotate moves the file
// away (shifting older copies), with "create" leaves an empty file of the
// configured mode in its place, then sends SIGHUP (Reopen). Each time, the
// configured name gets exactly the events since the previous SIGHUP, the
// rotated copies keep theirs, and no file gets a timestamped name.
func TestLogrotateRecipe(t *testing.T) {
	for _, create := range []bool{false, true} {
		t.Run(fmt.Sprintf("create=%v", create), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "events.json")
			s, err := New(Config{Path: path})
			must(t, err)
			must(t, s.Write(flowsFrom(1, 3)))
			must(t, s.Reopen()) // the first SIGHUP completes the first file
			want := map[string][]uint64{"events.json": seq(1, 3)}
			next := 4
			for cycle := 1; cycle <= 3; cycle++ {
				must(t, s.Write(flowsFrom(next, cycle)))
				// logrotate: rotate 3, events.json.N -> .N+1, then the file.
				for n := cycle - 1; n >= 1; n-- {
					must(t, os.Rename(fmt.Sprintf("%s.%d", path, n), fmt.Sprintf("%s.%d", path, n+1)))
					want[fmt.Sprintf("events.json.%d", n+1)] = want[fmt.Sprintf("events.json.%d", n)]
				}
				must(t, os.Rename(path, path+".1"))
				want["events.json.1"] = want["events.json"]
				if create {
					must(t, os.WriteFile(path, nil, 0o640))
					must(t, os.Chmod(path, 0o640)) // past the umask
				}
				must(t, s.Reopen()) // postrotate: systemctl reload pktpipe
				want["events.json"] = seq(next, next+cycle-1)
				next += cycle
				final, temp := listing(t, dir)
				if len(temp) != 1 || len(final) != len(want) {
					t.Fatalf("cycle %d: files %v, temporary %v; want %d files", cycle, final, temp, len(want))
				}
				for name, ids := range want {
					if got := flowIDs(t, content(t, filepath.Join(dir, name))); !slices.Equal(got, ids) {
						t.Errorf("cycle %d: %s holds %v, want %v", cycle, name, got, ids)
					}
				}
				if fi, err := os.Stat(path); err != nil || create && fi.Mode().Perm() != 0o640 {
					t.Errorf("cycle %d: %s mode %v (%v), want create's 0640", cycle, path, fi.Mode(), err)
				}
			}
			// A SIGHUP that finds the file still there (logrotate did not
			// move it) must not overwrite it: that segment, and the last one
			// at exit, get timestamped names.
			must(t, s.Write(flowsFrom(next, 2)))
			must(t, s.Reopen())
			must(t, s.Write(flowsFrom(next+2, 2)))
			must(t, s.Close())
			final, temp := listing(t, dir)
			if len(temp) != 0 || len(final) != len(want)+2 {
				t.Fatalf("after exit: files %v, temporary %v", final, temp)
			}
			var all []uint64
			for _, name := range []string{"events.json.3", "events.json.2", "events.json.1", "events.json", final[0], final[1]} {
				all = append(all, flowIDs(t, content(t, filepath.Join(dir, name)))...)
			}
			if !slices.Equal(all, seq(1, next+3)) {
				t.Errorf("events across the files (oldest first): %v, want 1..%d", all, next+3)
			}
		})
	}
}
