package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestPullThroughProcesses: pull-through with the real binary, an origin
// and two edges as separate processes on the real clock in front of a
// site served by this test. 100 concurrent misses at the two edges make
// one upstream request and all get the page; the next request is a hit;
// a private page reaches the site every time.
func TestPullThroughProcesses(t *testing.T) {
	var mu sync.Mutex
	hits := map[string]int{}
	release := make(chan struct{})
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits[r.URL.Path]++
		mu.Unlock()
		switch r.URL.Path {
		case "/hot":
			<-release
			w.Header().Set("Cache-Control", "max-age=300")
			io.WriteString(w, "the hot page")
		case "/private":
			w.Header().Set("Cache-Control", "private, max-age=300")
			io.WriteString(w, "yours only")
		default:
			http.NotFound(w, r)
		}
	}))
	defer site.Close()
	count := func(path string) int {
		mu.Lock()
		defer mu.Unlock()
		return hits[path]
	}

	c := newCluster(t)
	edges := []*edgeNode{c.addEdge("lhr", "eu-west", 51.51, -0.13), c.addEdge("fra", "eu-central", 50.11, 8.68)}
	c.start("--upstream", "default="+site.URL)

	const n = 100
	var wg sync.WaitGroup
	answers := make([]string, n)
	for i := range n {
		wg.Go(func() {
			resp, err := c.http.Get("http://" + edges[i%2].httpAddr + "/hot")
			if err != nil {
				answers[i] = err.Error()
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			answers[i] = fmt.Sprintf("%d %s", resp.StatusCode, b)
		})
	}
	// Released once the first pull reached the site: the others are on
	// their way, queued behind it at an edge or at the origin, or later
	// and answered from what it stored; none may reach the site again.
	waitFor(t, "the first pull to reach the site", func() bool { return count("/hot") > 0 }, c.origin)
	close(release)
	wg.Wait()
	for i, a := range answers {
		if a != "200 the hot page" {
			t.Fatalf("request %d: %q", i, a)
		}
	}
	if got := count("/hot"); got != 1 {
		t.Fatalf("%d concurrent misses at 2 edge processes made %d upstream requests, want 1", n, got)
	}
	for _, e := range edges {
		resp, err := c.http.Get("http://" + e.httpAddr + "/hot")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if cs := resp.Header.Get("Cache-Status"); !strings.HasPrefix(cs, "geocdn; hit") {
			t.Errorf("%s: a later GET /hot: Cache-Status %q, want a hit", e.id, cs)
		}
	}
	for range 2 {
		resp, err := c.http.Get("http://" + edges[0].httpAddr + "/private")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "yours only" || !strings.Contains(resp.Header.Get("Cache-Status"), "detail=private") {
			t.Errorf("GET /private: %q, Cache-Status %q", b, resp.Header.Get("Cache-Status"))
		}
	}
	if got := count("/private"); got != 2 {
		t.Errorf("a private page reached the site %d times for 2 requests", got)
	}
}
