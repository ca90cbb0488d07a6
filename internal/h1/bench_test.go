package h1

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// BenchmarkFastTCP serves one object at a time over a loopback TCP
// connection through the fast path, with the edge's timeouts, so that what
// the deadlines cost per response shows: small bodies by Send, large ones
// by SendFile (above MinWriteRate×WriteTimeout, in several pieces).
func BenchmarkFastTCP(b *testing.B) {
	for _, bc := range []struct {
		name string
		size int
		file bool
	}{
		{"send-1KiB", 1 << 10, false},
		{"sendfile-64KiB", 64 << 10, true},
		{"sendfile-1MiB", 1 << 20, true},
		{"sendfile-32MiB", 32 << 20, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			body := bytes.Repeat([]byte("x"), bc.size)
			path := filepath.Join(b.TempDir(), "object")
			if err := os.WriteFile(path, body, 0o644); err != nil {
				b.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			hdr := []byte("Content-Type: text/plain\r\nContent-Length: " + strconv.Itoa(bc.size) + "\r\n")
			s := &Server{
				Handler: http.NotFoundHandler(),
				Fast: func(w *Reply, r *Request) bool {
					if bc.file {
						w.SendFile(hdr, f, int64(bc.size))
					} else {
						w.Send(http.StatusOK, hdr, body)
					}
					return true
				},
				// The edge's (edge/edge.go).
				ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
				WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MinWriteRate: 64 << 10,
				Logger: slog.New(slog.DiscardHandler),
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go s.Serve(ln)
			defer s.Close()
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			req := []byte("GET /object HTTP/1.1\r\nHost: bench\r\n\r\n")
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
				if err != nil || resp.StatusCode != http.StatusOK || n != int64(bc.size) {
					b.Fatalf("status %d, %d bytes, %v", resp.StatusCode, n, err)
				}
			}
			for range 20 {
				do()
			}
			b.SetBytes(int64(bc.size))
			b.ReportAllocs()
			for b.Loop() {
				do()
			}
		})
	}
}
