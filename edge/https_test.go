package edge

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/geocdn/geocdn/internal/h1"
	"github.com/geocdn/geocdn/internal/pki"
)

// testCert is a certificate for 127.0.0.1 and localhost, and a pool that
// trusts its CA.
func testCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	cert, pool, err := pki.Loopback(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return cert, pool
}

// serveTLS serves e's handler over TLS on loopback ports the kernel picks
// (TCP, and UDP on the same port for HTTP/3), with the Alt-Svc the edge
// would send, and returns the base URL, a pool that trusts its
// certificate and a counter of the fast path's answers. It stops the servers when the test ends.
func serveTLS(t *testing.T, e *testEdge) (base string, pool *x509.CertPool, fast *atomic.Int64, s *tlsServers) {
	t.Helper()
	ln, udp, err := listenTLSPair("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cert, pool := testCert(t)
	port := ln.Addr().(*net.TCPAddr).Port
	e.h.altSvc = []string{altSvcValue(port)}
	e.h.altSvcLine = appendLine(nil, "Alt-Svc", altSvcValue(port))
	s = newTLSServers(ln, udp, e.h, tlsConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }), 0, testLogger(t))
	s.ownsUDP = true
	var n atomic.Int64
	s.h1.Fast = func(w *h1.Reply, r *h1.Request) bool {
		n.Add(1)
		ok := e.h.serveFast(w, r)
		if !ok {
			n.Add(-1)
		}
		return ok
	}
	errc := make(chan error, 3)
	s.serve(errc)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.shutdown(ctx)
		select {
		case err := <-errc:
			t.Errorf("tls servers: %v", err)
		default:
		}
	})
	return "https://" + ln.Addr().String(), pool, &n, s
}

// protocolClients are clients that speak HTTP/1.1 over TLS, HTTP/2 and
// HTTP/3 to servers whose certificate pool trusts.
func protocolClients(t *testing.T, pool *x509.CertPool) map[string]*http.Client {
	t.Helper()
	// A tls.Config each: a transport that speaks HTTP/2 adds "h2" to the
	// ALPN list of the config it is given.
	tc := &tls.Config{RootCAs: pool}
	h1t := &http.Transport{TLSClientConfig: tc.Clone(), DisableCompression: true, Protocols: protocolsOf(true, false)}
	h2t := &http.Transport{TLSClientConfig: tc.Clone(), DisableCompression: true, Protocols: protocolsOf(false, true)}
	h3t := &http3.Transport{TLSClientConfig: tc.Clone(), DisableCompression: true}
	t.Cleanup(func() {
		h1t.CloseIdleConnections()
		h2t.CloseIdleConnections()
		h3t.Close()
	})
	return map[string]*http.Client{
		"HTTP/1.1": {Transport: h1t},
		"HTTP/2.0": {Transport: h2t},
		"HTTP/3.0": {Transport: h3t},
	}
}

func protocolsOf(http1, http2 bool) *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(http1)
	p.SetHTTP2(http2)
	return &p
}

// TestProtocolsAnswerAlike sends the same requests over HTTP/1.1 (TLS),
// HTTP/2 and HTTP/3 and requires the same status, header fields (Date and
// hop-by-hop ones aside) and body from each: hits from RAM and disk (the
// first over the fast path), HEAD, Range, conditionals, a key filled
// from the origin, a 404, a bad key, a wrong method and /healthz. Every response
// over TLS carries the Alt-Svc that names the HTTP/3 port.
func TestProtocolsAnswerAlike(t *testing.T) {
	e := newTestEdge(t, storeConfig{HotMaxObject: 64 << 10}, 0)
	hot := bytes.Repeat([]byte("hot "), 256)
	big := bytes.Repeat([]byte("big "), 100<<10)
	e.publish(t, 1, "a/hot.txt", hot, true)
	e.publish(t, 2, "a/big.bin", big, true)
	e.publish(t, 3, "a/missing.txt", []byte("filled on demand"), false)
	e.view.originLSN.Store(3)
	base, pool, fast, _ := serveTLS(t, e)
	clients := protocolClients(t, pool)
	reqs := []struct {
		method, path string
		hdr          []string
	}{
		{"GET", "/a/hot.txt", nil},
		{"HEAD", "/a/hot.txt", nil},
		{"GET", "/a/big.bin", nil},
		{"GET", "/a/hot.txt", []string{"Range", "bytes=0-9"}},
		{"GET", "/a/big.bin", []string{"Range", "bytes=100-199"}},
		{"GET", "/a/hot.txt", []string{"If-None-Match", `"` + digestOf(hot).String() + `"`}},
		{"GET", "/a/missing.txt", nil},
		{"GET", "/a/unknown", nil},
		{"GET", "/a/%00", nil},
		{"DELETE", "/a/hot.txt", nil},
		{"GET", "/healthz", nil},
	}
	// A first round fills the miss: the answers that depend on which
	// request came first are not the protocols' business.
	for _, r := range reqs {
		fetchProto(t, clients["HTTP/1.1"], r.method, base+r.path, r.hdr...)
	}
	fastBefore := fast.Load()
	for _, r := range reqs {
		name := r.method + " " + r.path + " " + strings.Join(r.hdr, " ")
		got := map[string]exchange{}
		for proto, c := range clients {
			x, p := fetchProto(t, c, r.method, base+r.path, r.hdr...)
			if p != proto {
				t.Fatalf("%s: the %s client spoke %s", name, proto, p)
			}
			if x.header.Get("Alt-Svc") != e.h.altSvc[0] {
				t.Errorf("%s over %s: Alt-Svc %q, want %q", name, proto, x.header.Get("Alt-Svc"), e.h.altSvc[0])
			}
			got[proto] = x
		}
		want := got["HTTP/1.1"]
		for _, proto := range []string{"HTTP/2.0", "HTTP/3.0"} {
			x := got[proto]
			if x.status != want.status || !bytes.Equal(x.body, want.body) {
				t.Errorf("%s: %s answered %d (%d bytes), HTTP/1.1 %d (%d bytes)", name, proto, x.status, len(x.body), want.status, len(want.body))
			}
			for k := range mergeKeys(x.header, want.header) {
				if k == "Date" || hopByHop[k] {
					continue
				}
				if !slices.Equal(x.header[k], want.header[k]) {
					t.Errorf("%s: %s: %s %q, HTTP/1.1 %q", name, k, proto, x.header[k], want.header[k])
				}
			}
		}
	}
	if fast.Load() == fastBefore {
		t.Error("no HTTP/1.1 request over TLS took the fast path")
	}
}

// hopByHop are the fields a protocol's own framing may add or drop.
var hopByHop = map[string]bool{"Connection": true, "Keep-Alive": true, "Transfer-Encoding": true}

// fetchProto is fetch, also returning the protocol the response came in.
func fetchProto(t *testing.T, c *http.Client, method, url string, hdr ...string) (exchange, string) {
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
	return exchange{resp.StatusCode, resp.Header, body}, resp.Proto
}

// h2Conn is a raw HTTP/2 client connection for tests that must send what
// a well-behaved client never would.
type h2Conn struct {
	t  *testing.T
	c  *tls.Conn
	fr *http2.Framer
}

func dialH2(t *testing.T, base string, pool *x509.CertPool) *h2Conn {
	t.Helper()
	c, err := tls.Dial("tcp", strings.TrimPrefix(base, "https://"), &tls.Config{RootCAs: pool, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN chose %q, want h2", p)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second)) // a broken server fails the test, never hangs it
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return &h2Conn{t: t, c: c, fr: fr}
}

// headers sends a HEADERS frame on stream id with the given fields, in
// order, pseudo-fields included.
func (h *h2Conn) headers(id uint32, fields ...string) {
	h.t.Helper()
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: buf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		h.t.Fatal(err)
	}
}

// until reads frames, acknowledging the server's SETTINGS, until match
// says stop; it fails the test if the connection ends first.
func (h *h2Conn) until(what string, match func(http2.Frame) bool) {
	h.t.Helper()
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			h.t.Fatalf("waiting for %s: %v", what, err)
		}
		if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
			h.fr.WriteSettingsAck()
		}
		if match(f) {
			return
		}
	}
}

// TestHTTP2BadFramesAndShutdown: a stream with a malformed header block
// (an upper-case field name, RFC 9113 §8.2.1) is reset with
// PROTOCOL_ERROR while the connection goes on serving; shutdown sends
// GOAWAY and lets the request in flight finish with its whole body.
func TestHTTP2BadFramesAndShutdown(t *testing.T) {
	e := newTestEdge(t, storeConfig{}, 0)
	e.publish(t, 1, "ok", []byte("fine"), true)
	body := bytes.Repeat([]byte("slow "), 1000)
	e.publish(t, 2, "slow", body, false) // filled, held by release
	e.origin.mu.Lock()
	e.origin.release = make(chan struct{})
	e.origin.mu.Unlock()
	base, pool, _, s := serveTLS(t, e)
	h := dialH2(t, base, pool)
	host := strings.TrimPrefix(base, "https://")
	get := func(id uint32, path string, extra ...string) {
		h.headers(id, append([]string{":method", "GET", ":scheme", "https", ":authority", host, ":path", path}, extra...)...)
	}

	get(1, "/ok", "X-Bad", "upper case")
	h.until("RST_STREAM on stream 1", func(f http2.Frame) bool {
		rst, ok := f.(*http2.RSTStreamFrame)
		if ok && (rst.StreamID != 1 || rst.ErrCode != http2.ErrCodeProtocol) {
			t.Fatalf("RST_STREAM stream %d %v, want stream 1 PROTOCOL_ERROR", rst.StreamID, rst.ErrCode)
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			t.Fatalf("GOAWAY %v for a stream error", g.ErrCode)
		}
		return ok
	})
	get(3, "/ok")
	var status string
	h.until("the answer on stream 3", func(f http2.Frame) bool {
		if m, ok := f.(*http2.MetaHeadersFrame); ok && m.StreamID == 3 {
			status = m.PseudoValue("status")
			return true
		}
		return false
	})
	if status != "200" {
		t.Fatalf("stream 3 after a reset stream: status %q", status)
	}

	// A request in flight (its fill held), then shutdown.
	get(5, "/slow")
	pollUntil(t, "the fill of /slow to start", func() bool { return e.origin.calls.Load() > 0 })
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		s.shutdown(ctx)
	}()
	h.until("GOAWAY", func(f http2.Frame) bool {
		g, ok := f.(*http2.GoAwayFrame)
		if ok && g.ErrCode != http2.ErrCodeNo {
			t.Fatalf("GOAWAY %v, want NO_ERROR", g.ErrCode)
		}
		return ok
	})
	close(e.origin.release)
	var got []byte
	status = ""
	h.until("the whole answer on stream 5", func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamID == 5 {
				status = f.PseudoValue("status")
			}
		case *http2.DataFrame:
			if f.StreamID == 5 {
				got = append(got, f.Data()...)
				h.fr.WriteWindowUpdate(0, uint32(len(f.Data())))
				h.fr.WriteWindowUpdate(5, uint32(len(f.Data())))
				return f.StreamEnded()
			}
		}
		return false
	})
	if status != "200" || !bytes.Equal(got, body) {
		t.Fatalf("the request in flight at shutdown: status %q, %d of %d bytes", status, len(got), len(body))
	}
	<-done
}

// pollUntil polls cond every millisecond until it holds, failing the test
// after 20 s: a wait for another goroutine to reach a point, never a
// measurement.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
