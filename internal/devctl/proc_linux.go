package devctl

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// sysProcAttr puts a child in a process group of its own, so a terminal's
// Ctrl-C reaches only the supervisor, which stops the children in order;
// and has the kernel SIGKILL it if the supervisor dies, even by SIGKILL.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// processStopped reports whether pid is stopped by a signal: state T (or
// t, stopped by a tracer) in /proc/PID/stat.
func processStopped(pid int) (bool, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false, err
	}
	// "pid (comm) S ...": comm may hold spaces and parentheses, so the
	// state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, b)
	}
	return b[i+2] == 'T' || b[i+2] == 't', nil
}
