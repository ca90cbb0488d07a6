package clusternet

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/pki"
)

// patience bounds every wait in these tests. It is a guard against a hang,
// never a measured duration: no test asserts how long anything took.
const patience = 10 * time.Second

func newCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

func issue(t *testing.T, ca *pki.CA, role pki.Role, id string, validity time.Duration) tls.Certificate {
	t.Helper()
	cert, err := ca.Issue(pki.Identity{Role: role, ID: id}, time.Now(), validity)
	if err != nil {
		t.Fatalf("Issue %s %s: %v", role, id, err)
	}
	return cert
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return ln
}

// node is a Net whose log is kept for assertions.
type node struct {
	*Net
	logs *logSink
}

// newNode starts a Net for origin id with a day-long certificate from ca,
// after applying opts to its Config, and closes it when the test ends.
func newNode(t *testing.T, ca *pki.CA, id string, opts ...func(*Config)) *node {
	t.Helper()
	logs := newLogSink(t, id)
	cfg := Config{
		ID:       id,
		CA:       ca,
		Cert:     issue(t, ca, pki.RoleOrigin, id, 24*time.Hour),
		Listener: listen(t),
		Logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, o := range opts {
		o(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New %s: %v", id, err)
	}
	t.Cleanup(func() { n.Close() })
	return &node{Net: n, logs: logs}
}

// dial is n.Dial with a bounded context.
func (n *node) dial(addr net.Addr, kind byte, expectID string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	return n.Dial(ctx, addr.String(), kind, expectID)
}

// logSink is an io.Writer for a slog handler that keeps what a node logs,
// echoes it to t.Log, and lets a test wait for a line.
type logSink struct {
	t    *testing.T
	name string

	mu      sync.Mutex
	text    strings.Builder
	changed chan struct{} // closed and replaced on every write
}

func newLogSink(t *testing.T, name string) *logSink {
	return &logSink{t: t, name: name, changed: make(chan struct{})}
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.text.Write(p)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	s.t.Logf("%s: %s", s.name, strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// waitFor waits until a line of the log contains every one of subs, and
// returns it. Handshakes are logged from their own goroutines, so the line
// a test waits for may come after the event that caused it.
func (s *logSink) waitFor(subs ...string) string {
	s.t.Helper()
	deadline := time.NewTimer(patience)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		text, changed := s.text.String(), s.changed
		s.mu.Unlock()
	lines:
		for line := range strings.Lines(text) {
			for _, sub := range subs {
				if !strings.Contains(line, sub) {
					continue lines
				}
			}
			return line
		}
		select {
		case <-changed:
		case <-deadline.C:
			s.t.Fatalf("%s logged no line containing all of %q", s.name, subs)
		}
	}
}

// waitClosed reads from c until the peer closes it (EOF or reset) and
// fails the test if that does not happen within patience.
func waitClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(patience))
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%v: still open after %v", c.LocalAddr(), patience)
	}
}

// rawTLS dials addr as a hand-made TLS client, which may break the rules a
// Net keeps, sends kind, and returns the acceptor's answer.
func rawTLS(t *testing.T, addr net.Addr, cfg *tls.Config, kind byte) (c *tls.Conn, answer byte, err error) {
	t.Helper()
	d := tls.Dialer{Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	nc, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, 0, err
	}
	t.Cleanup(func() { nc.Close() })
	c = nc.(*tls.Conn)
	c.SetDeadline(time.Now().Add(patience))
	if _, err := c.Write([]byte{kind}); err != nil {
		return c, 0, err
	}
	var b [1]byte
	_, err = io.ReadFull(c, b[:])
	return c, b[0], err
}
