package edge

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

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
			ok := e.h.serveFast(w, r)
			if ok {
				n.Add(1)
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
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, url, err)
	}
	resp.Header.Del("Date")
	return exchange{resp.StatusCode, resp.Header, body}
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
				if !slices.Equal(f.header[k], s.header[k]) {
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
