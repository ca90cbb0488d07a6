//go:build !linux

package devctl

import "syscall"

// sysProcAttr puts a child in a process group of its own, so a terminal's
// Ctrl-C reaches only the supervisor, which stops the children in order.
// Without Pdeathsig (Linux only) a supervisor killed by SIGKILL leaves
// its children running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// processStopped cannot tell without /proc: a pause is taken as done once
// SIGSTOP is sent.
func processStopped(int) (bool, error) { return true, nil }
