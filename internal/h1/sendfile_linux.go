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
// seeks) and no extra call looks for its end. The body goes in pieces of
// piece bytes (0: one piece), and next is called between two, outside the
// wait for the socket, to move the write deadline; a piece ends a
// sendfile call early but adds none while the socket takes what it is
// given.
func sendFile(rc syscall.RawConn, hdr []byte, f *os.File, size, piece int64, next func()) error {
	fc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	if piece <= 0 {
		piece = size
	}
	// The state the callbacks share is one variable, so that it costs one
	// allocation rather than one per field.
	var st struct {
		off, end int64
		sent     int
		err      error
	}
	cerr := fc.Control(func(src uintptr) {
		// One callback for every piece: it stops at st.end.
		write := func(fd uintptr) bool {
			for st.sent < len(hdr) {
				n, err := unix.SendmsgN(int(fd), hdr[st.sent:], nil, nil, unix.MSG_MORE|unix.MSG_NOSIGNAL)
				switch err {
				case nil:
					st.sent += n
				case unix.EINTR:
				case unix.EAGAIN:
					return false // wait until the socket takes more
				default:
					st.err = err
					return true
				}
			}
			for st.off < st.end {
				n, err := unix.Sendfile(int(fd), int(src), &st.off, int(min(st.end-st.off, 1<<30)))
				switch {
				case err == unix.EINTR:
				case err == unix.EAGAIN:
					return false
				case err != nil:
					st.err = err
					return true
				case n == 0:
					st.err = io.ErrUnexpectedEOF // the file is shorter than size
					return true
				}
			}
			return true
		}
		for {
			st.end = min(st.off+piece, size)
			if err := rc.Write(write); st.err == nil {
				st.err = err
			}
			if st.err != nil || st.off >= size {
				return
			}
			next()
		}
	})
	if st.err == nil {
		st.err = cerr
	}
	return st.err
}
