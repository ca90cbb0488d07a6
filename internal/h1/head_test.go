package h1

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// FuzzScanHead checks the fast path's parser against net/http's: whatever
// head scanHead offers to the fast path, http.ReadRequest must read
// without error, with the same method, escaped path, Host and connection
// handling, no body, and the same length.
func FuzzScanHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a/b.txt?x=1&y=%20 HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: t\r\n\r\n",
		"HEAD /a%2Fb HTTP/1.1\r\nhost: [::1]:80\r\nConnection: close\r\n\r\n",
		"GET /a HTTP/1.0\r\n\r\n",
		"GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"GET /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: a\r\n X: folded\r\n\r\n",
		"GET /a HTTP/1.1\nHost: a\n\n",
		"GET http://a/b HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: a\r\nX:\tv \r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: a\r\nX : v\r\n\r\n",
		"GET  /a HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a  HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: a\r\nConnection: upgrade, close\r\n\r\n",
		"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: a\r\n\tb\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: a b\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	slow := newSlowSet([]string{"Range", "If-None-Match"})
	f.Fuzz(func(t *testing.T, in []byte) {
		h, complete := scanHead(in, &slow)
		if !complete || !h.fast {
			return
		}
		br := bufio.NewReader(bytes.NewReader(in))
		req, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("scanHead offered %q to the fast path; net/http refuses it: %v", in, err)
		}
		consumed := len(in) - br.Buffered()
		if consumed != h.n {
			t.Errorf("head length %d, net/http read %d", h.n, consumed)
		}
		wantMethod := "GET"
		if h.isHead {
			wantMethod = "HEAD"
		}
		if req.Method != wantMethod {
			t.Errorf("method %s, net/http %s", wantMethod, req.Method)
		}
		if got := req.URL.EscapedPath(); got != string(h.path) {
			t.Errorf("path %q, net/http's EscapedPath %q", h.path, got)
		}
		if req.Host != string(h.host) {
			t.Errorf("host %q, net/http %q", h.host, req.Host)
		}
		if req.Close != h.close {
			t.Errorf("close %v, net/http %v", h.close, req.Close)
		}
		if req.Body != http.NoBody || req.ContentLength != 0 {
			t.Errorf("fast request has a body for net/http (length %d)", req.ContentLength)
		}
		if msg := badRequest(req, &h, true); msg != "" {
			t.Errorf("fast request is a bad request: %s", msg)
		}
		for k := range req.Header {
			if slow.has([]byte(strings.ToLower(k))) || k == "Content-Length" && req.Header.Get(k) != "0" {
				t.Errorf("fast request carries %s", k)
			}
		}
	})
}
