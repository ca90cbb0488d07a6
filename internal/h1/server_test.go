package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
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
	"testing"
	"time"
)

// start serves s on a loopback listener until the test ends and returns
// the address.
func start(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, s, ln)
	return ln.Addr().String()
}

// serve serves s on ln until the test ends.
func serve(t *testing.T, s *Server, ln net.Listener) {
	t.Helper()
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
}

// rawConn is a client connection that writes bytes as given and reads
// responses with net/http's parser.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatal(err)
	}
}

// read reads one response to a request of method and its whole body.
func (r *rawConn) read(method string) (*http.Response, string) {
	r.t.Helper()
	resp, err := http.ReadResponse(r.br, &http.Request{Method: method})
	if err != nil {
		r.t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatalf("read body: %v", err)
	}
	resp.Body.Close()
	return resp, string(b)
}

// closed reports whether the server closed the connection: the next read
// sees EOF (or a reset) rather than bytes.
func (r *rawConn) closed() bool {
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := r.br.ReadByte()
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// fastHello answers GET/HEAD /fast/* on the fast path and declines the
// rest; echo answers everything else with what it saw.
func fastHello(n *atomic.Int64) FastHandler {
	return func(w *Reply, r *Request) bool {
		if !strings.HasPrefix(r.Path, "/fast/") {
			return false
		}
		n.Add(1)
		body := []byte("fast " + r.Path)
		hdr := append(w.Buffer(), "Content-Type: text/plain\r\nContent-Length: "...)
		hdr = strconv.AppendInt(hdr, int64(len(body)), 10)
		hdr = append(hdr, "\r\n"...)
		w.Send(http.StatusOK, hdr, body)
		return true
	}
}

var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintf(w, "slow %s %s host=%s", r.Method, r.URL.EscapedPath(), r.Host)
})

func TestFastAndSlowShareAConnection(t *testing.T) {
	var n atomic.Int64
	addr := start(t, &Server{Handler: echo, Fast: fastHello(&n), SlowHeaders: []string{"Range"}})
	c := dial(t, addr)
	for i, tc := range []struct {
		req, method, want string
		fast              bool
	}{
		{"GET /fast/a HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "fast /fast/a", true},
		{"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "slow GET /slow host=x", false},
		{"GET /fast/b?q=1 HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "fast /fast/b", true},
		{"HEAD /fast/c HTTP/1.1\r\nHost: x\r\n\r\n", "HEAD", "", true},
		{"GET /fast/d HTTP/1.1\r\nHost: x\r\nrange: bytes=0-1\r\n\r\n", "GET", "slow GET /fast/d host=x", false},
		{"GET /fast/e HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", "GET", "fast /fast/e", true},
		{"GET /fast/%7Ef HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "fast /fast/%7Ef", true},
		{"GET /fast/sp%20ace HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "fast /fast/sp%20ace", true},
		{"GET /fast/a\"quote HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "slow GET /fast/a%22quote host=x", false},
	} {
		before := n.Load()
		c.send(tc.req)
		resp, body := c.read(tc.method)
		if resp.StatusCode != 200 || body != tc.want {
			t.Errorf("request %d: %d %q, want 200 %q", i, resp.StatusCode, body, tc.want)
		}
		if got := n.Load() - before; got != map[bool]int64{true: 1, false: 0}[tc.fast] {
			t.Errorf("request %d: fast path answered %d, want fast=%v", i, got, tc.fast)
		}
		if resp.Header.Get("Date") == "" {
			t.Errorf("request %d: no Date header", i)
		}
		if tc.method == "HEAD" && resp.ContentLength != int64(len("fast /fast/c")) {
			t.Errorf("HEAD: Content-Length %d, want the GET's", resp.ContentLength)
		}
	}
}

func TestPipelinedRequestsAnswerInOrder(t *testing.T) {
	var n atomic.Int64
	addr := start(t, &Server{Handler: echo, Fast: fastHello(&n)})
	c := dial(t, addr)
	var reqs strings.Builder
	var want []string
	for i := range 20 {
		if i%3 == 1 {
			fmt.Fprintf(&reqs, "GET /slow/%d HTTP/1.1\r\nHost: h\r\n\r\n", i)
			want = append(want, fmt.Sprintf("slow GET /slow/%d host=h", i))
		} else {
			fmt.Fprintf(&reqs, "GET /fast/%d HTTP/1.1\r\nHost: h\r\n\r\n", i)
			want = append(want, fmt.Sprintf("fast /fast/%d", i))
		}
	}
	c.send(reqs.String())
	for i, w := range want {
		if _, body := c.read("GET"); body != w {
			t.Fatalf("response %d: %q, want %q", i, body, w)
		}
	}
}

func TestConnectionClose(t *testing.T) {
	var n atomic.Int64
	addr := start(t, &Server{Handler: echo, Fast: fastHello(&n)})
	for _, tc := range []struct{ name, req string }{
		{"1.1 close, fast", "GET /fast/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"},
		{"1.1 close, slow", "GET /s HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n"},
		{"1.0, fast", "GET /fast/a HTTP/1.0\r\n\r\n"},
		{"1.0, slow", "GET /s HTTP/1.0\r\n\r\n"},
		{"request body", "GET /fast/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"},
	} {
		c := dial(t, addr)
		c.send(tc.req)
		resp, _ := c.read("GET")
		if !resp.Close {
			t.Errorf("%s: no Connection: close", tc.name)
		}
		if !c.closed() {
			t.Errorf("%s: connection left open", tc.name)
		}
	}
	// HTTP/1.0 keep-alive stays open on both paths.
	c := dial(t, addr)
	for _, p := range []string{"/fast/a", "/s", "/fast/b"} {
		c.send("GET " + p + " HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		resp, _ := c.read("GET")
		if got := resp.Header.Get("Connection"); got != "keep-alive" {
			t.Errorf("1.0 keep-alive %s: Connection %q", p, got)
		}
	}
}

func TestBadRequestsGetNetHTTPsAnswers(t *testing.T) {
	var n atomic.Int64
	s := &Server{Handler: echo, Fast: fastHello(&n), MaxHeaderBytes: 4096}
	addr := start(t, s)
	for _, tc := range []struct {
		name, req string
		want      int
	}{
		{"garbage", "HELLO\r\n\r\n", 400},
		{"no Host", "GET /fast/a HTTP/1.1\r\n\r\n", 400},
		{"two Hosts", "GET /fast/a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"bad Host", "GET /fast/a HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"bad header name", "GET /fast/a HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400},
		{"control byte in value", "GET /fast/a HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400},
		{"head too large", "GET /fast/a HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("v", 16<<10) + "\r\n\r\n", 431},
		{"unknown transfer coding", "GET /fast/a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: zip\r\n\r\n", 501},
		{"HTTP/2.0", "GET /fast/a HTTP/2.0\r\nHost: a\r\n\r\n", 505},
		{"bad Expect", "GET /fast/a HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 417},
	} {
		c := dial(t, addr)
		c.send(tc.req)
		resp, _ := c.read("GET")
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
		if !c.closed() {
			t.Errorf("%s: connection left open after an error", tc.name)
		}
	}
	if n.Load() != 0 {
		t.Errorf("the fast path answered %d bad requests", n.Load())
	}
	// Bare LF line ends are accepted, by net/http's parser.
	c := dial(t, addr)
	c.send("GET /fast/lf HTTP/1.1\nHost: a\n\n")
	if resp, body := c.read("GET"); resp.StatusCode != 200 || body != "fast /fast/lf" && body != "slow GET /fast/lf host=a" {
		t.Errorf("bare LF: %d %q", resp.StatusCode, body)
	}
}

func TestSlowResponseFraming(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 1024) // 16 KiB: more than is held back
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/short":
			io.WriteString(w, "hello")
		case "/long":
			io.WriteString(w, big[:len(big)/2])
			io.WriteString(w, big[len(big)/2:])
		case "/declared":
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			io.WriteString(w, big)
		case "/truncated":
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, "only this")
		case "/too-much":
			w.Header().Set("Content-Length", "2")
			if _, err := io.WriteString(w, "abc"); !errors.Is(err, http.ErrContentLength) {
				panic("writing past Content-Length: " + fmt.Sprint(err))
			}
			io.WriteString(w, "ab")
		case "/not-modified":
			w.WriteHeader(http.StatusNotModified)
			if _, err := io.WriteString(w, "body"); !errors.Is(err, http.ErrBodyNotAllowed) {
				panic("body on 304: " + fmt.Sprint(err))
			}
		case "/flushed":
			io.WriteString(w, "part one;")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part two")
		case "/header-after-write":
			io.WriteString(w, "x")
			w.Header().Set("X-Late", "ignored")
		case "/panic":
			panic("handler bug")
		}
	})
	addr := start(t, &Server{Handler: h})
	c := dial(t, addr)
	get := func(path string) (*http.Response, string) {
		t.Helper()
		c.send("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n")
		return c.read("GET")
	}
	if resp, body := get("/short"); body != "hello" || resp.ContentLength != 5 || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("/short: %q, length %d, type %q", body, resp.ContentLength, resp.Header.Get("Content-Type"))
	}
	if resp, body := get("/long"); body != big || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("/long: %d bytes, transfer encoding %v; want %d chunked", len(body), resp.TransferEncoding, len(big))
	}
	if resp, body := get("/declared"); body != big || resp.ContentLength != int64(len(big)) {
		t.Errorf("/declared: %d bytes, length %d", len(body), resp.ContentLength)
	}
	if _, body := get("/too-much"); body != "ab" {
		t.Errorf("/too-much: %q", body)
	}
	if resp, body := get("/not-modified"); resp.StatusCode != 304 || body != "" {
		t.Errorf("/not-modified: %d %q", resp.StatusCode, body)
	}
	if _, body := get("/flushed"); body != "part one;part two" {
		t.Errorf("/flushed: %q", body)
	}
	if resp, _ := get("/header-after-write"); resp.Header.Get("X-Late") != "" {
		t.Error("a header set after the first Write was sent")
	}
	// HEAD of a long body: no body, no chunked framing, keep-alive intact.
	c.send("HEAD /long HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := c.read("HEAD"); body != "" || len(resp.TransferEncoding) != 0 {
		t.Errorf("HEAD /long: body %q, transfer encoding %v", body, resp.TransferEncoding)
	}
	if _, body := get("/short"); body != "hello" {
		t.Errorf("after HEAD: %q", body)
	}
	// HTTP/1.0 and a long body without Content-Length: the body ends with
	// the connection.
	c10 := dial(t, addr)
	c10.send("GET /long HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	if resp, body := c10.read("GET"); body != big || !resp.Close {
		t.Errorf("1.0 /long: %d bytes, close %v", len(body), resp.Close)
	}
	// A body short of its Content-Length: the client must see the
	// connection end early.
	ct := dial(t, addr)
	ct.send("GET /truncated HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(ct.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("/truncated: body read error %v, want unexpected EOF", err)
	}
	// A panic closes that connection only.
	cp := dial(t, addr)
	cp.send("GET /panic HTTP/1.1\r\nHost: x\r\n\r\n")
	if !cp.closed() {
		t.Error("connection open after a handler panic")
	}
	if _, body := get("/short"); body != "hello" {
		t.Errorf("after another connection's panic: %q", body)
	}
}

func TestFastHandlerPanicClosesOnlyItsConnection(t *testing.T) {
	var n atomic.Int64
	hello := fastHello(&n)
	addr := start(t, &Server{Handler: echo, Fast: func(w *Reply, r *Request) bool {
		if r.Path == "/fast/panic" {
			panic("fast handler bug")
		}
		return hello(w, r)
	}})
	c := dial(t, addr)
	c.send("GET /fast/panic HTTP/1.1\r\nHost: x\r\n\r\n")
	if !c.closed() {
		t.Error("connection open after a fast handler panic")
	}
	c2 := dial(t, addr)
	c2.send("GET /fast/ok HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := c2.read("GET"); body != "fast /fast/ok" {
		t.Errorf("after a panic: %q", body)
	}
}

func TestSendFile(t *testing.T) {
	body := bytes.Repeat([]byte("sendfile "), 200_000) // 1.8 MB
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, body, 0o644); err != nil {
		t.Fatal(err)
	}
	fast := func(w *Reply, r *Request) bool {
		f, err := os.Open(path)
		if err != nil {
			t.Error(err)
			return false
		}
		defer f.Close()
		f.Seek(12345, io.SeekStart) // SendFile sends from the start regardless
		hdr := append(w.Buffer(), "Content-Length: "...)
		hdr = strconv.AppendInt(hdr, int64(len(body)), 10)
		hdr = append(hdr, "\r\n"...)
		w.SendFile(hdr, f, int64(len(body)))
		return r.Path == "/file"
	}
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(path)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		http.ServeContent(w, r, "", time.Time{}, f)
	})
	addr := start(t, &Server{Handler: slow, Fast: func(w *Reply, r *Request) bool {
		if r.Path != "/file" {
			return false
		}
		return fast(w, r)
	}, WriteTimeout: time.Minute, MinWriteRate: 64 << 10})
	c := dial(t, addr)
	for range 3 {
		c.send("GET /file HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, got := c.read("GET"); got != string(body) {
			t.Fatalf("fast sendfile: %d bytes, want %d", len(got), len(body))
		}
		c.send("HEAD /file HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, got := c.read("HEAD"); got != "" || resp.ContentLength != int64(len(body)) {
			t.Fatalf("fast HEAD: body %d bytes, length %d", len(got), resp.ContentLength)
		}
		c.send("GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, got := c.read("GET"); got != string(body) {
			t.Fatalf("slow ServeContent: %d bytes, want %d", len(got), len(body))
		}
		c.send("GET /other HTTP/1.1\r\nHost: x\r\nRange: bytes=10-19\r\n\r\n")
		if resp, got := c.read("GET"); resp.StatusCode != 206 || got != string(body[10:20]) {
			t.Fatalf("slow range: %d %q", resp.StatusCode, got)
		}
	}
}

func TestTimeoutsCloseConnections(t *testing.T) {
	var n atomic.Int64
	// ReadTimeout is far longer than the test waits: an unfinished head
	// must be cut at ReadHeaderTimeout, not given ReadTimeout on top.
	addr := start(t, &Server{Handler: echo, Fast: fastHello(&n), ReadTimeout: time.Hour,
		IdleTimeout: 50 * time.Millisecond, ReadHeaderTimeout: 50 * time.Millisecond})
	idle := dial(t, addr)
	idle.send("GET /fast/a HTTP/1.1\r\nHost: x\r\n\r\n")
	idle.read("GET")
	if !idle.closed() {
		t.Error("an idle connection outlived IdleTimeout")
	}
	slowloris := dial(t, addr)
	slowloris.send("GET /fast/a HTTP/1.1\r\nHost: x\r\n")
	if !slowloris.closed() {
		t.Error("a connection with an unfinished head outlived ReadHeaderTimeout")
	}
}

func TestShutdownFinishesRequestsInHand(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			close(entered)
			<-release
		}
		io.WriteString(w, "done")
	})
	var n atomic.Int64
	s := &Server{Handler: h, Fast: fastHello(&n)}
	addr := start(t, s)
	idle := dial(t, addr)
	idle.send("GET /fast/a HTTP/1.1\r\nHost: x\r\n\r\n")
	idle.read("GET")
	busy := dial(t, addr)
	busy.send("GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
	<-entered

	var shutdownErr atomic.Value
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		shutdownErr.Store(fmt.Sprint(s.Shutdown(context.Background())))
	}()
	if !idle.closed() {
		t.Error("Shutdown left an idle connection open")
	}
	if shutdownErr.Load() != nil {
		t.Fatal("Shutdown returned while a request was in hand")
	}
	close(release)
	resp, body := busy.read("GET")
	if body != "done" || !resp.Close {
		t.Errorf("request in hand: %q, close %v", body, resp.Close)
	}
	wg.Wait()
	if got := shutdownErr.Load(); got != "<nil>" {
		t.Errorf("Shutdown: %v", got)
	}
}

func TestShutdownGivesUpAtItsDeadline(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	s := &Server{Handler: h}
	addr := start(t, s)
	busy := dial(t, addr)
	busy.send("GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown with a done context: %v", err)
	}
	if !busy.closed() {
		t.Error("connection open after Shutdown gave up")
	}
}

// TestSameAnswersAsNetHTTP sends each request, byte for byte, to this
// server and to net/http's with the same handler, and requires the same
// status and body; the fast path records what it saw of the request, which
// must be what net/http's handler saw.
func TestSameAnswersAsNetHTTP(t *testing.T) {
	show := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Saw", fmt.Sprintf("%s %s host=%s", r.Method, r.URL.EscapedPath(), r.Host))
		fmt.Fprintf(w, "%s %s host=%s close=%v", r.Method, r.URL.EscapedPath(), r.Host, r.Close)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	std := &http.Server{Handler: show, MaxHeaderBytes: 4096}
	go std.Serve(ln)
	t.Cleanup(func() { std.Close() })

	var fastSaw atomic.Value
	addr := start(t, &Server{Handler: show, MaxHeaderBytes: 4096, SlowHeaders: []string{"Range"},
		Fast: func(w *Reply, r *Request) bool {
			method := "GET"
			if r.Head {
				method = "HEAD"
			}
			fastSaw.Store(fmt.Sprintf("%s %s host=%s", method, r.Path, r.Host))
			return false
		}})
	reqs := []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a/b.txt?x=1 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
		"HEAD /a%2Fb HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
		"GET /caf%C3%A9/%7e HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a;b=c/d@e HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a HTTP/1.0\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1\r\n\r\n",
		"GET http://other/b HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET /a HTTP/1.1\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: a\r\n X: folded\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: a\r\nX : v\r\n\r\n",
		"GET /a HTTP/1.1\nHost: a\n\n",
		"GET /a HTTP/3.0\r\nHost: a\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("v", 8<<10) + "\r\n\r\n",
		"BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n",
		// The Host line is checked even when an absolute-form target
		// overrides it.
		"GET http://other/b HTTP/1.1\r\nHost: a b\r\n\r\n",
		"GET http://other/b HTTP/1.1\r\nHost: a\r\n b\r\n\r\n",
		"GET http://other/b HTTP/1.1\r\n\r\n",
		"GET http://other/b HTTP/1.0\r\nHost: a b\r\n\r\n",
	}
	for _, req := range reqs {
		fastSaw.Store("")
		a, b := dial(t, ln.Addr().String()), dial(t, addr)
		a.send(req)
		b.send(req)
		method := strings.Fields(req)[0]
		want, wantBody, wantSaw := a.readLoose(method)
		got, gotBody, _ := b.readLoose(method)
		if got != want || gotBody != wantBody {
			t.Errorf("%q:\n net/http %d %q\n h1       %d %q", req, want, wantBody, got, gotBody)
		}
		if saw := fastSaw.Load().(string); saw != "" && saw != wantSaw {
			t.Errorf("%q: the fast path saw %q; net/http's handler %q", req, saw, wantSaw)
		}
	}
}

// readLoose reads a response, if any: status 0 when the server closed the
// connection without one. The body is what arrived before the end.
func (r *rawConn) readLoose(method string) (status int, body, saw string) {
	resp, err := http.ReadResponse(r.br, &http.Request{Method: method})
	if err != nil {
		return 0, "", ""
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b), resp.Header.Get("X-Saw")
}
