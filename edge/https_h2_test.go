package edge

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/net/http2"

	"github.com/geocdn/geocdn/internal/h1"
	"github.com/geocdn/geocdn/internal/h2"
)

// TestHTTP2FastPath: over HTTP/2 (x/net's client), hits from RAM and
// from disk (a body of many frames) are answered by the fast path, whole
// and with the hit's fields; a HEAD has the same fields and no body; a
// Range request goes past the fast path and still gets its part.
func TestHTTP2FastPath(t *testing.T) {
	e := newTestEdge(t, storeConfig{HotMaxObject: 64 << 10}, 0)
	hot := bytes.Repeat([]byte("hot "), 256)
	big := bytes.Repeat([]byte("big "), 300<<10)
	e.publish(t, 1, "a/hot.txt", hot, true)
	e.publish(t, 2, "a/big.bin", big, true)
	base, pool, _, s := serveTLS(t, e)
	var fast atomic.Int64
	s.h2.Fast = func(w *h2.Reply, r *h1.Request) bool {
		ok := e.h.serveFastTo(w, r)
		if ok {
			fast.Add(1)
		}
		return ok
	}
	tr := &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}
	do := func(method, path string, hdr ...string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s: body: %v", method, path, err)
		}
		return resp, body
	}
	for _, x := range []struct {
		path string
		body []byte
	}{{"/a/hot.txt", hot}, {"/a/big.bin", big}} {
		before := fast.Load()
		resp, body := do("GET", x.path)
		if resp.StatusCode != 200 || !bytes.Equal(body, x.body) || resp.ProtoMajor != 2 {
			t.Errorf("GET %s: %s %d, %d of %d bytes", x.path, resp.Proto, resp.StatusCode, len(body), len(x.body))
		}
		if fast.Load() != before+1 {
			t.Errorf("GET %s: not answered by the fast path", x.path)
		}
		if cs := resp.Header.Get("Cache-Status"); !strings.Contains(cs, "hit") {
			t.Errorf("GET %s: Cache-Status %q, want a hit", x.path, cs)
		}
		if resp.Header.Get("Alt-Svc") == "" || resp.Header.Get("Date") == "" {
			t.Errorf("GET %s: header %v lacks Alt-Svc or Date", x.path, resp.Header)
		}
		head, hbody := do("HEAD", x.path)
		if head.StatusCode != 200 || len(hbody) != 0 || head.Header.Get("Content-Length") != resp.Header.Get("Content-Length") {
			t.Errorf("HEAD %s: %d, %d bytes, Content-Length %q", x.path, head.StatusCode, len(hbody), head.Header.Get("Content-Length"))
		}
	}
	before := fast.Load()
	resp, body := do("GET", "/a/big.bin", "Range", "bytes=10-19")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, big[10:20]) {
		t.Errorf("Range: %d %q", resp.StatusCode, body)
	}
	if fast.Load() != before {
		t.Error("a Range request took the fast path")
	}
}
