package clusternet

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/pki"
)

var kinds = []byte{KindRaft, KindBlob, KindHTTP}

// TestDialAccept dials every kind both ways between two origins and checks
// that each connection reaches the listener of its kind, carries bytes
// both ways, and names the right peer on both ends.
func TestDialAccept(t *testing.T) {
	ca := newCA(t)
	a, b := newNode(t, ca, "o1"), newNode(t, ca, "o2")
	for _, dir := range []struct{ from, to *node }{{a, b}, {b, a}} {
		t.Run(dir.from.id+"_to_"+dir.to.id, func(t *testing.T) {
			// Dial all kinds before accepting any, so that a connection
			// routed to the wrong listener would be read there.
			for _, k := range kinds {
				c, err := dir.from.dial(dir.to.Addr(), k, dir.to.id)
				if err != nil {
					t.Fatalf("Dial %s: %v", kindName(k), err)
				}
				defer c.Close()
				if got, err := PeerID(c); err != nil || got != dir.to.id {
					t.Errorf("dialled %s: PeerID = %q, %v; want %q", kindName(k), got, err, dir.to.id)
				}
				if _, err := io.WriteString(c, kindName(k)); err != nil {
					t.Fatalf("write %s: %v", kindName(k), err)
				}
			}
			for _, k := range kinds {
				s, err := dir.to.Listener(k).Accept()
				if err != nil {
					t.Fatalf("Accept %s: %v", kindName(k), err)
				}
				defer s.Close()
				if got, err := PeerID(s); err != nil || got != dir.from.id {
					t.Errorf("accepted %s: PeerID = %q, %v; want %q", kindName(k), got, err, dir.from.id)
				}
				buf := make([]byte, len(kindName(k)))
				if _, err := io.ReadFull(s, buf); err != nil {
					t.Fatalf("read on %s listener: %v", kindName(k), err)
				}
				if got, want := string(buf), kindName(k); got != want {
					t.Errorf("%s listener got a connection dialled as %q", want, got)
				}
			}
		})
	}
}

// TestDialAnyOrigin: with no expected id, any origin of the CA will do.
func TestDialAnyOrigin(t *testing.T) {
	ca := newCA(t)
	a, b := newNode(t, ca, "o1"), newNode(t, ca, "o2")
	c, err := a.dial(b.Addr(), KindHTTP, "")
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	if got, err := PeerID(c); err != nil || got != "o2" {
		t.Errorf("PeerID = %q, %v; want o2", got, err)
	}
}

// TestNewRefusesCertificate checks that New refuses a certificate that
// every peer would refuse, and closes the listener it was given.
func TestNewRefusesCertificate(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	tests := []struct {
		name    string
		cfg     func(*Config)
		wantErr []string
	}{
		{"other id", func(c *Config) { c.ID = "o2"; c.Cert = issue(t, ca, pki.RoleOrigin, "o3", time.Hour) },
			[]string{"certificate names geocdn://origin/o3, but this node's id is o2"}},
		{"edge role", func(c *Config) { c.ID = "e1"; c.Cert = issue(t, ca, pki.RoleEdge, "e1", time.Hour) },
			[]string{"certificate names geocdn://edge/e1", "want geocdn://origin/e1"}},
		{"other ca", func(c *Config) { c.Cert = issue(t, other, pki.RoleOrigin, "o1", time.Hour) },
			[]string{"geocdn://origin/o1", "unknown authority"}},
		{"expired", func(c *Config) { c.Now = func() time.Time { return time.Now().Add(2 * time.Hour) } },
			[]string{"geocdn://origin/o1", "expired"}},
		{"no ca", func(c *Config) { c.CA = nil }, []string{"ca: required"}},
		{"bad id", func(c *Config) { c.ID = "o/1" }, []string{"id: ", `"o/1"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln := listen(t)
			cfg := Config{ID: "o1", CA: ca, Cert: issue(t, ca, pki.RoleOrigin, "o1", time.Hour), Listener: ln}
			tt.cfg(&cfg)
			n, err := New(cfg)
			if err == nil {
				n.Close()
				t.Fatalf("New succeeded; want an error containing %q", tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("New error = %q; want it to contain %q", err, want)
				}
			}
			if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("listener after a failed New: Accept error = %v; want net.ErrClosed", err)
			}
		})
	}
}

// TestDialExpectID: a dialer expecting o2 refuses o3, says so in its error
// and log, and o3 logs the refusal it was sent.
func TestDialExpectID(t *testing.T) {
	ca := newCA(t)
	a, c := newNode(t, ca, "o1"), newNode(t, ca, "o3")
	_, err := a.dial(c.Addr(), KindRaft, "o2")
	want := "clusternet: dial origin o2 at " + c.Addr().String() + ": certificate names geocdn://origin/o3"
	if err == nil || err.Error() != want {
		t.Fatalf("Dial error = %v; want %q", err, want)
	}
	a.logs.waitFor("level=WARN", "dial failed", "expect=o2", "certificate names geocdn://origin/o3")
	c.logs.waitFor("level=WARN", "refused a connection", "bad certificate")
}

// TestRefused covers handshakes that fail on a certificate. Whichever side
// refuses, the dialer's error says why, and both sides log it.
func TestRefused(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	later := func(c *Config) { c.Now = func() time.Time { return time.Now().Add(2 * time.Hour) } }
	shortCert := func(c *Config) { c.Cert = issue(t, ca, pki.RoleOrigin, c.ID, time.Hour) }
	tests := []struct {
		name             string
		dialer, acceptor func(t *testing.T) *node
		wantDialErr      string // in the dialer's error and log
		wantAcceptLog    string // in the acceptor's log
	}{
		{
			name:          "dialer from another ca",
			dialer:        func(t *testing.T) *node { return newNode(t, other, "o9") },
			acceptor:      func(t *testing.T) *node { return newNode(t, ca, "o1") },
			wantDialErr:   "certificate signed by unknown authority",
			wantAcceptLog: "remote error: tls: bad certificate (the peer refused this node's certificate",
		},
		{
			name:          "acceptor from another ca",
			dialer:        func(t *testing.T) *node { return newNode(t, ca, "o1") },
			acceptor:      func(t *testing.T) *node { return newNode(t, other, "o9") },
			wantDialErr:   "certificate signed by unknown authority",
			wantAcceptLog: "remote error: tls: bad certificate",
		},
		{
			// The acceptor's clock is past the dialer's certificate; the
			// dialer only learns of it from the alert, which it reads
			// while waiting for the answer to the kind byte.
			name:          "expired dialer certificate",
			dialer:        func(t *testing.T) *node { return newNode(t, ca, "o1", shortCert) },
			acceptor:      func(t *testing.T) *node { return newNode(t, ca, "o2", later) },
			wantDialErr:   "remote error: tls: expired certificate",
			wantAcceptLog: "certificate has expired",
		},
		{
			name:          "expired acceptor certificate",
			dialer:        func(t *testing.T) *node { return newNode(t, ca, "o1", later) },
			acceptor:      func(t *testing.T) *node { return newNode(t, ca, "o2", shortCert) },
			wantDialErr:   "certificate has expired",
			wantAcceptLog: "remote error: tls: bad certificate",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, a := tt.dialer(t), tt.acceptor(t)
			c, err := d.dial(a.Addr(), KindBlob, "")
			if err == nil {
				c.Close()
				t.Fatalf("Dial succeeded; want an error containing %q", tt.wantDialErr)
			}
			if !strings.Contains(err.Error(), tt.wantDialErr) {
				t.Errorf("Dial error = %q; want it to contain %q", err, tt.wantDialErr)
			}
			d.logs.waitFor("level=WARN", "dial failed", "addr="+a.Addr().String(), tt.wantDialErr)
			a.logs.waitFor("level=WARN", "refused a connection", "remote=127.0.0.1:", tt.wantAcceptLog)
		})
	}
}

// TestRefusedClient covers clients that a Net's dialer would never be:
// the acceptor is the side that finds the fault.
func TestRefusedClient(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	a := newNode(t, ca, "o1")
	tests := []struct {
		name          string
		cert          tls.Certificate
		wantClientErr string
		wantLog       string
	}{
		{"certificate from another ca", issue(t, other, pki.RoleOrigin, "o9", time.Hour),
			"remote error: tls: unknown certificate authority", "certificate signed by unknown authority"},
		{"edge certificate", issue(t, ca, pki.RoleEdge, "e1", time.Hour),
			"remote error: tls: bad certificate", "peer geocdn://edge/e1 has role"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The client trusts the acceptor, so only the acceptor refuses.
			c, _, err := rawTLS(t, a.Addr(), pki.ClientTLS(ca, tt.cert, pki.RoleOrigin, nil), KindRaft)
			if err == nil || !strings.Contains(err.Error(), tt.wantClientErr) {
				t.Errorf("client error = %v; want one containing %q", err, tt.wantClientErr)
			}
			a.logs.waitFor("level=WARN", "refused a connection", "remote="+c.LocalAddr().String(), tt.wantLog)
		})
	}
}

// TestPlaintextDropped: a client that does not speak TLS is dropped and
// logged.
func TestPlaintextDropped(t *testing.T) {
	a := newNode(t, newCA(t), "o1")
	c, err := net.Dial("tcp", a.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: o1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c)
	a.logs.waitFor("level=WARN", "refused a connection", "remote="+c.LocalAddr().String(), "does not look like a TLS handshake")
}

// TestSilentDropped: a client that connects and says nothing is dropped
// after the handshake timeout, and logged.
func TestSilentDropped(t *testing.T) {
	a := newNode(t, newCA(t), "o1", func(c *Config) { c.HandshakeTimeout = 50 * time.Millisecond })
	c, err := net.Dial("tcp", a.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitClosed(t, c)
	a.logs.waitFor("level=WARN", "refused a connection", "remote="+c.LocalAddr().String(), "not done within the handshake timeout 50ms")
}

// TestUnknownKind: a well-authenticated peer sending a kind this node
// does not know is answered, dropped and logged; Dial refuses to send one.
func TestUnknownKind(t *testing.T) {
	ca := newCA(t)
	a := newNode(t, ca, "o1")
	cert := issue(t, ca, pki.RoleOrigin, "o9", time.Hour)
	c, answer, err := rawTLS(t, a.Addr(), pki.ClientTLS(ca, cert, pki.RoleOrigin, nil), 9)
	if err != nil {
		t.Fatalf("raw client: %v", err)
	}
	if got, want := status(answer), statusUnknownKind; got != want {
		t.Errorf("answer = %d; want %d (unknown kind)", got, want)
	}
	waitClosed(t, c)
	a.logs.waitFor("level=WARN", "refused a connection", "peer=o9", "unknown kind 9")

	if _, err := a.dial(a.Addr(), 9, ""); err == nil || !strings.Contains(err.Error(), "unknown kind 9") {
		t.Errorf("Dial kind 9: error = %v; want unknown kind 9", err)
	}
}

// TestQueueFull: connections of a kind nobody accepts are refused once
// acceptQueue of them wait, and accepted again once one is taken.
func TestQueueFull(t *testing.T) {
	ca := newCA(t)
	a, b := newNode(t, ca, "o1"), newNode(t, ca, "o2")
	for i := range acceptQueue {
		c, err := a.dial(b.Addr(), KindBlob, "o2")
		if err != nil {
			t.Fatalf("Dial %d of %d: %v", i+1, acceptQueue, err)
		}
		defer c.Close()
	}
	_, err := a.dial(b.Addr(), KindBlob, "o2")
	if err == nil || !strings.Contains(err.Error(), "peer refused: blob connections are not being accepted") {
		t.Fatalf("Dial with a full queue: error = %v; want a refusal", err)
	}
	b.logs.waitFor("level=WARN", "refused a connection", "peer=o1", "blob connections are not being accepted")

	s, err := b.Listener(KindBlob).Accept()
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	s.Close()
	c, err := a.dial(b.Addr(), KindBlob, "o2")
	if err != nil {
		t.Fatalf("Dial after an Accept: %v", err)
	}
	c.Close()
}

// TestClose: Close ends Accept with net.ErrClosed, closes the queued and
// half-handshaken connections, fails later Dials, and leaves no goroutine
// behind.
func TestClose(t *testing.T) {
	ca := newCA(t)
	peer := newNode(t, ca, "o2")
	before := runtime.NumGoroutine()

	n := newNode(t, ca, "o1")
	accepted := make(chan error, 1)
	go func() {
		_, err := n.Listener(KindHTTP).Accept()
		accepted <- err
	}()
	queued, err := peer.dial(n.Addr(), KindBlob, "o1")
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer queued.Close()
	silent, err := net.Dial("tcp", n.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	if err := n.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-accepted; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept blocked across Close: error = %v; want net.ErrClosed", err)
	}
	for _, k := range kinds {
		if _, err := n.Listener(k).Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s Accept after Close: error = %v; want net.ErrClosed", kindName(k), err)
		}
	}
	if _, err := n.dial(peer.Addr(), KindRaft, ""); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Dial after Close: error = %v; want net.ErrClosed", err)
	}
	waitClosed(t, queued)
	waitClosed(t, silent)
	if err := n.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	// Close has waited for the Net's goroutines; give the runtime a moment
	// to retire the test's own (the blocked Accept above).
	deadline := time.Now().Add(patience)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			var dump strings.Builder
			pprof.Lookup("goroutine").WriteTo(&dump, 1)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), before, dump.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCloseKindListener: closing one kind's listener refuses that kind
// only.
func TestCloseKindListener(t *testing.T) {
	ca := newCA(t)
	a, b := newNode(t, ca, "o1"), newNode(t, ca, "o2")
	b.Listener(KindHTTP).Close()
	if _, err := a.dial(b.Addr(), KindHTTP, "o2"); err == nil || !strings.Contains(err.Error(), "http listener is closed") {
		t.Errorf("Dial to a closed kind: error = %v; want a refusal", err)
	}
	c, err := a.dial(b.Addr(), KindRaft, "o2")
	if err != nil {
		t.Fatalf("Dial raft: %v", err)
	}
	c.Close()
	if _, err := b.Listener(KindHTTP).Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept on the closed listener: error = %v; want net.ErrClosed", err)
	}
}

// TestDialSilentPeer: a Dial to a peer that accepts TCP but never answers
// ends at the handshake timeout and says so.
func TestDialSilentPeer(t *testing.T) {
	a := newNode(t, newCA(t), "o1", func(c *Config) { c.HandshakeTimeout = 50 * time.Millisecond })
	silent := listen(t) // the kernel completes TCP handshakes; nobody speaks TLS
	defer silent.Close()
	_, err := a.dial(silent.Addr(), KindRaft, "o2")
	if err == nil || !strings.Contains(err.Error(), "no answer within the handshake timeout 50ms") {
		t.Errorf("Dial error = %v; want the handshake timeout", err)
	}
	a.logs.waitFor("level=WARN", "dial failed", "expect=o2", "handshake timeout")
}
