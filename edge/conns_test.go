package edge

import (
	"bufio"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geocdn/geocdn/internal/pki"
)

func TestMaxConnsDefault(t *testing.T) {
	for _, tc := range []struct{ set, want int }{
		{0, DefaultMaxConns},
		{5, 5},
		{-1, -1},
	} {
		if got := (Config{MaxConns: tc.set}).withDefaults().MaxConns; got != tc.want {
			t.Errorf("MaxConns %d after defaults: %d, want %d", tc.set, got, tc.want)
		}
	}
}

// TestConnectionMetrics: the client server's open and refused connections
// show on the edge's registry. The edge is built by New and its client
// server run alone: no origin is needed to accept connections.
func TestConnectionMetrics(t *testing.T) {
	now := time.Now()
	ca, err := pki.NewCA(now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(pki.Identity{Role: pki.RoleEdge, ID: "e1"}, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	e, err := New(Config{
		ID: "e1", Region: "test", Origin: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9},
		HTTPListener: ln, DataDir: t.TempDir(), CA: ca, Cert: cert,
		MaxConns: 1, Registry: reg, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.httpSrv.Serve(e.httpLn)
	}()
	t.Cleanup(func() {
		e.httpSrv.Close()
		<-done
		e.closeListeners()
		e.store.close()
	})
	const open, refused = "geocdn_edge_http_open_connections", "geocdn_edge_http_connections_refused_total"
	if got := metricValue(t, reg, open); got != 0 {
		t.Errorf("%s before any connection: %v, want 0", open, got)
	}

	in := dialEdge(t, e)
	waitMetric(t, reg, open, 1)
	// Beyond MaxConns: refused, and counted.
	over := dialEdge(t, e)
	resp, err := http.ReadResponse(bufio.NewReader(over), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a connection beyond MaxConns: %d, want 503", resp.StatusCode)
	}
	if got := metricValue(t, reg, refused); got != 1 {
		t.Errorf("%s: %v, want 1", refused, got)
	}
	in.Close()
	waitMetric(t, reg, open, 0)
}

func dialEdge(t *testing.T, e *Edge) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", e.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c
}

// waitMetric polls a gauge until it reads want, for at most 20 s.
func waitMetric(t *testing.T, reg *prometheus.Registry, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := metricValue(t, reg, name)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v, want %v", name, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
