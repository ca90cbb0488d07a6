package tlscert

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// t0 is the fixed time every test runs at; certificates are issued around
// it and Options.Now returns it.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// waitLimit bounds every wait, so that a bug fails the test instead of
// hanging it. It is not a performance expectation.
const waitLimit = 10 * time.Second

func fixed(t time.Time) func() time.Time { return func() time.Time { return t } }

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tlscert test ca"},
		NotBefore:             t0.Add(-24 * time.Hour),
		NotAfter:              t0.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// leafSpec describes a certificate to issue. Zero times mean valid from an
// hour before t0 to a day after.
type leafSpec struct {
	dns                 []string
	ips                 []net.IP
	notBefore, notAfter time.Time
	rsa                 bool // RSA 2048 instead of ECDSA P-256
}

// issued is a certificate and key as PEM files would hold them.
type issued struct {
	certPEM, keyPEM []byte
	serial          *big.Int
}

func (ca *testCA) issue(t *testing.T, spec leafSpec) issued {
	t.Helper()
	var key crypto.Signer
	var err error
	if spec.rsa {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	if spec.notBefore.IsZero() {
		spec.notBefore = t0.Add(-time.Hour)
	}
	if spec.notAfter.IsZero() {
		spec.notAfter = t0.Add(24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		NotBefore:    spec.notBefore,
		NotAfter:     spec.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     spec.dns,
		IPAddresses:  spec.ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return issued{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		serial:  serial,
	}
}

// replaceFile writes data to path the way careful tools do: a new file
// renamed over the old one.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// overwriteFile writes data into path in place, the way careless tools do.
func overwriteFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// install replaces p's files with c, key first.
func install(t *testing.T, p Pair, c issued) {
	t.Helper()
	replaceFile(t, p.KeyFile, c.keyPEM)
	replaceFile(t, p.CertFile, c.certPEM)
}

func writePair(t *testing.T, dir, name string, c issued) Pair {
	t.Helper()
	p := Pair{CertFile: filepath.Join(dir, name+".crt"), KeyFile: filepath.Join(dir, name+".key")}
	install(t, p, c)
	return p
}

// tWriter sends log output to t.Log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// testLogger logs to t.Log and, if also is not nil, to also.
func testLogger(t *testing.T, also io.Writer) *slog.Logger {
	var w io.Writer = tWriter{t}
	if also != nil {
		w = io.MultiWriter(w, also)
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

func mustLoad(t *testing.T, pairs []Pair, opts Options) *Store {
	t.Helper()
	if opts.Now == nil {
		opts.Now = fixed(t0)
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t, nil)
	}
	s, err := Load(pairs, opts)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return s
}

// serialFor returns the serial of the certificate s serves for SNI name.
func serialFor(t *testing.T, s *Store, name string) *big.Int {
	t.Helper()
	c, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
	if err != nil {
		t.Fatalf("GetCertificate(%q): %v", name, err)
	}
	return c.Leaf.SerialNumber
}

// localConn is a net.Conn that knows only its local address, which is all
// GetCertificate asks of ClientHelloInfo.Conn.
type localConn struct {
	net.Conn
	local net.Addr
}

func (c localConn) LocalAddr() net.Addr { return c.local }

func TestGetCertificateSelection(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	certs := map[string]issued{
		"default":  ca.issue(t, leafSpec{dns: []string{"default.test"}}),
		"exact":    ca.issue(t, leafSpec{dns: []string{"a.example.com", "Mixed.Example.NET"}}),
		"wildcard": ca.issue(t, leafSpec{dns: []string{"*.example.com"}}),
		"ip":       ca.issue(t, leafSpec{ips: []net.IP{net.ParseIP("127.0.0.2"), net.ParseIP("2001:db8::1")}}),
	}
	var pairs []Pair
	names := map[string]string{} // serial → name, for messages
	for _, name := range []string{"default", "exact", "wildcard", "ip"} {
		pairs = append(pairs, writePair(t, dir, name, certs[name]))
		names[certs[name].serial.String()] = name
	}
	s := mustLoad(t, pairs, Options{})

	tcp := func(ip string) net.Conn {
		return localConn{local: &net.TCPAddr{IP: net.ParseIP(ip), Port: 443}}
	}
	udp := func(ip string) net.Conn {
		return localConn{local: &net.UDPAddr{IP: net.ParseIP(ip), Port: 443}}
	}
	tests := []struct {
		name string
		sni  string
		conn net.Conn
		want string
	}{
		{"exact name", "a.example.com", nil, "exact"},
		{"exact name, upper case", "A.EXAMPLE.Com", nil, "exact"},
		{"exact name, trailing dot", "a.example.com.", nil, "exact"},
		{"SAN in upper case", "mixed.example.net", nil, "exact"},
		{"exact beats wildcard", "a.example.com", nil, "exact"},
		{"wildcard, one label", "b.example.com", nil, "wildcard"},
		{"wildcard, upper case", "B.Example.COM", nil, "wildcard"},
		{"wildcard, not two labels", "x.b.example.com", nil, "default"},
		{"wildcard, not the bare domain", "example.com", nil, "default"},
		{"empty first label", ".example.com", nil, "default"},
		{"unknown name", "unknown.test", nil, "default"},
		{"default's own name", "default.test", nil, "default"},
		{"no SNI", "", nil, "default"},
		{"no SNI, local address in an IP SAN", "", tcp("127.0.0.2"), "ip"},
		{"no SNI, IPv4-mapped local address", "", tcp("::ffff:127.0.0.2"), "ip"},
		{"no SNI, QUIC local address", "", udp("2001:db8::1"), "ip"},
		{"no SNI, local address in no SAN", "", tcp("127.0.0.1"), "default"},
		{"IP address as SNI", "127.0.0.2", nil, "ip"},
		{"unknown IP address as SNI", "192.0.2.1", nil, "default"},
		{"SNI beats local address", "a.example.com", tcp("127.0.0.2"), "exact"},
		{"unknown SNI ignores local address", "unknown.test", tcp("127.0.0.2"), "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: tt.sni, Conn: tt.conn})
			if err != nil {
				t.Fatalf("GetCertificate: %v", err)
			}
			if got := names[c.Leaf.SerialNumber.String()]; got != tt.want {
				t.Errorf("GetCertificate(SNI %q) = %s certificate, want %s", tt.sni, got, tt.want)
			}
		})
	}

	// With NoDefault, what only the default answered is refused.
	strict := mustLoad(t, pairs, Options{NoDefault: true})
	for _, tt := range tests {
		c, err := strict.GetCertificate(&tls.ClientHelloInfo{ServerName: tt.sni, Conn: tt.conn})
		refused := tt.want == "default" && tt.sni != "default.test"
		switch {
		case refused && err == nil:
			t.Errorf("NoDefault, %s: got the %s certificate, want a refusal", tt.name, names[c.Leaf.SerialNumber.String()])
		case !refused && (err != nil || names[c.Leaf.SerialNumber.String()] != tt.want):
			t.Errorf("NoDefault, %s: %v, want the %s certificate", tt.name, err, tt.want)
		}
	}
}

func TestGetCertificatePrefersSupportedKey(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	ec := ca.issue(t, leafSpec{dns: []string{"dual.test"}})
	rs := ca.issue(t, leafSpec{dns: []string{"dual.test"}, rsa: true})
	s := mustLoad(t, []Pair{writePair(t, dir, "ec", ec), writePair(t, dir, "rsa", rs)}, Options{})
	names := map[string]string{ec.serial.String(): "ecdsa", rs.serial.String(): "rsa"}

	tests := []struct {
		name    string
		schemes []tls.SignatureScheme
		want    string
	}{
		{"client takes ecdsa", []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256, tls.PSSWithSHA256}, "ecdsa"},
		{"client takes rsa only", []tls.SignatureScheme{tls.PSSWithSHA256}, "rsa"},
		{"client takes neither: first pair", []tls.SignatureScheme{tls.Ed25519}, "ecdsa"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hello := &tls.ClientHelloInfo{
				ServerName:        "dual.test",
				SupportedVersions: []uint16{tls.VersionTLS13},
				SignatureSchemes:  tt.schemes,
			}
			c, err := s.GetCertificate(hello)
			if err != nil {
				t.Fatalf("GetCertificate: %v", err)
			}
			if got := names[c.Leaf.SerialNumber.String()]; got != tt.want {
				t.Errorf("got %s certificate, want %s", got, tt.want)
			}
		})
	}
}

// breakage spoils a pair's files in one of the ways a renewal can go wrong.
type breakage struct {
	name string
	// apply breaks p's files and returns the path the error must name.
	apply func(t *testing.T, ca *testCA, p Pair) string
	// reason is a substring the error must contain.
	reason string
}

var breakages = []breakage{
	{"certificate missing", func(t *testing.T, _ *testCA, p Pair) string {
		if err := os.Remove(p.CertFile); err != nil {
			t.Fatal(err)
		}
		return p.CertFile
	}, "no such file"},
	{"key missing", func(t *testing.T, _ *testCA, p Pair) string {
		if err := os.Remove(p.KeyFile); err != nil {
			t.Fatal(err)
		}
		return p.KeyFile
	}, "no such file"},
	{"key does not match", func(t *testing.T, ca *testCA, p Pair) string {
		replaceFile(t, p.KeyFile, ca.issue(t, leafSpec{dns: []string{"p.test"}}).keyPEM)
		return p.KeyFile
	}, "does not match"},
	{"expired", func(t *testing.T, ca *testCA, p Pair) string {
		install(t, p, ca.issue(t, leafSpec{dns: []string{"p.test"},
			notBefore: t0.Add(-48 * time.Hour), notAfter: t0.Add(-time.Minute)}))
		return p.CertFile
	}, "expired"},
	{"not yet valid", func(t *testing.T, ca *testCA, p Pair) string {
		install(t, p, ca.issue(t, leafSpec{dns: []string{"p.test"}, notBefore: t0.Add(time.Minute)}))
		return p.CertFile
	}, "not valid before"},
	{"certificate not PEM", func(t *testing.T, _ *testCA, p Pair) string {
		replaceFile(t, p.CertFile, []byte("this is not a certificate\n"))
		return p.CertFile
	}, "no PEM CERTIFICATE block"},
	{"key not PEM", func(t *testing.T, _ *testCA, p Pair) string {
		replaceFile(t, p.KeyFile, []byte("this is not a key\n"))
		return p.KeyFile
	}, "key input"},
	{"certificate half written", func(t *testing.T, ca *testCA, p Pair) string {
		c := ca.issue(t, leafSpec{dns: []string{"p.test"}})
		replaceFile(t, p.KeyFile, c.keyPEM)
		overwriteFile(t, p.CertFile, c.certPEM[:len(c.certPEM)/2])
		return p.CertFile
	}, "no PEM CERTIFICATE block"},
	{"chain half written", func(t *testing.T, ca *testCA, p Pair) string {
		// The leaf is whole but its intermediate is cut off: loading
		// the leaf alone would serve an incomplete chain.
		c := ca.issue(t, leafSpec{dns: []string{"p.test"}})
		caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
		replaceFile(t, p.KeyFile, c.keyPEM)
		overwriteFile(t, p.CertFile, append(c.certPEM, caPEM[:len(caPEM)/2]...))
		return p.CertFile
	}, "truncated or malformed"},
}

func TestLoadErrors(t *testing.T) {
	ca := newTestCA(t)
	for _, b := range breakages {
		t.Run(b.name, func(t *testing.T) {
			dir := t.TempDir()
			def := writePair(t, dir, "default", ca.issue(t, leafSpec{dns: []string{"default.test"}}))
			p := writePair(t, dir, "p", ca.issue(t, leafSpec{dns: []string{"p.test"}}))
			file := b.apply(t, ca, p)
			s, err := Load([]Pair{def, p}, Options{Now: fixed(t0), Logger: testLogger(t, nil)})
			if err == nil {
				t.Fatalf("Load = %v, nil error; want error naming %s", s, file)
			}
			if !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), b.reason) {
				t.Errorf("Load error = %q, want it to name %s and say %q", err, file, b.reason)
			}
		})
	}
	t.Run("no pairs", func(t *testing.T) {
		if _, err := Load(nil, Options{}); err == nil {
			t.Error("Load(nil) = nil error, want error")
		}
	})
	t.Run("unnamed key file", func(t *testing.T) {
		_, err := Load([]Pair{{CertFile: "x.crt"}}, Options{})
		if err == nil || !strings.Contains(err.Error(), "x.crt") {
			t.Errorf("Load = %v, want error naming x.crt", err)
		}
	})
}

// reloadEvent is one OnReload call.
type reloadEvent struct {
	p   Pair
	err error
}

func TestReloadKeepsPreviousOnBrokenFiles(t *testing.T) {
	ca := newTestCA(t)
	for _, b := range breakages {
		t.Run(b.name, func(t *testing.T) {
			dir := t.TempDir()
			def := writePair(t, dir, "default", ca.issue(t, leafSpec{dns: []string{"default.test"}}))
			first := ca.issue(t, leafSpec{dns: []string{"p.test"}})
			p := writePair(t, dir, "p", first)
			// Reload is called synchronously here, so OnReload needs no
			// locking and logs need no more than a buffer.
			var events []reloadEvent
			var logs bytes.Buffer
			s := mustLoad(t, []Pair{def, p}, Options{
				Logger:   testLogger(t, &logs),
				OnReload: func(p Pair, err error) { events = append(events, reloadEvent{p, err}) },
			})
			if got := serialFor(t, s, "p.test"); got.Cmp(first.serial) != 0 {
				t.Fatalf("after Load: serial %v, want %v", got, first.serial)
			}

			// A good new certificate replaces the old one.
			renewed := ca.issue(t, leafSpec{dns: []string{"p.test"}})
			install(t, p, renewed)
			if err := s.Reload(); err != nil {
				t.Fatalf("Reload of good files: %v", err)
			}
			if got := serialFor(t, s, "p.test"); got.Cmp(renewed.serial) != 0 {
				t.Errorf("after renewal: serial %v, want the renewed %v", got, renewed.serial)
			}
			if len(events) != 2 || events[0] != (reloadEvent{def, nil}) || events[1] != (reloadEvent{p, nil}) {
				t.Errorf("OnReload calls = %v, want one success per pair", events)
			}

			// A broken one does not.
			events = nil
			file := b.apply(t, ca, p)
			err := s.Reload()
			if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), b.reason) {
				t.Errorf("Reload = %v, want error naming %s and saying %q", err, file, b.reason)
			}
			if got := serialFor(t, s, "p.test"); got.Cmp(renewed.serial) != 0 {
				t.Errorf("after broken reload: serial %v, want the previous %v", got, renewed.serial)
			}
			if leaves := s.Leaves(); len(leaves) != 2 || leaves[1].SerialNumber.Cmp(renewed.serial) != 0 {
				t.Errorf("Leaves = %v, want the previous certificate second", leaves)
			}
			if len(events) != 2 || events[0] != (reloadEvent{def, nil}) || events[1].p != p || events[1].err == nil ||
				!strings.Contains(events[1].err.Error(), file) {
				t.Errorf("OnReload calls = %v, want success for %v and an error naming %s for %v", events, def, file, p)
			}
			if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, file) {
				t.Errorf("log does not warn naming %s:\n%s", file, l)
			}

			// Mending the files brings the pair back.
			mended := ca.issue(t, leafSpec{dns: []string{"p.test"}})
			install(t, p, mended)
			if err := s.Reload(); err != nil {
				t.Fatalf("Reload of mended files: %v", err)
			}
			if got := serialFor(t, s, "p.test"); got.Cmp(mended.serial) != 0 {
				t.Errorf("after mending: serial %v, want %v", got, mended.serial)
			}
		})
	}
}

// TestHandshakeAcrossReload runs real handshakes on a loopback listener: a
// connection made before a reload keeps its certificate and keeps working,
// and one made after gets the new certificate.
func TestHandshakeAcrossReload(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	old := ca.issue(t, leafSpec{dns: []string{"www.example.com"}})
	p := writePair(t, dir, "www", old)
	s := mustLoad(t, []Pair{p}, Options{})

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: s.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	// Cleanups run last-registered first: clients close (ending the echo
	// goroutines) before this closes the listener and waits.
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				io.Copy(c, c)
			})
		}
	})

	dial := func() *tls.Conn {
		t.Helper()
		d := &tls.Dialer{
			NetDialer: &net.Dialer{Timeout: waitLimit},
			// No ClientSessionCache, so every dial is a full handshake
			// and sees the server's current certificate.
			Config: &tls.Config{RootCAs: ca.pool, ServerName: "www.example.com", Time: fixed(t0)},
		}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.SetDeadline(time.Now().Add(waitLimit)); err != nil {
			t.Fatal(err)
		}
		return c.(*tls.Conn)
	}
	echo := func(c *tls.Conn, msg string) {
		t.Helper()
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatalf("write %q: %v", msg, err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("read echo of %q: %v", msg, err)
		}
		if string(buf) != msg {
			t.Fatalf("echo = %q, want %q", buf, msg)
		}
	}
	peerSerial := func(c *tls.Conn) *big.Int { return c.ConnectionState().PeerCertificates[0].SerialNumber }

	before := dial()
	echo(before, "before reload")
	if got := peerSerial(before); got.Cmp(old.serial) != 0 {
		t.Fatalf("first connection: serial %v, want %v", got, old.serial)
	}

	renewed := ca.issue(t, leafSpec{dns: []string{"www.example.com"}})
	install(t, p, renewed)
	if err := s.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}

	echo(before, "after reload")
	if got := peerSerial(before); got.Cmp(old.serial) != 0 {
		t.Errorf("first connection after reload: serial %v, want still %v", got, old.serial)
	}
	after := dial()
	echo(after, "new connection")
	if got := peerSerial(after); got.Cmp(renewed.serial) != 0 {
		t.Errorf("new connection: serial %v, want the renewed %v", got, renewed.serial)
	}
}

// waitEvent returns the first event from events for which ok is true,
// failing the test after waitLimit. Errors for pairs other than want are
// reported, since nothing in the test breaks them.
func waitEvent(t *testing.T, events <-chan reloadEvent, want Pair, ok func(reloadEvent) bool) reloadEvent {
	t.Helper()
	timeout := time.NewTimer(waitLimit)
	defer timeout.Stop()
	for {
		select {
		case ev := <-events:
			if ev.p != want && ev.err != nil {
				t.Errorf("unexpected reload error for %v: %v", ev.p, ev.err)
			}
			if ev.p == want && ok(ev) {
				return ev
			}
		case <-timeout.C:
			t.Fatalf("no matching reload of %v within %v", want, waitLimit)
		}
	}
}

func TestWatch(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	a1 := ca.issue(t, leafSpec{dns: []string{"a.test"}})
	b := ca.issue(t, leafSpec{dns: []string{"b.test"}})
	pa, pb := writePair(t, dir, "a", a1), writePair(t, dir, "b", b)

	ctx, cancel := context.WithCancel(t.Context())
	events := make(chan reloadEvent, 16)
	s := mustLoad(t, []Pair{pa, pb}, Options{
		OnReload: func(p Pair, err error) {
			select {
			case events <- reloadEvent{p, err}:
			case <-ctx.Done(): // the test is over; do not block Watch
			}
		},
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Watch(ctx, time.Millisecond)
	}()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(waitLimit):
			t.Errorf("Watch did not return within %v of its context ending", waitLimit)
		}
	}()

	// Replacing the files (new inodes) is noticed. A reload may land
	// between the key and the certificate and fail; wait for the success.
	a2 := ca.issue(t, leafSpec{dns: []string{"a.test"}})
	install(t, pa, a2)
	waitEvent(t, events, pa, func(ev reloadEvent) bool {
		return ev.err == nil && serialFor(t, s, "a.test").Cmp(a2.serial) == 0
	})

	// A certificate rewritten in place and caught half written is a
	// broken file: reported, and the previous certificate stays.
	a3 := ca.issue(t, leafSpec{dns: []string{"a.test"}})
	overwriteFile(t, pa.CertFile, a3.certPEM[:len(a3.certPEM)/2])
	ev := waitEvent(t, events, pa, func(ev reloadEvent) bool { return ev.err != nil })
	if msg := ev.err.Error(); !strings.Contains(msg, pa.CertFile) || !strings.Contains(msg, "no PEM CERTIFICATE block") {
		t.Errorf("reload error %q, want it to name %s and say it has no certificate", msg, pa.CertFile)
	}
	if got := serialFor(t, s, "a.test"); got.Cmp(a2.serial) != 0 {
		t.Errorf("after half-written file: serial %v, want the previous %v", got, a2.serial)
	}

	// Finishing the write (in place: same inode, new size) is noticed.
	replaceFile(t, pa.KeyFile, a3.keyPEM)
	overwriteFile(t, pa.CertFile, a3.certPEM)
	waitEvent(t, events, pa, func(ev reloadEvent) bool {
		return ev.err == nil && serialFor(t, s, "a.test").Cmp(a3.serial) == 0
	})

	if got := serialFor(t, s, "b.test"); got.Cmp(b.serial) != 0 {
		t.Errorf("untouched pair: serial %v, want %v", got, b.serial)
	}
}

// TestConcurrentHandshakesAndReloads is for the race detector: certificate
// selection while reloads swap the certificates.
func TestConcurrentHandshakesAndReloads(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	versions := []issued{
		ca.issue(t, leafSpec{dns: []string{"*.example.com"}}),
		ca.issue(t, leafSpec{dns: []string{"*.example.com"}}),
	}
	p := writePair(t, dir, "wild", versions[0])
	s := mustLoad(t, []Pair{p}, Options{})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "x.example.com"})
				if err != nil || c == nil || c.Leaf == nil {
					t.Errorf("GetCertificate = %v, %v", c, err)
					return
				}
				if sn := c.Leaf.SerialNumber; sn.Cmp(versions[0].serial) != 0 && sn.Cmp(versions[1].serial) != 0 {
					t.Errorf("GetCertificate returned unknown serial %v", sn)
					return
				}
				_ = s.Leaves()
			}
		})
	}
	for i := range 20 {
		install(t, p, versions[i%2])
		if err := s.Reload(); err != nil {
			t.Errorf("Reload %d: %v", i, err)
		}
	}
	close(stop)
	wg.Wait()
}

func TestZeroStore(t *testing.T) {
	var s Store
	if _, err := s.GetCertificate(&tls.ClientHelloInfo{}); err == nil {
		t.Error("GetCertificate on zero Store = nil error, want error")
	}
	if err := s.Reload(); err == nil {
		t.Error("Reload on zero Store = nil error, want error")
	}
	if l := s.Leaves(); l != nil {
		t.Errorf("Leaves on zero Store = %v, want nil", l)
	}
}
