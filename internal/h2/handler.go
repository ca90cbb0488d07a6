package h2

import (
	"context"
	"fmt"
	"github.com/geocdn/geocdn/internal/heldresp"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"
)

// startHandler runs the Handler for a request on a goroutine of its own.
func (c *conn) startHandler(f *http2.MetaHeadersFrame, id uint32, method, path, scheme, authority string, declCL int64) (http2.ErrCode, bool) {
	c.mu.Lock()
	if c.nHandlers >= int(c.s.MaxConcurrentStreams) {
		// Only handlers of streams the client reset can make up the
		// difference with the open streams: rapid reset.
		c.resetLocked(nil, id, http2.ErrCodeRefusedStream)
		c.refused++
		c.mu.Unlock()
		if c.refused > int(c.s.MaxConcurrentStreams) {
			return http2.ErrCodeEnhanceYourCalm, false
		}
		return 0, true
	}
	c.mu.Unlock()

	req, err := c.newRequest(f, method, path, scheme, authority, declCL)
	if err != nil {
		return c.streamError(id, http2.ErrCodeProtocol)
	}
	ctx, cancel := context.WithCancel(c.ctx)
	st := &stream{id: id, handler: true, cancel: cancel, declCL: declCL,
		recvWindow: initialWindow, head: method == "HEAD"}
	rw := &responseWriter{State: heldresp.State{Hdr: http.Header{}, CL: -1}, c: c, st: st, req: req}
	if f.StreamEnded() {
		st.remoteDone, st.inEOF = true, true
		req.Body = http.NoBody
	} else {
		req.Body = &requestBody{c: c, st: st}
	}
	req = req.WithContext(ctx)
	c.mu.Lock()
	st.sendWindow = c.peerInitial
	c.streams[id] = st
	c.nHandlers++
	c.mu.Unlock()
	c.handlers.Add(1)
	go c.runHandler(rw, req)
	return 0, true
}

// newRequest is the http.Request of a HEADERS frame's fields.
func (c *conn) newRequest(f *http2.MetaHeadersFrame, method, path, scheme, authority string, declCL int64) (*http.Request, error) {
	hdr := make(http.Header, len(f.Fields))
	var cookies []string
	for _, hf := range f.RegularFields() {
		if hf.Name == "cookie" {
			cookies = append(cookies, hf.Value)
			continue
		}
		k := http.CanonicalHeaderKey(hf.Name)
		hdr[k] = append(hdr[k], hf.Value)
	}
	if len(cookies) > 0 {
		// RFC 9113 §8.2.3: split cookie fields are joined for HTTP/1.1.
		hdr["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	var u *url.URL
	var err error
	if method == "CONNECT" {
		u = &url.URL{Host: authority}
		path = authority
	} else if method == "OPTIONS" && path == "*" {
		u = &url.URL{Path: "*"}
	} else {
		u, err = url.ParseRequestURI(path)
		if err != nil {
			return nil, err
		}
	}
	_ = scheme
	r := &http.Request{
		Method:     method,
		URL:        u,
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Header:     hdr,
		Host:       authority,
		RequestURI: path,
		RemoteAddr: c.remote,
		TLS:        c.tls,
	}
	switch {
	case f.StreamEnded():
		r.ContentLength = 0
	case declCL >= 0:
		r.ContentLength = declCL
	default:
		r.ContentLength = -1
	}
	return r, nil
}

// runHandler serves one request and ends its stream.
func (c *conn) runHandler(rw *responseWriter, req *http.Request) {
	defer c.handlers.Done()
	st := rw.st
	defer func() {
		p := recover()
		if p != nil && p != http.ErrAbortHandler {
			c.s.Logger.Error("h2: handler panic", "path", req.URL.Path, "panic", fmt.Sprint(p))
		}
		c.mu.Lock()
		if p != nil {
			if !st.reset && !st.localDone {
				c.resetLocked(st, st.id, http2.ErrCodeInternal)
			}
		} else {
			rw.finishLocked()
		}
		rw.Done = true
		c.nHandlers--
		if !st.localDone && !st.reset {
			c.resetLocked(st, st.id, http2.ErrCodeInternal)
		} else if !st.remoteDone && !st.reset {
			// The answer is whole and the request body is not: the
			// client may stop sending it (RFC 9113 §8.1).
			c.resetLocked(st, st.id, http2.ErrCodeNo)
		}
		c.endStreamLocked(st, errStreamClosed)
		if c.goAway && len(c.streams) == 0 && c.nHandlers == 0 {
			c.closing = true
		}
		c.flushLocked()
		if c.closing {
			c.kickLocked()
		}
		c.mu.Unlock()
		st.cancel()
	}()
	c.s.Handler.ServeHTTP(rw, req)
}

// responseWriter is the http.ResponseWriter of a handler: like internal/h1's
// (the header map frozen at WriteHeader, a short body measured for its
// Content-Length, its type sniffed: heldresp), with DATA frames for a
// body, each Write waiting for the client's windows.
type responseWriter struct {
	heldresp.State
	c   *conn
	st  *stream
	req *http.Request
}

func (w *responseWriter) Header() http.Header { return w.Hdr }

func (w *responseWriter) WriteHeader(code int) {
	if w.Done || w.WroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("h2: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code >= 100 && code <= 199 {
		if code == http.StatusSwitchingProtocols {
			return // not in HTTP/2
		}
		c := w.c
		c.mu.Lock()
		if !w.st.reset {
			c.out = c.appendHeadersFrame(c.out, w.st.id, false, c.appendHeaderBlock(nil, code, w.Hdr))
			c.flushLocked()
		}
		c.mu.Unlock()
		return
	}
	w.Freeze(code, w.c.s.Logger, "h2")
}

func (w *responseWriter) Write(p []byte) (int, error) {
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
		c := w.c
		c.mu.Lock()
		err := w.sendHeadLocked(false)
		c.mu.Unlock()
		if err != nil {
			return 0, err
		}
	}
	if w.st.head {
		return len(p), nil
	}
	c := w.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := w.writeDataLocked(p, false); err != nil {
		return 0, err
	}
	c.flushLocked()
	return len(p), nil
}

// writeDataLocked sends p as DATA frames, waiting for window as needed;
// end puts END_STREAM on the last.
func (w *responseWriter) writeDataLocked(p []byte, end bool) error {
	c, st := w.c, w.st
	for len(p) > 0 || end {
		if st.reset {
			return st.resetErr
		}
		if c.werr != nil || c.closed {
			return errConnClosed
		}
		if len(c.out) >= maxPending {
			c.waitRoomLocked()
			continue
		}
		n := c.windowFor(st, len(p))
		if n == 0 && len(p) > 0 {
			if len(c.out) > 0 && !c.writing {
				// Out with what is queued first; it releases c.mu, so
				// look again after.
				c.flushLocked()
				continue
			}
			c.writers++
			c.stallLocked()
			c.cond.Wait()
			c.writers--
			continue
		}
		fl := http2.Flags(0)
		if end && n == len(p) {
			fl = http2.FlagDataEndStream
			st.localDone = true
			end = false
		}
		c.out = appendFrameHeader(c.out, n, http2.FrameData, fl, st.id)
		c.out = append(c.out, p[:n]...)
		p = p[n:]
	}
	return nil
}

// sendHeadLocked sends the HEADERS frame, then the body held back. final
// reports that the handler has returned, so the held body is all of it.
func (w *responseWriter) sendHeadLocked(final bool) error {
	c, st := w.c, w.st
	h := w.Sent
	allowed := w.Framing(final)
	held := w.Held
	defer w.Release()
	if st.reset {
		return st.resetErr
	}
	if c.werr != nil || c.closed {
		return errConnClosed
	}
	noBody := !allowed || st.head || final && len(held) == 0
	c.out = c.appendHeadersFrame(c.out, st.id, noBody, c.appendHeaderBlock(nil, w.Status, h))
	if noBody {
		st.localDone = true
		return nil
	}
	if len(held) > 0 || final {
		return w.writeDataLocked(held, final)
	}
	return nil
}

// finishLocked completes the response after the handler returned.
func (w *responseWriter) finishLocked() {
	if !w.WroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.HeadSent {
		w.sendHeadLocked(true)
		return
	}
	if !w.st.localDone {
		if w.Short(w.st.head) {
			// Promised more than it got: only a reset tells the client.
			w.c.resetLocked(w.st, w.st.id, http2.ErrCodeInternal)
			return
		}
		w.writeDataLocked(nil, true)
	}
}

// Flush sends what has been written so far.
func (w *responseWriter) Flush() { w.FlushError() }

// FlushError is Flush with its error, for http.ResponseController.
func (w *responseWriter) FlushError() error {
	if w.Done {
		return nil
	}
	if !w.WroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	c := w.c
	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	if !w.HeadSent {
		err = w.sendHeadLocked(false)
	}
	c.flushLocked()
	if err == nil && c.werr != nil {
		err = c.werr
	}
	return err
}

// appendHeaderBlock encodes a handler's response header.
func (c *conn) appendHeaderBlock(dst []byte, status int, h http.Header) []byte {
	dst = appendStatus(dst, status)
	if _, ok := h["Date"]; !ok && status >= 200 {
		dst = appendInt(dst, 0, 4, idxDate)
		dst = appendString(dst, c.s.date.at(time.Now()))
	}
	for k, vs := range h {
		name := strings.ToLower(k)
		if connSpecific(name) || name == "te" || strings.HasPrefix(name, ":") {
			continue
		}
		for _, v := range vs {
			v = strings.TrimSpace(v)
			if strings.ContainsAny(v, "\r\n\x00") {
				continue
			}
			dst = appendField(dst, name, v)
		}
	}
	return dst
}

// requestBody is a request's body, fed by the stream's DATA frames; what
// is read goes back to the client as window.
type requestBody struct {
	c  *conn
	st *stream
}

func (b *requestBody) Read(p []byte) (int, error) {
	c, st := b.c, b.st
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(st.inbuf) == 0 && !st.inEOF && !st.reset && !st.closed && c.werr == nil && !c.closed {
		c.cond.Wait()
	}
	if len(st.inbuf) == 0 {
		switch {
		case st.closed:
			return 0, http.ErrBodyReadAfterClose
		case st.inEOF:
			return 0, io.EOF
		case st.reset:
			return 0, st.resetErr
		}
		return 0, errConnClosed
	}
	n := copy(p, st.inbuf)
	st.inbuf = st.inbuf[n:]
	if len(st.inbuf) == 0 {
		st.inbuf = nil
	}
	c.creditLocked(0, int64(n))
	if !st.remoteDone {
		c.creditLocked(st.id, int64(n))
	}
	c.flushLocked()
	return n, nil
}

func (b *requestBody) Close() error {
	c, st := b.c, b.st
	c.mu.Lock()
	defer c.mu.Unlock()
	if !st.closed {
		st.closed = true
		if n := int64(len(st.inbuf)); n > 0 {
			c.creditLocked(0, n)
		}
		st.inbuf = nil
		c.cond.Broadcast()
	}
	return nil
}

var _ http.Flusher = (*responseWriter)(nil)
