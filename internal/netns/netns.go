// Package netns runs code inside another network namespace: both live
// sources open their sockets or attach their programs there for --netns.
package netns

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// ErrPermission marks a setns refused for want of CAP_SYS_ADMIN.
var ErrPermission = errors.New("entering a network namespace needs CAP_SYS_ADMIN")

// Do runs fn on a locked OS thread switched into the namespace at path,
// then switches back. Sockets fn opens stay in that namespace; an ifindex
// fn gives the kernel is resolved there.
func Do(path string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := os.Open(path)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns: %w", err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("setns %s: %w: %w", path, err, ErrPermission)
		}
		return fmt.Errorf("setns %s: %w", path, err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Keep the thread locked: the runtime then discards it rather
		// than reuse a thread left in the wrong namespace.
		return fmt.Errorf("setns back: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}
