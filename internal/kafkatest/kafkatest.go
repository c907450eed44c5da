// Package kafkatest lets tests in several packages share the one local
// Kafka broker (test/kafka/kafka.sh) without stepping on each other: go
// test runs packages in parallel, and some tests stop and kill the broker,
// so every package that uses it holds one exclusive lock while it runs.
package kafkatest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Addr is the broker address: $PKTPIPE_KAFKA or 127.0.0.1:9092.
func Addr() string {
	if a := os.Getenv("PKTPIPE_KAFKA"); a != "" {
		return a
	}
	return "127.0.0.1:9092"
}

// Lock takes the exclusive lock shared by every test process that uses the
// broker at addr, waiting at most wait.
func Lock(addr string, wait time.Duration) (unlock func(), err error) {
	path := filepath.Join(os.TempDir(), "pktpipe-kafka-tests-"+strings.ReplaceAll(addr, ":", "_")+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s (another test run uses the broker): %w", path, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Script finds test/kafka/kafka.sh above the working directory.
func Script() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "test", "kafka", "kafka.sh")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("test/kafka/kafka.sh not found")
		}
		dir = parent
	}
}

// Answers reports whether a broker answers metadata requests at addr
// (asked with kcat, the independent client).
func Answers(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	out, err := exec.Command("kcat", "-b", addr, "-L", "-m", "5").CombinedOutput()
	return err == nil && strings.Contains(string(out), "broker")
}

// Up starts the broker with kafka.sh unless one answers already.
func Up(addr string) error {
	if Answers(addr) {
		return nil
	}
	if os.Getenv("PKTPIPE_KAFKA") != "" {
		return fmt.Errorf("no broker answers on %s (PKTPIPE_KAFKA)", addr)
	}
	sh, err := Script()
	if err != nil {
		return err
	}
	if out, err := exec.Command("bash", sh, "up").CombinedOutput(); err != nil {
		return fmt.Errorf("kafka.sh up: %v\n%s", err, out)
	}
	if !Answers(addr) {
		return fmt.Errorf("no broker answers on %s after kafka.sh up", addr)
	}
	return nil
}

// BrokerPID is the pid of the broker kafka.sh started (from `kafka.sh
// status`), for tests that kill it or change its scheduling priority.
func BrokerPID() (int, error) {
	sh, err := Script()
	if err != nil {
		return 0, err
	}
	out, _ := exec.Command("bash", sh, "status").Output()
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "pid="); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, fmt.Errorf("kafka.sh status: no broker pid in %q", strings.TrimSpace(string(out)))
}

// Renice sets the scheduling priority of every thread of process pid
// (setpriority(2) applies to one thread on Linux; a JVM has dozens), and
// of its autogroup: with sched_autogroup, CPU time is shared between
// sessions first, and a thread's nice counts only within its session.
func Renice(pid, prio int) error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/autogroup", pid), []byte(strconv.Itoa(prio)), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, prio); err != nil && !errors.Is(err, syscall.ESRCH) {
			return err
		}
	}
	return nil
}
