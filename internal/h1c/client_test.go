package h1c

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// server starts an httptest server and counts the connections it
// accepts.
func server(t *testing.T, h http.HandlerFunc) (host string, conns *atomic.Int32) {
	t.Helper()
	conns = new(atomic.Int32)
	s := httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s.Listener.Addr().String(), conns
}

// rawServer accepts connections on loopback and hands each to serve,
// on a goroutine of its own; the connection is closed when serve
// returns.
func rawServer(t testing.TB, serve func(net.Conn)) (host string, conns *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns = new(atomic.Int32)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			wg.Go(func() {
				defer c.Close()
				serve(c)
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String(), conns
}

// readRequest reads one request head from c, a byte at a time so that
// nothing after it is consumed.
func readRequest(c net.Conn) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for !bytes.HasSuffix(b, []byte("\r\n\r\n")) {
		if _, err := c.Read(one); err != nil {
			return string(b), err
		}
		b = append(b, one[0])
	}
	return string(b), nil
}

func body1K() []byte { return bytes.Repeat([]byte("0123456789abcdef"), 64) }

func TestGet(t *testing.T) {
	body := body1K()
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:]) + `"`
	var gotXFF, gotINM atomic.Value
	host, conns := server(t, func(w http.ResponseWriter, r *http.Request) {
		gotXFF.Store(r.Header.Get("X-Forwarded-For"))
		gotINM.Store(r.Header.Get("If-None-Match"))
		w.Header().Set("Etag", etag)
		w.Header().Set("Cache-Status", "geocdn; hit")
		w.Write(body)
	})
	var cl Client
	var resp Response
	req := Request{Host: host, Target: "/a/b?c=d", Header: []Field{{"X-Forwarded-For", "192.0.2.1"}, {"If-None-Match", `"old"`}}}
	for i := range 3 {
		if err := cl.Do(t.Context(), &req, &resp); err != nil {
			t.Fatal(err)
		}
		if resp.Status != 200 || resp.ContentLength != int64(len(body)) {
			t.Errorf("status %d, Content-Length %d; want 200, %d", resp.Status, resp.ContentLength, len(body))
		}
		if got := resp.GetString("etag"); got != etag {
			t.Errorf("Etag = %q, want %q", got, etag)
		}
		if got := string(resp.Get("Cache-Status")); got != "geocdn; hit" {
			t.Errorf("Cache-Status = %q", got)
		}
		h := sha256.New()
		n, err := resp.WriteTo(h)
		if err != nil || n != int64(len(body)) || !bytes.Equal(h.Sum(nil), sum[:]) {
			t.Errorf("WriteTo = %d, %v; hash %x, want %d bytes hashing to %x", n, err, h.Sum(nil), len(body), sum)
		}
		// The head stays readable after the body.
		if got := resp.GetString("Etag"); got != etag {
			t.Errorf("after the body, Etag = %q, want %q", got, etag)
		}
		resp.Close()
		if i == 0 && (gotXFF.Load() != "192.0.2.1" || gotINM.Load() != `"old"`) {
			t.Errorf("server saw X-Forwarded-For %q, If-None-Match %q", gotXFF.Load(), gotINM.Load())
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 3 requests in a row, want 1", n)
	}
}

func TestChunked(t *testing.T) {
	host, conns := server(t, func(w http.ResponseWriter, r *http.Request) {
		for i := range 50 {
			fmt.Fprintf(w, "piece %d;", i)
			w.(http.Flusher).Flush()
		}
	})
	var want strings.Builder
	for i := range 50 {
		fmt.Fprintf(&want, "piece %d;", i)
	}
	var cl Client
	var resp Response
	for range 2 {
		if err := cl.Do(t.Context(), &Request{Host: host}, &resp); err != nil {
			t.Fatal(err)
		}
		if resp.ContentLength != -1 {
			t.Errorf("Content-Length %d, want -1", resp.ContentLength)
		}
		got, err := io.ReadAll(&resp)
		if err != nil || string(got) != want.String() {
			t.Errorf("body %q, %v; want %q", got, err, want.String())
		}
		resp.Close()
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestHeadNotModifiedPartial(t *testing.T) {
	content := strings.NewReader("0123456789")
	host, conns := server(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Etag", `"v1"`)
		http.ServeContent(w, r, "x", time.Time{}, content)
	})
	var cl Client
	var resp Response
	for _, tc := range []struct {
		name   string
		req    Request
		status int
		body   string
		field  string
		value  string
	}{
		{"HEAD", Request{Method: "HEAD", Host: host}, 200, "", "Content-Length", "10"},
		{"304", Request{Host: host, Header: []Field{{"If-None-Match", `"v1"`}}}, 304, "", "Etag", `"v1"`},
		{"206", Request{Host: host, Header: []Field{{"Range", "bytes=2-5"}}}, 206, "2345", "Content-Range", "bytes 2-5/10"},
		{"GET", Request{Host: host}, 200, "0123456789", "Etag", `"v1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := cl.Do(t.Context(), &tc.req, &resp); err != nil {
				t.Fatal(err)
			}
			defer resp.Close()
			if resp.Status != tc.status {
				t.Errorf("status %d, want %d", resp.Status, tc.status)
			}
			if got := resp.GetString(tc.field); got != tc.value {
				t.Errorf("%s = %q, want %q", tc.field, got, tc.value)
			}
			var b bytes.Buffer
			if _, err := resp.WriteTo(&b); err != nil || b.String() != tc.body {
				t.Errorf("body %q, %v; want %q", b.String(), err, tc.body)
			}
		})
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestRedirectReturned(t *testing.T) {
	host, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.1:1/elsewhere?x=1", http.StatusFound)
	})
	var cl Client
	var resp Response
	if err := cl.Do(t.Context(), &Request{Host: host, Target: "/x"}, &resp); err != nil {
		t.Fatal(err)
	}
	defer resp.Close()
	loc := resp.GetString("Location")
	if resp.Status != 302 || loc != "http://127.0.0.1:1/elsewhere?x=1" {
		t.Fatalf("status %d, Location %q", resp.Status, loc)
	}
	h, target, err := SplitURL(loc)
	if err != nil || h != "127.0.0.1:1" || target != "/elsewhere?x=1" {
		t.Errorf("SplitURL(%q) = %q, %q, %v", loc, h, target, err)
	}
}

func TestSplitURL(t *testing.T) {
	for _, tc := range []struct{ u, host, target string }{
		{"http://a:8080/b/c?d#e", "a:8080", "/b/c?d"},
		{"HTTP://a", "a:80", "/"},
		{"http://a?q", "a:80", "/?q"},
		{"http://[::1]/x", "[::1]:80", "/x"},
		{"http://[::1]:9/x", "[::1]:9", "/x"},
		{"https://a/", "", ""},
		{"http://u@a/", "", ""},
		{"http:///x", "", ""},
		{"http://a/b c", "", ""},
		{"/relative", "", ""},
	} {
		host, target, err := SplitURL(tc.u)
		if host != tc.host || target != tc.target || (err != nil) != (tc.host == "") {
			t.Errorf("SplitURL(%q) = %q, %q, %v; want %q, %q", tc.u, host, target, err, tc.host, tc.target)
		}
	}
}

func TestKeepAliveConcurrent(t *testing.T) {
	body := body1K()
	host, conns := server(t, func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
	var cl Client
	const workers, each = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			var resp Response
			req := Request{Host: host, Target: "/k"}
			for range each {
				if err := cl.Do(t.Context(), &req, &resp); err != nil {
					errs <- err
					return
				}
				if n, err := resp.WriteTo(io.Discard); err != nil || n != int64(len(body)) {
					errs <- fmt.Errorf("body: %d bytes, %v", n, err)
					return
				}
				resp.Close()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := conns.Load(); n > workers {
		t.Errorf("%d connections for %d workers", n, workers)
	}
}

// TestUnreadBodyClosesConnection: a response closed with its body
// unread (and not all received) costs its connection, not a read.
func TestUnreadBodyClosesConnection(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 1<<20)
	host, conns := server(t, func(w http.ResponseWriter, r *http.Request) { w.Write(big) })
	var cl Client
	var resp Response
	for _, discard := range []bool{false, true, true} {
		if err := cl.Do(t.Context(), &Request{Host: host}, &resp); err != nil {
			t.Fatal(err)
		}
		if discard {
			if err := resp.Discard(); err != nil {
				t.Fatal(err)
			}
		} else {
			resp.Close()
		}
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2: one closed unread, one reused after Discard", n)
	}
}

func TestConnectionClose(t *testing.T) {
	host, conns := server(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	})
	var cl Client
	var resp Response
	for range 2 {
		if err := cl.Do(t.Context(), &Request{Host: host}, &resp); err != nil {
			t.Fatal(err)
		}
		if b, err := io.ReadAll(&resp); err != nil || string(b) != "bye" {
			t.Errorf("body %q, %v", b, err)
		}
		resp.Close()
		if n := cl.idleCount(host); n != 0 {
			t.Errorf("%d idle connections after Connection: close", n)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

// oneShot answers one request per connection, keep-alive as far as the
// client can tell, then closes: what a server closing idle connections
// looks like.
func oneShot(c net.Conn) {
	if _, err := readRequest(c); err == nil {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}
}

func TestRetryOnClosedIdleConnection(t *testing.T) {
	host, conns := rawServer(t, oneShot)
	var cl Client
	var resp Response
	for i := range 5 {
		if err := cl.Do(t.Context(), &Request{Host: host}, &resp); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if err := resp.Discard(); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 5 {
		t.Errorf("%d connections, want 5", n)
	}
}

func TestRetryAfterServerClosesIdle(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer s.Close()
	host := s.Listener.Addr().String()
	var cl Client
	var resp Response
	for range 3 {
		if err := cl.Do(t.Context(), &Request{Host: host}, &resp); err != nil {
			t.Fatal(err)
		}
		if err := resp.Discard(); err != nil {
			t.Fatal(err)
		}
		s.CloseClientConnections()
	}
}

func TestNoRetryForPost(t *testing.T) {
	host, _ := rawServer(t, oneShot)
	var cl Client
	var resp Response
	req := Request{Method: "POST", Host: host}
	if err := cl.Do(t.Context(), &req, &resp); err != nil {
		t.Fatal(err)
	}
	resp.Discard()
	if err := cl.Do(t.Context(), &req, &resp); err == nil {
		resp.Close()
		t.Fatal("POST on a connection the server closed succeeded; want an error, not a retry")
	}
}

func TestNoRetryOnFreshConnection(t *testing.T) {
	host, conns := rawServer(t, func(c net.Conn) { readRequest(c) }) // closes unanswered
	var cl Client
	var resp Response
	err := cl.Do(t.Context(), &Request{Host: host}, &resp)
	if !errors.Is(err, io.EOF) {
		t.Errorf("got %v, want io.EOF", err)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	host, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/body" {
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "12345")
			w.(http.Flusher).Flush()
		}
		<-release
	})
	defer close(release)
	var cl Client
	var resp Response

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := cl.Do(ctx, &Request{Host: host, Target: "/head"}, &resp)
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("waiting for the head: got %v, want a timeout", err)
	}

	ctx, cancel = context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := cl.Do(ctx, &Request{Host: host, Target: "/body"}, &resp); err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(&resp)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("waiting for the body: got %v, want a timeout", err)
	}
	resp.Close()
}

func TestCancelWithoutDeadline(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	host, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
	})
	defer close(release)
	var cl Client
	var resp Response
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-arrived; cancel() }()
	if err := cl.Do(ctx, &Request{Host: host}, &resp); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestDoneContext(t *testing.T) {
	host, conns := rawServer(t, oneShot)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var cl Client
	var resp Response
	if err := cl.Do(ctx, &Request{Host: host}, &resp); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("%d connections for a done context", n)
	}
}

func TestRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := ln.Addr().String()
	ln.Close()
	var cl Client
	var resp Response
	if err := cl.Do(t.Context(), &Request{Host: host}, &resp); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("got %v, want ECONNREFUSED", err)
	}
}

func TestInvalidRequest(t *testing.T) {
	for _, req := range []Request{
		{Host: "a:1", Method: "GE T"},
		{Host: ""},
		{Host: "a:1/b"},
		{Host: "a:1", Target: "/a b"},
		{Host: "a:1", Target: "/a\r\nX: y"},
		{Host: "a:1", TargetBytes: []byte{}},
		{Host: "a:1", Header: []Field{{"X-A", "b\r\nInjected: yes"}}},
		{Host: "a:1", Header: []Field{{"X A", "b"}}},
		{Host: "a:1", Header: []Field{{"host", "b"}}},
		{Host: "a:1", Header: []Field{{"Transfer-Encoding", "chunked"}}},
	} {
		var cl Client
		var resp Response
		if err := cl.Do(t.Context(), &req, &resp); err == nil {
			resp.Close()
			t.Errorf("%+v: no error", req)
		}
	}
}

// TestMalformed has a raw server answer badly: each is an error and the
// connection is closed, not pooled.
func TestMalformed(t *testing.T) {
	for _, tc := range []struct {
		name, answer string
		want         error
		inBody       bool
	}{
		{"bad status line", "HTTP/1.1 OK\r\n\r\n", ErrMalformed, false},
		{"not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", ErrMalformed, false},
		{"bad content-length", "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", ErrMalformed, false},
		{"conflicting content-length", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", ErrMalformed, false},
		{"oversized head", "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Big: "+strings.Repeat("b", 1000)+"\r\n", 70) + "\r\n", ErrMalformed, false},
		{"truncated head", "HTTP/1.1 200 OK\r\nContent-Le", io.ErrUnexpectedEOF, false},
		{"truncated body", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", io.ErrUnexpectedEOF, true},
		{"truncated chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort", io.ErrUnexpectedEOF, true},
		{"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n", ErrMalformed, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, _ := rawServer(t, func(c net.Conn) {
				if _, err := readRequest(c); err == nil {
					io.WriteString(c, tc.answer)
				}
			})
			var cl Client
			var resp Response
			err := cl.Do(t.Context(), &Request{Host: host}, &resp)
			if tc.inBody {
				if err != nil {
					t.Fatalf("head: %v", err)
				}
				_, err = resp.WriteTo(io.Discard)
				resp.Close()
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
			if n := cl.idleCount(host); n != 0 {
				t.Errorf("%d idle connections after an error", n)
			}
		})
	}
}

// TestCloseKeepsBufferedBody: Close without reading to the end of a
// body that has arrived whole still pools the connection; Close of one
// still on its way closes it.
func TestCloseKeepsBufferedBody(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		read      int // body bytes read before Close
		pooled    bool
	}{
		{"length unread", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nsmall", 0, true},
		{"length half read", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nsmall", 2, true},
		{"chunked, last chunk unread", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nsmall\r\n0\r\n\r\n", 5, true},
		{"length not all here", "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nsmall", 0, false},
		{"chunked, last chunk not here", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nsmall\r\n", 5, false},
		{"chunked, trailer cut", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nsmall\r\n0\r\nT: x\r\n", 5, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cl Client
			f := &fakeConn{data: []byte(tc.raw), step: len(tc.raw)}
			c := newConn(f, &cl, "example:80", minBufSize)
			c.begin(t.Context())
			if err := c.readHead(false); err != nil {
				t.Fatal(err)
			}
			resp := Response{c: c}
			if _, err := io.ReadFull(&resp, make([]byte, tc.read)); err != nil {
				t.Fatal(err)
			}
			resp.Close()
			if got := cl.idleCount("example:80") == 1; got != tc.pooled || f.closed == tc.pooled {
				t.Errorf("pooled %v, closed %v; want pooled %v", got, f.closed, tc.pooled)
			}
		})
	}
}

func (cl *Client) idleCount(host string) int {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if p := cl.idle[host]; p != nil {
		return len(p.conns)
	}
	return 0
}
