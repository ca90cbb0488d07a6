package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestIssueWeb(t *testing.T) {
	ca := mustCA(t, t0)
	cert, err := ca.IssueWeb([]string{"localhost", "127.0.0.1", "::1", "*.dev.test"}, t0, time.Hour)
	if err != nil {
		t.Fatalf("IssueWeb: %v", err)
	}
	leaf := cert.Leaf

	// Chain verification as a browser or curl does it, by host name or
	// by IP address.
	tests := []struct {
		name    string
		host    string
		usage   x509.ExtKeyUsage
		at      time.Time
		wantErr bool
	}{
		{"dns name", "localhost", x509.ExtKeyUsageServerAuth, t0, false},
		{"ipv4 address", "127.0.0.1", x509.ExtKeyUsageServerAuth, t0, false},
		{"ipv6 address", "::1", x509.ExtKeyUsageServerAuth, t0, false},
		{"wildcard", "app.dev.test", x509.ExtKeyUsageServerAuth, t0, false},
		{"backdated for clock skew", "localhost", x509.ExtKeyUsageServerAuth, t0.Add(-59 * time.Minute), false},
		{"other name", "example.com", x509.ExtKeyUsageServerAuth, t0, true},
		{"other address", "127.0.0.2", x509.ExtKeyUsageServerAuth, t0, true},
		{"client auth", "localhost", x509.ExtKeyUsageClientAuth, t0, true},
		{"expired", "localhost", x509.ExtKeyUsageServerAuth, t0.Add(time.Hour + time.Second), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := leaf.Verify(x509.VerifyOptions{
				DNSName:     tt.host,
				Roots:       ca.Pool,
				CurrentTime: tt.at,
				KeyUsages:   []x509.ExtKeyUsage{tt.usage},
			})
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Errorf("Verify(%s, %v, at %v) = %v, want error: %v", tt.host, tt.usage, tt.at, err, tt.wantErr)
			}
		})
	}

	if want := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}; !slices.Equal(leaf.ExtKeyUsage, want) {
		t.Errorf("ExtKeyUsage = %v, want %v", leaf.ExtKeyUsage, want)
	}
	if len(leaf.URIs) != 0 {
		t.Errorf("URIs = %v, want none: a web certificate carries no node identity", leaf.URIs)
	}
	if _, err := identityOf(leaf); err == nil {
		t.Error("identityOf(web certificate) = nil error; it must not pass as a node")
	}
	if got, want := leaf.NotBefore, t0.Add(-time.Hour); !got.Equal(want) {
		t.Errorf("NotBefore = %v, want %v", got, want)
	}
	if got, want := leaf.NotAfter, t0.Add(time.Hour); !got.Equal(want) {
		t.Errorf("NotAfter = %v, want %v", got, want)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", leaf.PublicKey)
	}
	if leaf.IsCA {
		t.Error("leaf IsCA = true")
	}
}

func TestIssueWebRejects(t *testing.T) {
	ca := mustCA(t, t0)
	certOnly := &CA{Cert: ca.Cert, Pool: ca.Pool}
	tests := []struct {
		name     string
		ca       *CA
		hosts    []string
		validity time.Duration
		want     string // substring of the error
	}{
		{"no hosts", ca, nil, time.Hour, "at least one"},
		{"empty host", ca, []string{"localhost", ""}, time.Hour, `""`},
		{"space in name", ca, []string{"local host"}, time.Hour, `"local host"`},
		{"bracketed address", ca, []string{"[::1]"}, time.Hour, `"[::1]"`},
		{"host and port", ca, []string{"localhost:8443"}, time.Hour, `"localhost:8443"`},
		{"url", ca, []string{"https://localhost"}, time.Hour, `"https://localhost"`},
		{"double dot", ca, []string{"a..test"}, time.Hour, `"a..test"`},
		{"bare wildcard", ca, []string{"*"}, time.Hour, `"*"`},
		{"inner wildcard", ca, []string{"a.*.test"}, time.Hour, `"a.*.test"`},
		{"zone", ca, []string{"fe80::1%eth0"}, time.Hour, "zone"},
		{"zero validity", ca, []string{"localhost"}, 0, "not positive"},
		{"outlives ca", ca, []string{"localhost"}, CAValidity + time.Hour, "after the ca"},
		{"ca without key", certOnly, []string{"localhost"}, time.Hour, CAKeyFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.ca.IssueWeb(tt.hosts, t0, tt.validity)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("IssueWeb(%q, %v) = %v, want error containing %s", tt.hosts, tt.validity, err, tt.want)
			}
		})
	}
}

func TestIssueWebFilesRoundTrip(t *testing.T) {
	caDir := t.TempDir()
	if err := InitCA(caDir, t0); err != nil {
		t.Fatal(err)
	}
	ca, err := LoadCA(caDir)
	if err != nil {
		t.Fatal(err)
	}
	outDir := filepath.Join(t.TempDir(), "web")
	certPath, keyPath, err := IssueWebFiles(ca, "dev", []string{"localhost", "127.0.0.1"}, outDir, t0, time.Hour)
	if err != nil {
		t.Fatalf("IssueWebFiles: %v", err)
	}
	if want := filepath.Join(outDir, "web-dev.crt"); certPath != want {
		t.Errorf("certPath = %q, want %q", certPath, want)
	}
	if want := filepath.Join(outDir, "web-dev.key"); keyPath != want {
		t.Errorf("keyPath = %q, want %q", keyPath, want)
	}
	checkMode(t, outDir, 0o700)
	checkMode(t, keyPath, 0o600)

	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatalf("tls.LoadX509KeyPair: %v", err)
	}
	// The node loader refuses it: no identity.
	if _, err := LoadCertificate(certPath, keyPath); err == nil {
		t.Error("LoadCertificate(web certificate) = nil error, want refusal")
	}

	// What curl --cacert <ca dir>/ca.crt does: trust only the file on
	// disk, then check the name it dialled.
	caPEM, err := os.ReadFile(filepath.Join(caDir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("no certificate in %s", CACertFile)
	}
	for _, host := range []string{"localhost", "127.0.0.1"} {
		t.Run(host, func(t *testing.T) {
			res := handshake(t,
				&tls.Config{Certificates: []tls.Certificate{cert}},
				&tls.Config{RootCAs: roots, ServerName: host, Time: fixed(t0)})
			if res.clientErr != nil || res.serverErr != nil {
				t.Errorf("handshake for %s: client err %v, server err %v", host, res.clientErr, res.serverErr)
			}
		})
	}

	// Re-issuing renews in place, without leftover temporary files.
	if _, _, err := IssueWebFiles(ca, "dev", []string{"localhost"}, outDir, t0.Add(time.Minute), time.Hour); err != nil {
		t.Fatalf("re-issue: %v", err)
	}
	renewed, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatalf("LoadX509KeyPair after re-issue: %v", err)
	}
	// Leaf is nil under GODEBUG x509keypairleaf=0; compare the DER.
	if string(renewed.Certificate[0]) == string(cert.Certificate[0]) {
		t.Error("re-issue kept the old certificate")
	}
	if entries, _ := os.ReadDir(outDir); len(entries) != 2 {
		t.Errorf("outDir has %d entries, want 2", len(entries))
	}
}

func TestIssueWebFilesRejects(t *testing.T) {
	ca := mustCA(t, t0)
	tests := []struct {
		name, certName string
		ca             *CA
		hosts          []string
		want           string
	}{
		{"empty name", "", ca, []string{"localhost"}, "web certificate name"},
		{"slash in name", "a/b", ca, []string{"localhost"}, `"a/b"`},
		{"dot-dot name", "..", ca, []string{"localhost"}, `".."`},
		{"no ca", "dev", nil, []string{"localhost"}, "no ca"},
		{"bad host", "dev", ca, []string{"a b"}, `"a b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outDir := filepath.Join(t.TempDir(), "web")
			_, _, err := IssueWebFiles(tt.ca, tt.certName, tt.hosts, outDir, t0, time.Hour)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("IssueWebFiles = %v, want error containing %s", err, tt.want)
			}
			if _, err := os.Stat(outDir); err == nil {
				t.Errorf("IssueWebFiles created %s despite failing", outDir)
			}
		})
	}
}

// TestLoopback: the throwaway certificate verifies against the pool it
// comes with for every loopback name, and for no other.
func TestLoopback(t *testing.T) {
	cert, pool, err := Loopback(time.Hour)
	if err != nil {
		t.Fatalf("Loopback: %v", err)
	}
	verify := func(host string) error {
		_, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: pool})
		return err
	}
	for _, host := range LoopbackHosts {
		if err := verify(host); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
	if verify("example.com") == nil {
		t.Error("example.com verified against a loopback certificate")
	}
}
