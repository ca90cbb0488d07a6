package h1

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// bufferBeforeHead is how much body a slow-path response holds back before
// sending its head, so that a short body without Content-Length gets one
// (net/http holds back 2048 bytes; a cache's error pages fit either way).
const bufferBeforeHead = 4 << 10

// response is the http.ResponseWriter of the slow path. Like net/http's:
// the header map is frozen at WriteHeader (or the first Write), a body
// without Content-Length is measured if it is short and chunked if not (or
// the connection closes after it, for HTTP/1.0), HEAD and bodiless
// statuses send no body, and a body short of its Content-Length closes
// the connection.
type response struct {
	c   *conn
	req *http.Request
	hdr http.Header
	// sent is the header map as of WriteHeader.
	sent        http.Header
	status      int
	wroteHeader bool
	headSent    bool
	head        bool
	// cl is the declared Content-Length, -1 if none.
	cl      int64
	chunked bool
	// written counts the body bytes the handler wrote.
	written int64
	held    []byte
	// closeAfter: the connection closes after this response.
	closeAfter      bool
	http10KeepAlive bool
	done            bool
	err             error
}

var heldPool = sync.Pool{New: func() any { b := make([]byte, 0, bufferBeforeHead); return &b }}

var bwPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}

func (w *response) Header() http.Header { return w.hdr }

func (w *response) WriteHeader(code int) {
	if w.done || w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("h1: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		// An informational answer goes out at once; the final one follows.
		w.writer()
		w.c.bw.WriteString("HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code) + "\r\n")
		w.hdr.Write(w.c.bw)
		w.c.bw.WriteString("\r\n")
		w.err = w.c.bw.Flush()
		return
	}
	w.wroteHeader = true
	w.status = code
	w.sent = w.hdr.Clone()
	if v := w.sent.Get("Content-Length"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			w.cl = n
		} else {
			w.c.s.Logger.Warn("h1: handler set an invalid Content-Length; dropped", "value", v)
			w.sent.Del("Content-Length")
		}
	}
}

func (w *response) Write(p []byte) (int, error) {
	if w.done {
		return 0, http.ErrHandlerTimeout
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if w.cl >= 0 && w.written+int64(len(p)) > w.cl {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if !w.headSent {
		if w.held == nil {
			w.held = (*heldPool.Get().(*[]byte))[:0]
		}
		if len(w.held)+len(p) <= bufferBeforeHead {
			w.held = append(w.held, p...)
			return len(p), nil
		}
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
	w.headSent = true
	bw := w.writer()
	h := w.sent
	allowed := bodyAllowed(w.status)
	if !allowed {
		h.Del("Transfer-Encoding")
		if w.status != http.StatusNotModified {
			h.Del("Content-Length")
		}
	} else if w.cl < 0 {
		switch {
		case final:
			w.cl = w.written
			h.Set("Content-Length", strconv.FormatInt(w.cl, 10))
		case w.head:
			// No body follows, so no framing either.
		case w.req.ProtoAtLeast(1, 1):
			w.chunked = true
			h.Set("Transfer-Encoding", "chunked")
		default:
			w.closeAfter = true // HTTP/1.0: the body ends with the connection
		}
	}
	if allowed && len(w.held) > 0 {
		if _, ok := h["Content-Type"]; !ok && h.Get("Content-Encoding") == "" {
			h.Set("Content-Type", http.DetectContentType(w.held))
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
	bw.WriteString("HTTP/1.1 " + strconv.Itoa(w.status) + " " + http.StatusText(w.status) + "\r\n")
	h.Write(bw)
	bw.WriteString("\r\n")
	if len(w.held) > 0 && allowed && !w.head {
		w.writeBody(w.held)
	}
	if w.held != nil {
		b := w.held[:0]
		heldPool.Put(&b)
		w.held = nil
	}
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
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headSent {
		w.sendHead(true)
	}
	w.done = true
	if w.chunked && w.err == nil {
		_, w.err = w.c.bw.WriteString("0\r\n\r\n")
	}
	if w.cl >= 0 && w.written < w.cl && bodyAllowed(w.status) && !w.head {
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
	if w.done {
		return nil
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headSent {
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
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	c := w.c
	piece := int64(0)
	if !w.head && bodyAllowed(w.status) && !w.done {
		if piece = c.s.piece; piece > 0 {
			// The handler's time before the body is not the client's.
			c.nextPiece()
		}
	}
	if c.tcp == nil || w.head || !bodyAllowed(w.status) || w.cl < 0 || w.done {
		var dst io.Writer = writerOnly{w}
		if piece > 0 {
			dst = &pacedWriter{w: w, c: c, piece: piece, left: piece}
		}
		return io.CopyBuffer(dst, src, make([]byte, 32<<10))
	}
	if !w.headSent {
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
	remain := w.cl - w.written
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
		w.written += n
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
