package origin

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/clock"
	"github.com/geocdn/geocdn/internal/objkey"
	"github.com/geocdn/geocdn/internal/wire"
)

// startPullOrigin starts an origin whose namespace "site" pulls from
// upstream.
func startPullOrigin(t *testing.T, upstream string, mod func(*Config)) *testOrigin {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	return startTestOrigin(t, func(c *Config) {
		c.Upstreams = []Upstream{{Namespace: "site", URL: u}}
		c.UpstreamTimeouts = UpstreamTimeouts{Connect: 2 * time.Second, FirstByte: 2 * time.Second, Total: 10 * time.Second}
		if mod != nil {
			mod(c)
		}
	})
}

func readAll(t *testing.T, to *testOrigin, d wire.Digest) string {
	t.Helper()
	f, err := to.store.openBlob(d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPullStoresCacheable: a cacheable upstream response becomes a
// committed version: body, status and stored header fields (hop-by-hop
// ones dropped), the times of the exchange, tags from Surrogate-Key and
// Cache-Tag, and the request fields its Vary names. The request the
// upstream saw carries the client's end-to-end fields, Via and
// X-Forwarded-For, and the target the key names.
func TestPullStoresCacheable(t *testing.T) {
	var seen atomic.Pointer[http.Request]
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r)
		h := w.Header()
		h.Set("Cache-Control", "public, max-age=60")
		h.Set("ETag", `"v1"`)
		h.Set("Content-Type", "text/html")
		h.Set("Surrogate-Key", "home  front")
		h.Set("Cache-Tag", "blog, html")
		h.Set("Vary", "Accept-Encoding")
		h.Set("Connection", "X-Hop")
		h.Set("X-Hop", "secret")
		h.Set("Keep-Alive", "timeout=5")
		io.WriteString(w, "<h1>blog page 2</h1>")
	}))
	defer up.Close()
	to := startPullOrigin(t, up.URL+"/base/", nil)
	before := time.Now()
	out, err := to.pull(context.Background(), pullRequest{
		Namespace: "site", Key: "blog/?page=2",
		Header:   http.Header{"Accept-Encoding": {"gzip"}, "Connection": {"close"}, "Te": {"trailers"}, "X-Custom": {"yes"}},
		ClientIP: "192.0.2.7", Host: "www.example.com",
	})
	if err != nil || !out.Stored {
		t.Fatalf("pull: stored %v, %v (%s)", out.Stored, err, out.Detail)
	}
	r := seen.Load()
	if r.URL.Path != "/base/blog/" || r.URL.RawQuery != "page=2" {
		t.Errorf("upstream asked for %s", r.URL)
	}
	if r.Header.Get("Via") != "1.1 geocdn" || r.Header.Get("X-Forwarded-For") != "192.0.2.7" || r.Header.Get("X-Forwarded-Host") != "www.example.com" {
		t.Errorf("forwarding fields: Via %q, XFF %q, XFH %q", r.Header.Get("Via"), r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Host"))
	}
	if r.Header.Get("X-Custom") != "yes" || r.Header.Get("Accept-Encoding") != "gzip" || r.Header.Get("Te") != "" {
		t.Errorf("client fields as forwarded: %v", r.Header)
	}
	e := out.Entry
	if e.LSN == 0 || e.Pulled == nil || e.Pulled.Status != 200 || e.ContentType != "text/html" {
		t.Fatalf("entry %+v", e)
	}
	h := e.Pulled.HTTPHeader()
	if h.Get("Etag") != `"v1"` || h.Get("Date") == "" || h.Get("X-Hop") != "" || h.Get("Keep-Alive") != "" || h.Get("Connection") != "" || h.Get("Content-Length") != "" {
		t.Errorf("stored header %v", h)
	}
	if fmt.Sprint(e.SurrogateKeys) != "[home front blog html]" {
		t.Errorf("tags %v", e.SurrogateKeys)
	}
	if fmt.Sprint(e.Pulled.Selecting) != "[{Accept-Encoding gzip}]" {
		t.Errorf("selecting fields %v", e.Pulled.Selecting)
	}
	if e.Pulled.Requested.Before(before.Add(-time.Second)) || e.Pulled.Received.Before(e.Pulled.Requested) {
		t.Errorf("times %v %v", e.Pulled.Requested, e.Pulled.Received)
	}
	if got := readAll(t, to, e.Digest); got != "<h1>blog page 2</h1>" {
		t.Errorf("body %q", got)
	}
	cur, err := to.store.get("site", "blog/?page=2")
	if err != nil || cur.LSN != e.LSN {
		t.Fatalf("catalog: %+v %v", cur, err)
	}
}

// TestPullCollapses: concurrent pulls of one key make one upstream
// request, and all get the same committed version.
func TestPullCollapses(t *testing.T) {
	const n = 50
	var hits atomic.Int32
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		<-release
		w.Header().Set("Cache-Control", "max-age=300")
		io.WriteString(w, "popular")
	}))
	defer up.Close()
	to := startPullOrigin(t, up.URL, nil)
	var joined atomic.Int32
	to.ups.joined = func(string) {
		if joined.Add(1) == n {
			close(release)
		}
	}
	var wg sync.WaitGroup
	lsns := make([]uint64, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			out, err := to.pull(context.Background(), pullRequest{Namespace: "site", Key: "hot.txt"})
			lsns[i], errs[i] = out.Entry.LSN, err
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || lsns[i] != lsns[0] || lsns[0] == 0 {
			t.Fatalf("pull %d: LSN %d (first %d), %v", i, lsns[i], lsns[0], errs[i])
		}
	}
	if h := hits.Load(); h != 1 {
		t.Fatalf("%d concurrent pulls made %d upstream requests, want 1", n, h)
	}
}

// TestPullNotStored: what a shared cache must not store is streamed
// through whole, with the reason, and leaves nothing in the catalog.
func TestPullNotStored(t *testing.T) {
	big := strings.Repeat("0123456789", 100) // 1000 bytes, over the limit of 100
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/private":
			w.Header().Set("Cache-Control", "private, max-age=60")
		case "/no-store":
			w.Header().Set("Cache-Control", "no-store")
		case "/cookie":
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Set-Cookie", "session=abc")
		case "/vary-star":
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Vary", "*")
		case "/created":
			w.WriteHeader(http.StatusCreated) // not heuristically cacheable
		case "/large":
			w.Header().Set("Cache-Control", "max-age=60")
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			io.WriteString(w, big)
			return
		case "/large-chunked":
			w.Header().Set("Cache-Control", "max-age=60")
			for i := 0; i < len(big); i += 64 {
				io.WriteString(w, big[i:min(i+64, len(big))])
				w.(http.Flusher).Flush()
			}
			return
		}
		io.WriteString(w, "for one client: "+r.URL.Path)
	}))
	defer up.Close()
	to := startPullOrigin(t, up.URL, func(c *Config) { c.MaxObjectSize = 100 })
	for _, tc := range []struct{ key, detail, body string }{
		{"private", "private", "for one client: /private"},
		{"no-store", "no-store", "for one client: /no-store"},
		{"cookie", "set-cookie", "for one client: /cookie"},
		{"vary-star", "vary-star", "for one client: /vary-star"},
		{"created", "not-cacheable-status", "for one client: /created"},
		{"large", "too-large", big},
		{"large-chunked", "too-large", big},
	} {
		out, err := to.pull(context.Background(), pullRequest{Namespace: "site", Key: tc.key})
		if err != nil {
			t.Fatalf("%s: %v", tc.key, err)
		}
		if out.Stored || out.Detail != tc.detail || out.Body == nil {
			t.Fatalf("%s: stored %v, detail %q; want streamed with %q", tc.key, out.Stored, out.Detail, tc.detail)
		}
		b, err := io.ReadAll(out.Body)
		out.Body.Close()
		if err != nil || string(b) != tc.body {
			t.Errorf("%s: body %d bytes %q..., %v", tc.key, len(b), b[:min(len(b), 20)], err)
		}
		if _, err := to.store.get("site", tc.key); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: in the catalog after a pass-through: %v", tc.key, err)
		}
	}
}

// TestPublishedWinsOverPull: a pulled version never replaces a published
// one, even when the pull was under way when the publish committed.
func TestPublishedWinsOverPull(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "from the upstream")
	}))
	defer up.Close()
	to := startPullOrigin(t, up.URL, nil)
	started := make(chan struct{})
	to.ups.joined = func(string) { close(started) }
	done := make(chan pullOutcome)
	go func() {
		out, err := to.pull(context.Background(), pullRequest{Namespace: "site", Key: "page"})
		if err != nil {
			t.Error(err)
		}
		done <- out
	}()
	<-started
	code, pub := to.publish(t, "page", []byte("published"), "namespace=site")
	if code != http.StatusCreated {
		t.Fatalf("publish: %d %+v", code, pub)
	}
	close(release)
	out := <-done
	if !out.Stored || out.Entry.Pulled != nil || out.Entry.LSN != pub.LSN {
		t.Fatalf("pull after the publish gave %+v; want the published version (LSN %d)", out.Entry, pub.LSN)
	}
	if got := readAll(t, to, out.Entry.Digest); got != "published" {
		t.Fatalf("content %q", got)
	}
}

// TestPullUpstreamFailures: no answer, an answer too late, a malformed
// answer: an error, nothing stored. A redirect is an answer, not followed.
func TestPullUpstreamFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close()

	slow := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			<-slow
		case "/bad-length":
			conn, buf, _ := w.(http.Hijacker).Hijack()
			buf.WriteString("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 50\r\n\r\nshort")
			buf.Flush()
			conn.Close()
		case "/bad-chunking":
			conn, buf, _ := w.(http.Hijacker).Hijack()
			buf.WriteString("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot hex\r\n")
			buf.Flush()
			conn.Close()
		case "/moved":
			w.Header().Set("Location", "http://elsewhere.invalid/x")
			w.WriteHeader(http.StatusMovedPermanently)
		}
	}))
	defer up.Close()
	defer close(slow) // before up.Close, which waits for the handler
	to := startPullOrigin(t, up.URL, func(c *Config) {
		c.UpstreamTimeouts = UpstreamTimeouts{FirstByte: 300 * time.Millisecond}
	})
	for _, key := range []string{"slow", "bad-length", "bad-chunking"} {
		_, err := to.pull(context.Background(), pullRequest{Namespace: "site", Key: key})
		var ue *errUpstream
		if !errors.As(err, &ue) || ue.timeout() != (key == "slow") {
			t.Errorf("%s: %v, want an upstream error, a timeout only for slow", key, err)
		}
		if _, err := to.store.get("site", key); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: stored: %v", key, err)
		}
	}
	out, err := to.pull(context.Background(), pullRequest{Namespace: "site", Key: "moved"})
	if err != nil || !out.Stored || out.Entry.Pulled.Status != http.StatusMovedPermanently || out.Entry.Pulled.HTTPHeader().Get("Location") != "http://elsewhere.invalid/x" {
		t.Fatalf("redirect: %+v %v", out, err)
	}

	other := startPullOrigin(t, refused, nil)
	_, err = other.pull(context.Background(), pullRequest{Namespace: "site", Key: "x"})
	var ue *errUpstream
	if !errors.As(err, &ue) {
		t.Fatalf("refused connection: %v", err)
	}
	if _, err := other.pull(context.Background(), pullRequest{Namespace: "default", Key: "x"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a namespace without upstream: %v", err)
	}
}

func TestParseUpstream(t *testing.T) {
	up, err := ParseUpstream("site=https://www.example.com/base")
	if err != nil || up.Namespace != "site" || up.URL.Host != "www.example.com" || up.URL.Path != "/base" || up.Mode != Mixed {
		t.Fatalf("%+v %v", up, err)
	}
	for _, s := range []string{
		"site", "=https://a", "Bad=https://a", "site=ftp://a", "site=https://", "site=https://u:p@a",
		"site=https://a/?q=1", "site=https://a/#f", "site=/relative", "site=https://a b",
	} {
		if _, err := ParseUpstream(s); err == nil {
			t.Errorf("ParseUpstream(%q) accepted", s)
		}
	}
	for s, want := range map[string]UpstreamMode{"a=pull": PullOnly, "a=mixed": Mixed} {
		if ns, m, err := ParseUpstreamMode(s); err != nil || ns != "a" || m != want {
			t.Errorf("ParseUpstreamMode(%q) = %q %v %v", s, ns, m, err)
		}
	}
	for _, s := range []string{"a", "a=push", "a="} {
		if _, _, err := ParseUpstreamMode(s); err == nil {
			t.Errorf("ParseUpstreamMode(%q) accepted", s)
		}
	}
	// Two upstreams for one namespace are refused at start.
	u, _ := url.Parse("https://a")
	c := DefaultConfig()
	c.Upstreams = []Upstream{{Namespace: "a", URL: u}, {Namespace: "a", URL: u}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "has two") {
		t.Fatalf("duplicate upstream: %v", err)
	}
}

// TestPullRevalidates: a fresh pulled version is served as it is; a stale
// one is revalidated with its validators, and a 304 commits a refresh
// (same content, the 304's fields merged in, new times) under a new LSN;
// a 200 replaces it; an upstream failure serves it stale only where
// stale-if-error allows.
func TestPullRevalidates(t *testing.T) {
	clk := clock.NewFake(time.Now())
	var (
		mu    sync.Mutex
		mode  = "v1"
		hits  int
		conds []string
	)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		hits++
		conds = append(conds, r.Header.Get("If-None-Match"))
		h := w.Header()
		switch mode {
		case "v1":
			h.Set("ETag", `"v1"`)
			h.Set("Cache-Control", "max-age=10, stale-if-error=60")
			io.WriteString(w, "version one")
		case "304":
			h.Set("ETag", `"v1"`)
			h.Set("Cache-Control", "max-age=20, stale-if-error=60")
			h.Set("X-Refreshed", "yes")
			w.WriteHeader(http.StatusNotModified)
		case "v2":
			h.Set("ETag", `"v2"`)
			h.Set("Cache-Control", "max-age=10")
			io.WriteString(w, "version two")
		case "down":
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		}
	}))
	defer up.Close()
	to := startPullOrigin(t, up.URL, func(c *Config) { c.Clock = clk })
	pull := func(want string) pullOutcome {
		t.Helper()
		out, err := to.pull(context.Background(), pullRequest{Namespace: "site", Key: "page"})
		if err != nil {
			t.Fatal(err)
		}
		if want != "" && (!out.Stored || readAll(t, to, out.Entry.Digest) != want) {
			t.Fatalf("pull: stored %v, detail %q; want %q", out.Stored, out.Detail, want)
		}
		return out
	}
	set := func(m string) { mu.Lock(); mode = m; mu.Unlock() }
	upstream := func() (int, []string) { mu.Lock(); defer mu.Unlock(); return hits, append([]string(nil), conds...) }

	first := pull("version one")
	if again := pull("version one"); again.Entry.LSN != first.Entry.LSN {
		t.Fatalf("a fresh version was committed again: LSN %d, then %d", first.Entry.LSN, again.Entry.LSN)
	}
	if n, _ := upstream(); n != 1 {
		t.Fatalf("%d upstream requests for a fresh version, want 1", n)
	}

	set("304")
	clk.Advance(11 * time.Second)
	ref := pull("version one")
	n, conds := upstream()
	if n != 2 || conds[1] != `"v1"` {
		t.Fatalf("revalidation: %d requests, If-None-Match %q", n, conds)
	}
	h := ref.Entry.Pulled.HTTPHeader()
	if ref.Entry.LSN <= first.Entry.LSN || ref.Entry.Digest != first.Entry.Digest || h.Get("X-Refreshed") != "yes" ||
		h.Get("Cache-Control") != "max-age=20, stale-if-error=60" || !ref.Entry.Pulled.Received.After(first.Entry.Pulled.Received) {
		t.Fatalf("refresh: %+v, header %v", ref.Entry, h)
	}
	if ref.Detail != "revalidated" {
		t.Errorf("refresh detail %q", ref.Detail)
	}

	set("down")
	clk.Advance(30 * time.Second) // stale by 10 s, within stale-if-error
	if out := pull("version one"); out.Detail != "stale-if-error" || out.Entry.LSN != ref.Entry.LSN {
		t.Fatalf("upstream down within stale-if-error: %+v", out)
	}
	clk.Advance(time.Minute) // beyond it
	out := pull("")
	if out.Stored || out.Status != http.StatusServiceUnavailable {
		t.Fatalf("upstream down beyond stale-if-error: stored %v, status %d", out.Stored, out.Status)
	}
	out.Body.Close()

	set("v2")
	if v2 := pull("version two"); v2.Entry.Digest == first.Entry.Digest || v2.Entry.Pulled.HTTPHeader().Get("Etag") != `"v2"` {
		t.Fatalf("a changed upstream: %+v", v2.Entry)
	}
}

// TestRefreshOfAGoneVersionIsRefused: a refresh names the content of the
// version it revalidated; once the key moved on, the FSM refuses it
// rather than commit a version whose content may be collected.
func TestRefreshOfAGoneVersionIsRefused(t *testing.T) {
	ts := newTestStore(t)
	body := []byte("pulled body")
	d := wire.Digest(sha256.Sum256(body))
	pulled := &wire.Pulled{Status: 200}
	put := &command{Entry: wire.LogEntry{Op: wire.OpPut, Namespace: "site", Key: "k", Digest: d, Size: uint64(len(body)), Pulled: pulled}, Inline: body}
	if _, err := ts.applyOne(put); err != nil {
		t.Fatal(err)
	}
	refresh := &command{Entry: put.Entry}
	if _, err := ts.applyOne(refresh); err != nil {
		t.Fatalf("refresh of the current version: %v", err)
	}
	other := []byte("another body")
	od := wire.Digest(sha256.Sum256(other))
	if _, err := ts.applyOne(&command{Entry: wire.LogEntry{Op: wire.OpPut, Namespace: "site", Key: "k", Digest: od, Size: uint64(len(other)), Pulled: pulled}, Inline: other}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.applyOne(refresh); !errors.Is(err, errRefreshGone) {
		t.Fatalf("refresh of a replaced version: %v, want errRefreshGone", err)
	}
	// A published version is never replaced by a pulled one.
	pub := []byte("published")
	pd := wire.Digest(sha256.Sum256(pub))
	if _, err := ts.applyOne(&command{Entry: wire.LogEntry{Op: wire.OpPut, Namespace: "site", Key: "k", Digest: pd, Size: uint64(len(pub))}, Inline: pub}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.applyOne(&command{Entry: wire.LogEntry{Op: wire.OpPut, Namespace: "site", Key: "k", Digest: od, Size: uint64(len(other)), Pulled: pulled}, Inline: other}); !errors.Is(err, errPublishedWins) {
		t.Fatalf("pulled over published: %v, want errPublishedWins", err)
	}
}

// TestPullOnlyRefusesPublishes: a namespace that only pulls answers a
// publish 409, saying why; a mixed one takes it.
func TestPullOnlyRefusesPublishes(t *testing.T) {
	u, _ := url.Parse("http://127.0.0.1:1")
	to := startTestOrigin(t, func(c *Config) {
		c.Upstreams = []Upstream{{Namespace: "site", URL: u, Mode: PullOnly}, {Namespace: "mixed", URL: u}}
	})
	if code, res := to.publish(t, "a", []byte("x"), "namespace=site"); code != http.StatusConflict {
		t.Fatalf("publish to a pull-only namespace: %d %+v", code, res)
	}
	if code, res := to.publish(t, "a", []byte("x"), "namespace=mixed"); code != http.StatusCreated {
		t.Fatalf("publish to a mixed namespace: %d %+v", code, res)
	}
}

// TestPurgeOfPulledKeysCoversVariants: in a namespace with an upstream, a
// purge by key also purges the key's Vary variants (a prefix each, in the
// committed entry), and a purge naming too many for that is refused with
// a message that says why, committing nothing.
func TestPurgeOfPulledKeysCoversVariants(t *testing.T) {
	to := startPullOrigin(t, "http://127.0.0.1:1", nil)
	purge := func(body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+to.HTTPAddr().String()+"/v1/purge?namespace=site", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+to.token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	long := "/" + strings.Repeat("x", objkey.MaxKeyLen-5) // too long for a variant
	if code, body := purge(`{"keys":["/hello","/blog/?page=2","` + long + `"],"prefixes":["/docs/"]}`); code != http.StatusOK {
		t.Fatalf("purge: %d %s", code, body)
	}
	var last wire.LogEntry
	if err := to.store.readLog(0, func(e wire.LogEntry) error { last = e; return nil }); err != nil {
		t.Fatal(err)
	}
	want := []string{"docs/", "hello\x1f", "blog/?page=2\x1f"}
	if last.Op != wire.OpPurge || !slices.Equal(last.PurgePrefixes, want) {
		t.Fatalf("committed purge: %v prefixes %q, want %q", last.Op, last.PurgePrefixes, want)
	}

	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf(`"/k%d"`, i)
	}
	prefixes := make([]string, 100)
	for i := range prefixes {
		prefixes[i] = fmt.Sprintf(`"/p%d/"`, i)
	}
	code, body := purge(`{"keys":[` + strings.Join(keys, ",") + `],"prefixes":[` + strings.Join(prefixes, ",") + `]}`)
	if code != http.StatusBadRequest || !strings.Contains(body, "Vary variants") {
		t.Fatalf("a purge of 1,000 keys and 100 prefixes: %d %s", code, body)
	}
	var after wire.LogEntry
	to.store.readLog(0, func(e wire.LogEntry) error { after = e; return nil })
	if after.LSN != last.LSN {
		t.Fatalf("the refused purge committed lsn %d", after.LSN)
	}
}
