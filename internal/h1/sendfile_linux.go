package h1

import (
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// haveSendfile: fast replies of files use sendFile.
const haveSendfile = true

// sendFile writes hdr and then size bytes of f from its start to the
// socket behind rc. The head goes with MSG_MORE, so the kernel holds it
// until the body's first pages join it in one segment; sendfile reads the
// file at an explicit offset, so the file's own offset is never moved (no
// seeks) and no extra call looks for its end.
func sendFile(rc syscall.RawConn, hdr []byte, f *os.File, size int64) error {
	fc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	cerr := fc.Control(func(src uintptr) {
		var off int64
		sent := 0
		err := rc.Write(func(fd uintptr) bool {
			for sent < len(hdr) {
				n, err := unix.SendmsgN(int(fd), hdr[sent:], nil, nil, unix.MSG_MORE|unix.MSG_NOSIGNAL)
				switch err {
				case nil:
					sent += n
				case unix.EINTR:
				case unix.EAGAIN:
					return false // wait until the socket takes more
				default:
					werr = err
					return true
				}
			}
			for off < size {
				n, err := unix.Sendfile(int(fd), int(src), &off, int(min(size-off, 1<<30)))
				switch {
				case err == unix.EINTR:
				case err == unix.EAGAIN:
					return false
				case err != nil:
					werr = err
					return true
				case n == 0:
					werr = io.ErrUnexpectedEOF // the file is shorter than size
					return true
				}
			}
			return true
		})
		if werr == nil {
			werr = err
		}
	})
	if werr == nil {
		werr = cerr
	}
	return werr
}
