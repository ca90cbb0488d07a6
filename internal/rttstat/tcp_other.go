//go:build !linux

package rttstat

import (
	"net"
	"time"
)

// TCPRTT reports no RTT: TCP_INFO is read on Linux only.
func TCPRTT(c *net.TCPConn) (time.Duration, bool) { return 0, false }
