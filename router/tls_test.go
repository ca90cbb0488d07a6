package router

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/geocdn/geocdn/origin"
)

// TestTLS: the router serves its API over TLS too (HTTP/2 by ALPN), probes
// an edge whose public URL is https:// with the CA it was given, and
// sends clients to that https:// URL.
func TestTLS(t *testing.T) {
	edge := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	}))
	defer edge.Close()
	edgeCAs := x509.NewCertPool()
	edgeCAs.AddCert(edge.Certificate())

	// The router's own certificate: httptest's, which is for 127.0.0.1.
	routerCert := edge.TLS.Certificates[0]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, nil, func(cfg *Config) {
		cfg.Certificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &routerCert, nil }
		cfg.HTTPSListener = ln
		cfg.EdgeRootCAs = edgeCAs
	})
	c.origin.mu.Lock()
	c.origin.edges["lhr"] = origin.EdgeStatus{ID: "lhr", Region: "eu-west", Lat: 51.5, Lon: -0.13,
		FaultDomain: "eu-west", PublicURL: edge.URL, State: origin.EdgeUp}
	c.origin.mu.Unlock()
	c.waitRoutable("lhr")

	var p http.Protocols
	p.SetHTTP2(true)
	client := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: edgeCAs}, Protocols: &p},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Get(fmt.Sprintf("https://%s/img/logo.png", c.router.HTTPSAddr()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || resp.Proto != "HTTP/2.0" ||
		!strings.HasPrefix(loc, edge.URL+"/img/logo.png") || !strings.HasPrefix(loc, "https://") {
		t.Fatalf("over TLS: %s %d, Location %q; want an HTTP/2 302 to %s/img/logo.png", resp.Proto, resp.StatusCode, loc, edge.URL)
	}
}
