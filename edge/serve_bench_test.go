package edge

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/geocdn/geocdn/internal/h1"
)

// BenchmarkServeHitTCP serves hits through the edge's real client server
// (internal/h1 with the fast path) on a loopback TCP connection, one
// request at a time from a raw HTTP/1.1 client in the same process, next
// to a plain net/http handler that writes the same bytes from memory (and,
// above the hot tier's limit, one that copies them from a file with
// sendfile). Unlike BenchmarkServeHit it sees what the response costs on
// the socket: server-writes/op is the number of write system calls
// (write, writev, sendfile; the kernel does not count sendmsg) the server
// made per response, read from /proc/self/io (the client's one write per
// request is taken out), so a response split over several writes, or a
// lost sendfile, shows up here.
func BenchmarkServeHitTCP(b *testing.B) {
	for _, bc := range []struct {
		name string
		size int
	}{{"hot-1KiB", 1 << 10}, {"disk-64KiB", 64 << 10}, {"disk-1MiB", 1 << 20}} {
		body := bytes.Repeat([]byte("x"), bc.size)
		b.Run("edge-"+bc.name, func(b *testing.B) {
			e := newTestEdge(b, storeConfig{Logger: slog.New(slog.DiscardHandler)}, 0)
			e.publish(b, 1, "bench/object", body, true)
			srv := &h1.Server{Handler: e.h, Fast: e.h.serveFast, SlowHeaders: SlowHeaders,
				Logger: slog.New(slog.DiscardHandler)}
			benchTCP(b, srv, "/bench/object", bc.size)
		})
		// The same bytes pulled from an upstream, fresh for an hour.
		b.Run("edge-pulled-"+bc.name, func(b *testing.B) {
			e := newTestEdge(b, storeConfig{Logger: slog.New(slog.DiscardHandler)}, 0)
			e.pullAll(b, nil)
			e.publishPulled(b, 1, "bench/object", body, "Cache-Control", "max-age=3600",
				"Content-Type", "text/plain", "Etag", `"v1"`, "Last-Modified", "Tue, 01 Dec 2026 10:00:00 GMT")
			srv := &h1.Server{Handler: e.h, Fast: e.h.serveFast, SlowHeaders: SlowHeaders,
				Logger: slog.New(slog.DiscardHandler)}
			benchTCP(b, srv, "/bench/object", bc.size)
		})
		if bc.size <= 64<<10 {
			// Over TLS (HTTP/1.1): the same fast path behind the
			// handshake, next to net/http's TLS server writing from
			// memory.
			b.Run("edge-tls-"+bc.name, func(b *testing.B) {
				e := newTestEdge(b, storeConfig{Logger: slog.New(slog.DiscardHandler)}, 0)
				e.publish(b, 1, "bench/object", body, true)
				srv := &h1.Server{Handler: e.h, Fast: e.h.serveFast, SlowHeaders: SlowHeaders,
					Logger: slog.New(slog.DiscardHandler)}
				benchTLS(b, srv, "/bench/object", bc.size, func(ln net.Listener, conf *tls.Config) net.Listener {
					return tls.NewListener(ln, conf)
				})
			})
			b.Run("plain-tls-"+bc.name, func(b *testing.B) {
				ct, cl := []string{"text/plain"}, []string{strconv.Itoa(len(body))}
				h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header()["Content-Type"] = ct
					w.Header()["Content-Length"] = cl
					w.Write(body)
				})
				benchTLS(b, newHTTPServer(h, slog.New(slog.DiscardHandler)), "/bench/object", bc.size, func(ln net.Listener, conf *tls.Config) net.Listener {
					return tls.NewListener(ln, conf)
				})
			})
		}
		b.Run("plain-"+bc.name, func(b *testing.B) {
			ct, cl := []string{"text/plain"}, []string{strconv.Itoa(len(body))}
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Content-Type"] = ct
				w.Header()["Content-Length"] = cl
				w.Write(body)
			})
			benchTCP(b, newHTTPServer(h, slog.New(slog.DiscardHandler)), "/bench/object", bc.size)
		})
		if bc.size > defaultHotMaxObject {
			// The same bytes from a file through the connection's sendfile,
			// which is how the edge sends objects above the hot tier's limit.
			b.Run("plain-sendfile-"+bc.name, func(b *testing.B) {
				path := filepath.Join(b.TempDir(), "object")
				if err := os.WriteFile(path, body, 0o644); err != nil {
					b.Fatal(err)
				}
				ct, cl := []string{"text/plain"}, []string{strconv.Itoa(len(body))}
				h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					f, err := os.Open(path)
					if err != nil {
						http.Error(w, err.Error(), http.StatusInternalServerError)
						return
					}
					defer f.Close()
					w.Header()["Content-Type"] = ct
					w.Header()["Content-Length"] = cl
					io.Copy(w, f)
				})
				benchTCP(b, newHTTPServer(h, slog.New(slog.DiscardHandler)), "/bench/object", bc.size)
			})
		}
	}
}

func benchTCP(b *testing.B, srv interface {
	Serve(net.Listener) error
	Close() error
}, path string, size int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	benchConn(b, conn, path, size)
}

// benchTLS is benchTCP over TLS 1.3 (HTTP/1.1): wrap puts TLS on the
// listener, with a certificate made for the benchmark.
func benchTLS(b *testing.B, srv interface {
	Serve(net.Listener) error
	Close() error
}, path string, size int, wrap func(net.Listener, *tls.Config) net.Listener) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	cert, pool := testCert(b)
	go srv.Serve(wrap(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}))
	b.Cleanup(func() { srv.Close() })
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}})
	if err != nil {
		b.Fatal(err)
	}
	benchConn(b, conn, path, size)
}

// benchConn times requests for path, one at a time, on conn.
func benchConn(b *testing.B, conn net.Conn, path string, size int) {
	defer conn.Close()
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: bench\r\n\r\n")
	br := bufio.NewReaderSize(conn, 64<<10)
	do := func() {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || n != int64(size) {
			b.Fatalf("status %d, %d bytes, %v", resp.StatusCode, n, err)
		}
	}
	for range 100 {
		do() // warm the hot tier, the connection and the allocator
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	w0, ok := writeSyscalls()
	for b.Loop() {
		do()
	}
	if w1, ok1 := writeSyscalls(); ok && ok1 {
		b.ReportMetric(float64(w1-w0-int64(b.N))/float64(b.N), "server-writes/op")
	}
}

// writeSyscalls is this process's count of write system calls so far.
func writeSyscalls() (int64, bool) {
	raw, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "syscw:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
