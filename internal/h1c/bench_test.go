package h1c

import (
	"context"
	"flag"
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"
)

var (
	benchHost   = flag.String("h1c.host", "", "host:port of a server for the benchmarks to load instead of the canned one (such as an edge)")
	benchTarget = flag.String("h1c.target", "/obj", "request-target the benchmarks ask -h1c.host for")
)

// cannedResponse is what an edge answers for a 1 KiB object it holds.
var cannedResponse = []byte("HTTP/1.1 200 OK\r\n" +
	"Content-Length: 1024\r\n" +
	"Content-Type: application/octet-stream\r\n" +
	"Etag: \"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\r\n" +
	"Cache-Status: geocdn; hit\r\n" +
	"Date: Mon, 02 Jan 2006 15:04:05 GMT\r\n" +
	"\r\n" + string(body1K()))

// cannedServer answers every request head with cannedResponse. It does
// not parse requests, only counts the blank lines that end them, so it
// costs a read and a write per request: as little as a server can,
// which matters when it shares the benchmark's cores.
func cannedServer(tb testing.TB) string {
	host, _ := rawServer(tb, func(c net.Conn) {
		buf := make([]byte, 4<<10)
		var out []byte
		state := 0 // bytes of "\r\n\r\n" matched
		for {
			n, err := c.Read(buf)
			heads := 0
			for _, ch := range buf[:n] {
				switch {
				case ch == "\r\n\r\n"[state]:
					if state++; state == 4 {
						heads, state = heads+1, 0
					}
				case ch == '\r':
					state = 1
				default:
					state = 0
				}
			}
			out = out[:0]
			for range heads {
				out = append(out, cannedResponse...)
			}
			if _, werr := c.Write(out); werr != nil || err != nil {
				return
			}
		}
	})
	return host
}

// parallel64 runs body on 64 goroutines, whatever GOMAXPROCS is: the
// loadtest's closed loop of 64 connections.
func parallel64(b *testing.B, body func(*testing.PB)) {
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(body)
}

func benchHostTarget(b *testing.B) (string, string) {
	if *benchHost != "" {
		return *benchHost, *benchTarget
	}
	return cannedServer(b), "/obj"
}

// BenchmarkClient is a GET of a 1 KiB object, as the loadtest makes it:
// a deadline, an X-Forwarded-For header, two header values looked at,
// the body read whole.
func BenchmarkClient(b *testing.B) {
	host, target := benchHostTarget(b)
	var cl Client
	defer cl.CloseIdleConnections()
	parallel64(b, func(pb *testing.PB) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		var resp Response
		req := Request{Host: host, Target: target, Header: []Field{{"X-Forwarded-For", "192.0.2.1"}}}
		for pb.Next() {
			if err := cl.Do(ctx, &req, &resp); err != nil {
				b.Error(err)
				return
			}
			if resp.Status != 200 || resp.Get("Etag") == nil || resp.Get("Cache-Status") == nil {
				b.Errorf("status %d", resp.Status)
			}
			if _, err := resp.WriteTo(io.Discard); err != nil {
				b.Error(err)
			}
			resp.Close()
		}
	})
}

// BenchmarkNetHTTP is BenchmarkClient with net/http, configured as the
// loadtest configured it.
func BenchmarkNetHTTP(b *testing.B) {
	host, target := benchHostTarget(b)
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 1024,
		DisableCompression:  true,
		WriteBufferSize:     4 << 10,
		ReadBufferSize:      32 << 10,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	url := "http://" + host + target
	parallel64(b, func(pb *testing.PB) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		buf := make([]byte, 32<<10)
		for pb.Next() {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				b.Fatal(err)
			}
			req.Header = http.Header{"X-Forwarded-For": {"192.0.2.1"}}
			resp, err := hc.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			if resp.StatusCode != 200 || resp.Header.Get("Etag") == "" || resp.Header.Get("Cache-Status") == "" {
				b.Errorf("status %d", resp.StatusCode)
			}
			if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{resp.Body}, buf); err != nil {
				b.Error(err)
			}
			resp.Body.Close()
		}
	})
}

// BenchmarkParseHead is the parse of the canned head alone.
func BenchmarkParseHead(b *testing.B) {
	var h head
	b.SetBytes(int64(len(cannedResponse) - 1024))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseHead(cannedResponse, &h); err != nil {
			b.Fatal(err)
		}
	}
}
