package pki

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestInitCALoadCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if err := InitCA(dir, t0); err != nil {
		t.Fatalf("InitCA: %v", err)
	}
	checkMode(t, dir, 0o700)
	checkMode(t, filepath.Join(dir, CAKeyFile), 0o600)

	ca, err := LoadCA(dir)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	if ca.Key == nil {
		t.Fatal("LoadCA: Key = nil, want the key from ca.key")
	}
	if !ca.Cert.IsCA {
		t.Error("ca.crt is not a CA certificate")
	}
	if _, err := ca.Issue(edgeID, t0, time.Hour); err != nil {
		t.Errorf("Issue with loaded CA: %v", err)
	}
}

func TestInitCARefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	if err := InitCA(dir, t0); err != nil {
		t.Fatalf("InitCA: %v", err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, CACertFile))
	err := InitCA(dir, t0)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, CACertFile)) {
		t.Fatalf("second InitCA = %v, want error naming %s", err, CACertFile)
	}
	after, _ := os.ReadFile(filepath.Join(dir, CACertFile))
	if string(before) != string(after) {
		t.Error("second InitCA changed ca.crt")
	}

	// A lone key (say, a half-restored backup) is refused as well.
	dir2 := t.TempDir()
	keyPath := filepath.Join(dir2, CAKeyFile)
	if err := os.WriteFile(keyPath, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := InitCA(dir2, t0); err == nil || !strings.Contains(err.Error(), keyPath) {
		t.Errorf("InitCA over lone key = %v, want error naming %s", err, keyPath)
	}
}

func TestLoadCACertOnly(t *testing.T) {
	dir := t.TempDir()
	if err := InitCA(dir, t0); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, CAKeyFile)); err != nil {
		t.Fatal(err)
	}
	ca, err := LoadCA(dir)
	if err != nil {
		t.Fatalf("LoadCA without key: %v", err)
	}
	if ca.Key != nil {
		t.Error("Key != nil with no ca.key")
	}
	if _, err := ca.Issue(edgeID, t0, time.Hour); err == nil {
		t.Error("Issue without key = nil error, want error")
	}
}

func TestLoadCAErrorsNameFile(t *testing.T) {
	otherDir := t.TempDir()
	if err := InitCA(otherDir, t0); err != nil {
		t.Fatal(err)
	}
	otherKey, _ := os.ReadFile(filepath.Join(otherDir, CAKeyFile))

	tests := []struct {
		name  string
		setup func(dir string)
		file  string
	}{
		{"missing cert", func(dir string) {}, CACertFile},
		{"garbage cert", func(dir string) {
			os.WriteFile(filepath.Join(dir, CACertFile), []byte("not pem"), 0o644)
		}, CACertFile},
		{"garbage key", func(dir string) {
			InitCA(dir, t0)
			os.WriteFile(filepath.Join(dir, CAKeyFile), []byte("not pem"), 0o600)
		}, CAKeyFile},
		{"key of another ca", func(dir string) {
			InitCA(dir, t0)
			os.WriteFile(filepath.Join(dir, CAKeyFile), otherKey, 0o600)
		}, CAKeyFile},
		{"key readable by others", func(dir string) {
			InitCA(dir, t0)
			os.Chmod(filepath.Join(dir, CAKeyFile), 0o644)
		}, CAKeyFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(dir)
			_, err := LoadCA(dir)
			if want := filepath.Join(dir, tt.file); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("LoadCA = %v, want error naming %s", err, want)
			}
		})
	}
}

func TestIssueFilesRoundTrip(t *testing.T) {
	caDir := t.TempDir()
	if err := InitCA(caDir, t0); err != nil {
		t.Fatal(err)
	}
	outDir := filepath.Join(t.TempDir(), "certs")
	certPath, keyPath, err := IssueFiles(caDir, edgeID, outDir, t0)
	if err != nil {
		t.Fatalf("IssueFiles: %v", err)
	}
	if want := filepath.Join(outDir, "edge-fra-1.crt"); certPath != want {
		t.Errorf("certPath = %q, want %q", certPath, want)
	}
	if want := filepath.Join(outDir, "edge-fra-1.key"); keyPath != want {
		t.Errorf("keyPath = %q, want %q", keyPath, want)
	}
	checkMode(t, keyPath, 0o600)

	cert, err := LoadCertificate(certPath, keyPath)
	if err != nil {
		t.Fatalf("LoadCertificate: %v", err)
	}
	id, err := identityOf(cert.Leaf)
	if err != nil || id != edgeID {
		t.Errorf("identity = %v, %v; want %v", id, err, edgeID)
	}
	if got, want := cert.Leaf.NotAfter, t0.Add(DefaultLeafValidity); !got.Equal(want) {
		t.Errorf("NotAfter = %v, want %v", got, want)
	}

	// The files work in a handshake against a CA loaded from disk.
	ca, err := LoadCA(caDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool, CurrentTime: t0,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("issued certificate does not verify: %v", err)
	}
	now := fixed(t0)
	res := handshake(t, ServerTLS(ca, mustIssue(t, ca, originID, t0, time.Hour), RoleEdge, now), ClientTLS(ca, cert, RoleOrigin, now))
	if res.serverErr != nil || res.clientErr != nil {
		t.Errorf("handshake with issued files: server err %v, client err %v", res.serverErr, res.clientErr)
	}

	// Re-issuing renews in place, and tightens a loosened key mode.
	if err := os.Chmod(keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := IssueFiles(caDir, edgeID, outDir, t0.Add(time.Hour)); err != nil {
		t.Fatalf("re-issue: %v", err)
	}
	checkMode(t, keyPath, 0o600)
	renewed, err := LoadCertificate(certPath, keyPath)
	if err != nil {
		t.Fatalf("LoadCertificate after re-issue: %v", err)
	}
	if renewed.Leaf.SerialNumber.Cmp(cert.Leaf.SerialNumber) == 0 {
		t.Error("re-issue kept the old certificate")
	}
	if entries, _ := os.ReadDir(outDir); len(entries) != 2 {
		t.Errorf("outDir has %d entries, want 2 (no leftover temporary files)", len(entries))
	}
}

func TestLoadCertificateRefusesReadableKey(t *testing.T) {
	caDir := t.TempDir()
	if err := InitCA(caDir, t0); err != nil {
		t.Fatal(err)
	}
	certPath, keyPath, err := IssueFiles(caDir, originID, caDir, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(keyPath, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCertificate(certPath, keyPath); err == nil || !strings.Contains(err.Error(), keyPath) {
		t.Errorf("LoadCertificate = %v, want error naming %s", err, keyPath)
	}
}

func TestIssueRejects(t *testing.T) {
	ca := mustCA(t, t0)
	tests := []struct {
		name     string
		id       Identity
		validity time.Duration
	}{
		{"bad role", Identity{"router", "r1"}, time.Hour},
		{"bad id", Identity{RoleEdge, "a/b"}, time.Hour},
		{"zero validity", edgeID, 0},
		{"outlives ca", edgeID, CAValidity + time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ca.Issue(tt.id, t0, tt.validity); err == nil {
				t.Errorf("Issue(%v, %v) = nil error, want error", tt.id, tt.validity)
			}
		})
	}
}

func TestIssuedCertificate(t *testing.T) {
	ca := mustCA(t, t0)
	leaf := mustIssue(t, ca, edgeID, t0, time.Hour).Leaf
	if got, want := leaf.NotBefore, t0.Add(-time.Hour); !got.Equal(want) {
		t.Errorf("NotBefore = %v, want %v", got, want)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "geocdn://edge/fra-1" {
		t.Errorf("URIs = %v, want [geocdn://edge/fra-1]", leaf.URIs)
	}
	if len(leaf.DNSNames)+len(leaf.IPAddresses) != 0 {
		t.Errorf("leaf has DNS/IP SANs %v %v; identity must be the URI alone", leaf.DNSNames, leaf.IPAddresses)
	}
	if leaf.IsCA {
		t.Error("leaf IsCA = true")
	}
	if leaf.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("key algorithm = %v, want ECDSA", leaf.PublicKeyAlgorithm)
	}
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("mode of %s = %#o, want %#o", path, got, want)
	}
}
