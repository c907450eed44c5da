package app

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// dropPrivileges switches every thread of the process to name's uid, gid
// and supplementary groups (Go's syscall.Set* apply to all threads on
// Linux). Open sockets, rings, perf buffers and attached programs stay
// usable; output files are created afterwards, as the user.
func dropPrivileges(name string) error {
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("--user: %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("--user %s: uid %q gid %q are not numbers", name, u.Uid, u.Gid)
	}
	groups := []int{gid}
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.Atoi(g); err == nil && n != gid {
				groups = append(groups, n)
			}
		}
	}
	// Groups and gid first: after setuid there is no permission left.
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("--user %s: setgroups: %w", name, err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("--user %s: setgid: %w", name, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("--user %s: setuid: %w", name, err)
	}
	if uid != 0 && (syscall.Setuid(0) == nil || os.Geteuid() != uid) {
		return fmt.Errorf("--user %s: privileges were not dropped", name)
	}
	return nil
}
