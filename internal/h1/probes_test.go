package h1

import (
	"strings"
	"sync/atomic"
	"testing"
)

// pad is a header line that makes a head longer than the read buffer, so
// that it reaches net/http's parser without having been scanned in place.
var pad = "X-Pad: " + strings.Repeat("p", readBufSize) + "\r\n"

// TestProbes replays the requests of a security review that found the
// server answering what it should refuse: request framing that net/http
// reads one way and a proxy may read another, and Host lines that
// net/http's own server refuses. Each comes in a short head, scanned in
// the read buffer, and a long one, parsed without a scan.
func TestProbes(t *testing.T) {
	var n atomic.Int64
	followUps := int64(0)
	addr := start(t, &Server{Handler: echo, Fast: fastHello(&n)})
	for _, tc := range []struct {
		name      string
		req       string // "PAD" marks where a long head's padding goes
		want      int
		wantBody  string // for a 200
		wantClose bool
	}{
		// RFC 9112 § 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
		{"1.0 chunked", "GET / HTTP/1.0\r\nPADTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "", true},
		{"1.0 chunked, odd case", "GET / HTTP/1.0\r\nPADtransfer-encoding: Chunked\r\n\r\n0\r\n\r\n", 400, "", true},
		{"1.0 chunked, keep-alive", "GET /fast/a HTTP/1.0\r\nConnection: keep-alive\r\nPADTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "", true},
		{"1.0 chunked and a length", "POST /x HTTP/1.0\r\nPADTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello", 400, "", true},
		{"1.0 identity", "GET / HTTP/1.0\r\nPADTransfer-Encoding: identity\r\n\r\n", 400, "", true},
		{"1.0 folded", "GET / HTTP/1.0\r\nPADTransfer-Encoding:\r\n chunked\r\n\r\n", 400, "", true},
		{"1.0 plain", "GET /s HTTP/1.0\r\nConnection: keep-alive\r\nPAD\r\n", 200, "slow GET /s host=", false},
		// An absolute-form target overrides Host, but the Host line must
		// still be valid, and present in HTTP/1.1.
		{"absolute, bad Host", "GET http://evil/x HTTP/1.1\r\nPADHost: a b\r\n\r\n", 400, "", true},
		{"absolute, folded Host", "GET http://evil/x HTTP/1.1\r\nHost: a\r\n b\r\nPAD\r\n", 400, "", true},
		{"absolute, no Host", "GET http://evil/x HTTP/1.1\r\nPAD\r\n", 400, "", true},
		{"absolute, good Host", "GET http://evil/x HTTP/1.1\r\nPADHost: a\r\n\r\n", 200, "slow GET /x host=evil", false},
		{"origin form, bad Host", "GET /fast/a HTTP/1.1\r\nPADHost: a b\r\n\r\n", 400, "", true},
	} {
		for _, long := range []bool{false, true} {
			name, req := tc.name, strings.Replace(tc.req, "PAD", "", 1)
			if long {
				name, req = name+", long head", strings.Replace(tc.req, "PAD", pad, 1)
			}
			c := dial(t, addr)
			c.send(req)
			resp, body := c.read("GET")
			if resp.StatusCode != tc.want || tc.want == 200 && body != tc.wantBody {
				t.Errorf("%s: %d %q, want %d %q", name, resp.StatusCode, body, tc.want, tc.wantBody)
			}
			if tc.wantClose && !c.closed() {
				t.Errorf("%s: connection left open", name)
			}
			if !tc.wantClose {
				// Still in use: a second request is answered.
				followUps++
				c.send("GET /fast/again HTTP/1.1\r\nHost: h\r\n\r\n")
				if _, body := c.read("GET"); body != "fast /fast/again" {
					t.Errorf("%s: next request answered %q", name, body)
				}
			}
		}
	}
	if n.Load() != followUps {
		t.Errorf("the fast path answered %d requests, want only the %d follow-ups", n.Load(), followUps)
	}
}

func TestScanHeadFramingAndHost(t *testing.T) {
	slow := newSlowSet(nil)
	for _, tc := range []struct {
		head               string
		wantTE, wantBadHst bool
		wantHosts          int
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", false, false, 1},
		{"GET / HTTP/1.0\r\nTRANSFER-ENCODING: chunked\r\n\r\n", true, false, 0},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", true, false, 1},
		{"GET http://e/ HTTP/1.1\r\nHost: a b\r\n\r\n", false, true, 1},
		{"GET / HTTP/1.1\r\nHost: a\r\n\tb\r\n\r\n", false, true, 1},
		{"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n b\r\n\r\n", false, false, 1},
		{"GET / HTTP/1.1\r\nHost: a_b.example:80\r\n\r\n", false, false, 1},
		{"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", false, false, 1},
	} {
		h, complete := scanHead([]byte(tc.head), &slow)
		if !complete {
			t.Errorf("%q: incomplete", tc.head)
			continue
		}
		if h.te != tc.wantTE || h.badHost != tc.wantBadHst || h.hosts != tc.wantHosts {
			t.Errorf("%q: te %v, badHost %v, hosts %d; want %v, %v, %d",
				tc.head, h.te, h.badHost, h.hosts, tc.wantTE, tc.wantBadHst, tc.wantHosts)
		}
		if (tc.wantTE || tc.wantBadHst) && h.fast {
			t.Errorf("%q: offered to the fast path", tc.head)
		}
	}
}
