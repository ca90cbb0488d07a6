package edge

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/geocdn/geocdn/internal/h1"
)

// testCert is a certificate for 127.0.0.1 and localhost, and a pool that
// trusts it.
func testCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "edge test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
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
	tc := &tls.Config{RootCAs: pool}
	h1t := &http.Transport{TLSClientConfig: tc, DisableCompression: true, Protocols: protocolsOf(true, false)}
	h2t := &http.Transport{TLSClientConfig: tc, DisableCompression: true, Protocols: protocolsOf(false, true)}
	h3t := &http3.Transport{TLSClientConfig: tc, DisableCompression: true}
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
