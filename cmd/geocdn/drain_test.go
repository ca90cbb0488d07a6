package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"syscall"
	"testing"
)

// TestEdgeDrainsOnSIGTERM: an edge given SIGTERM reports unhealthy for its
// drain delay, then stops taking connections but finishes the request in
// flight (a large object, still being read), and exits 0.
func TestEdgeDrainsOnSIGTERM(t *testing.T) {
	c := newCluster(t)
	e := c.addEdge("lhr", "eu-west", 51.51, -0.13, "--drain-delay", "1s")
	c.start()

	// Larger than what loopback socket buffers hold, so the edge is still
	// writing it when the signal arrives.
	const size = 32 << 20
	body := randomBytes(rand.New(rand.NewPCG(7, 7)), size)
	res := c.mustPublish("big/video.bin", body, "w=all")

	// A client of its own, so no other request shares the connection.
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(e.url() + "/big/video.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != size {
		t.Fatalf("GET big object: status %d length %d, want 200 and %d", resp.StatusCode, resp.ContentLength, size)
	}
	h := sha256.New()
	if _, err := io.CopyN(h, resp.Body, 64<<10); err != nil {
		t.Fatal(err)
	}

	e.p.signal(t, syscall.SIGTERM)
	// While it drains, /healthz answers 503 on both listeners.
	waitFor(t, "admin /healthz 503 while draining", func() bool { return c.healthz(e) == 503 }, e.p)
	if g, err := c.get(e.url()+"/healthz", false); err == nil && g.status != 503 {
		t.Errorf("client /healthz while draining: %d, want 503", g.status)
	}
	// After the drain delay it stops accepting connections; our response
	// is still being written.
	waitFor(t, "edge refusing new connections", func() bool {
		conn, err := net.Dial("tcp", e.httpAddr)
		if err != nil {
			return true
		}
		conn.Close()
		return false
	}, e.p)
	if e.p.exited() {
		t.Fatalf("edge exited before the in-flight response was read")
	}

	n, err := io.Copy(h, resp.Body)
	if err != nil {
		t.Fatalf("in-flight GET cut off during drain after %d more bytes: %v", n, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != res.Digest || n != size-64<<10 {
		t.Fatalf("in-flight GET: %d bytes with digest %s, want %d with %s", n+64<<10, got, size, res.Digest)
	}
	st := e.p.wait(t)
	if st.ExitCode() != 0 {
		t.Fatalf("edge exited with %v after SIGTERM, want status 0", st)
	}
}
