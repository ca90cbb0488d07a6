//go:build !linux

package h1

import (
	"os"
	"syscall"
)

// Outside Linux there is no MSG_MORE: fast replies of files go through
// copyFile (and the slow path's ReadFrom, which may still use sendfile).
const haveSendfile = false

func sendFile(rc syscall.RawConn, hdr []byte, f *os.File, size, piece int64, next func()) error {
	panic("h1: sendFile without haveSendfile")
}
