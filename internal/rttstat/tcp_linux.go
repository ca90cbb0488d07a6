package rttstat

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// TCPRTT is the kernel's smoothed RTT of c (TCP_INFO's tcpi_rtt). At
// accept it is already the handshake's RTT: Linux seeds it from the
// SYN-ACK's answer.
func TCPRTT(c *net.TCPConn) (time.Duration, bool) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info *unix.TCPInfo
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || gerr != nil || info == nil || info.Rtt == 0 {
		return 0, false
	}
	return time.Duration(info.Rtt) * time.Microsecond, true
}
