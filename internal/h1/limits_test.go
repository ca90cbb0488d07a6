package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/geocdn/geocdn/internal/memnet"
)

// eventually polls cond until it holds, for at most 20 s: long enough for
// a loaded machine, short enough that a test waiting for what never
// happens fails rather than hangs.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFirstRequestWaitsReadHeaderTimeoutNotIdleTimeout(t *testing.T) {
	for _, tc := range []struct {
		name                           string
		readHeaderTimeout, readTimeout time.Duration
	}{
		{"ReadHeaderTimeout", 50 * time.Millisecond, 0},
		{"ReadTimeout stands in", 0, 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int64
			addr := start(t, &Server{Handler: echo, Fast: fastHello(&n), IdleTimeout: time.Hour,
				ReadHeaderTimeout: tc.readHeaderTimeout, ReadTimeout: tc.readTimeout})
			silent := dial(t, addr)
			if !silent.closed() {
				t.Error("a connection that sent nothing was left open; want it closed after the first request's timeout")
			}
		})
	}
	// A kept-alive connection has earned IdleTimeout: it outlives
	// ReadHeaderTimeout between requests.
	var n atomic.Int64
	addr := start(t, &Server{Handler: echo, Fast: fastHello(&n),
		ReadHeaderTimeout: 50 * time.Millisecond, IdleTimeout: time.Hour})
	c := dial(t, addr)
	for i := range 2 {
		if i > 0 {
			time.Sleep(150 * time.Millisecond)
		}
		c.send("GET /fast/a HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, body := c.read("GET"); body != "fast /fast/a" {
			t.Errorf("request %d: %q", i, body)
		}
	}
}

func TestMaxConnsRefusesBeyondTheCap(t *testing.T) {
	s := &Server{Handler: echo, MaxConns: 2}
	addr := start(t, s)
	get := func(c *rawConn) (int, string) {
		t.Helper()
		c.send("GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
		resp, body := c.read("GET")
		return resp.StatusCode, body
	}
	a, b := dial(t, addr), dial(t, addr)
	for _, c := range []*rawConn{a, b} {
		if code, body := get(c); code != 200 {
			t.Fatalf("within the cap: %d %q", code, body)
		}
	}
	if got, want := s.OpenConns(), 2; got != want {
		t.Errorf("OpenConns %d, want %d", got, want)
	}

	over := dial(t, addr)
	resp, body := over.read("GET") // answered without a request
	if resp.StatusCode != http.StatusServiceUnavailable || body != "" {
		t.Errorf("beyond the cap: %d %q, want 503 and no body", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Retry-After"); got != "1" {
		t.Errorf("refusal Retry-After %q, want 1", got)
	}
	if !resp.Close || resp.ContentLength != 0 {
		t.Errorf("refusal: close %v, Content-Length %d; want Connection: close and 0", resp.Close, resp.ContentLength)
	}
	if !over.closed() {
		t.Error("the refused connection was left open")
	}
	if got, want := s.RefusedConns(), uint64(1); got != want {
		t.Errorf("RefusedConns %d, want %d", got, want)
	}
	if got, want := s.OpenConns(), 2; got != want {
		t.Errorf("OpenConns after a refusal %d, want %d", got, want)
	}

	a.c.Close()
	eventually(t, "OpenConns to drop to 1", func() bool { return s.OpenConns() == 1 })
	c := dial(t, addr)
	if code, body := get(c); code != 200 {
		t.Errorf("after a connection closed: %d %q, want 200", code, body)
	}
	if got, want := s.OpenConns(), 2; got != want {
		t.Errorf("OpenConns %d, want %d", got, want)
	}
	if code, _ := get(b); code != 200 {
		t.Errorf("a connection within the cap stopped being served: %d", code)
	}
}

// transport is how a body test's client reaches the server: over TCP the
// server sends files by sendfile and bodies by the connection's ReadFrom;
// over memnet's pipes it copies them, and the test runs in a synctest
// bubble, where a deadline is exact and a loaded machine cannot starve
// the client.
type transport struct {
	name string
	// listen returns a listener and a dialer to it.
	listen func(t *testing.T) (net.Listener, func() net.Conn)
	// run runs a test on the transport.
	run func(t *testing.T, f func(t *testing.T))
}

// The socket buffers of body tests over TCP. The server's send buffer is
// small so that it waits on the client soon, and wakes (when a third of
// it is free) often; the client's receive buffer stays above loopback's
// 64 KiB segments, below which TCP itself stalls.
const (
	serverSendBuffer    = 16 << 10
	clientReceiveBuffer = 128 << 10
)

var transports = []transport{
	{
		name: "tcp",
		listen: func(t *testing.T) (net.Listener, func() net.Conn) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			return smallBufListener{ln}, func() net.Conn {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				c.(*net.TCPConn).SetReadBuffer(clientReceiveBuffer)
				return c
			}
		},
		run: func(t *testing.T, f func(t *testing.T)) { f(t) },
	},
	{
		name: "pipe",
		listen: func(t *testing.T) (net.Listener, func() net.Conn) {
			var n memnet.Network
			ln, err := n.Listen("h1.test:80")
			if err != nil {
				t.Fatal(err)
			}
			return ln, func() net.Conn {
				c, err := n.Dial(context.Background(), "memnet", "h1.test:80")
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
		},
		run: synctest.Test,
	},
}

// smallBufListener shrinks the send buffer of the connections it accepts
// and hands them on as *net.TCPConn, so the server still uses sendfile.
type smallBufListener struct{ net.Listener }

func (l smallBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(serverSendBuffer)
	}
	return c, err
}

// bodyServer serves a file of size bytes at /fast (SendFile) and /slow
// (http.ServeContent, through response.ReadFrom).
func bodyServer(t *testing.T, size int, writeTimeout time.Duration, minRate int64) (*Server, []byte) {
	body := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, body, 0o644); err != nil {
		t.Fatal(err)
	}
	open := func() *os.File {
		f, err := os.Open(path)
		if err != nil {
			t.Error(err)
		}
		return f
	}
	return &Server{
		WriteTimeout: writeTimeout, MinWriteRate: minRate,
		Fast: func(w *Reply, r *Request) bool {
			if r.Path != "/fast" {
				return false
			}
			f := open()
			defer f.Close()
			hdr := strconv.AppendInt(append(w.Buffer(), "Content-Length: "...), int64(len(body)), 10)
			w.SendFile(append(hdr, "\r\n"...), f, int64(len(body)))
			return true
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f := open()
			defer f.Close()
			http.ServeContent(w, r, "", time.Time{}, f)
		}),
	}, body
}

// getBody sends a GET of path on c and returns the response with its body
// unread.
func getBody(t *testing.T, c net.Conn, path string) *http.Response {
	t.Helper()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 8<<10), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestStalledReaderIsCut: a client that stops reading a large body loses
// its connection about WriteTimeout later, however long MinWriteRate
// would give the whole body (here 4 MiB at 1 KiB/s: over an hour).
func TestStalledReaderIsCut(t *testing.T) {
	for _, tr := range transports {
		for _, path := range []string{"/fast", "/slow"} {
			t.Run(tr.name+path, func(t *testing.T) {
				t.Parallel()
				tr.run(t, func(t *testing.T) {
					s, body := bodyServer(t, 4<<20, 200*time.Millisecond, 1<<10)
					ln, dial := tr.listen(t)
					serve(t, s, ln)
					c := dial()
					defer c.Close()
					resp := getBody(t, c, path)
					// Read nothing more until the server has given up.
					eventually(t, "the server to close the stalled connection", func() bool { return s.OpenConns() == 0 })
					n, err := io.Copy(io.Discard, resp.Body)
					if err == nil || n >= int64(len(body)) {
						t.Errorf("after the stall: %d of %d bytes, %v; want the body cut short", n, len(body), err)
					}
				})
			})
		}
	}
}

// TestSteadyReaderGetsALargeBody: a client that keeps reading, far faster
// than MinWriteRate, gets the whole body even though the transfer takes
// several WriteTimeouts: it reads 8 KiB at a time with a sleep of at least
// a millisecond between, so 6 MiB take at least 768 ms, three times
// WriteTimeout (and more than the socket buffers hold).
//
// Over TCP, in real time, a loaded machine may stop the test process for
// longer than that; the server then cuts the client, rightly. Such an
// attempt, where the client itself was stopped for half a WriteTimeout or
// more, is tried again; a cut client that had kept reading fails the test.
func TestSteadyReaderGetsALargeBody(t *testing.T) {
	const writeTimeout = 250 * time.Millisecond
	for _, tr := range transports {
		for _, path := range []string{"/fast", "/slow"} {
			t.Run(tr.name+path, func(t *testing.T) {
				t.Parallel()
				tr.run(t, func(t *testing.T) {
					s, body := bodyServer(t, 6<<20, writeTimeout, 64<<10)
					ln, dial := tr.listen(t)
					serve(t, s, ln)
					for attempt := 1; ; attempt++ {
						got, pause, err := steadyRead(t, dial(), path, len(body))
						if err != nil && pause >= writeTimeout/2 && attempt < 3 {
							t.Logf("attempt %d: %v after %d bytes; the client was stopped for %v, trying again", attempt, err, len(got), pause)
							continue
						}
						if err != nil {
							t.Fatalf("after %d of %d bytes: %v (the client's longest pause between reads: %v)", len(got), len(body), err, pause)
						}
						if !bytes.Equal(got, body) {
							t.Errorf("got %d bytes, want the %d-byte body", len(got), len(body))
						}
						return
					}
				})
			})
		}
	}
}

// steadyRead gets path on c, reads the body 8 KiB at a time with a sleep
// of a millisecond between reads, and closes c. It returns what it read,
// the longest time between two reads returning, and the error that ended
// the body early, if any. size is the body's expected size: the buffer
// that takes it is allocated at once, since growing it (a copy of
// megabytes, under the race detector) would pause the client.
func steadyRead(t *testing.T, c net.Conn, path string, size int) ([]byte, time.Duration, error) {
	defer c.Close()
	resp := getBody(t, c, path)
	got := bytes.NewBuffer(make([]byte, 0, size+1))
	buf := make([]byte, 8<<10)
	var pause time.Duration
	last := time.Now()
	for {
		n, err := resp.Body.Read(buf)
		pause, last = max(pause, time.Since(last)), time.Now()
		got.Write(buf[:n])
		if err == io.EOF {
			return got.Bytes(), pause, nil
		}
		if err != nil {
			return got.Bytes(), pause, err
		}
		time.Sleep(time.Millisecond)
	}
}

// flakyListener returns the errors queued on errs, one per Accept, before
// it accepts from the listener it wraps.
type flakyListener struct {
	net.Listener
	errs chan error
}

func (l *flakyListener) Accept() (net.Conn, error) {
	select {
	case err := <-l.errs:
		return nil, err
	default:
		return l.Listener.Accept()
	}
}

// acceptError wraps errno the way the runtime reports a failed accept.
func acceptError(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept", errno)}
}

// logBuffer collects a logger's output; safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestAcceptRetriesTransientErrors(t *testing.T) {
	errnos := []syscall.Errno{
		syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED,
		syscall.ECONNRESET, syscall.EINTR, syscall.EAGAIN, syscall.EPROTO, syscall.EPERM,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	errs := make(chan error, len(errnos))
	serve(t, &Server{Handler: echo, Logger: slog.New(slog.NewTextHandler(&logs, nil))},
		&flakyListener{Listener: ln, errs: errs})
	get := func(what string) {
		t.Helper()
		c := dial(t, ln.Addr().String())
		c.send("GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp, body := c.read("GET"); resp.StatusCode != 200 {
			t.Fatalf("%s: %d %q", what, resp.StatusCode, body)
		}
		c.c.Close()
	}
	for _, errno := range errnos {
		// Each error is met by the Accept after the connection before
		// it, or before this one: either way before the next but one.
		errs <- acceptError(errno)
		get("after " + errno.Error())
	}
	get("after the last error")
	for _, errno := range errnos {
		if !strings.Contains(logs.String(), errno.Error()) {
			t.Errorf("accept error %q (%d) was not logged", errno.Error(), errno)
		}
	}
}

func TestAcceptStopsOnPermanentErrors(t *testing.T) {
	for _, err := range []error{
		errors.New("listener broke"),
		&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept", syscall.EBADF)},
	} {
		t.Run(err.Error(), func(t *testing.T) {
			ln, lerr := net.Listen("tcp", "127.0.0.1:0")
			if lerr != nil {
				t.Fatal(lerr)
			}
			fl := &flakyListener{Listener: ln, errs: make(chan error, 1)}
			fl.errs <- err
			s := &Server{Handler: echo, Logger: slog.New(slog.DiscardHandler)}
			if got := s.Serve(fl); !errors.Is(got, err) {
				t.Errorf("Serve returned %v, want %v", got, err)
			}
			s.Close()
		})
	}
}

// failingListener fails every Accept with err until it is closed.
type failingListener struct {
	err    error
	once   sync.Once
	closed chan struct{}
}

func (l *failingListener) Accept() (net.Conn, error) {
	select {
	case <-l.closed:
		return nil, net.ErrClosed
	default:
		return nil, l.err
	}
}

func (l *failingListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *failingListener) Addr() net.Addr { return memnet.Addr("failing:0") }

// TestCloseEndsAcceptBackoff: Close does not wait out the accept loop's
// backoff (up to a second). In a synctest bubble, where time moves only
// when every goroutine waits, any wait shows as time passed.
func TestCloseEndsAcceptBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &Server{Handler: echo, Logger: slog.New(slog.DiscardHandler)}
		ln := &failingListener{err: acceptError(syscall.EMFILE), closed: make(chan struct{})}
		done := make(chan error, 1)
		go func() { done <- s.Serve(ln) }()
		time.Sleep(10 * time.Second) // the backoff is at its cap, 1 s
		synctest.Wait()
		start := time.Now()
		s.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		if waited := time.Since(start); waited != 0 {
			t.Errorf("Close waited %v for the accept backoff, want no wait", waited)
		}
	})
}
