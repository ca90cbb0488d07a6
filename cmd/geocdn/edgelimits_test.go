package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// edgeMetric reads one unlabelled metric from e's admin /metrics, or -1.
func (c *procCluster) edgeMetric(e *edgeNode, name string) float64 {
	return c.metric("http://"+e.adminAddr+"/metrics", name)
}

// originMetric reads one unlabelled metric from the origin's /metrics
// (public: the test cluster sets no metrics token), or -1.
func (c *procCluster) originMetric(name string) float64 {
	return c.metric(c.originURL()+"/metrics", name)
}

// metric reads one unlabelled metric from the /metrics at url, or -1.
func (c *procCluster) metric(url, name string) float64 {
	resp, err := c.http.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		return -1
	}
	return v
}

// TestEdgeConnectionLimitsProcess holds the edge binary's client port to
// its limits on the real clock: --max-conns refuses the connection beyond
// the cap with a 503 from the accept loop, the gauge counts open
// connections, and a connection that never sends a byte is closed after
// the read-header timeout (5 s), not the idle timeout (2 min).
func TestEdgeConnectionLimitsProcess(t *testing.T) {
	c := newCluster(t)
	e := c.addEdge("e1", "eu-west", 51.51, -0.13, "--max-conns", "2")
	c.start()
	const open, refused = "geocdn_edge_http_open_connections", "geocdn_edge_http_connections_refused_total"

	dial := func() net.Conn {
		t.Helper()
		conn, err := net.Dial("tcp", e.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	silent := []net.Conn{dial(), dial()}
	waitFor(t, "2 open connections", func() bool { return c.edgeMetric(e, open) == 2 }, e.p)

	third := dial()
	third.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(third), nil)
	if err != nil {
		t.Fatalf("connection beyond --max-conns: %v, want a 503", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("connection beyond --max-conns: %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if got := c.edgeMetric(e, refused); got < 1 {
		t.Errorf("%s = %v after a refusal, want >= 1", refused, got)
	}

	// The silent connections are closed by the server once the
	// read-header timeout passes; the 60 s deadline only guards a hang
	// (it is the old behaviour's 2 min idle timeout that this catches).
	for i, conn := range silent {
		conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		_, err := conn.Read(make([]byte, 1))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("silent connection %d still open after 60 s", i)
		} else if err == nil {
			t.Errorf("silent connection %d: the server sent bytes to a client that asked nothing", i)
		}
	}
	waitFor(t, "no open connections", func() bool { return c.edgeMetric(e, open) == 0 }, e.p)
	// Room again: a request is answered.
	resp, err = c.http.Get(e.url() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz once below the cap: %d, want 200", resp.StatusCode)
	}
}
