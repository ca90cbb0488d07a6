// Package heldresp is the bookkeeping the edge's own HTTP/1.1 and HTTP/2
// servers (internal/h1, internal/h2) share in their http.ResponseWriter:
// the header map frozen at WriteHeader, the declared Content-Length, the
// body counted against it, and up to HoldBytes of body held back before
// the head goes out, so that a short body gets a Content-Length and a
// sniffed Content-Type, as net/http's servers give them.
package heldresp

import (
	"log/slog"
	"net/http"
	"strconv"
	"sync"
)

// HoldBytes is how much body a response holds back before sending its
// head (net/http holds back 2048 bytes; a cache's error pages fit either
// way).
const HoldBytes = 4 << 10

var heldPool = sync.Pool{New: func() any { b := make([]byte, 0, HoldBytes); return &b }}

// State is a response's head and body accounting. The zero value is not
// ready: set Hdr to an empty map and CL to -1.
type State struct {
	// Hdr is the header map the handler sees; Sent is a copy of it as of
	// WriteHeader.
	Hdr, Sent   http.Header
	Status      int
	WroteHeader bool
	HeadSent    bool
	// Done: the handler returned; writes fail.
	Done bool
	// CL is the declared Content-Length, -1 if none; Written counts the
	// body bytes the handler wrote.
	CL, Written int64
	// Held is the body held back while the head is not sent.
	Held []byte
}

// Freeze records the final status: the header as it is now, and its
// Content-Length if it parses (an invalid one is dropped, and logged as
// server's).
func (s *State) Freeze(code int, log *slog.Logger, server string) {
	s.WroteHeader = true
	s.Status = code
	s.Sent = s.Hdr.Clone()
	if v := s.Sent.Get("Content-Length"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			s.CL = n
		} else {
			log.Warn(server+": handler set an invalid Content-Length; dropped", "value", v)
			s.Sent.Del("Content-Length")
		}
	}
}

// Accept counts p as body, after WriteHeader. It reports held when p was
// kept back because the head is not due yet; otherwise the caller sends
// the head (if it has not) and then p. The errors are net/http's: a write
// after the handler returned, a body on a status without one, more than
// the declared Content-Length.
func (s *State) Accept(p []byte) (held bool, err error) {
	if s.Done {
		return false, http.ErrHandlerTimeout
	}
	if !BodyAllowed(s.Status) {
		return false, http.ErrBodyNotAllowed
	}
	if s.CL >= 0 && s.Written+int64(len(p)) > s.CL {
		return false, http.ErrContentLength
	}
	s.Written += int64(len(p))
	if s.HeadSent {
		return false, nil
	}
	if s.Held == nil {
		s.Held = (*heldPool.Get().(*[]byte))[:0]
	}
	if len(s.Held)+len(p) <= HoldBytes {
		s.Held = append(s.Held, p...)
		return true, nil
	}
	return false, nil
}

// Framing settles the frozen header as the head goes out, and reports
// whether the status allows a body. A bodiless status loses its framing
// fields (a 304 keeps Content-Length); when final (the handler returned,
// so the held body is all of it) a body without a declared length gets
// one; a held body without Content-Type or Content-Encoding gets a
// sniffed type.
func (s *State) Framing(final bool) (allowed bool) {
	s.HeadSent = true
	h := s.Sent
	allowed = BodyAllowed(s.Status)
	if !allowed {
		h.Del("Transfer-Encoding")
		if s.Status != http.StatusNotModified {
			h.Del("Content-Length")
		}
	} else if s.CL < 0 && final {
		s.CL = s.Written
		h.Set("Content-Length", strconv.FormatInt(s.CL, 10))
	}
	if allowed && len(s.Held) > 0 {
		if _, ok := h["Content-Type"]; !ok && h.Get("Content-Encoding") == "" {
			h.Set("Content-Type", http.DetectContentType(s.Held))
		}
	}
	return allowed
}

// Release returns the held buffer to the pool, once it has been sent.
func (s *State) Release() {
	if s.Held != nil {
		b := s.Held[:0]
		heldPool.Put(&b)
		s.Held = nil
	}
}

// Short reports a body that ended short of its declared Content-Length
// (head: the request was HEAD, which promises no body).
func (s *State) Short(head bool) bool {
	return s.CL >= 0 && s.Written < s.CL && BodyAllowed(s.Status) && !head
}

// BodyAllowed reports whether a response with status may carry a body
// (RFC 9110 §6.4.1).
func BodyAllowed(status int) bool {
	return !(status >= 100 && status <= 199 || status == http.StatusNoContent || status == http.StatusNotModified)
}
