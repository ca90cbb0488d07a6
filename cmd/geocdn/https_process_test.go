package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/geocdn/geocdn/internal/pki"
)

// TestHTTPSProcesses: the real edge binary with two certificates, as a
// separate process. HTTP/1.1 over TLS, HTTP/2 and HTTP/3 get the same
// bytes; Alt-Svc names the HTTP/3 port. The certificate follows SNI, with
// the first pair the default. A SIGHUP after a renewal serves the new
// certificate to new handshakes while connections made before keep
// working; a broken file keeps the certificate in use and is counted.
// With --tls-strict-sni an unknown name is refused.
func TestHTTPSProcesses(t *testing.T) {
	c := newCluster(t)
	ca, err := pki.LoadCA(c.pki.dir)
	if err != nil {
		t.Fatal(err)
	}
	certDir := t.TempDir()
	issue := func(name string, hosts ...string) (string, string) {
		t.Helper()
		cert, key, err := pki.IssueWebFiles(ca, name, hosts, certDir, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return cert, key
	}
	certA, keyA := issue("a", "a.test", "127.0.0.1")
	certB, keyB := issue("b", "b.test")
	e := c.addEdge("lhr", "eu-west", 51.51, -0.13, "--https", anyPort,
		"--tls-cert", certA, "--tls-key", keyA, "--tls-cert", certB, "--tls-key", keyB,
		"--tls-reload-interval", "0s") // SIGHUP only: the test says when
	certS, keyS := issue("s", "s.test")
	strict := c.addEdge("fra", "eu-central", 50.11, 8.68, "--https", anyPort,
		"--tls-cert", certS, "--tls-key", keyS, "--tls-strict-sni")
	c.start()
	if e.httpsAddr == "" {
		t.Fatal("the edge's ready file names no HTTPS listener")
	}
	body := bytes.Repeat([]byte("over TLS "), 4000)
	if a, err := c.publish("page.html", body, "w=all"); err != nil || a.status != http.StatusCreated {
		t.Fatalf("publish: %+v %v", a, err)
	}
	base := "https://" + e.httpsAddr

	tc := &tls.Config{RootCAs: ca.Pool}
	var p1, p2 http.Protocols
	p1.SetHTTP1(true)
	p2.SetHTTP2(true)
	// A tls.Config each: a transport that speaks HTTP/2 adds "h2" to
	// the ALPN list of the config it is given.
	clients := map[string]*http.Client{
		"HTTP/1.1": {Transport: &http.Transport{TLSClientConfig: tc.Clone(), Protocols: &p1}},
		"HTTP/2.0": {Transport: &http.Transport{TLSClientConfig: tc.Clone(), Protocols: &p2}},
		"HTTP/3.0": {Transport: &http3.Transport{TLSClientConfig: tc.Clone()}},
	}
	port := e.httpsAddr[strings.LastIndexByte(e.httpsAddr, ':')+1:]
	for proto, cl := range clients {
		resp, err := cl.Get(base + "/page.html")
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Proto != proto || resp.StatusCode != 200 || !bytes.Equal(got, body) {
			t.Fatalf("%s: %s %d, %d bytes", proto, resp.Proto, resp.StatusCode, len(got))
		}
		if alt := resp.Header.Get("Alt-Svc"); !strings.HasPrefix(alt, `h3=":`+port+`"`) {
			t.Errorf("%s: Alt-Svc %q, want h3 on port %s", proto, alt, port)
		}
	}

	// serial returns the serial of the certificate a handshake with
	// server name sni gets, and the connection.
	serial := func(sni string) (string, *tls.Conn) {
		t.Helper()
		conn, err := tls.Dial("tcp", e.httpsAddr, &tls.Config{ServerName: sni, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatalf("handshake for %q: %v", sni, err)
		}
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String(), conn
	}
	leafSerial := func(path string) string {
		t.Helper()
		c, err := tls.LoadX509KeyPair(path, strings.TrimSuffix(path, ".crt")+".key")
		if err != nil {
			t.Fatal(err)
		}
		x, _ := x509.ParseCertificate(c.Certificate[0])
		return x.SerialNumber.String()
	}
	for _, tc := range []struct{ sni, want string }{
		{"a.test", leafSerial(certA)}, {"b.test", leafSerial(certB)}, {"B.TEST", leafSerial(certB)},
		{"unknown.test", leafSerial(certA)}, {"", leafSerial(certA)},
	} {
		got, conn := serial(tc.sni)
		conn.Close()
		if got != tc.want {
			t.Errorf("SNI %q: certificate serial %s, want %s", tc.sni, got, tc.want)
		}
	}

	// With --tls-strict-sni a name no certificate covers is refused.
	for _, tc := range []struct {
		sni string
		ok  bool
	}{{"s.test", true}, {"unknown.test", false}} {
		conn, err := tls.Dial("tcp", strict.httpsAddr, &tls.Config{ServerName: tc.sni, RootCAs: ca.Pool})
		if (err == nil) != tc.ok {
			t.Errorf("strict SNI, a handshake for %q: %v, want success %v", tc.sni, err, tc.ok)
		}
		if err == nil {
			conn.Close()
		}
	}

	// A connection made before the renewal, kept open across it.
	_, old := serial("b.test")
	defer old.Close()
	request := func(conn *tls.Conn) int {
		t.Helper()
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		io.WriteString(conn, "GET /page.html HTTP/1.1\r\nHost: b.test\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("a request on a connection made before the reload: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := request(old); code != 200 {
		t.Fatalf("before the reload: %d", code)
	}
	renewed, renewedKey := issue("b2", "b.test")
	for _, f := range [][2]string{{renewed, certB}, {renewedKey, keyB}} {
		b, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.p.signal(t, syscall.SIGHUP)
	waitFor(t, "the renewed certificate for b.test", func() bool {
		got, conn := serial("b.test")
		conn.Close()
		return got == leafSerial(renewed)
	}, e.p)
	if code := request(old); code != 200 {
		t.Fatalf("after the reload, on the connection made before: %d", code)
	}

	// A broken renewal of the default: kept, logged, counted.
	serialA := leafSerial(certA)
	if err := os.WriteFile(certA, []byte("-----BEGIN CERTIFICATE-----\ntruncated"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.p.signal(t, syscall.SIGHUP)
	waitFor(t, "the failed reload counted", func() bool {
		return metricLine(c, e, "geocdn_edge_tls_reload_failures_total 1")
	}, e.p)
	if got, conn := serial("unknown.test"); got != serialA {
		t.Fatalf("after a broken reload the default certificate is serial %s, want the previous %s", got, serialA)
	} else {
		conn.Close()
	}
	resp, err := clients["HTTP/2.0"].Get(base + "/page.html")
	if err != nil {
		t.Fatalf("after a broken reload: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("after a broken reload: %d", resp.StatusCode)
	}
	if !strings.Contains(e.p.out.String(), certA) {
		t.Errorf("the edge's log does not name the broken file %s", certA)
	}
}

// TestHTTPSBadCertificateRefusedAtStart: an edge given a certificate and
// a key that do not match, or an expired certificate, does not start, and
// says which file is wrong.
func TestHTTPSBadCertificateRefusedAtStart(t *testing.T) {
	k := newPKI(t)
	ca, err := pki.LoadCA(k.dir)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certA, _, err := pki.IssueWebFiles(ca, "a", []string{"a.test"}, dir, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, keyB, err := pki.IssueWebFiles(ca, "b", []string{"b.test"}, dir, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Issued two hours ago for one hour: expired an hour ago.
	certOld, keyOld, err := pki.IssueWebFiles(ca, "old", []string{"old.test"}, dir, time.Now().Add(-2*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, cert, key, want string }{
		{"mismatched", certA, keyB, certA},
		{"expired", certOld, keyOld, certOld},
	} {
		_, stderr, err := runCLI(t, "edge", "--id", "lhr", "--region", "eu-west", "--lat", "51.5", "--lon", "-0.1",
			"--origin", "127.0.0.1:9", "--http", anyPort, "--https", anyPort, "--data", filepath.Join(dir, "data-"+tc.name),
			"--ca", k.dir, "--tls-cert", tc.cert, "--tls-key", tc.key)
		if err == nil || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s certificate: err %v, stderr %q; want a failure naming %s", tc.name, err, stderr, tc.want)
		}
	}
}

// metricLine reports whether e's /metrics has the line want.
func metricLine(c *procCluster, e *edgeNode, want string) bool {
	resp, err := c.http.Get("http://" + e.adminAddr + "/metrics")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if l == want {
			return true
		}
	}
	return false
}
