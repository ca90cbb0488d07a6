//go:build !race

package h1c

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"
)

// TestSteadyStateAllocs: once its connection is open, a request
// allocates nothing, headers, deadline and hashing included.
func TestSteadyStateAllocs(t *testing.T) {
	host := cannedServer(t)
	var cl Client
	defer cl.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
	defer cancel()
	var resp Response
	h := sha256.New()
	ip, etag := "192.0.2.1", `"v1"`
	var failed error
	allocs := testing.AllocsPerRun(200, func() {
		hdr := [...]Field{{"X-Forwarded-For", ip}, {"If-None-Match", etag}}
		if err := cl.Do(ctx, &Request{Host: host, Target: "/obj", Header: hdr[:]}, &resp); err != nil {
			failed = err
			return
		}
		if resp.Get("Etag") == nil || resp.Get("Cache-Status") == nil {
			failed = ErrMalformed
		}
		h.Reset()
		if _, err := resp.WriteTo(h); err != nil {
			failed = err
		}
		resp.Close()
	})
	if failed != nil {
		t.Fatal(failed)
	}
	if allocs != 0 {
		t.Errorf("%v allocations per request, want 0", allocs)
	}
}
