package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/pktpipe/pktpipe/internal/testenv"
	"github.com/pktpipe/pktpipe/sources/afpacket/netnstest"
	"github.com/pktpipe/pktpipe/sources/ebpf"
)

// liveRun is the pktpipe binary capturing in namespace 0 of a pair.
type liveRun struct {
	cmd *exec.Cmd
	w   *opsLines
	url string // its /metrics
}

// startLive runs bin on Dev[0] of p with args (and a metrics endpoint),
// and returns once it logged that it is capturing. The process is killed
// at cleanup if the test did not stop it.
func startLive(t *testing.T, bin string, p *netnstest.Pair, args ...string) *liveRun {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-i", p.Dev[0], "--netns", p.Path(0), "--workers", "2",
		"--metrics-addr", "127.0.0.1:0", "--quiet"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &liveRun{cmd: cmd, w: opsWatch(stderr)}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-r.w.done
			cmd.Wait()
		}
	})
	opsWaitFor(t, r.w, "capturing and metrics lines", func() bool {
		_, capturing := r.w.find("msg=capturing")
		l, ok := r.w.find("msg=metrics url=")
		if ok {
			r.url = strings.Fields(strings.SplitN(l, "url=", 2)[1])[0]
		}
		return ok && capturing
	})
	return r
}

// waitPackets waits until the sources have read at least n packets.
func (r *liveRun) waitPackets(t *testing.T, n float64) {
	t.Helper()
	opsWaitFor(t, r.w, "packets read", func() bool {
		_, body := opsScrape(t, r.url)
		var sum float64
		for k, v := range opsProm(t, body) {
			if strings.HasPrefix(k, "pktpipe_source_packets_total{") {
				sum += v
			}
		}
		return sum >= n
	})
}

// stop sends SIGTERM and waits for a clean exit.
func (r *liveRun) stop(t *testing.T) {
	t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.w.done:
	case <-time.After(30 * time.Second): // bound only
		t.Fatalf("no exit after SIGTERM:\n%s", r.w.all())
	}
	if err := r.cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v\n%s", err, r.w.all())
	}
}

// echoes reads a pcapng file and counts ICMP echo requests and replies,
// and packets of any other kind.
func echoes(t *testing.T, path string) (req, rep, other int) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewNgReader(bytes.NewReader(raw), pcapgo.NgReaderOptions{})
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for {
		data, _, err := r.ReadPacketData()
		if err == io.EOF {
			return
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		switch in, ok := netnstest.Parse(data); {
		case ok && in.IsEchoRequest():
			req++
		case ok && in.IsEcho():
			rep++
		default:
			other++
		}
	}
}

// checkPing asserts the events hold the ping's flow, 3 packets each way.
func checkPing(t *testing.T, events string, a, b string) {
	t.Helper()
	raw, err := os.ReadFile(events)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range parseLines(t, string(raw)) {
		f, _ := e["flow"].(map[string]any)
		if e["event_type"] == "flow" && e["proto"] == "ICMP" && e["src_ip"] == a && e["dest_ip"] == b &&
			num(f["pkts_toserver"]) == 3 && num(f["pkts_toclient"]) == 3 {
			return
		}
	}
	t.Errorf("no ICMP flow %s -> %s with 3+3 packets in the events:\n%s", a, b, raw)
}

// TestLiveUser runs the binary as root with --user nobody on each capture
// method, pings through the capture, and checks that every thread of the
// running process has nobody's uid and gid and no capabilities, that it
// logged the uid, and that after SIGTERM the event and pcapng files are
// nobody's and hold the ping (3 requests, 3 replies; the filter keeps
// only ICMP).
func TestLiveUser(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "ping")
	testenv.NeedCommand(t, "tcpdump") // compiles the filter
	nobody, err := user.Lookup("nobody")
	testenv.Need(t, err == nil, "user nobody")
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	bin := opsBinary(t)
	for _, args := range [][]string{
		{"--capture", "afpacket", "--ring-timeout", "10ms"},
		{"--capture", "ebpf"},
	} {
		t.Run(args[1], func(t *testing.T) {
			p := netnstest.New(t)
			// A directory nobody may write in (t.TempDir's parent is 0700).
			dir, err := os.MkdirTemp("", "pktpipe-user-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			must(t, os.Chmod(dir, 0o755))
			must(t, os.Chown(dir, uid, gid))
			events, capFile := filepath.Join(dir, "events.json"), filepath.Join(dir, "capture.pcapng")

			r := startLive(t, bin, p, append(args, "--user", "nobody", "-o", "file:"+events, "-w", capFile, "icmp")...)
			if l, _ := r.w.find("msg=capturing"); !strings.Contains(l, " uid="+nobody.Uid) {
				t.Errorf("capturing line does not say uid=%s: %s", nobody.Uid, l)
			}
			// Every thread, while capturing.
			pid := r.cmd.Process.Pid
			tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
			if err != nil || len(tasks) == 0 {
				t.Fatalf("threads of %d: %v", pid, err)
			}
			for _, task := range tasks {
				st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + task.Name() + "/status")
				if err != nil {
					continue // the thread exited
				}
				four := func(id int) string { return strings.Repeat("\t"+strconv.Itoa(id), 4) } // real, effective, saved, fs
				for _, want := range []string{"Uid:" + four(uid), "Gid:" + four(gid), "CapEff:\t0000000000000000", "CapPrm:\t0000000000000000"} {
					if !strings.Contains(string(st), want+"\n") {
						t.Errorf("thread %s: no %q in\n%s", task.Name(), want, st)
					}
				}
			}
			p.Run(t, 0, "ping", "-c", "3", "-i", "0.2", "-W", "2", p.V4[1].String())
			r.waitPackets(t, 6)
			r.stop(t)

			for _, f := range []string{events, capFile} {
				fi, err := os.Stat(f)
				if err != nil {
					t.Fatal(err)
				}
				st := fi.Sys().(*syscall.Stat_t)
				if int(st.Uid) != uid || int(st.Gid) != gid {
					t.Errorf("%s is owned by %d:%d, want nobody (%d:%d)", f, st.Uid, st.Gid, uid, gid)
				}
			}
			if req, rep, other := echoes(t, capFile); req != 3 || rep != 3 || other != 0 {
				t.Errorf("-w file: %d echo requests, %d replies, %d other packets; want 3, 3, 0", req, rep, other)
			}
			checkPing(t, events, p.V4[0].String(), p.V4[1].String())
		})
	}
}

// tcOn lists the tc filters on both hooks of Dev[0] and whether it has a
// clsact qdisc.
func tcOn(t *testing.T, p *netnstest.Pair) (filters string, clsact bool) {
	t.Helper()
	filters = p.Run(t, 0, "tc", "filter", "show", "dev", p.Dev[0], "ingress") +
		p.Run(t, 0, "tc", "filter", "show", "dev", p.Dev[0], "egress")
	return strings.TrimSpace(filters), strings.Contains(p.Run(t, 0, "tc", "qdisc", "show", "dev", p.Dev[0]), "clsact")
}

// TestLiveTCAttach runs the binary with --ebpf-attach tc (the fallback for
// kernels without TCX, forced here): while it runs the interface has a
// clsact qdisc and our two filters; the ping arrives whole; after SIGTERM
// neither filter nor qdisc is left. Then the full live comparison
// (events against -w replay and tcpdump's capture) in tc mode.
func TestLiveTCAttach(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "ping")
	testenv.NeedCommand(t, "tc")
	testenv.NeedCommand(t, "tcpdump")
	bin := opsBinary(t)
	p := netnstest.New(t)
	dir := t.TempDir()
	events, capFile := filepath.Join(dir, "events.json"), filepath.Join(dir, "capture.pcapng")

	r := startLive(t, bin, p, "--capture", "ebpf", "--ebpf-attach", "tc", "-o", "file:"+events, "-w", capFile, "icmp")
	if l, _ := r.w.find("msg=capturing"); !strings.Contains(l, "attach=tc") {
		t.Errorf("capturing line does not say attach=tc: %s", l)
	}
	f, q := tcOn(t, p)
	if !q || strings.Count(f, ebpf.TCNamePrefix) != 2 || !strings.Contains(f, "pref "+strconv.Itoa(ebpf.TCPref)) {
		t.Fatalf("while capturing: clsact %v, filters (want 2 of ours):\n%s", q, f)
	}
	t.Logf("tc filters while capturing:\n%s", f)
	p.Run(t, 0, "ping", "-c", "3", "-i", "0.2", "-W", "2", p.V4[1].String())
	r.waitPackets(t, 6)
	r.stop(t)
	if f, q := tcOn(t, p); f != "" || q {
		t.Fatalf("after SIGTERM: clsact %v, filters:\n%s", q, f)
	}
	if req, rep, other := echoes(t, capFile); req != 3 || rep != 3 || other != 0 {
		t.Errorf("-w file: %d echo requests, %d replies, %d other packets; want 3, 3, 0", req, rep, other)
	}
	checkPing(t, events, p.V4[0].String(), p.V4[1].String())

	t.Run("compare", func(t *testing.T) {
		liveCase(t, bin, selfSigned(t), []string{"--capture", "ebpf", "--ebpf-attach", "tc"})
	})
}

func TestLiveAttachFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-i", "lo", "--capture", "ebpf", "--ebpf-attach", "xdp"}, "--ebpf-attach"},
		{[]string{"-i", "lo", "--ebpf-attach", "tc"}, "--capture ebpf"},
		{[]string{"-i", "lo", "--capture", "ebpf", "--ebpf-attach", "tc", "--user", "nobody"}, "CAP_NET_ADMIN"},
		{[]string{"-r", sample, "--ebpf-attach", "tcx"}, "live capture"},
	} {
		code, _, errs := runCmd(t, nil, c.args...)
		if code != exitUsage || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, want %d with %q:\n%s", c.args, code, exitUsage, c.want, errs)
		}
	}
}

// TestLiveTCAfterCrash kills a tc-mode run with SIGKILL: its filters stay
// (netlink filters are not owned by the process) and the qdisc with them.
// The next tc-mode run on the interface removes them at start, says so,
// and leaves nothing behind at its own exit.
func TestLiveTCAfterCrash(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "tc")
	bin := opsBinary(t)
	p := netnstest.New(t)
	args := []string{"--capture", "ebpf", "--ebpf-attach", "tc", "-o", "file:" + filepath.Join(t.TempDir(), "ev.json")}

	r := startLive(t, bin, p, args...)
	if err := r.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-r.w.done
	r.cmd.Wait()
	f, q := tcOn(t, p)
	if !q || strings.Count(f, ebpf.TCNamePrefix+strconv.Itoa(r.cmd.Process.Pid)+":") != 2 {
		t.Fatalf("after SIGKILL: clsact %v, filters (want the 2 of pid %d):\n%s", q, r.cmd.Process.Pid, f)
	}

	r2 := startLive(t, bin, p, args...)
	if l, ok := r2.w.find("removed tc filters left by pktpipe processes"); !ok || !strings.Contains(l, "filters=2") {
		t.Errorf("no warning about 2 stale filters:\n%s", r2.w.all())
	}
	f, _ = tcOn(t, p)
	if strings.Count(f, ebpf.TCNamePrefix) != 2 || strings.Contains(f, ebpf.TCNamePrefix+strconv.Itoa(r.cmd.Process.Pid)+":") {
		t.Errorf("second run: want only its own 2 filters:\n%s", f)
	}
	r2.stop(t)
	// The qdisc was the crashed run's: the second found it there and so
	// leaves it; only filters are gone.
	if f, _ := tcOn(t, p); f != "" {
		t.Fatalf("after SIGTERM: filters left:\n%s", f)
	}
}
