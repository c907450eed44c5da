package tlsfp

import (
	"bytes"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/pktpipe/pktpipe/internal/testenv"
)

// tsharkStream is what tshark reports for one TCP stream: JA3 of each
// ClientHello and JA3S of each ServerHello, in packet order.
type tsharkStream struct {
	tuple      tuple // client -> server
	ja3, ja3s  []string
	ja3h, jash []string
}

// tsharkHellos runs tshark on a capture, or once on the concatenation of
// several (which must share no TCP tuple, or tshark would join their
// conversations), and groups the hellos by file and stream. Concatenating
// with mergecap does not keep every capture's packets (pcapng decryption
// secrets, link types pcapng cannot hold), so the test runs one capture
// per tshark for now.
func tsharkHellos(t *testing.T, bin string, paths []string, frames []int) []map[int]*tsharkStream {
	t.Helper()
	merged := paths[0]
	if len(paths) > 1 {
		merged = filepath.Join(t.TempDir(), "merged.pcapng")
		mergecap := testenv.NeedCommand(t, "mergecap")
		args := append([]string{"-a", "-w", merged}, paths...)
		if out, err := exec.Command(mergecap, args...).CombinedOutput(); err != nil {
			t.Fatalf("mergecap: %v\n%s", err, out)
		}
		if _, n := readSegments(t, merged); n != sum(frames) {
			t.Fatalf("merged capture has %d packets, the inputs %d", n, sum(frames))
		}
	}
	cmd := exec.Command(bin, "-n", "-r", merged,
		"-Y", "tcp && (tls.handshake.type == 1 || tls.handshake.type == 2)",
		"-T", "fields", "-E", "separator=|", "-E", "aggregator=/",
		"-e", "frame.number", "-e", "tcp.stream", "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport",
		"-e", "ip.dst", "-e", "ipv6.dst", "-e", "tcp.dstport",
		"-e", "tls.handshake.type",
		"-e", "tls.handshake.ja3_full", "-e", "tls.handshake.ja3",
		"-e", "tls.handshake.ja3s_full", "-e", "tls.handshake.ja3s")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, stderr.String())
	}
	last := func(s string) string { // innermost of tunnelled addresses
		if i := strings.LastIndexByte(s, '/'); i >= 0 {
			return s[i+1:]
		}
		return s
	}
	res := make([]map[int]*tsharkStream, len(paths))
	for i := range res {
		res[i] = map[int]*tsharkStream{}
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) != 13 {
			t.Fatalf("tshark line %q", line)
		}
		frame, _ := strconv.Atoi(f[0])
		file := 0
		for end := frames[0]; frame > end; end += frames[file] {
			file++
		}
		f = f[1:]
		stream, _ := strconv.Atoi(f[0])
		src, dst := last(f[1]+f[2]), last(f[4]+f[5])
		sp, _ := strconv.Atoi(f[3])
		dp, _ := strconv.Atoi(f[6])
		a, _ := netip.ParseAddr(src)
		b, _ := netip.ParseAddr(dst)
		from := netip.AddrPortFrom(a, uint16(sp))
		to := netip.AddrPortFrom(b, uint16(dp))
		s := res[file][stream]
		if s == nil {
			s = &tsharkStream{tuple: tuple{from, to}}
			res[file][stream] = s
		}
		for _, ty := range strings.Split(f[7], "/") {
			switch ty {
			case "1":
				s.tuple = tuple{from, to}
				s.ja3 = append(s.ja3, f[8])
				s.ja3h = append(s.ja3h, f[9])
			case "2":
				s.ja3s = append(s.ja3s, f[10])
				s.jash = append(s.jash, f[11])
			}
		}
	}
	return res
}

func sum(v []int) (n int) {
	for _, x := range v {
		n += x
	}
	return n
}

// tsharkBlind lists captures where tshark sees no TLS that this package
// reads, with the reason; their fingerprints are checked against FoxIO's.
var tsharkBlind = map[string]string{
	"socks4-https.pcap": "SOCKS4 on port 9901: tshark does not dissect it as SOCKS, so it sees no TLS after it",
}

// tsharkExcluded lists the hellos tshark fingerprints that this package
// does not, with the reason; each must still be there. Keys are
// capture#stream (the stream's order of appearance in the capture), with
// /ch2 or /sh for a single hello.
var tsharkExcluded = map[string]string{
	// The client repeats its hello without HRR: one fingerprint per flow,
	// the first (suricata-verify tls-duplicate-hello expects exactly that).
	"input.pcap(tls-duplicate-hello)#1/ch2": "repeated ClientHello without HelloRetryRequest",
	// Draft-14 ServerHello (legacy_version 0x0304, no session id or
	// compression): tshark 4.0 reads it in the final TLS 1.3 layout and
	// gets "772,44205," out of the random; ours is 772,49195,40.
	"tls13_draft14.pcap#0/sh": "tshark misparses the TLS 1.3 draft-14 ServerHello",
}

// TestJA3MatchesTshark checks JA3 and JA3S against tshark's
// tls.handshake.ja3/ja3_full/ja3s/ja3s_full on every hello of every
// conformance capture (the first ClientHello and ServerHello of each
// stream, and the second ClientHello after a HelloRetryRequest).
func TestJA3MatchesTshark(t *testing.T) {
	if testing.Short() {
		t.Skip("runs tshark on every capture (tens of seconds on a loaded machine)")
	}
	t.Parallel()
	bin := testenv.NeedCommand(t, "tshark")
	pcaps := conformancePcaps(t)
	type capture struct {
		path, name string
		flows      []*testFlow
		frames     int
	}
	caps := make([]capture, len(pcaps))
	for i, p := range pcaps {
		name := filepath.Base(p)
		if name == "input.pcap" {
			name += "(" + filepath.Base(filepath.Dir(p)) + ")"
		}
		flows, frames := runCaptureFrames(t, p)
		caps[i] = capture{p, name, flows, frames}
	}
	var batches [][]int
	for i := range caps {
		batches = append(batches, []int{i})
	}
	var (
		nCH, nSH, nRetry int
		usedExcl         = map[string]bool{}
		errs             []string
	)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for _, batch := range batches {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var paths []string
			var frames []int
			for _, i := range batch {
				paths = append(paths, caps[i].path)
				frames = append(frames, caps[i].frames)
			}
			wants := tsharkHellos(t, bin, paths, frames)
			for bi, i := range batch {
				name, flows, want := caps[i].name, caps[i].flows, wants[bi]
				byTuple := map[tuple]*testFlow{}
				for _, f := range flows {
					byTuple[f.tuple.canon()] = f
				}
				var e []string
				var ch, sh, rt int
				used := map[string]bool{}
				streamIDs := make([]int, 0, len(want))
				for s := range want {
					streamIDs = append(streamIDs, s)
				}
				slices.Sort(streamIDs)
				for _, stream := range streamIDs {
					w := want[stream]
					f := byTuple[w.tuple.canon()]
					id := fmt.Sprintf("%s#?%v", name, w.tuple)
					if f != nil {
						id = fmt.Sprintf("%s#%d", name, f.idx) // tshark's tcp.stream in the file alone
					}
					var r *Result
					if f != nil {
						r = f.tr.Result()
					}
					if _, ok := tsharkExcluded[id]; ok {
						used[id] = true
						if r != nil && r.Client != nil && len(w.ja3) > 0 && r.Client.JA3 == w.ja3[0] {
							e = append(e, id+": excluded but matches now")
						}
						continue
					}
					if len(w.ja3) > 0 {
						switch {
						case r == nil || r.Client == nil:
							e = append(e, fmt.Sprintf("%s: no ClientHello; tshark ja3 %s", id, w.ja3[0]))
						case r.Client.JA3 != w.ja3[0] || r.Client.JA3Hash != w.ja3h[0]:
							e = append(e, fmt.Sprintf("%s: ja3 %s %s\n want %s %s", id, r.Client.JA3Hash, r.Client.JA3, w.ja3h[0], w.ja3[0]))
						default:
							ch++
						}
					}
					if len(w.ja3) > 1 && r != nil {
						id2 := id + "/ch2"
						switch {
						case tsharkExcluded[id2] != "":
							used[id2] = true
							if r.Retry != nil {
								e = append(e, id2+": excluded but reported now")
							}
						case r.Retry == nil:
							e = append(e, fmt.Sprintf("%s: second ClientHello not reported; tshark ja3 %s", id2, w.ja3[1]))
						case r.Retry.JA3 != w.ja3[1] || r.Retry.JA3Hash != w.ja3h[1]:
							e = append(e, fmt.Sprintf("%s: ja3 %s, want %s", id2, r.Retry.JA3, w.ja3[1]))
						default:
							rt++
						}
					}
					if len(w.ja3s) > 0 {
						id := id + "/sh"
						switch {
						case tsharkExcluded[id] != "":
							used[id] = true
							if r != nil && r.Server != nil && r.Server.JA3S == w.ja3s[0] {
								e = append(e, id+": excluded but matches now")
							}
						case r == nil || r.Server == nil:
							e = append(e, fmt.Sprintf("%s: no ServerHello; tshark ja3s %s", id, w.ja3s[0]))
						case r.Server.JA3S != w.ja3s[0] || r.Server.JA3SHash != w.jash[0]:
							e = append(e, fmt.Sprintf("%s: ja3s %s %s\n want %s %s", id, r.Server.JA3SHash, r.Server.JA3S, w.jash[0], w.ja3s[0]))
						default:
							sh++
						}
					}
				}
				// Nothing reported where tshark saw no hello.
				seen := map[tuple]bool{}
				for _, w := range want {
					seen[w.tuple.canon()] = true
				}
				for _, f := range flows {
					if f.tr.HasHandshake() && !seen[f.tuple.canon()] && tsharkBlind[name] == "" {
						e = append(e, fmt.Sprintf("%s %v: hello reported that tshark does not see", name, f))
					}
				}
				mu.Lock()
				errs = append(errs, e...)
				nCH, nSH, nRetry = nCH+ch, nSH+sh, nRetry+rt
				for k := range used {
					usedExcl[k] = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		t.Error(e)
	}
	for k := range tsharkExcluded {
		if !usedExcl[k] {
			t.Errorf("stale exclusion %s", k)
		}
	}
	t.Logf("tshark: %d ClientHello JA3, %d ServerHello JA3S, %d retried ClientHello JA3 match over %d captures; %d exclusions",
		nCH, nSH, nRetry, len(pcaps), len(tsharkExcluded))
	if nCH < 150 || nSH < 90 {
		t.Errorf("too few hellos checked")
	}
}
