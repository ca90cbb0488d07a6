package cluster

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/geocdn/geocdn/origin"
)

// testLogger sends cluster logs to the test's log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: testLogLevel}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var threeEdges = []EdgeSpec{
	{ID: "iad", Region: "us-east", Lat: 38.90, Lon: -77.04},
	{ID: "lhr", Region: "eu-west", Lat: 51.51, Lon: -0.13},
	{ID: "nrt", Region: "ap-northeast", Lat: 35.68, Lon: 139.69},
}

func startCluster(t *testing.T, cfg Config) *Cluster {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Edges == nil {
		cfg.Edges = threeEdges
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	c, err := Start(cfg)
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	waitFor(t, "every edge healthy", func() bool {
		for _, e := range c.Edges() {
			if ed := e.Edge(); ed == nil || !ed.Healthy() {
				return false
			}
		}
		return true
	})
	return c
}

// waitFor polls cond with a generous deadline: tests assert outcomes, not
// latencies (those live in benchmarks).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitForWithin(t, what, 30*time.Second, cond)
}

// waitForWithin is waitFor with a deadline of its own.
func waitForWithin(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type publishAnswer struct {
	status int
	res    origin.PublishResult
	lsn    string
}

func publish(t *testing.T, c *Cluster, key string, body []byte, query string, hdr map[string]string) publishAnswer {
	t.Helper()
	u := c.OriginURL() + "/v1/objects/" + key
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequest(http.MethodPut, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("publish %s: %v", key, err)
	}
	defer resp.Body.Close()
	var a publishAnswer
	a.status = resp.StatusCode
	a.lsn = resp.Header.Get("GeoCDN-LSN")
	raw, _ := io.ReadAll(resp.Body)
	json.Unmarshal(raw, &a.res)
	return a
}

func mustPublish(t *testing.T, c *Cluster, key string, body []byte, query string) origin.PublishResult {
	t.Helper()
	a := publish(t, c, key, body, query, map[string]string{"Content-Type": "text/plain", "Cache-Control": "public, max-age=30"})
	if a.status != http.StatusCreated {
		t.Fatalf("publish %s: status %d (%+v), want 201", key, a.status, a.res)
	}
	return a.res
}

type got struct {
	status int
	body   []byte
	hdr    http.Header
}

func get(t *testing.T, url string, hdr map[string]string) got {
	t.Helper()
	return getWith(t, http.DefaultClient, url, hdr)
}

// getWith is get through client.
func getWith(t *testing.T, client *http.Client, url string, hdr map[string]string) got {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return got{resp.StatusCode, b, resp.Header}
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestPublishIsPushedBeforeAnyClientAsks(t *testing.T) {
	c := startCluster(t, Config{})
	body := []byte("hello, edges\n")
	res := mustPublish(t, c, "greeting.txt", body, "w=all")
	if len(res.Acked) != 3 {
		t.Fatalf("w=all acked %v, want all 3 edges", res.Acked)
	}
	if res.Digest != digestOf(body) {
		t.Fatalf("digest %s, want %s", res.Digest, digestOf(body))
	}
	for _, e := range c.Edges() {
		g := get(t, e.URL+"/greeting.txt", nil)
		if g.status != 200 || !bytes.Equal(g.body, body) {
			t.Fatalf("%s: status %d body %q, want 200 %q", e.Spec.ID, g.status, g.body, body)
		}
		if x := g.hdr.Get("X-Cache"); x != "HIT" {
			t.Errorf("%s: first GET X-Cache %q, want HIT (the push should have landed first)", e.Spec.ID, x)
		}
		if et, want := g.hdr.Get("ETag"), `"`+res.Digest+`"`; et != want {
			t.Errorf("%s: ETag %s, want %s", e.Spec.ID, et, want)
		}
		if cc := g.hdr.Get("Cache-Control"); cc != "public, max-age=30" {
			t.Errorf("%s: Cache-Control %q, want the publisher's", e.Spec.ID, cc)
		}
		if ct := g.hdr.Get("Content-Type"); ct != "text/plain" {
			t.Errorf("%s: Content-Type %q, want text/plain", e.Spec.ID, ct)
		}
		if g.hdr.Get("Cache-Status") == "" || g.hdr.Get("GeoCDN-LSN") == "" || g.hdr.Get("Last-Modified") == "" || g.hdr.Get("Age") == "" {
			t.Errorf("%s: missing Cache-Status, GeoCDN-LSN, Last-Modified or Age in %v", e.Spec.ID, g.hdr)
		}
	}
}

func TestUpdateThenDeleteReachEveryEdge(t *testing.T) {
	c := startCluster(t, Config{})
	mustPublish(t, c, "doc/page.html", []byte("v1"), "")
	v2 := []byte("version two")
	res := mustPublish(t, c, "doc/page.html", v2, "")
	for _, e := range c.Edges() {
		waitFor(t, e.Spec.ID+" serving v2", func() bool {
			g := get(t, e.URL+"/doc/page.html", nil)
			return g.status == 200 && bytes.Equal(g.body, v2) && g.hdr.Get("ETag") == `"`+res.Digest+`"`
		})
	}
	req, _ := http.NewRequest(http.MethodDelete, c.OriginURL()+"/v1/objects/doc/page.html", nil)
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("delete: status %d, want 200", resp.StatusCode)
	}
	for _, e := range c.Edges() {
		waitFor(t, e.Spec.ID+" answering 404", func() bool {
			return get(t, e.URL+"/doc/page.html", nil).status == 404
		})
	}
}

func TestConditionalAndRangeRequests(t *testing.T) {
	c := startCluster(t, Config{})
	body := []byte("0123456789abcdefghij")
	res := mustPublish(t, c, "r.bin", body, "w=all")
	u := c.Edges()[0].URL + "/r.bin"
	etag := `"` + res.Digest + `"`
	first := get(t, u, nil)
	cases := []struct {
		name   string
		hdr    map[string]string
		status int
		body   string
	}{
		{"if-none-match hit", map[string]string{"If-None-Match": etag}, 304, ""},
		{"if-none-match other", map[string]string{"If-None-Match": `"nope"`}, 200, string(body)},
		{"if-modified-since", map[string]string{"If-Modified-Since": first.hdr.Get("Last-Modified")}, 304, ""},
		{"range", map[string]string{"Range": "bytes=2-5"}, 206, "2345"},
		{"suffix range", map[string]string{"Range": "bytes=-3"}, 206, "hij"},
		{"unsatisfiable", map[string]string{"Range": "bytes=100-"}, 416, ""},
		{"if-match mismatch", map[string]string{"If-Match": `"nope"`}, 412, ""},
		{"if-range stale", map[string]string{"Range": "bytes=0-1", "If-Range": `"nope"`}, 200, string(body)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := get(t, u, tc.hdr)
			if g.status != tc.status {
				t.Fatalf("status %d, want %d", g.status, tc.status)
			}
			if tc.body != "" && string(g.body) != tc.body {
				t.Fatalf("body %q, want %q", g.body, tc.body)
			}
		})
	}
}

func TestConcurrentMissesCollapseIntoOneFill(t *testing.T) {
	var fills atomic.Int64
	c := startCluster(t, Config{Replicas: 1, OnEvent: func(ev origin.Event) {
		if ev.Kind == origin.EventFillServed {
			fills.Add(1)
		}
	}})
	body := bytes.Repeat([]byte("x"), 512<<10)
	res := mustPublish(t, c, "big/blob.bin", body, "w=1")
	if len(res.Replicas) != 1 {
		t.Fatalf("replicas %v, want exactly one under --replicas 1", res.Replicas)
	}
	var target *EdgeNode
	for _, e := range c.Edges() {
		if e.Spec.ID != res.Replicas[0] {
			target = e
		}
	}
	waitFor(t, "log entry at "+target.Spec.ID, func() bool { return target.Edge().Watermark() >= res.LSN })
	fills.Store(0)
	var wg sync.WaitGroup
	var bad atomic.Int64
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(target.URL + "/big/blob.bin")
			if err != nil {
				bad.Add(1)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !bytes.Equal(b, body) {
				bad.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := bad.Load(); n != 0 {
		t.Fatalf("%d of 100 concurrent GETs failed", n)
	}
	if n := fills.Load(); n != 1 {
		t.Fatalf("origin served %d fills for 100 concurrent misses, want exactly 1", n)
	}
}

func edgeState(t *testing.T, c *Cluster, id string) origin.EdgeState {
	for _, st := range c.Origin().Edges() {
		if st.ID == id {
			return st.State
		}
	}
	return ""
}

func TestWriteQuorum(t *testing.T) {
	c := startCluster(t, Config{LeaseTerm: 500 * time.Millisecond, PublishTimeout: 2 * time.Second})
	t.Run("numbers", func(t *testing.T) {
		for _, tc := range []struct {
			w    string
			want int
		}{{"0", 0}, {"1", 1}, {"2", 2}, {"quorum", 2}, {"all", 3}} {
			res := mustPublish(t, c, "w/"+tc.w, []byte("w="+tc.w), "w="+tc.w)
			if len(res.Acked) < tc.want {
				t.Errorf("w=%s: acked %v, want at least %d", tc.w, res.Acked, tc.want)
			}
		}
	})
	t.Run("more than the replica set", func(t *testing.T) {
		if a := publish(t, c, "w/toomany", []byte("x"), "w=4", nil); a.status != 400 {
			t.Fatalf("w=4 with 3 edges: status %d, want 400", a.status)
		}
		if a := publish(t, c, "w/bad", []byte("x"), "w=some", nil); a.status != 400 {
			t.Fatalf("w=some: status %d, want 400", a.status)
		}
	})
	t.Run("an edge down", func(t *testing.T) {
		down := c.Edges()[2]
		if err := c.KillEdge(2); err != nil {
			t.Fatal(err)
		}
		// Published before the origin counts the edge down, so the edge is
		// waited for; once its lease has run out, it no longer is.
		if st := edgeState(t, c, down.Spec.ID); st == origin.EdgeDown {
			t.Fatalf("%s down at once; the case needs it still leased", down.Spec.ID)
		}
		if a := publish(t, c, "w/killed-while-waiting", []byte("nrt killed"), "w=all", nil); a.status != http.StatusCreated || len(a.res.Acked) != 2 {
			t.Fatalf("w=all with an edge killed as it was published: status %d acked %v (%s), want 201 from the 2 live edges once %s is down",
				a.status, a.res.Acked, a.res.Error, down.Spec.ID)
		}
		waitFor(t, "origin marks "+down.Spec.ID+" down", func() bool { return edgeState(t, c, down.Spec.ID) == origin.EdgeDown })
		res := mustPublish(t, c, "w/all-but-one", []byte("while nrt is down"), "w=all")
		if len(res.Acked) != 2 {
			t.Fatalf("w=all with one edge down acked %v, want the 2 live edges", res.Acked)
		}
		a := publish(t, c, "w/three", []byte("needs three"), "w=3", nil)
		if a.status != http.StatusGatewayTimeout || !a.res.Committed || len(a.res.Acked) != 2 {
			t.Fatalf("w=3 with one edge down: status %d committed %v acked %v, want 504, committed, 2 acks", a.status, a.res.Committed, a.res.Acked)
		}
		if err := c.StartEdge(2); err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{"w/killed-while-waiting", "w/all-but-one", "w/three"} {
			waitFor(t, down.Spec.ID+" catching up on "+key, func() bool {
				g := get(t, down.URL+"/"+key, nil)
				return g.status == 200 && g.hdr.Get("X-Cache") == "HIT"
			})
		}
	})
}

// rawRequest sends a request line exactly as given, so no client-side path
// cleaning hides what the server does with it.
func rawRequest(t *testing.T, hostport, method, target string, hdr map[string]string, body string) int {
	t.Helper()
	conn, err := net.Dial("tcp", hostport)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: %d\r\n", method, target, hostport, len(body))
	for k, v := range hdr {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n" + body)
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestBadInputIsRefusedAndLosesNothing(t *testing.T) {
	c := startCluster(t, Config{MaxObjectSize: 1024})
	origHost := strings.TrimPrefix(c.OriginURL(), "http://")
	edgeHost := strings.TrimPrefix(c.Edges()[0].URL, "http://")
	auth := map[string]string{"Authorization": "Bearer " + c.Token}
	before := c.Origin().LastLSN()
	badKeys := []string{"/a/../b", "/a/./b", "/a//b", "/a/", "/%00x", "/a%0Ab", "/" + strings.Repeat("k", 1025), "/..", "/%2e%2e/x"}
	for _, k := range badKeys {
		if got := rawRequest(t, origHost, "PUT", "/v1/objects"+k, auth, "x"); got != 400 {
			t.Errorf("origin PUT %q: status %d, want 400", k, got)
		}
		if got := rawRequest(t, edgeHost, "GET", k, nil, ""); got != 400 {
			t.Errorf("edge GET %q: status %d, want 400", k, got)
		}
	}
	if got := rawRequest(t, origHost, "PUT", "/v1/objects/ok.txt", nil, "x"); got != 401 {
		t.Errorf("PUT without token: %d, want 401", got)
	}
	if got := rawRequest(t, origHost, "PUT", "/v1/objects/ok.txt", map[string]string{"Authorization": "Bearer wrong-token-0123456789"}, "x"); got != 401 {
		t.Errorf("PUT with wrong token: %d, want 401", got)
	}
	if got := rawRequest(t, origHost, "GET", "/v1/edges", nil, ""); got != 401 {
		t.Errorf("GET /v1/edges without token: %d, want 401", got)
	}
	if got := rawRequest(t, origHost, "PUT", "/v1/objects/big.bin", auth, strings.Repeat("z", 2048)); got != 413 {
		t.Errorf("oversized PUT: %d, want 413", got)
	}
	// A chunked body gives no length up front: the limit is enforced while streaming.
	req, _ := http.NewRequest(http.MethodPut, c.OriginURL()+"/v1/objects/big2.bin", io.MultiReader(strings.NewReader(strings.Repeat("z", 4096))))
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("oversized chunked PUT: %d, want 413", resp.StatusCode)
	}
	for _, k := range []string{"big.bin", "big2.bin", "ok.txt"} {
		if got := rawRequest(t, origHost, "GET", "/v1/objects/"+k, auth, ""); got != 404 {
			t.Errorf("GET %s after refused publish: %d, want 404 (nothing stored)", k, got)
		}
	}
	// No refused request consumed an LSN: the next publish is the first.
	res := mustPublish(t, c, "ok.txt", []byte("fine"), "w=all")
	if res.LSN != before+1 {
		t.Errorf("first accepted publish got LSN %d, want %d (refused requests must not consume LSNs)", res.LSN, before+1)
	}
	// A form-encoded body is content, not parameters.
	form := "w=all&consistency=strong"
	a := publish(t, c, "form.txt", []byte(form), "", map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	if a.status != 201 || a.res.Size != uint64(len(form)) || a.res.Consistency != "eventual" {
		t.Fatalf("form-encoded publish: status %d size %d consistency %s, want 201, %d, eventual", a.status, a.res.Size, a.res.Consistency, len(form))
	}
	if g := get(t, c.OriginURL()+"/v1/objects/form.txt", auth); string(g.body) != form {
		t.Fatalf("form-encoded body stored as %q, want %q", g.body, form)
	}
	if got := rawRequest(t, edgeHost, "POST", "/ok.txt", nil, "x"); got != 405 {
		t.Errorf("POST to edge: %d, want 405", got)
	}
}

// testLogLevel is the level of cluster logs in test output; GEOCDN_TEST_LOG=info
// shows more.
var testLogLevel = func() slog.Level {
	if os.Getenv("GEOCDN_TEST_LOG") == "info" {
		return slog.LevelInfo
	}
	return slog.LevelWarn
}()
