package edge

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/h1"
	"github.com/geocdn/geocdn/internal/wire"
)

// serveH1 serves e's handler on a loopback listener through the edge's
// HTTP/1.1 server, with the fast path when fast is set, and returns its
// base URL and a counter of the requests the fast path answered.
func serveH1(t *testing.T, e *testEdge, fast bool) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	srv := &h1.Server{Handler: e.h, SlowHeaders: SlowHeaders, Logger: testLogger(t)}
	if fast {
		srv.Fast = func(w *h1.Reply, r *h1.Request) bool {
			// Counted before the answer leaves, so that a client that
			// has read it sees it counted.
			n.Add(1)
			ok := e.h.serveFast(w, r)
			if !ok {
				n.Add(-1)
			}
			return ok
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return "http://" + ln.Addr().String(), &n
}

type exchange struct {
	status int
	header http.Header
	body   []byte
}

func fetch(t *testing.T, c *http.Client, method, url string, hdr ...string) exchange {
	t.Helper()
	x, _ := fetchProto(t, c, method, url, hdr...)
	return x
}

// TestFastPathMatchesServeHTTP sends the same requests to the edge's
// handler with and without the fast path and requires the same answers,
// headers included (all but Date), so every ServeHTTP test speaks for the
// fast path too. It also requires that the fast path took the plain hits,
// from RAM and from disk, and nothing else.
func TestFastPathMatchesServeHTTP(t *testing.T) {
	e := newTestEdge(t, storeConfig{HotMaxObject: 64 << 10}, 0)
	hot := bytes.Repeat([]byte("hot "), 256)     // 1 KiB, in RAM
	mid := bytes.Repeat([]byte("mid "), 8<<10)   // 32 KiB, in RAM, sent by writev
	big := bytes.Repeat([]byte("big "), 100<<10) // 400 KiB, from disk
	e.publish(t, 1, "a/hot.txt", hot, true)
	e.publish(t, 2, "a/mid.txt", mid, true)
	e.publish(t, 3, "a/big.bin", big, true)
	e.publish(t, 4, "a/missing.txt", []byte("filled on demand"), false)
	bare := putEntry(5, "a/bare", []byte("no metadata"))
	bare.ContentType, bare.CacheControl, bare.ModTime = "", "", bare.ModTime.AddDate(-100, 0, 0)
	e.origin.publish(bare, []byte("no metadata"))
	mustApply(t, e.st, bare)
	mustWrite(t, e.st, []byte("no metadata"), true)
	strong := putEntry(6, "a/strong.txt", []byte("strong"))
	strong.Consistency = wire.Strong
	e.origin.publish(strong, []byte("strong"))
	mustApply(t, e.st, strong)
	mustWrite(t, e.st, []byte("strong"), true)

	e.view.originLSN.Store(6)

	fastURL, fastCount := serveH1(t, e, true)
	slowURL, _ := serveH1(t, e, false)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}

	type req struct {
		method, path string
		hdr          []string
		fast         bool // the fast path must answer it
	}
	reqs := []req{
		{"GET", "/a/hot.txt", nil, true},
		{"HEAD", "/a/hot.txt", nil, true},
		{"GET", "/a/mid.txt", nil, true},
		{"GET", "/a/big.bin", nil, true},
		{"HEAD", "/a/big.bin", nil, true},
		{"GET", "/a/bare", nil, true},
		{"GET", "/a/strong.txt", nil, true},
		{"GET", "/a/hot.txt?v=1", nil, true},
		{"GET", "/a/hot%2Etxt", nil, true},
		{"GET", "/a/hot.txt", []string{"Range", "bytes=0-9"}, false},
		{"GET", "/a/big.bin", []string{"Range", "bytes=100-199"}, false},
		{"GET", "/a/hot.txt", []string{"If-None-Match", `"` + digestOf(hot).String() + `"`}, false},
		{"GET", "/a/big.bin", []string{"If-Modified-Since", "Sat, 01 Mar 2025 12:00:00 GMT"}, false},
		{"GET", "/a/hot.txt", []string{HeaderMinLSN, "1"}, false},
		// 412 on both: beyond the origin's LSN (6).
		{"GET", "/a/hot.txt", []string{HeaderMinLSN, "999999999999"}, false},
		{"GET", "/a/missing.txt", nil, false}, // a miss in the first round, then a hit
		{"GET", "/a/unknown", nil, false},
		{"GET", "/a/../b", nil, false},
		{"GET", "/healthz", nil, false},
		{"POST", "/a/hot.txt", nil, false},
	}
	check := func(round string, wantFast int64) {
		t.Helper()
		before := fastCount.Load()
		for _, r := range reqs {
			f := fetch(t, client, r.method, fastURL+r.path, r.hdr...)
			s := fetch(t, client, r.method, slowURL+r.path, r.hdr...)
			name := round + " " + r.method + " " + r.path + " " + strings.Join(r.hdr, " ")
			if f.status != s.status || !bytes.Equal(f.body, s.body) {
				t.Errorf("%s: fast path %d (%d bytes), ServeHTTP %d (%d bytes)", name, f.status, len(f.body), s.status, len(s.body))
			}
			for k := range mergeKeys(f.header, s.header) {
				if k != "Date" && !slices.Equal(f.header[k], s.header[k]) {
					t.Errorf("%s: %s: fast path %q, ServeHTTP %q", name, k, f.header[k], s.header[k])
				}
			}
		}
		if got := fastCount.Load() - before; got != wantFast {
			t.Errorf("%s: fast path answered %d requests, want %d", round, got, wantFast)
		}
	}
	plain := int64(0)
	for _, r := range reqs {
		if r.fast {
			plain++
		}
	}
	// A first round fills the miss and confirms the strong version; the
	// answers that depend on that order are not the fast path's business.
	for _, r := range reqs {
		fetch(t, client, r.method, slowURL+r.path, r.hdr...)
	}
	check("leased", plain+1) // the miss is a plain hit now

	// Cut off from the origin: eventual objects are still served, marked
	// unleased, and the strong one is not served at all.
	e.view.unleased.Store(true)
	check("unleased", plain+1-1) // the strong object is not served without a lease
}

func mergeKeys(a, b http.Header) map[string]bool {
	m := map[string]bool{}
	for k := range a {
		m[k] = true
	}
	for k := range b {
		m[k] = true
	}
	return m
}

// failingPuller answers every pull and forward with an upstream failure.
type failingPuller struct{ calls atomic.Int32 }

func (p *failingPuller) pull(context.Context, string, string, wire.Digest, *wire.PullInfo) (fillAnswer, error) {
	p.calls.Add(1)
	return fillAnswer{}, &errUpstream{reason: "connection refused"}
}

func (p *failingPuller) forward(context.Context, wire.ForwardRequest, io.Reader) (*passThrough, error) {
	return nil, &errUpstream{reason: "connection refused"}
}

// TestFastPathMatchesServeHTTPPulled is TestFastPathMatchesServeHTTP for
// a pull namespace: fresh pulled versions, from RAM and from disk, are
// answered by the fast path with the same status, headers (Date, the
// upstream's, included) and body as ServeHTTP sends; a published key of
// the namespace is a fast hit too; everything whose answer depends on
// the request's fields or needs the upstream is declined.
func TestFastPathMatchesServeHTTPPulled(t *testing.T) {
	e := newTestEdge(t, storeConfig{HotMaxObject: 64 << 10}, 0)
	puller := &failingPuller{}
	e.h = newHandler(handlerConfig{
		Store: e.st, Fill: e.origin, View: e.view,
		Clock: func() time.Time { return testNow }, Metrics: e.h.m,
		Logger: e.h.log, Healthy: e.healthy.Load,
		Pulls: func(string) bool { return true }, Pull: puller,
	})
	date := testNow.Add(-10 * time.Second).Format(http.TimeFormat)
	lsn := uint64(0)
	pulled := func(key string, body []byte, status int, fields ...string) {
		t.Helper()
		lsn++
		ent := e.publishPulled(t, lsn, key, body, append([]string{"Date", date}, fields...)...)
		if status != http.StatusOK {
			ent.Pulled.Status = status
			ent.LSN = lsn + 1000 // a later version of the same key
			lsn = ent.LSN
			mustApply(t, e.st, ent)
		}
	}
	hot := bytes.Repeat([]byte("hot "), 256)
	big := bytes.Repeat([]byte("big "), 100<<10) // from disk
	pulled("p/hot", hot, 200, "Cache-Control", "max-age=60", "Content-Type", "text/html",
		"Etag", `"h1"`, "Last-Modified", "Sunday, 06-Nov-94 08:49:37 GMT", "X-Served-By", "upstream-1", "X-Served-By", "upstream-2")
	pulled("p/big", big, 200, "Cache-Control", "public, s-maxage=600", "Content-Type", "application/octet-stream")
	pulled("p/q?a=1&b=2", []byte("with a query"), 200, "Cache-Control", "max-age=60", "Age", "7")
	pulled("/", []byte("the home page"), 200, "Cache-Control", "max-age=60", "Content-Type", "text/html")
	pulled("p/gz", []byte("\x1f\x8b not really gzip"), 200, "Cache-Control", "max-age=60", "Content-Encoding", "gzip", "Vary", "Accept-Encoding")
	pulled("p/gz-novary", append([]byte("\x1f\x8b"), big[2:]...), 200, "Cache-Control", "max-age=60", "Content-Encoding", "gzip")
	pulled("p/heuristic", []byte("no explicit freshness"), 200, "Last-Modified", testNow.Add(-100*time.Hour).Format(http.TimeFormat))
	pulled("p/notype", []byte("no content type"), 200, "Cache-Control", "max-age=60")
	pulled("p/nocache", []byte("revalidated every time"), 200, "Cache-Control", "no-cache")
	pulled("p/stale", []byte("stale, must revalidate"), 200, "Cache-Control", "max-age=5, must-revalidate")
	pulled("p/stale-ok", []byte("stale, served if the upstream fails"), 200, "Cache-Control", "max-age=5, stale-if-error=600")
	pulled("p/gone", []byte("not here"), http.StatusNotFound, "Cache-Control", "max-age=60")
	pulled("p/public", []byte("for anyone"), 200, "Cache-Control", "public, max-age=60")
	lsn++
	e.publish(t, lsn, "p/published", []byte("published in a pull namespace"), true)

	fastURL, fastCount := serveH1(t, e, true)
	slowURL, _ := serveH1(t, e, false)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	reqs := []struct {
		method, path string
		hdr          []string
		fast         bool
	}{
		{"GET", "/p/hot", nil, true},
		{"HEAD", "/p/hot", nil, true},
		{"GET", "/p/big", nil, true},
		{"HEAD", "/p/big", nil, true},
		{"GET", "/p/q?a=1&b=2", nil, true},
		{"GET", "/", nil, true},
		{"GET", "/p/gz-novary", nil, true},
		{"GET", "/p/heuristic", nil, true},
		{"GET", "/p/notype", nil, true},
		{"GET", "/p/published", nil, true},
		{"GET", "/p/gz", nil, false},                                         // Vary: the request's fields select
		{"GET", "/p/nocache", nil, false},                                    // revalidated: the upstream fails, 502
		{"GET", "/p/stale", nil, false},                                      // the same
		{"GET", "/p/stale-ok", nil, false},                                   // stale-if-error
		{"GET", "/p/gone", nil, false},                                       // a stored 404
		{"GET", "/p/public", []string{"Authorization", "Basic eDp5"}, false}, // RFC 9111 §3.5
		{"GET", "/p/hot", []string{"Range", "bytes=0-9"}, false},
		{"GET", "/p/hot", []string{"If-None-Match", `"h1"`}, false},
		{"GET", "/p/q?a=2", nil, false}, // not stored: the upstream fails
		{"GET", "/p/hot?", nil, true},   // an empty query is no query
	}
	want := int64(0)
	for _, r := range reqs {
		f := fetch(t, client, r.method, fastURL+r.path, r.hdr...)
		before := fastCount.Load()
		s := fetch(t, client, r.method, slowURL+r.path, r.hdr...)
		name := r.method + " " + r.path + " " + strings.Join(r.hdr, " ")
		if f.status != s.status || !bytes.Equal(f.body, s.body) {
			t.Errorf("%s: fast path %d (%d bytes), ServeHTTP %d (%d bytes)", name, f.status, len(f.body), s.status, len(s.body))
		}
		for k := range mergeKeys(f.header, s.header) {
			if !slices.Equal(f.header[k], s.header[k]) {
				t.Errorf("%s: %s: fast path %q, ServeHTTP %q", name, k, f.header[k], s.header[k])
			}
		}
		if fastCount.Load() != before {
			t.Fatalf("%s: the server without the fast path used it", name)
		}
		if r.fast {
			want++
		}
		if got := fastCount.Load(); got != want {
			t.Errorf("%s: fast path answered %d requests so far, want %d", name, got, want)
			want = got
		}
	}
	if f := fetch(t, client, "GET", fastURL+"/p/hot"); f.header.Get("Date") != date || f.header.Get("Age") != "10" ||
		f.header.Get("Cache-Status") != "geocdn; hit; ttl=50" || f.header.Get("Last-Modified") != "Sun, 06 Nov 1994 08:49:37 GMT" {
		t.Errorf("fast hit: Date %q, Age %q, Cache-Status %q, Last-Modified %q; want the upstream's Date, 10, ttl=50 and the preferred format",
			f.header.Get("Date"), f.header.Get("Age"), f.header.Get("Cache-Status"), f.header.Get("Last-Modified"))
	}
	if f := fetch(t, client, "GET", fastURL+"/p/gz-novary"); f.header.Get("Content-Length") != strconv.Itoa(len(big)) {
		t.Errorf("a Content-Encoding hit: Content-Length %q, want %d", f.header.Get("Content-Length"), len(big))
	}

	// A client's cache directives honoured: the fast path cannot see them.
	honoring := newHandler(handlerConfig{
		Store: e.st, Fill: e.origin, View: e.view,
		Clock: func() time.Time { return testNow }, Metrics: e.h.m,
		Logger: e.h.log, Healthy: e.healthy.Load,
		Pulls: func(string) bool { return true }, Pull: puller,
		HonorClientNoCache: true,
	})
	var w h1.Reply
	if honoring.serveFast(&w, &h1.Request{Path: "/p/hot"}) {
		t.Error("with HonorClientNoCache the fast path answered a pulled hit")
	}
}
