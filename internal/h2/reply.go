package h2

import (
	"errors"
	"github.com/geocdn/geocdn/internal/heldresp"
	"io"
	"net/http"
	"os"
	"syscall"
	"time"

	"golang.org/x/net/http2"
)

// Reply is how a FastHandler answers, with the same methods as
// internal/h1's Reply: the handler gives HTTP/1.1 header lines ("Name:
// value\r\n", Content-Length included), which Reply sends as an HPACK
// block, names lowercased, with a date field unless OwnDate, and without
// the fields HTTP/2 forbids (Connection and the like). The body goes as
// DATA frames as far as the peer's windows allow; the rest waits for its
// WINDOW_UPDATE (a file as a handle of its own and an offset).
type Reply struct {
	c       *conn
	id      uint32
	now     time.Time
	head    bool
	sent    bool
	ownDate bool
	err     error
}

// OwnDate says that the header lines carry a Date field of their own.
func (w *Reply) OwnDate() { w.ownDate = true }

// Buffer returns an empty scratch buffer for the header lines, reused
// across requests.
func (w *Reply) Buffer() []byte { return w.c.hbuf[:0] }

// Now is the time the request was read, as the date field gives it.
func (w *Reply) Now() time.Time { return w.now }

var errSentTwice = errors.New("h2: reply sent twice")

// begin sends the HEADERS frame; it reports whether a body follows.
func (w *Reply) begin(status int, hdr []byte, body bool) bool {
	c := w.c
	w.sent = true
	if cap(hdr) > cap(c.hbuf) {
		c.hbuf = hdr[:0]
	}
	body = body && !w.head && heldresp.BodyAllowed(status)
	block := appendStatus(c.fastBlock[:0], status)
	if !w.ownDate {
		block = appendInt(block, 0, 4, idxDate)
		block = appendString(block, c.s.date.at(w.now))
	}
	block, c.scratch = appendLines(block, hdr, c.scratch)
	c.fastBlock = block[:0]
	c.mu.Lock()
	c.out = c.appendHeadersFrame(c.out, w.id, !body, block)
	return body
}

// Send answers with status, the header lines hdr and body; body is left
// out for HEAD and for statuses without one.
func (w *Reply) Send(status int, hdr, body []byte) error {
	if w.sent {
		return errSentTwice
	}
	c := w.c
	if w.begin(status, hdr, len(body) > 0) {
		st := c.newFastStream(w.id)
		c.sendBytesLocked(st, body, true)
	}
	c.afterReplyLocked()
	c.mu.Unlock()
	return w.err
}

// SendFile answers 200 with the header lines hdr and size bytes of f from
// its start. It reads f into DATA frames as the windows allow; what they
// cannot take yet waits on a duplicate of f's descriptor, so the caller
// may close f when SendFile returns.
func (w *Reply) SendFile(hdr []byte, f *os.File, size int64) error {
	if w.sent {
		return errSentTwice
	}
	c := w.c
	if w.begin(http.StatusOK, hdr, size > 0) {
		st := c.newFastStream(w.id)
		st.pendFile, st.pendEnd = f, size
		err := c.sendFileLocked(st)
		if err == nil && st.pendFile != nil {
			// Held for a WINDOW_UPDATE: a descriptor of its own.
			err = st.dupFile()
		}
		if err != nil {
			w.err = err
			c.resetLocked(st, st.id, http2.ErrCodeInternal)
		}
	}
	c.afterReplyLocked()
	c.mu.Unlock()
	return w.err
}

// newFastStream is the state of a fast-path stream while its body goes
// out; it joins the open streams only if the body must wait.
func (c *conn) newFastStream(id uint32) *stream {
	st := &c.fastStream
	*st = stream{id: id, remoteDone: true, sendWindow: c.peerInitial, declCL: -1}
	return st
}

// afterReplyLocked keeps a fast stream whose body waits, and writes
// when the queue is long.
func (c *conn) afterReplyLocked() {
	if st := &c.fastStream; st.id != 0 {
		if !st.localDone && !st.reset {
			kept := new(stream)
			*kept = *st
			c.streams[kept.id] = kept
			c.blocked = append(c.blocked, kept)
			c.stallLocked()
		}
		*st = stream{}
	}
	if len(c.out) >= flushAt {
		c.flushLocked()
		c.waitRoomLocked()
	}
}

// dupFile gives st a descriptor of its own for its pending file.
func (st *stream) dupFile() error {
	rc, err := st.pendFile.SyscallConn()
	if err != nil {
		return err
	}
	var fd int
	var derr error
	if err := rc.Control(func(d uintptr) { fd, derr = syscall.Dup(int(d)) }); err != nil {
		return err
	}
	if derr != nil {
		return derr
	}
	st.pendFile = os.NewFile(uintptr(fd), st.pendFile.Name())
	return nil
}

// sendBytesLocked sends what the windows allow of b on st, ending the
// stream with its last byte if end; the rest waits in st.pend (a copy
// unless owned).
func (c *conn) sendBytesLocked(st *stream, b []byte, copyRest bool) {
	for len(b) > 0 {
		n := c.windowFor(st, len(b))
		if n == 0 {
			break
		}
		fl := http2.Flags(0)
		if n == len(b) {
			fl = http2.FlagDataEndStream
		}
		c.out = appendFrameHeader(c.out, n, http2.FrameData, fl, st.id)
		c.out = append(c.out, b[:n]...)
		b = b[n:]
		if len(c.out) >= flushAt {
			c.flushLocked()
		}
	}
	if len(b) == 0 {
		st.pend = nil
		st.localDone = true
		return
	}
	if copyRest {
		b = append([]byte(nil), b...)
	}
	st.pend = b
}

// windowFor takes up to n bytes of window on st (and the connection),
// at most a frame's worth.
func (c *conn) windowFor(st *stream, n int) int {
	w := min(int64(n), st.sendWindow, c.sendWindow, int64(c.peerMaxFrame))
	if w <= 0 {
		return 0
	}
	st.sendWindow -= w
	c.sendWindow -= w
	return int(w)
}

// sendFileLocked reads st's file into DATA frames as the windows allow.
// The file is dropped (not closed: it may be the caller's) when all of
// it is sent.
func (c *conn) sendFileLocked(st *stream) error {
	for st.pendOff < st.pendEnd {
		n := c.windowFor(st, int(min(st.pendEnd-st.pendOff, 1<<30)))
		if n == 0 {
			return nil
		}
		at := len(c.out)
		fl := http2.Flags(0)
		if st.pendOff+int64(n) == st.pendEnd {
			fl = http2.FlagDataEndStream
		}
		c.out = appendFrameHeader(c.out, n, http2.FrameData, fl, st.id)
		c.out = grow(c.out, n)
		m, err := st.pendFile.ReadAt(c.out[at+9:at+9+n], st.pendOff)
		if m < n {
			c.out = c.out[:at]
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		st.pendOff += int64(n)
		if len(c.out) >= flushAt {
			c.flushLocked()
		}
	}
	st.pendFile = nil
	st.localDone = true
	return nil
}

// grow extends b by n bytes.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), max(2*cap(b), len(b)+n, 32<<10))
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

// sendPendingLocked sends what the fast-path streams waiting for window
// may now send, and forgets those done.
func (c *conn) sendPendingLocked() {
	for i := 0; i < len(c.blocked) && c.sendWindow > 0; {
		st := c.blocked[i]
		var err error
		if st.reset {
			// Gone since.
		} else if st.pendFile != nil {
			own := st.pendFile
			err = c.sendFileLocked(st)
			if st.pendFile == nil {
				own.Close()
			}
		} else {
			c.sendBytesLocked(st, st.pend, false)
		}
		if err != nil {
			c.resetLocked(st, st.id, http2.ErrCodeInternal)
		}
		if st.reset || st.localDone {
			c.blocked = append(c.blocked[:i], c.blocked[i+1:]...)
			c.forgetLocked(st)
			continue
		}
		i++
	}
	if len(c.blocked) == 0 && c.writers == 0 {
		c.stalled = time.Time{}
	} else {
		c.stallLocked()
	}
}

// dropPending forgets st's waiting body, closing its file.
func (c *conn) dropPending(st *stream) {
	if st.pendFile != nil && st != &c.fastStream {
		st.pendFile.Close()
	}
	st.pendFile, st.pend = nil, nil
	for i, b := range c.blocked {
		if b == st {
			c.blocked = append(c.blocked[:i], c.blocked[i+1:]...)
			break
		}
	}
}

// serveFast offers a plain request to the fast handler; false if it
// declined.
func (c *conn) serveFast(id uint32, head bool, path, authority string) bool {
	r := &c.req
	r.Head = head
	r.Path, r.Query = path, ""
	for i := 0; i < len(path); i++ {
		if path[i] == '?' {
			r.Path, r.Query = path[:i], path[i+1:]
			break
		}
	}
	r.TLS = c.tls != nil
	c.hostBuf = append(c.hostBuf[:0], authority...)
	r.Host = c.hostBuf
	w := &c.reply
	*w = Reply{c: c, id: id, now: time.Now(), head: head}
	if !c.s.Fast(w, r) {
		if w.sent {
			return true
		}
		return false
	}
	if !w.sent {
		c.mu.Lock()
		c.resetLocked(nil, id, http2.ErrCodeInternal)
		c.mu.Unlock()
	}
	return true
}
