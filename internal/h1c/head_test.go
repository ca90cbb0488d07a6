package h1c

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestParseHead(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		status     int
		cl         int64
		chunked    bool
		close      bool
		keepAlive  bool
		minor      int
		reason     string
		etag       string
	}{
		{name: "plain", head: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\n", status: 200, cl: 5, minor: 1, reason: "OK", etag: `"x"`},
		{name: "bare LF", head: "HTTP/1.1 404 Not Found\nEtag:   \"y\"  \n\n", status: 404, cl: -1, minor: 1, reason: "Not Found", etag: `"y"`},
		{name: "no reason", head: "HTTP/1.1 204\r\n\r\n", status: 204, cl: -1, minor: 1},
		{name: "empty reason", head: "HTTP/1.1 204 \r\n\r\n", status: 204, cl: -1, minor: 1},
		{name: "chunked", head: "HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n", status: 200, cl: -1, chunked: true, minor: 1, reason: "OK"},
		{name: "same length twice", head: "HTTP/1.1 200 OK\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n", status: 200, cl: 7, minor: 1, reason: "OK"},
		{name: "close", head: "HTTP/1.1 200 OK\r\nConnection: foo, Close\r\n\r\n", status: 200, cl: -1, close: true, minor: 1, reason: "OK"},
		{name: "1.0 keep-alive", head: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", status: 200, cl: 0, keepAlive: true, reason: "OK"},
		{name: "1.9 counts as 1.1", head: "HTTP/1.9 200 OK\r\n\r\n", status: 200, cl: -1, minor: 1, reason: "OK"},
		{name: "empty value", head: "HTTP/1.1 200 OK\r\nEtag:\r\n\r\n", status: 200, cl: -1, minor: 1, reason: "OK"},
		{name: "obs-text", head: "HTTP/1.1 200 \xc3\xa7a va\r\nEtag: \xff\r\n\r\n", status: 200, cl: -1, minor: 1, reason: "\xc3\xa7a va", etag: "\xff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h head
			n, err := parseHead([]byte(tc.head+"trailing"), &h)
			if err != nil {
				t.Fatalf("parseHead: %v", err)
			}
			if n != len(tc.head) {
				t.Errorf("length = %d, want %d", n, len(tc.head))
			}
			if h.status != tc.status || h.contentLength != tc.cl || h.chunked != tc.chunked ||
				h.close != tc.close || h.keepAlive != tc.keepAlive || h.minor != tc.minor {
				t.Errorf("got status %d length %d chunked %v close %v keep-alive %v minor %d, want %d %d %v %v %v %d",
					h.status, h.contentLength, h.chunked, h.close, h.keepAlive, h.minor,
					tc.status, tc.cl, tc.chunked, tc.close, tc.keepAlive, tc.minor)
			}
			r := Response{c: &conn{buf: []byte(tc.head), h: h}}
			if got := string(r.Reason()); got != tc.reason {
				t.Errorf("reason = %q, want %q", got, tc.reason)
			}
			if got := r.GetString("ETAG"); got != tc.etag {
				t.Errorf("Etag = %q, want %q", got, tc.etag)
			}
		})
	}
}

func TestParseHeadRefuses(t *testing.T) {
	many := "HTTP/1.1 200 OK\r\n" + strings.Repeat("A: b\r\n", maxFields+1) + "\r\n"
	for _, tc := range []struct{ name, head string }{
		{"empty", ""},
		{"unterminated", "HTTP/1.1 200 OK\r\nA: b\r\n"},
		{"HTTP/2", "HTTP/2.0 200 OK\r\n\r\n"},
		{"lower-case proto", "http/1.1 200 OK\r\n\r\n"},
		{"two-digit status", "HTTP/1.1 20 OK\r\n\r\n"},
		{"four-digit status", "HTTP/1.1 2000 OK\r\n\r\n"},
		{"status 099", "HTTP/1.1 099 OK\r\n\r\n"},
		{"no space", "HTTP/1.1 200OK\r\n\r\n"},
		{"leading blank line", "\r\nHTTP/1.1 200 OK\r\n\r\n"},
		{"NUL in reason", "HTTP/1.1 200 O\x00K\r\n\r\n"},
		{"CR in value", "HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n"},
		{"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n"},
		{"no colon", "HTTP/1.1 200 OK\r\nfoo\r\n\r\n"},
		{"empty name", "HTTP/1.1 200 OK\r\n: b\r\n\r\n"},
		{"obs-fold", "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n"},
		{"negative length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"},
		{"plus length", "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n"},
		{"empty length", "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n"},
		{"length list", "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n"},
		{"huge length", "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n"},
		{"conflicting lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"},
		{"gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"},
		{"two codings", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"length and coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"},
		{"coding in 1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"too many fields", many},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h head
			if n, err := parseHead([]byte(tc.head), &h); !errors.Is(err, ErrMalformed) {
				t.Errorf("parseHead = %d, %v; want an error wrapping ErrMalformed", n, err)
			}
		})
	}
}

func TestParseChunkSize(t *testing.T) {
	for _, tc := range []struct {
		line string
		n    int64
		ok   bool
	}{
		{"0", 0, true},
		{"1a", 26, true},
		{"1A;name=value", 26, true},
		{"ff ; a=b ; c", 255, true},
		{"ffffffffffffff", 0xffffffffffffff, true},
		{"fffffffffffffff", 0xfffffffffffffff, true},
		{"ffffffffffffffff", 0, false},
		{"", 0, false},
		{";a", 0, false},
		{"-1", 0, false},
		{"0x10", 0, false},
		{"10 x", 0, false},
		{"10;\x00", 0, false},
	} {
		n, ok := parseChunkSize([]byte(tc.line))
		if n != tc.n || ok != tc.ok {
			t.Errorf("parseChunkSize(%q) = %d, %v; want %d, %v", tc.line, n, ok, tc.n, tc.ok)
		}
	}
}

// fakeConn serves canned bytes, step at a time, and records what is
// written to it.
type fakeConn struct {
	net.Conn // nil: only the methods below are called
	data     []byte
	step     int
	written  bytes.Buffer
	closed   bool
}

func (f *fakeConn) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), f.step)], f.data)
	f.data = f.data[n:]
	return n, nil
}

func (f *fakeConn) Write(p []byte) (int, error)      { return f.written.Write(p) }
func (f *fakeConn) Close() error                     { f.closed = true; return nil }
func (f *fakeConn) SetDeadline(time.Time) error      { return nil }
func (f *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (f *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// decoded is what reading a canned response gave.
type decoded struct {
	status int
	body   string
	keep   bool // the connection would go back to the pool
	err    error
}

// decode reads raw as the answer to a GET (or a HEAD) through a
// connection whose reads return step bytes at most, reading the body
// with Read or WriteTo.
func decode(raw string, isHead bool, step int, writeTo bool) decoded {
	f := &fakeConn{data: []byte(raw), step: step}
	c := newConn(f, nil, "example:80", minBufSize)
	c.begin(context.Background())
	if err := c.readHead(isHead); err != nil {
		return decoded{err: err}
	}
	r := Response{Status: c.h.status, ContentLength: c.h.contentLength, c: c}
	var body bytes.Buffer
	var err error
	if writeTo {
		_, err = r.WriteTo(&body)
	} else {
		_, err = io.Copy(&body, struct{ io.Reader }{&r}) // Read, not WriteTo
	}
	keep := c.done && c.err == nil && c.keep && c.r == c.w
	r.Close()
	return decoded{status: r.Status, body: body.String(), keep: keep, err: err}
}

func TestDecode(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 4096) // 64 KiB: several buffers
	longHead := "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Long: "+strings.Repeat("v", 1000)+"\r\n", 40) + "Content-Length: 3\r\n\r\nabc"
	for _, tc := range []struct {
		name   string
		raw    string
		head   bool
		status int
		body   string
		keep   bool
		// late: the bytes after the body are seen only when they come
		// in the same read as its end.
		late bool
	}{
		{name: "length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", status: 200, body: "hello", keep: true},
		{name: "empty", raw: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", status: 200, keep: true},
		{name: "large", raw: "HTTP/1.1 200 OK\r\nContent-Length: 65536\r\n\r\n" + big, status: 200, body: big, keep: true},
		{name: "chunked", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\nOther: y\r\n\r\n", status: 200, body: "hello world", keep: true},
		{name: "chunked bare LF", raw: "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n", status: 200, body: "abc", keep: true},
		{name: "chunked large", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n" + big + "\r\n0\r\n\r\n", status: 200, body: big, keep: true},
		{name: "HEAD", raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", head: true, status: 200, keep: true},
		{name: "HEAD chunked", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", head: true, status: 200, keep: true},
		{name: "304", raw: "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", status: 304, keep: true},
		{name: "204", raw: "HTTP/1.1 204 No Content\r\n\r\n", status: 204, keep: true},
		{name: "1xx skipped", raw: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", status: 200, body: "ok", keep: true},
		{name: "until close", raw: "HTTP/1.1 200 OK\r\n\r\nall of it", status: 200, body: "all of it"},
		{name: "Connection: close", raw: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", status: 200, body: "ok"},
		{name: "1.0", raw: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", status: 200, body: "ok"},
		{name: "1.0 keep-alive", raw: "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok", status: 200, body: "ok", keep: true},
		{name: "bytes after body", raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n", status: 200, body: "ok", late: true},
		{name: "bytes after 304", raw: "HTTP/1.1 304 Not Modified\r\n\r\nxx", status: 304, late: true},
		{name: "head larger than the buffer", raw: longHead, status: 200, body: "abc", keep: true},
	} {
		for _, step := range []int{1, 7, 1 << 20} {
			for _, writeTo := range []bool{false, true} {
				got := decode(tc.raw, tc.head, step, writeTo)
				if tc.late && step < len(tc.raw) {
					got.keep = tc.keep
				}
				if got.err != nil || got.status != tc.status || got.body != tc.body || got.keep != tc.keep {
					t.Errorf("%s (reads of %d, WriteTo %v): got status %d, %d bytes, keep %v, err %v; want %d, %d bytes, keep %v",
						tc.name, step, writeTo, got.status, len(got.body), got.keep, got.err, tc.status, len(tc.body), tc.keep)
				}
			}
		}
	}
}

// TestDecodeTruncated cuts valid responses short at every byte: each
// cut is an error (io.EOF before the first byte, else
// io.ErrUnexpectedEOF), never a short body taken as whole.
func TestDecodeTruncated(t *testing.T) {
	for _, raw := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: x\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 304 Not Modified\r\n\r\n",
	} {
		for cut := 0; cut < len(raw); cut++ {
			got := decode(raw[:cut], false, 3, true)
			want := io.ErrUnexpectedEOF
			if cut == 0 {
				want = io.EOF
			}
			if !errors.Is(got.err, want) {
				t.Errorf("%q: got %v, want %v", raw[:cut], got.err, want)
			}
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	for _, tc := range []struct{ name, raw string }{
		{"head too large", "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("v", maxHeadBytes) + "\r\n\r\n"},
		{"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"},
		{"chunk longer than said", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n"},
		{"chunk line too long", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + strings.Repeat("x", maxBodyLine) + "\r\n"},
		{"bad trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n\r\n"},
		{"101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"},
		{"endless 1xx", strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", maxInterim+1) + "HTTP/1.1 200 OK\r\n\r\n"},
	} {
		for _, step := range []int{1, 1 << 20} {
			if got := decode(tc.raw, false, step, true); !errors.Is(got.err, ErrMalformed) {
				t.Errorf("%s (reads of %d): got %v, want an error wrapping ErrMalformed", tc.name, step, got.err)
			}
		}
	}
}

// FuzzParseHead checks that no input makes the parser panic, and that
// what it accepts is self-consistent.
func FuzzParseHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nEtag: \"x\"\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: x\r\n\r\n",
		"HTTP/1.0 304 Not Modified\nConnection: keep-alive\n\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-1/5\r\nContent-Length: 2\r\n\r\nhe",
		"HTTP/1.1 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 302 Found\r\nLocation: http://a:1/b\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var h head
		n, err := parseHead(b, &h)
		if err == nil {
			if n < 4 || n > len(b) || b[n-1] != '\n' {
				t.Fatalf("head length %d of %d bytes", n, len(b))
			}
			if h.status < 100 || h.status > 999 || h.contentLength < -1 || h.chunked && h.contentLength >= 0 {
				t.Fatalf("status %d, length %d, chunked %v", h.status, h.contentLength, h.chunked)
			}
			for _, f := range h.fields[:h.nfields] {
				if f.ns >= f.ne || f.ne > f.vs || f.vs > f.ve || int(f.ve) > n {
					t.Fatalf("field %+v in a head of %d bytes", f, n)
				}
				if bytes.ContainsAny(b[f.vs:f.ve], "\r\n\x00") {
					t.Fatalf("value %q", b[f.vs:f.ve])
				}
			}
		}
		// The same bytes as a whole answer, read in small pieces.
		step := 1
		if len(b) > 0 {
			step += int(b[len(b)-1] % 16)
		}
		got := decode(string(b), false, step, len(b)%2 == 0)
		if got.err == nil && got.keep && err != nil {
			t.Fatalf("kept a connection after a head parseHead refuses: %v", err)
		}
	})
}
