package h1

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/geocdn/geocdn/internal/heldresp"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Connection states, for Shutdown: an idle connection may be closed at
// once; an active one finishes its request first.
const (
	stateIdle int32 = iota
	stateActive
	stateClosed
)

// readBufSize is the read buffer of a connection; a head longer than this
// goes to net/http's parser, which reads it up to MaxHeaderBytes.
const readBufSize = 8 << 10

// copyLimit is the body size up to which a fast reply copies the body
// after the head and makes one write; above it, writev sends both.
const copyLimit = 4 << 10

// deadlineSlack is how far a deadline may drift from its exact value
// before it is set again: setting one costs a timer update per request,
// and a timeout a second shorter than configured changes nothing. A
// timeout shorter than 8s gets an eighth of itself instead (slackFor).
const deadlineSlack = time.Second

// limitReader caps what the read buffer may take from the connection
// while a head is read, so a client cannot send an endless head. While
// rec is not nil it keeps a copy of what it reads: the raw head, for a
// head too long for the read buffer to be scanned in place.
type limitReader struct {
	r   io.Reader
	n   int64
	rec []byte
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if l.rec != nil {
		l.rec = append(l.rec, p[:n]...)
	}
	return n, err
}

type conn struct {
	s      *Server
	rwc    net.Conn
	raw    syscall.RawConn // nil when not a TCP connection
	tcp    *net.TCPConn
	remote string
	lr     limitReader
	br     *bufio.Reader
	bw     *bufio.Writer // slow path only, made on first use
	state  atomic.Int32
	// served counts the requests read; the first waits ReadHeaderTimeout
	// for its first byte, the others IdleTimeout.
	served int

	// rdl and wdl are the read and write deadlines last set (zero: none).
	rdl, wdl time.Time

	// tls is the connection's TLS state once its handshake is done; nil
	// on a plain connection.
	tls *tls.ConnectionState

	req   Request
	reply Reply
	wbuf  []byte // a fast reply's head (and small body)
	hbuf  []byte // the fast handler's header scratch
	iov   net.Buffers
}

func newConn(s *Server, rw net.Conn) *conn {
	c := &conn{s: s, rwc: rw, remote: rw.RemoteAddr().String()}
	if tc, ok := rw.(*net.TCPConn); ok {
		c.tcp = tc
		if haveSendfile {
			c.raw, _ = tc.SyscallConn()
		}
	}
	c.lr.r = rw
	c.br = bufio.NewReaderSize(&c.lr, readBufSize)
	c.wbuf = make([]byte, 0, 1024)
	c.hbuf = make([]byte, 0, 512)
	return c
}

func (c *conn) serve() {
	defer func() {
		c.state.Store(stateClosed)
		c.rwc.Close()
		c.s.forget(c)
	}()
	defer func() {
		// A panic in the fast handler costs its connection, not the
		// process, as a panic in Handler does (runHandler).
		if p := recover(); p != nil {
			c.s.Logger.Error("h1: fast handler panic", "path", c.req.Path, "panic", fmt.Sprint(p))
		}
	}()
	if tc, ok := c.rwc.(*tls.Conn); ok {
		if !c.handshake(tc) {
			return
		}
		if fn := c.s.TLSNextProto[c.tls.NegotiatedProtocol]; fn != nil {
			c.state.Store(stateActive) // busy until fn returns
			fn(tc)
			return
		}
	}
	for {
		// What the next head may take from the connection, as net/http
		// counts it: MaxHeaderBytes plus 4 KiB of slack.
		c.lr.n = int64(c.s.MaxHeaderBytes) + 4096
		if !c.awaitRequest() {
			return
		}
		start := time.Now()
		h, complete := c.peekHead(start)
		if complete && h.fast && c.s.Fast != nil {
			if answered, keep := c.serveFast(&h, start); answered {
				if !keep || !c.idle() {
					return
				}
				continue
			}
		}
		if !c.serveSlow(&h, complete, start) || !c.idle() {
			return
		}
	}
}

// awaitRequest waits for the first byte of the next request and marks the
// connection active. It reports false when the connection is done.
func (c *conn) awaitRequest() bool {
	if c.br.Buffered() == 0 {
		if d := c.waitTimeout(); d > 0 {
			c.setReadDeadline(time.Now().Add(d))
		}
		if _, err := c.br.Peek(1); err != nil {
			return false
		}
	}
	c.served++
	return c.state.CompareAndSwap(stateIdle, stateActive)
}

// waitTimeout bounds the wait for a request's first byte. A new
// connection has had no request to earn it IdleTimeout: like net/http,
// it gets ReadHeaderTimeout (or ReadTimeout), else a client could hold
// a connection for IdleTimeout without sending a byte.
func (c *conn) waitTimeout() time.Duration {
	s := c.s
	if c.served == 0 {
		for _, d := range []time.Duration{s.ReadHeaderTimeout, s.ReadTimeout, s.IdleTimeout} {
			if d > 0 {
				return d
			}
		}
		return 0
	}
	if s.IdleTimeout > 0 {
		return s.IdleTimeout
	}
	return s.ReadTimeout
}

// idle marks the connection as waiting for a request; false means the
// server is shutting down and the connection should close.
func (c *conn) idle() bool {
	c.state.Store(stateIdle)
	return !c.s.closing.Load()
}

// peekHead scans the head in the read buffer, reading more while it is
// incomplete and fits. start is when the head's first byte was seen.
func (c *conn) peekHead(start time.Time) (head, bool) {
	buf, _ := c.br.Peek(c.br.Buffered())
	h, complete := scanHead(buf, &c.s.slow)
	if complete {
		return h, true
	}
	c.setReadDeadline(c.headDeadline(start))
	for !complete && c.br.Buffered() < c.br.Size() {
		if _, err := c.br.Peek(c.br.Buffered() + 1); err != nil {
			break // net/http's parser meets the same error and answers it
		}
		buf, _ = c.br.Peek(c.br.Buffered())
		h, complete = scanHead(buf, &c.s.slow)
	}
	return h, complete
}

// headDeadline is when reading a head that began at start must end: the
// sooner of ReadHeaderTimeout and ReadTimeout, as net/http counts them
// (zero: none).
func (c *conn) headDeadline(start time.Time) time.Time {
	d := c.s.ReadHeaderTimeout
	if rt := c.s.ReadTimeout; rt > 0 && (d <= 0 || rt < d) {
		d = rt
	}
	if d <= 0 {
		return time.Time{}
	}
	return start.Add(d)
}

func (c *conn) setReadDeadline(t time.Time) {
	if d := t.Sub(c.rdl); d > c.s.rslack || d < -c.s.rslack || c.rdl.IsZero() {
		c.rwc.SetReadDeadline(t)
		c.rdl = t
	}
}

func (c *conn) setWriteDeadline(t time.Time) {
	if d := t.Sub(c.wdl); d > c.s.wslack || d < -c.s.wslack || c.wdl.IsZero() {
		c.rwc.SetWriteDeadline(t)
		c.wdl = t
	}
}

// nextPiece gives the next piece of a body (Server.MinWriteRate) its
// WriteTimeout, counted from now: the client has taken the last one in
// time. It is set exactly, without slack, since a piece is a window.
func (c *conn) nextPiece() {
	t := time.Now().Add(c.s.WriteTimeout)
	c.rwc.SetWriteDeadline(t)
	c.wdl = t
}

// handshake runs tc's TLS handshake under HandshakeTimeout and keeps its
// state; false means the connection is to be closed.
func (c *conn) handshake(tc *tls.Conn) bool {
	d := c.s.HandshakeTimeout
	if d <= 0 {
		d = c.s.ReadHeaderTimeout
	}
	if d <= 0 {
		d = defaultHandshakeTimeout
	}
	tc.SetDeadline(time.Now().Add(d))
	ctx, cancel := context.WithTimeout(c.s.baseCtx, d)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		// Scanners, clients that gave up, unknown names without a
		// default certificate: common and not the operator's concern.
		c.s.Logger.Debug("h1: tls handshake", "remote", c.remote, "err", err)
		return false
	}
	tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	c.tls = &st
	return true
}

// defaultHandshakeTimeout bounds a TLS handshake when the Server sets no
// timeout at all.
const defaultHandshakeTimeout = 10 * time.Second

// serveFast offers the request to the fast handler. answered reports that
// the handler took it; keep that the connection may serve another.
func (c *conn) serveFast(h *head, now time.Time) (answered, keep bool) {
	c.req = Request{Head: h.isHead, Path: string(h.path), Query: string(h.query), Host: h.host, TLS: c.tls != nil}
	c.reply = Reply{c: c, now: now, head: h.isHead, http10: h.http10, close: h.close || c.s.closing.Load()}
	if d := c.s.WriteTimeout; d > 0 {
		c.setWriteDeadline(now.Add(d))
	}
	if !c.s.Fast(&c.reply, &c.req) {
		if c.reply.sent {
			// A handler that wrote and then declined broke its contract;
			// the connection's framing cannot be trusted any more.
			c.s.Logger.Error("h1: fast handler declined after replying", "path", c.req.Path)
			return true, false
		}
		return false, true
	}
	c.br.Discard(h.n)
	if !c.reply.sent {
		c.s.Logger.Error("h1: fast handler answered without replying", "path", c.req.Path)
		c.writeError(http.StatusInternalServerError, "")
		return true, false
	}
	return true, c.reply.err == nil && !c.reply.close
}

// serveSlow reads the request with net/http's parser and runs Handler.
// scanned reports that h describes the head (it fit the read buffer);
// start is when its first byte was seen.
func (c *conn) serveSlow(h *head, scanned bool, start time.Time) bool {
	if !scanned {
		c.setReadDeadline(c.headDeadline(start)) // the rest of the head
		// net/http's parser drops what the checks below need (every Host
		// line when the target is absolute, Transfer-Encoding on HTTP/1.0):
		// keep the raw head as it is read, to scan it afterwards.
		buf, _ := c.br.Peek(c.br.Buffered())
		c.lr.rec = append(make([]byte, 0, 2*len(buf)), buf...)
	}
	req, err := http.ReadRequest(c.br)
	if !scanned {
		var complete bool
		if *h, complete = scanHead(c.lr.rec, &c.s.slow); complete {
			scanned = true
		}
		c.lr.rec = nil
	}
	if err != nil {
		switch {
		case c.lr.n <= 0:
			c.writeError(http.StatusRequestHeaderFieldsTooLarge, "")
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isNetError(err):
			// The client left or stalled: nobody to answer.
		case strings.Contains(err.Error(), "unsupported transfer encoding"):
			c.writeError(http.StatusNotImplemented, "")
		default:
			c.writeError(http.StatusBadRequest, "")
		}
		return false
	}
	c.lr.n = math.MaxInt64
	if d := c.s.ReadTimeout; d > 0 {
		c.setReadDeadline(start.Add(d)) // the body, if any
	}
	if msg := badRequest(req, h, scanned); msg != "" {
		code := http.StatusBadRequest
		if req.ProtoMajor != 1 {
			code = http.StatusHTTPVersionNotSupported
		}
		c.writeError(code, msg)
		return false
	}
	if e := req.Header.Get("Expect"); e != "" && !strings.EqualFold(e, "100-continue") {
		c.writeError(http.StatusExpectationFailed, "")
		return false
	}
	ctx, cancel := context.WithCancel(c.s.baseCtx)
	defer cancel()
	req = req.WithContext(ctx)
	req.RemoteAddr = c.remote
	req.TLS = c.tls
	w := &response{State: heldresp.State{Hdr: make(http.Header), CL: -1}, c: c, req: req, head: req.Method == http.MethodHead}
	// The edge never reads request bodies: rather than drain one, close
	// after the answer.
	w.closeAfter = req.Close || req.Body != http.NoBody || c.s.closing.Load()
	w.http10KeepAlive = req.ProtoMajor == 1 && req.ProtoMinor == 0 && !req.Close
	if d := c.s.WriteTimeout; d > 0 {
		c.setWriteDeadline(time.Now().Add(d))
	}
	if !c.runHandler(w, req) {
		return false
	}
	w.finish()
	return w.err == nil && !w.closeAfter
}

// badRequest checks what net/http's server checks after parsing, in its
// order, and the framing of HTTP/1.0 that net/http lets through. h is the
// raw head's scan when scanned (after a long head, when it could be
// scanned at all).
func badRequest(req *http.Request, h *head, scanned bool) string {
	if req.ProtoMajor != 1 {
		return "unsupported protocol version"
	}
	if req.ProtoAtLeast(1, 1) && req.Method != http.MethodConnect {
		if scanned && h.hosts == 0 || !scanned && req.Host == "" {
			return "missing required Host header"
		}
	}
	// An absolute-form target overrides the Host line (req.Host is the
	// target's), but net/http still refuses a malformed Host line; the
	// scan saw every one.
	if scanned && h.badHost || req.Host != "" && !httpguts.ValidHostHeader(req.Host) {
		return "malformed Host header"
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return "invalid header name"
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return "invalid header value"
			}
		}
	}
	if scanned && h.te && !req.ProtoAtLeast(1, 1) {
		// net/http ignores Transfer-Encoding on HTTP/1.0 and reads the
		// request as bodiless (or by Content-Length): a proxy in front
		// that honoured it would see another request boundary than ours.
		// RFC 9112 § 6.1: treat the framing as faulty, as nginx does.
		return "Transfer-Encoding in an HTTP/1.0 request"
	}
	return ""
}

// runHandler calls Handler, turning a panic into a closed connection as
// net/http does. It reports whether the handler returned normally.
func (c *conn) runHandler(w *response, req *http.Request) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				c.s.Logger.Error("h1: handler panic", "path", req.URL.Path, "panic", fmt.Sprint(p))
			}
			ok = false
		}
	}()
	c.s.Handler.ServeHTTP(w, req)
	return true
}

// writeError answers a request the server could not hand to anyone, in
// net/http's words, and the connection then closes.
func (c *conn) writeError(code int, detail string) {
	text := strconv.Itoa(code) + " " + http.StatusText(code)
	if detail != "" {
		text += ": " + detail
	}
	c.rwc.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(c.rwc, "HTTP/1.1 "+text+"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"+text)
	if c.tcp != nil {
		// Let the answer reach a client that may still be sending,
		// rather than reset the connection over it.
		c.tcp.CloseWrite()
	}
}

// isNetError reports an error of the connection itself (not of what came
// over it: a *url.Error is a net.Error too, but answers 400).
func isNetError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, syscall.ECONNRESET)
}

// Reply is how a FastHandler answers. It sends the status line, Date and
// Connection itself; the handler gives the other header lines, each ending
// in CRLF and including Content-Length, which must match the body.
type Reply struct {
	c       *conn
	now     time.Time
	head    bool
	http10  bool
	close   bool
	sent    bool
	ownDate bool
	err     error
}

// OwnDate says that the header lines the handler gives carry a Date field
// of their own, which the Reply then does not add: a cache serving a
// stored response sends the Date its origin gave it (RFC 9110 §6.6.1),
// with an Age.
func (w *Reply) OwnDate() { w.ownDate = true }

// Buffer returns an empty scratch buffer for the header lines, reused
// across requests.
func (w *Reply) Buffer() []byte { return w.c.hbuf[:0] }

// Now is the time the request was read, as the Date header gives it.
func (w *Reply) Now() time.Time { return w.now }

// Send answers with status, the header lines hdr and body; body is left
// out for HEAD and for statuses without one.
func (w *Reply) Send(status int, hdr, body []byte) error {
	c := w.c
	if !w.begin(hdr) {
		return w.err
	}
	out := w.appendHead(c.wbuf[:0], status, hdr)
	if w.head || !heldresp.BodyAllowed(status) || len(body) == 0 {
		_, w.err = c.rwc.Write(out)
	} else if len(body) <= copyLimit {
		out = append(out, body...)
		_, w.err = c.rwc.Write(out)
	} else {
		c.iov = append(c.iov[:0], out, body)
		_, w.err = c.iov.WriteTo(c.rwc)
	}
	c.wbuf = out[:0]
	return w.err
}

// SendFile answers 200 with the header lines hdr and size bytes of f from
// its start: by sendfile on a TCP connection, with the head held back by
// MSG_MORE so that head and body leave together. A body larger than
// Server.MinWriteRate × WriteTimeout goes in pieces of that size, each
// with its own WriteTimeout.
func (w *Reply) SendFile(hdr []byte, f *os.File, size int64) error {
	c := w.c
	if !w.begin(hdr) {
		return w.err
	}
	out := w.appendHead(c.wbuf[:0], http.StatusOK, hdr)
	c.wbuf = out[:0]
	if w.head || size == 0 {
		_, w.err = c.rwc.Write(out)
		return w.err
	}
	if c.raw != nil {
		w.err = sendFile(c.raw, out, f, size, c.s.piece, c.nextPiece)
	} else {
		w.err = copyFile(c.rwc, out, f, size, c.s.piece, c.nextPiece)
	}
	return w.err
}

// copyFile writes hdr and then size bytes of f from its start, for
// connections without sendfile: in pieces of piece bytes (0: all at once),
// calling next between two.
func copyFile(w io.Writer, hdr []byte, f *os.File, size, piece int64, next func()) error {
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	if piece <= 0 {
		piece = size
	}
	// A TLS connection has no ReadFrom, so io.Copy would allocate 32 KiB
	// per response: a pooled buffer instead, twice that, which also
	// halves the reads.
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	for off := int64(0); off < size; off += piece {
		if off > 0 {
			next()
		}
		n := min(piece, size-off)
		m, err := io.CopyBuffer(w, io.NewSectionReader(f, off, n), *buf)
		if err != nil {
			return err
		}
		if m < n {
			return io.ErrUnexpectedEOF
		}
	}
	return nil
}

// copyBufs are copyFile's buffers.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

func (w *Reply) begin(hdr []byte) bool {
	if w.sent {
		w.err = errors.New("h1: reply sent twice")
		w.close = true
		return false
	}
	w.sent = true
	if cap(hdr) > cap(w.c.hbuf) {
		w.c.hbuf = hdr[:0]
	}
	return true
}

func (w *Reply) appendHead(dst []byte, status int, hdr []byte) []byte {
	dst = appendStatusLine(dst, status)
	if !w.ownDate {
		dst = appendDate(dst, w.now)
	}
	if w.close {
		dst = append(dst, "Connection: close\r\n"...)
	} else if w.http10 {
		dst = append(dst, "Connection: keep-alive\r\n"...)
	}
	dst = append(dst, hdr...)
	return append(dst, "\r\n"...)
}

func appendStatusLine(dst []byte, status int) []byte {
	if status == http.StatusOK {
		return append(dst, "HTTP/1.1 200 OK\r\n"...)
	}
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, http.StatusText(status)...)
	return append(dst, "\r\n"...)
}

// dateLine is the Date header of one second.
type dateLine struct {
	sec  int64
	line []byte // "Date: ...\r\n"
	val  string
}

var curDate atomic.Pointer[dateLine]

func date(now time.Time) *dateLine {
	sec := now.Unix()
	d := curDate.Load()
	if d == nil || d.sec != sec {
		v := now.UTC().Format(http.TimeFormat)
		d = &dateLine{sec: sec, line: []byte("Date: " + v + "\r\n"), val: v}
		curDate.Store(d)
	}
	return d
}

func appendDate(dst []byte, now time.Time) []byte {
	return append(dst, date(now).line...)
}
