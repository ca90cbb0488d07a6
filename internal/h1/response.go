package h1

import (
	"bufio"
	"github.com/geocdn/geocdn/internal/heldresp"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// response is the http.ResponseWriter of the slow path. Like net/http's:
// the header map is frozen at WriteHeader (or the first Write), a body
// without Content-Length is measured if it is short (heldresp) and
// chunked if not (or the connection closes after it, for HTTP/1.0), HEAD
// and bodiless statuses send no body, and a body short of its
// Content-Length closes the connection.
type response struct {
	heldresp.State
	c       *conn
	req     *http.Request
	head    bool
	chunked bool
	// closeAfter: the connection closes after this response.
	closeAfter      bool
	http10KeepAlive bool
	err             error
}

var bwPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}

func (w *response) Header() http.Header { return w.Hdr }

func (w *response) WriteHeader(code int) {
	if w.Done || w.WroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("h1: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		// An informational answer goes out at once; the final one follows.
		w.writer()
		w.c.bw.WriteString("HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code) + "\r\n")
		w.Hdr.Write(w.c.bw)
		w.c.bw.WriteString("\r\n")
		w.err = w.c.bw.Flush()
		return
	}
	w.Freeze(code, w.c.s.Logger, "h1")
}

func (w *response) Write(p []byte) (int, error) {
	if w.Done {
		return 0, http.ErrHandlerTimeout
	}
	if !w.WroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	held, err := w.Accept(p)
	if err != nil {
		return 0, err
	}
	if held {
		return len(p), nil
	}
	if !w.HeadSent {
		w.sendHead(false)
	}
	if w.head {
		return len(p), nil
	}
	return len(p), w.writeBody(p)
}

func (w *response) writeBody(p []byte) error {
	if w.err != nil {
		return w.err
	}
	bw := w.c.bw
	if w.chunked {
		if len(p) == 0 {
			return nil
		}
		bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
		bw.WriteString("\r\n")
		bw.Write(p)
		_, w.err = bw.WriteString("\r\n")
		return w.err
	}
	_, w.err = bw.Write(p)
	return w.err
}

// sendHead writes the status line and header into the write buffer, then
// the body held back. final reports that the handler has returned, so the
// held body is all of it.
func (w *response) sendHead(final bool) {
	bw := w.writer()
	h := w.Sent
	allowed := w.Framing(final)
	if allowed && w.CL < 0 && !final {
		switch {
		case w.head:
			// No body follows, so no framing either.
		case w.req.ProtoAtLeast(1, 1):
			w.chunked = true
			h.Set("Transfer-Encoding", "chunked")
		default:
			w.closeAfter = true // HTTP/1.0: the body ends with the connection
		}
	}
	if _, ok := h["Date"]; !ok {
		h["Date"] = []string{date(time.Now()).val}
	}
	if hasTokenString(h["Connection"], "close") || w.c.s.closing.Load() {
		w.closeAfter = true
	}
	if w.closeAfter {
		h.Set("Connection", "close")
	} else if w.http10KeepAlive {
		h.Set("Connection", "keep-alive")
	}
	bw.WriteString("HTTP/1.1 " + strconv.Itoa(w.Status) + " " + http.StatusText(w.Status) + "\r\n")
	h.Write(bw)
	bw.WriteString("\r\n")
	if len(w.Held) > 0 && allowed && !w.head {
		w.writeBody(w.Held)
	}
	w.Release()
}

func (w *response) writer() *bufio.Writer {
	if w.c.bw == nil {
		w.c.bw = bwPool.Get().(*bufio.Writer)
		w.c.bw.Reset(w.c.rwc)
	}
	return w.c.bw
}

// finish completes the response after the handler returned.
func (w *response) finish() {
	if !w.WroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.HeadSent {
		w.sendHead(true)
	}
	w.Done = true
	if w.chunked && w.err == nil {
		_, w.err = w.c.bw.WriteString("0\r\n\r\n")
	}
	if w.Short(w.head) {
		// The client was promised more than it got: only closing the
		// connection tells it so.
		w.closeAfter = true
	}
	if err := w.c.bw.Flush(); err != nil && w.err == nil {
		w.err = err
	}
	// The buffer goes back to the pool between requests: idle
	// connections then hold no write buffer.
	w.c.bw.Reset(nil)
	bwPool.Put(w.c.bw)
	w.c.bw = nil
}

// Flush sends what has been written so far.
func (w *response) Flush() { w.FlushError() }

// FlushError is Flush with its error, for http.ResponseController.
func (w *response) FlushError() error {
	if w.Done {
		return nil
	}
	if !w.WroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.HeadSent {
		w.sendHead(false)
	}
	if w.err != nil {
		return w.err
	}
	w.err = w.c.bw.Flush()
	return w.err
}

// SetWriteDeadline and SetReadDeadline serve http.ResponseController.
func (w *response) SetWriteDeadline(t time.Time) error {
	w.c.wdl = t
	return w.c.rwc.SetWriteDeadline(t)
}

func (w *response) SetReadDeadline(t time.Time) error {
	w.c.rdl = t
	return w.c.rwc.SetReadDeadline(t)
}

// ReadFrom sends src as body; a file of known length leaves by sendfile
// when the response has a Content-Length and the connection is TCP. Like
// Reply.SendFile, it sends the body in pieces of Server.MinWriteRate ×
// WriteTimeout bytes, each with its own WriteTimeout, counted from the
// start of the body for the first.
func (w *response) ReadFrom(src io.Reader) (int64, error) {
	if !w.WroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	c := w.c
	piece := int64(0)
	if !w.head && heldresp.BodyAllowed(w.Status) && !w.Done {
		if piece = c.s.piece; piece > 0 {
			// The handler's time before the body is not the client's.
			c.nextPiece()
		}
	}
	if c.tcp == nil || w.head || !heldresp.BodyAllowed(w.Status) || w.CL < 0 || w.Done {
		var dst io.Writer = writerOnly{w}
		if piece > 0 {
			dst = &pacedWriter{w: w, c: c, piece: piece, left: piece}
		}
		return io.CopyBuffer(dst, src, make([]byte, 32<<10))
	}
	if !w.HeadSent {
		w.sendHead(false)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.err = c.bw.Flush(); w.err != nil {
		return 0, w.err
	}
	// The TCP connection's ReadFrom uses sendfile only for an *os.File,
	// bare or directly under one *io.LimitedReader: read from the file
	// itself, and account to the caller's limit.
	remain := w.CL - w.Written
	outer, _ := src.(*io.LimitedReader)
	if outer != nil {
		src, remain = outer.R, min(remain, outer.N)
	}
	if piece <= 0 {
		piece = remain
	}
	var total int64
	for remain > 0 {
		if total > 0 {
			c.nextPiece()
		}
		n, err := c.tcp.ReadFrom(&io.LimitedReader{R: src, N: min(piece, remain)})
		total += n
		remain -= n
		w.Written += n
		if outer != nil {
			outer.N -= n
		}
		if err != nil {
			w.err = err
			return total, err
		}
		if n < min(piece, remain+n) {
			break // src ended
		}
	}
	return total, nil
}

// pacedWriter writes to a response in pieces, moving the write deadline
// after each piece (Server.MinWriteRate); left is what the current piece
// still takes.
type pacedWriter struct {
	w           io.Writer
	c           *conn
	piece, left int64
}

func (p *pacedWriter) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		k := int(min(int64(len(b)), p.left))
		m, err := p.w.Write(b[:k])
		n += m
		if err != nil {
			return n, err
		}
		b = b[k:]
		if p.left -= int64(k); p.left == 0 {
			p.c.nextPiece()
			p.left = p.piece
		}
	}
	return n, nil
}

// writerOnly hides ReadFrom, so io.Copy uses Write.
type writerOnly struct{ io.Writer }

func hasTokenString(values []string, token string) bool {
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
