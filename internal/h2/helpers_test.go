package h2

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/pki"
)

// testCert is a throwaway certificate for 127.0.0.1 and localhost, and a
// pool that trusts its CA.
func testCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	cert, pool, err := pki.Loopback(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return cert, pool
}

// testServer serves s over TLS ("h2" by ALPN) on a loopback port the
// kernel picks, until the test ends.
type testServer struct {
	s    *Server
	addr string
	pool *x509.CertPool
	ln   net.Listener
	wg   sync.WaitGroup
}

func startTLS(t *testing.T, s *Server) *testServer {
	t.Helper()
	if s.Logger == nil {
		s.Logger = slog.New(slog.NewTextHandler(tWriter{t}, nil))
	}
	cert, pool := testCert(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}}
	ts := &testServer{s: s, addr: ln.Addr().String(), pool: pool, ln: ln}
	ts.wg.Add(1)
	go func() {
		defer ts.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ts.wg.Add(1)
			go func() {
				defer ts.wg.Done()
				tc := tls.Server(c, conf)
				tc.SetDeadline(time.Now().Add(10 * time.Second))
				if err := tc.Handshake(); err != nil {
					tc.Close()
					return
				}
				tc.SetDeadline(time.Time{})
				s.ServeConn(tc)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		ts.wg.Wait()
	})
	return ts
}

// tWriter sends a logger's lines to t.Log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
