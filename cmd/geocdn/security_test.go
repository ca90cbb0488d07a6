package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rawHTTP sends one request exactly as written, as curl --path-as-is
// does, and returns the answer's status.
func rawHTTP(t *testing.T, addr, method, target string, hdr map[string]string, body string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: %d\r\n", method, target, addr, len(body))
	for k, v := range hdr {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n" + body)
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestOriginAdminAuthProcess probes the real binary's admin API the way
// the hole was found: percent-encoded prefixes reach no handler without
// the token, a form post cannot purge, and --metrics-token-file closes
// /metrics.
func TestOriginAdminAuthProcess(t *testing.T) {
	c := newCluster(t)
	metricsTok := "metrics-" + strings.Repeat("0123456789", 2)
	mf := filepath.Join(c.dir, "metrics-token")
	if err := os.WriteFile(mf, []byte(metricsTok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.startOrigin("--metrics-token-file", mf)
	addr := c.originHTTP
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	for _, p := range []struct{ method, target, body string }{
		{"GET", "/%761/edges", ""},
		{"GET", "/v%31/edges", ""},
		{"POST", "/%761/purge", `{"prefixes":[""]}`},
		{"PUT", "/%761/placement", "{}"},
		{"GET", "//v1/edges", ""},
		{"GET", "/V1/edges", ""},
		{"DELETE", "/v1/edges", ""},
		{"GET", "/metrics", ""},
	} {
		if code := rawHTTP(t, addr, p.method, p.target, form, p.body); code != http.StatusUnauthorized {
			t.Errorf("%s %s without a token: %d, want 401", p.method, p.target, code)
		}
	}
	auth := map[string]string{"Authorization": "Bearer " + c.token, "Content-Type": "application/x-www-form-urlencoded"}
	if code := rawHTTP(t, addr, "POST", "/v1/purge", auth, `{"prefixes":[""]}`); code != http.StatusUnsupportedMediaType {
		t.Errorf("purge posted as a form with the token: %d, want 415", code)
	}
	if code := rawHTTP(t, addr, "GET", "/metrics", map[string]string{"Authorization": "Bearer " + metricsTok}, ""); code != http.StatusOK {
		t.Errorf("GET /metrics with the metrics token: %d, want 200", code)
	}
	if code := rawHTTP(t, addr, "GET", "/healthz", nil, ""); code != http.StatusOK {
		t.Errorf("GET /healthz without a token: %d, want 200", code)
	}
	// The CLI still works: it sends the documented types.
	out := mustCLI(t, "purge", "--origin", c.originURL(), "--token-file", c.tokenFile, "--key", "nothing")
	if !strings.Contains(out, "lsn") && !strings.Contains(out, "LSN") {
		t.Errorf("geocdn purge: %q", out)
	}
}
