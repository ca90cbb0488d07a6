package cluster

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/objkey"
	"github.com/geocdn/geocdn/origin"
)

// scriptedSite is an upstream web server whose answers the test writes,
// counting the requests each target got.
type scriptedSite struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string]int
	seen map[string]*http.Request
}

func newScriptedSite(t *testing.T, h func(w http.ResponseWriter, r *http.Request)) *scriptedSite {
	s := &scriptedSite{hits: map[string]int{}, seen: map[string]*http.Request{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.RequestURI()]++
		s.seen[r.URL.RequestURI()] = r
		s.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *scriptedSite) count(target string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[target]
}

// startPullCluster starts a cluster whose default namespace pulls from
// site, and waits for every edge to have heard so from the origin.
func startPullCluster(t *testing.T, site *scriptedSite, edges []EdgeSpec) *Cluster {
	t.Helper()
	u, err := url.Parse(site.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, Config{Edges: edges, Upstreams: []origin.Upstream{{Namespace: objkey.DefaultNamespace, URL: u}}})
	waitFor(t, "every edge connected", func() bool {
		for _, en := range c.Edges() {
			if !en.Edge().Healthy() {
				return false
			}
		}
		return true
	})
	return c
}

// noRedirect is a client that hands redirects back, as a browser's
// network log shows them, and sends Accept-Encoding only when told to
// (Go's transport would add gzip, which Vary cases must control).
var noRedirect = &http.Client{
	Transport:     &http.Transport{DisableCompression: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func pullGet(t *testing.T, u string, hdr map[string]string) got {
	t.Helper()
	return getWith(t, noRedirect, u, hdr)
}

// TestPullThroughEndToEnd: a site behind geocdn with one flag. The first
// request anywhere is fetched from the upstream once; later ones, at any
// edge, are not; what must not be stored is passed through every time;
// redirects and cacheable 404s are answers; conditional requests and
// ranges work on pulled objects; a published key wins over the site.
func TestPullThroughEndToEnd(t *testing.T) {
	site := newScriptedSite(t, func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		switch r.URL.RequestURI() {
		case "/":
			h.Set("Cache-Control", "public, max-age=300")
			h.Set("ETag", `"home-1"`)
			h.Set("Content-Type", "text/html")
			io.WriteString(w, "<h1>home</h1>")
		case "/blog/?page=2":
			h.Set("Cache-Control", "max-age=300")
			io.WriteString(w, "blog, page 2")
		case "/account":
			h.Set("Cache-Control", "private, max-age=60")
			fmt.Fprintf(w, "your account, request %s", r.Header.Get("X-Request"))
		case "/old":
			h.Set("Location", "/new")
			h.Set("Cache-Control", "max-age=300")
			w.WriteHeader(http.StatusMovedPermanently)
		case "/missing":
			h.Set("Cache-Control", "max-age=300")
			http.Error(w, "no such page", http.StatusNotFound)
		case "/published":
			h.Set("Cache-Control", "max-age=300")
			io.WriteString(w, "the site's version")
		default:
			http.Error(w, "unexpected "+r.URL.RequestURI(), http.StatusInternalServerError)
		}
	})
	c := startPullCluster(t, site, twoEdges)
	e0, e1 := c.Edges()[0].URL, c.Edges()[1].URL

	first := pullGet(t, e0+"/", nil)
	if first.status != http.StatusOK || string(first.body) != "<h1>home</h1>" || first.hdr.Get("Content-Type") != "text/html" || first.hdr.Get("Etag") != `"home-1"` {
		t.Fatalf("first GET /: %d %q %v", first.status, first.body, first.hdr)
	}
	if cs := first.hdr.Get("Cache-Status"); !strings.Contains(cs, "fwd=uri-miss") || !strings.Contains(cs, "stored") {
		t.Errorf("first GET / Cache-Status %q", cs)
	}
	hit := pullGet(t, e0+"/", nil)
	if cs := hit.hdr.Get("Cache-Status"); hit.status != http.StatusOK || !strings.HasPrefix(cs, "geocdn; hit") || hit.hdr.Get("Age") == "" {
		t.Errorf("second GET /: %d, Cache-Status %q, Age %q", hit.status, cs, hit.hdr.Get("Age"))
	}
	if other := pullGet(t, e1+"/", nil); other.status != http.StatusOK || string(other.body) != "<h1>home</h1>" {
		t.Errorf("GET / at the other edge: %d %q", other.status, other.body)
	}
	if n := site.count("/"); n != 1 {
		t.Errorf("the upstream was asked for / %d times, want once", n)
	}
	if nm := pullGet(t, e1+"/", map[string]string{"If-None-Match": `"home-1"`}); nm.status != http.StatusNotModified {
		t.Errorf("conditional GET /: %d", nm.status)
	}
	if part := pullGet(t, e0+"/", map[string]string{"Range": "bytes=4-7"}); part.status != http.StatusPartialContent || string(part.body) != "home" {
		t.Errorf("range GET /: %d %q", part.status, part.body)
	}

	if g := pullGet(t, e0+"/blog/?page=2", nil); g.status != http.StatusOK || string(g.body) != "blog, page 2" {
		t.Errorf("GET /blog/?page=2: %d %q", g.status, g.body)
	}

	for i := range 2 {
		g := pullGet(t, e0+"/account", map[string]string{"X-Request": fmt.Sprint(i)})
		cs := g.hdr.Get("Cache-Status")
		if g.status != http.StatusOK || string(g.body) != fmt.Sprintf("your account, request %d", i) || !strings.Contains(cs, "stored=?0") || !strings.Contains(cs, "detail=private") {
			t.Errorf("GET /account #%d: %d %q, Cache-Status %q", i, g.status, g.body, cs)
		}
	}
	if n := site.count("/account"); n != 2 {
		t.Errorf("a private page reached the upstream %d times for 2 requests", n)
	}

	for range 2 {
		if g := pullGet(t, e0+"/old", nil); g.status != http.StatusMovedPermanently || g.hdr.Get("Location") != "/new" {
			t.Errorf("GET /old: %d, Location %q", g.status, g.hdr.Get("Location"))
		}
		if g := pullGet(t, e1+"/missing", nil); g.status != http.StatusNotFound || !strings.Contains(string(g.body), "no such page") {
			t.Errorf("GET /missing: %d %q", g.status, g.body)
		}
	}
	if a, b := site.count("/old"), site.count("/missing"); a != 1 || b != 1 {
		t.Errorf("a cacheable redirect and 404 reached the upstream %d and %d times, want once each", a, b)
	}

	mustPublish(t, c, "published", []byte("the published version"), "w=all")
	for _, e := range []string{e0, e1} {
		if g := pullGet(t, e+"/published", nil); string(g.body) != "the published version" {
			t.Errorf("GET /published: %d %q; the published key must win", g.status, g.body)
		}
	}
	if n := site.count("/published"); n != 0 {
		t.Errorf("a published key was fetched from the upstream %d times", n)
	}
	r := site.seen["/"]
	if r.Header.Get("Via") == "" || r.Header.Get("X-Forwarded-For") != "127.0.0.1" {
		t.Errorf("the upstream saw Via %q and X-Forwarded-For %q", r.Header.Get("Via"), r.Header.Get("X-Forwarded-For"))
	}
}

// TestPullCollapsesAcrossEdges: 200 concurrent misses for one URL at five
// edges make one upstream request.
func TestPullCollapsesAcrossEdges(t *testing.T) {
	release := make(chan struct{})
	site := newScriptedSite(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "max-age=300")
		io.WriteString(w, "everyone wants this")
	})
	edges := []EdgeSpec{
		{ID: "fra", Region: "eu-central", Lat: 50.11, Lon: 8.68},
		{ID: "sin", Region: "ap-southeast", Lat: 1.35, Lon: 103.82},
		{ID: "iad", Region: "us-east", Lat: 38.9, Lon: -77.0},
		{ID: "gru", Region: "sa-east", Lat: -23.5, Lon: -46.6},
		{ID: "syd", Region: "ap-southeast-2", Lat: -33.9, Lon: 151.2},
	}
	c := startPullCluster(t, site, edges)
	const n = 200
	var wg sync.WaitGroup
	bodies := make([]string, n)
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() {
			resp, err := http.Get(c.Edges()[i%len(edges)].URL + "/hot")
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			bodies[i], codes[i] = string(b), resp.StatusCode
		})
	}
	// Every request is on its way once the first reached the upstream
	// and the others had time to queue behind it; releasing early would
	// only let a late one be a hit, never a second upstream request.
	waitFor(t, "the first pull to reach the upstream", func() bool { return site.count("/hot") > 0 })
	close(release)
	wg.Wait()
	for i := range n {
		if codes[i] != http.StatusOK || bodies[i] != "everyone wants this" {
			t.Fatalf("request %d: %d %q", i, codes[i], bodies[i])
		}
	}
	if got := site.count("/hot"); got != 1 {
		t.Fatalf("%d concurrent misses at %d edges made %d upstream requests, want 1", n, len(edges), got)
	}
}

// TestPurgeReachesPulledObjects: a purge by key, tag or prefix reaches a
// pulled object everywhere, the origin's copy included: after a hard
// purge the next request anywhere fetches it from the upstream again,
// once; after a soft one it is revalidated there (a 304 keeps the body).
func TestPurgeReachesPulledObjects(t *testing.T) {
	var mu sync.Mutex
	var conditional int
	site := newScriptedSite(t, func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "max-age=300")
		h.Set("ETag", `"p1"`)
		h.Set("Surrogate-Key", "pages")
		if r.Header.Get("If-None-Match") == `"p1"` {
			mu.Lock()
			conditional++
			mu.Unlock()
			w.WriteHeader(http.StatusNotModified)
			return
		}
		io.WriteString(w, "page body")
	})
	c := startPullCluster(t, site, twoEdges)
	getBoth := func(step string) {
		t.Helper()
		for _, en := range c.Edges() {
			if g := pullGet(t, en.URL+"/docs/page?v=1", nil); g.status != http.StatusOK || string(g.body) != "page body" {
				t.Fatalf("%s: GET at %s: %d %q", step, en.Spec.ID, g.status, g.body)
			}
		}
	}
	const target = "/docs/page?v=1"
	getBoth("first")
	if n := site.count(target); n != 1 {
		t.Fatalf("first requests: %d upstream requests, want 1", n)
	}
	for i, sel := range []string{`{"keys":["/docs/page?v=1"]}`, `{"tags":["pages"]}`, `{"prefixes":["/docs/"]}`} {
		if code, res := purge(t, c, "wait=true", sel); code != http.StatusOK {
			t.Fatalf("purge %s: %d %+v", sel, code, res)
		}
		getBoth("after purge " + sel)
		if n := site.count(target); n != i+2 {
			t.Fatalf("after purge %s: %d upstream requests, want %d (one more, for both edges)", sel, n, i+2)
		}
	}
	if code, res := purge(t, c, "wait=true&soft=true", `{"tags":["pages"]}`); code != http.StatusOK {
		t.Fatalf("soft purge: %d %+v", code, res)
	}
	getBoth("after a soft purge")
	mu.Lock()
	defer mu.Unlock()
	if n := site.count(target); n != 5 || conditional != 1 {
		t.Fatalf("after a soft purge: %d upstream requests (%d conditional), want 5 with 1 conditional", n, conditional)
	}
}

// TestForwardedMethods: POST, PUT, PATCH, DELETE and OPTIONS in a pull
// namespace reach the upstream with their bodies and fields and are never
// cached; a successful unsafe request makes the stored page it targets
// stale everywhere, so the next GET revalidates it, once for every edge
// (RFC 9111 §4.4).
func TestForwardedMethods(t *testing.T) {
	var mu sync.Mutex
	conditional := 0
	site := newScriptedSite(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			w.Header().Set("Cache-Control", "max-age=300")
			w.Header().Set("ETag", `"v1"`)
			if r.Header.Get("If-None-Match") == `"v1"` {
				mu.Lock()
				conditional++
				mu.Unlock()
				w.WriteHeader(http.StatusNotModified)
				return
			}
			io.WriteString(w, "the page")
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Cache-Control", "max-age=300") // must not make it cached
		w.Header().Set("X-Method", r.Method)
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "%s %s %q ct=%s", r.Method, r.URL.RequestURI(), b, r.Header.Get("Content-Type"))
	})
	c := startPullCluster(t, site, twoEdges)
	e0, e1 := c.Edges()[0].URL, c.Edges()[1].URL
	for _, en := range []string{e0, e1} {
		if g := pullGet(t, en+"/page", nil); string(g.body) != "the page" {
			t.Fatalf("GET /page: %d %q", g.status, g.body)
		}
	}
	for _, m := range []string{"POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
		for i := range 2 {
			req, _ := http.NewRequest(m, e0+"/api/cart?id=7", strings.NewReader(`{"n":1}`))
			req.Header.Set("Content-Type", "application/json")
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := fmt.Sprintf(`%s /api/cart?id=7 "{\"n\":1}" ct=application/json`, m)
			if resp.StatusCode != http.StatusCreated || string(b) != want || resp.Header.Get("X-Method") != m {
				t.Fatalf("%s #%d: %d %q, want 201 %q", m, i, resp.StatusCode, b, want)
			}
			if cs := resp.Header.Get("Cache-Status"); !strings.Contains(cs, "fwd=method") {
				t.Errorf("%s: Cache-Status %q", m, cs)
			}
		}
	}
	if n := site.count("/api/cart?id=7"); n != 10 {
		t.Fatalf("the upstream saw %d forwarded requests, want all 10", n)
	}
	// A POST to the page makes its stored copy stale at every edge.
	resp, err := noRedirect.Post(e1+"/page", "text/plain", strings.NewReader("edit"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// The origin's soft purge reaches the other edge through the log; its
	// next GET revalidates, and the refreshed version it commits serves
	// the edge that forwarded the POST too (which marked its copy stale
	// at once).
	waitFor(t, "the other edge to revalidate /page", func() bool {
		g := pullGet(t, e0+"/page", nil)
		if string(g.body) != "the page" {
			t.Fatalf("GET /page at the other edge: %d %q", g.status, g.body)
		}
		return strings.Contains(g.hdr.Get("Cache-Status"), "fwd=stale")
	})
	waitFor(t, "the forwarding edge to serve the refreshed page", func() bool {
		g := pullGet(t, e1+"/page", nil)
		return string(g.body) == "the page" && g.status == http.StatusOK
	})
	mu.Lock()
	defer mu.Unlock()
	if conditional != 1 {
		t.Errorf("after the POST the page was revalidated %d times upstream, want once for both edges", conditional)
	}
}

// TestVaryVariants: a page with Vary is stored once per set of values of
// the fields it names (RFC 9111 §4.1's secondary key), at the origin and
// at every edge: each language is fetched once and then a hit, at either
// edge, and a purge of the page removes every variant. Concurrent first
// requests in two languages each get their own, though the first fetch
// cannot know that the page varies.
func TestVaryVariants(t *testing.T) {
	site := newScriptedSite(t, func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "max-age=300")
		h.Set("Vary", "Accept-Language")
		h.Set("Surrogate-Key", "hello")
		lang := r.Header.Get("Accept-Language")
		if lang == "" {
			lang = "none"
		}
		if strings.HasPrefix(r.URL.Path, "/slow") {
			time.Sleep(50 * time.Millisecond) // for the concurrent first requests to pile up
		}
		io.WriteString(w, "hello in "+lang)
	})
	c := startPullCluster(t, site, twoEdges)
	e0, e1 := c.Edges()[0].URL, c.Edges()[1].URL
	get := func(edge, path, lang, wantCS string) {
		t.Helper()
		var hdr map[string]string
		want := "hello in none"
		if lang != "" {
			hdr, want = map[string]string{"Accept-Language": lang}, "hello in "+lang
		}
		g := pullGet(t, edge+path, hdr)
		if cs := g.hdr.Get("Cache-Status"); g.status != http.StatusOK || string(g.body) != want || !strings.Contains(cs, wantCS) {
			t.Fatalf("GET %s (%q): %d %q, Cache-Status %q; want %q and %q", path, lang, g.status, g.body, cs, want, wantCS)
		}
	}
	get(e0, "/hello", "fr", "fwd=uri-miss")
	get(e0, "/hello", "en", "fwd=vary-miss")
	get(e0, "/hello", "", "fwd=vary-miss")
	for range 2 {
		get(e0, "/hello", "fr", "hit")
		get(e0, "/hello", "en", "hit")
		get(e0, "/hello", "", "hit")
	}
	// The other edge: the origin holds every variant, so none is fetched
	// again, whether the log or the first request brings it.
	for _, lang := range []string{"en", "fr", ""} {
		get(e1, "/hello", lang, "")
	}
	if n := site.count("/hello"); n != 3 {
		t.Fatalf("the upstream was asked for /hello %d times for 3 variants", n)
	}
	for i, sel := range []string{`{"keys":["/hello"]}`, `{"tags":["hello"]}`} {
		if code, res := purge(t, c, "wait=true", sel); code != http.StatusOK {
			t.Fatalf("purge %s: %d %+v", sel, code, res)
		}
		get(e1, "/hello", "en", "fwd=")
		get(e1, "/hello", "fr", "fwd=")
		if n := site.count("/hello"); n != 3+2*(i+1) {
			t.Fatalf("after purge %s: %d upstream requests, want %d: every variant purged", sel, n, 3+2*(i+1))
		}
	}

	// Concurrent first requests for two variants at one edge.
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		lang := []string{"fr", "en"}[i%2]
		wg.Go(func() {
			g := getWith(t, noRedirect, e0+"/slow", map[string]string{"Accept-Language": lang})
			if g.status != http.StatusOK || string(g.body) != "hello in "+lang {
				errs <- fmt.Sprintf("%s: %d %q", lang, g.status, g.body)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error("concurrent first requests:", e)
	}
	// One for the first, and one for the other language's requests,
	// collapsed at the edge and at the origin by variant.
	if got := site.count("/slow"); got != 2 {
		t.Errorf("%d upstream requests for %d concurrent requests in 2 languages, want 2", got, n)
	}
	get(e0, "/slow", "fr", "hit")
	get(e0, "/slow", "en", "hit")
}
