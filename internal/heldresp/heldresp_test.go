package heldresp

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func fresh() *State { return &State{Hdr: http.Header{}, CL: -1} }

func TestHoldsShortBodyAndMeasuresIt(t *testing.T) {
	s := fresh()
	s.Freeze(http.StatusOK, discard, "test")
	s.Hdr.Set("X-After", "1") // after WriteHeader: not sent
	for _, p := range []string{"<html><body>", "hello", "</body></html>"} {
		if held, err := s.Accept([]byte(p)); err != nil || !held {
			t.Fatalf("Accept(%q) = %v, %v; want held", p, held, err)
		}
	}
	if !s.Framing(true) {
		t.Fatal("200 allows a body")
	}
	if s.Sent.Get("Content-Length") != "31" || !strings.HasPrefix(s.Sent.Get("Content-Type"), "text/html") || s.Sent.Get("X-After") != "" {
		t.Fatalf("sent header %v", s.Sent)
	}
	if !s.HeadSent || string(s.Held) != "<html><body>hello</body></html>" {
		t.Fatalf("head sent %v, held %q", s.HeadSent, s.Held)
	}
	s.Release()
	if s.Held != nil {
		t.Fatal("held buffer kept after Release")
	}
}

func TestLongBodyIsNotHeld(t *testing.T) {
	s := fresh()
	s.Freeze(http.StatusOK, discard, "test")
	if held, _ := s.Accept(make([]byte, HoldBytes)); !held {
		t.Fatal("HoldBytes not held")
	}
	if held, err := s.Accept([]byte("x")); held || err != nil {
		t.Fatalf("one byte past HoldBytes: held %v, %v", held, err)
	}
	if s.Framing(false); s.Sent.Get("Content-Length") != "" {
		t.Fatalf("a streamed body got a Content-Length: %v", s.Sent)
	}
}

func TestErrors(t *testing.T) {
	s := fresh()
	s.Hdr.Set("Content-Length", "3")
	s.Freeze(http.StatusOK, discard, "test")
	if _, err := s.Accept([]byte("abcd")); !errors.Is(err, http.ErrContentLength) {
		t.Fatalf("4 bytes of 3: %v", err)
	}
	if _, err := s.Accept([]byte("abc")); err != nil || s.Short(false) {
		t.Fatalf("3 bytes of 3: %v, short %v", err, s.Short(false))
	}
	s = fresh()
	s.Hdr.Set("Content-Length", "10")
	s.Freeze(http.StatusOK, discard, "test")
	s.Accept([]byte("abc"))
	if !s.Short(false) || s.Short(true) {
		t.Fatal("3 of 10 bytes is short, except for HEAD")
	}
	s = fresh()
	s.Freeze(http.StatusNoContent, discard, "test")
	if _, err := s.Accept([]byte("x")); !errors.Is(err, http.ErrBodyNotAllowed) {
		t.Fatalf("a body on 204: %v", err)
	}
	s.Done = true
	if _, err := s.Accept(nil); !errors.Is(err, http.ErrHandlerTimeout) {
		t.Fatalf("after the handler returned: %v", err)
	}
	s = fresh()
	s.Hdr.Set("Content-Length", "-5")
	s.Freeze(http.StatusOK, discard, "test")
	if s.CL != -1 || s.Sent.Get("Content-Length") != "" {
		t.Fatalf("invalid Content-Length kept: %d %v", s.CL, s.Sent)
	}
}

func TestBodilessStatusesLoseFraming(t *testing.T) {
	for _, tc := range []struct {
		status int
		keepCL bool
	}{{http.StatusNoContent, false}, {http.StatusNotModified, true}, {http.StatusContinue, false}} {
		s := fresh()
		s.Hdr.Set("Content-Length", "42")
		s.Hdr.Set("Transfer-Encoding", "chunked")
		s.Freeze(tc.status, discard, "test")
		if s.Framing(true) {
			t.Errorf("%d allows a body", tc.status)
		}
		if s.Sent.Get("Transfer-Encoding") != "" || (s.Sent.Get("Content-Length") != "") != tc.keepCL {
			t.Errorf("%d: sent %v", tc.status, s.Sent)
		}
	}
}
