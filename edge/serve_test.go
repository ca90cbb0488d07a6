package edge

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geocdn/geocdn/internal/wire"
	"github.com/geocdn/geocdn/invalidation"
)

// fakeOrigin is a filler that serves from a map and stores into a real
// store, counting calls.
type fakeOrigin struct {
	st *store

	mu      sync.Mutex
	objects map[string]originObject // by key
	err     error                   // if set, every fill fails with it
	// release, if set, holds every fill until it is closed (or ctx ends).
	release chan struct{}

	calls atomic.Int32
	wants []wire.Digest // want of each call, guarded by mu
}

type originObject struct {
	entry wire.LogEntry
	body  []byte
}

func (o *fakeOrigin) publish(e wire.LogEntry, body []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.objects == nil {
		o.objects = map[string]originObject{}
	}
	o.objects[e.Key] = originObject{e, body}
}

func (o *fakeOrigin) fill(ctx context.Context, ns, key string, want wire.Digest) (wire.LogEntry, error) {
	o.calls.Add(1)
	o.mu.Lock()
	o.wants = append(o.wants, want)
	release, ferr := o.release, o.err
	obj, ok := o.objects[key]
	o.mu.Unlock()
	if release != nil {
		select {
		case <-release:
		case <-ctx.Done():
			return wire.LogEntry{}, ctx.Err()
		}
	}
	if ferr != nil {
		return wire.LogEntry{}, ferr
	}
	if !ok || (want != wire.Digest{} && want != obj.entry.Digest) {
		return wire.LogEntry{}, fmt.Errorf("fake origin: %s/%s: %w", ns, key, errNotFound)
	}
	if err := o.st.writeBlob(obj.entry.Digest, int64(len(obj.body)), bytes.NewReader(obj.body), false); err != nil {
		return wire.LogEntry{}, err
	}
	return obj.entry, nil
}

type fakeView struct {
	isFresh  atomic.Bool
	unleased atomic.Bool
	logAt    atomic.Uint64
	at       time.Time

	// originLSN is the origin's last LSN as the answer to a heartbeat sent
	// after a session read arrived shows it; zero stands for an origin
	// that has issued every LSN asked about. cutOff means no such answer
	// comes. onIssued, if set, runs as a session read starts waiting (to
	// move the log meanwhile, say).
	originLSN atomic.Uint64
	cutOff    atomic.Bool
	onIssued  func(lsn uint64, since time.Time)
	issuedAsk atomic.Int32
}

func (v *fakeView) fresh() bool { return v.isFresh.Load() }

// heldLease is confirmed at v.at and, unless unleased, valid on any
// handler clock (testNow, or the real one).
func (v *fakeView) heldLease() invalidation.HeldLease {
	l := invalidation.HeldLease{Confirmed: v.at}
	if !v.unleased.Load() {
		l.Until = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return l
}
func (v *fakeView) waitLog(ctx context.Context, lsn uint64) bool {
	return v.logAt.Load() >= lsn
}

func (v *fakeView) originIssued(ctx context.Context, lsn uint64, since time.Time) (uint64, lsnVerdict) {
	v.issuedAsk.Add(1)
	if v.onIssued != nil {
		v.onIssued(lsn, since)
	}
	o := v.originLSN.Load()
	switch {
	case v.logAt.Load() >= lsn:
		return o, lsnApplied
	case v.cutOff.Load():
		return o, lsnUnconfirmed
	case o == 0 || o >= lsn:
		return o, lsnIssued
	}
	return o, lsnAhead
}

var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

type testEdge struct {
	st      *store
	origin  *fakeOrigin
	view    *fakeView
	healthy atomic.Bool
	reg     *prometheus.Registry
	h       *handler
}

func newTestEdge(t testing.TB, scfg storeConfig, fillTimeout time.Duration) *testEdge {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	if scfg.Quarantined == nil {
		scfg.Quarantined = func(_ wire.Digest, by string) { m.corrupt(by) } // as Edge.New does
	}
	st := openTestStore(t, scfg)
	e := &testEdge{
		st:     st,
		origin: &fakeOrigin{st: st},
		view:   &fakeView{at: testNow.Add(-5 * time.Second)},
		reg:    reg,
	}
	e.view.isFresh.Store(true)
	e.healthy.Store(true)
	e.h = newHandler(handlerConfig{
		Store:       st,
		Fill:        e.origin,
		View:        e.view,
		Clock:       func() time.Time { return testNow },
		Metrics:     m,
		Logger:      testLogger(t),
		Healthy:     e.healthy.Load,
		FillTimeout: fillTimeout,
	})
	return e
}

// publish puts body under key in the origin and in the edge's log (LSN
// lsn); pushed says whether its content reached the edge too.
func (e *testEdge) publish(t testing.TB, lsn uint64, key string, body []byte, pushed bool) wire.LogEntry {
	t.Helper()
	ent := putEntry(lsn, key, body)
	e.origin.publish(ent, body)
	mustApply(t, e.st, ent)
	if pushed {
		mustWrite(t, e.st, body, true)
	}
	return ent
}

func (e *testEdge) do(method, target string, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

func (e *testEdge) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	return metricValue(t, e.reg, name, labels...)
}

// metricValue reads one counter or gauge (a histogram's sample count)
// whose labels include the given name/value pairs.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

func checkHeaders(t *testing.T, rec *httptest.ResponseRecorder, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := rec.Header().Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

func checkResponse(t *testing.T, rec *httptest.ResponseRecorder, wantCode int, wantBody string) {
	t.Helper()
	if rec.Code != wantCode {
		t.Fatalf("status = %d, want %d (body %q)", rec.Code, wantCode, rec.Body.String())
	}
	if got := rec.Body.String(); got != wantBody {
		t.Errorf("body = %q, want %q", got, wantBody)
	}
}

func TestServeHit(t *testing.T) {
	e := newTestEdge(t, storeConfig{}, 0)
	body := []byte("hello, edge")
	ent := e.publish(t, 7, "dir/hello.txt", body, true)

	rec := e.do("GET", "/dir/hello.txt")
	checkResponse(t, rec, http.StatusOK, string(body))
	checkHeaders(t, rec, map[string]string{
		"ETag":          `"` + ent.Digest.String() + `"`,
		"Last-Modified": "Sat, 01 Mar 2025 12:00:00 GMT",
		"Content-Type":  "text/plain",
		"Cache-Control": "max-age=60",
		"Age":           "5",
		"GeoCDN-LSN":    "7",
		"X-Cache":       "HIT",
		"Cache-Status":  "geocdn; hit",
	})
	// A small body's Content-Length is computed by net/http itself, so it
	// is checked on a real connection rather than on a recorder.
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	for _, method := range []string{"GET", "HEAD"} {
		req, _ := http.NewRequest(method, srv.URL+"/dir/hello.txt", nil)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ContentLength != int64(len(body)) {
			t.Errorf("%s over TCP: Content-Length %d, want %d", method, resp.ContentLength, len(body))
		}
	}
	if got := e.origin.calls.Load(); got != 0 {
		t.Errorf("fills = %d, want 0", got)
	}
	if got := e.metric(t, "geocdn_edge_hits_total"); got != 3 {
		t.Errorf("hits metric = %v, want 3", got)
	}
	if got := e.metric(t, "geocdn_edge_served_bytes_total"); got != float64(2*len(body)) {
		t.Errorf("served bytes metric = %v, want %d (two GETs)", got, 2*len(body))
	}
}

func TestServeHeaderDefaults(t *testing.T) {
	e := newTestEdge(t, storeConfig{}, 0)
	body := []byte("<html>not sniffed</html>")
	ent := putEntry(1, "page", body)
	ent.ContentType, ent.CacheControl = "", ""
	mustApply(t, e.st, ent)
	mustWrite(t, e.st, body, true)

	e.view.at = testNow.Add(time.Hour) // confirmed "later" than now: clock skew
	rec := e.do("GET", "/page")
	checkResponse(t, rec, http.StatusOK, string(body))
	checkHeaders(t, rec, map[string]string{
		"Content-Type":  "application/octet-stream",
		"Cache-Control": "",
		"Age":           "0",
	})

	e.view.at = time.Time{}
	if rec := e.do("GET", "/page"); rec.Header().Values("Age") != nil {
		t.Errorf("Age = %q without any confirmation, want none", rec.Header().Values("Age"))
	}
}

func TestServeConditionalAndRange(t *testing.T) {
	e := newTestEdge(t, storeConfig{}, 0)
	body := []byte("0123456789abcdefghij")
	ent := e.publish(t, 1, "r", body, true)
	etag := `"` + ent.Digest.String() + `"`

	tests := []struct {
		name     string
		hdr      []string
		wantCode int
		wantBody string
		wantHdr  map[string]string
	}{
		{"if-none-match", []string{"If-None-Match", etag}, http.StatusNotModified, "", map[string]string{"ETag": etag}},
		{"if-none-match other", []string{"If-None-Match", `"other"`}, http.StatusOK, string(body), nil},
		{"if-modified-since", []string{"If-Modified-Since", "Sat, 01 Mar 2025 12:00:00 GMT"}, http.StatusNotModified, "", nil},
		{"if-modified-since earlier", []string{"If-Modified-Since", "Sat, 01 Mar 2025 11:59:59 GMT"}, http.StatusOK, string(body), nil},
		{"if-match other", []string{"If-Match", `"other"`}, http.StatusPreconditionFailed, "", nil},
		{"range", []string{"Range", "bytes=2-5"}, http.StatusPartialContent, "2345", map[string]string{"Content-Range": "bytes 2-5/20", "Content-Length": "4"}},
		{"suffix range", []string{"Range", "bytes=-3"}, http.StatusPartialContent, "hij", nil},
		{"range not satisfiable", []string{"Range", "bytes=100-"}, http.StatusRequestedRangeNotSatisfiable, "", map[string]string{"Content-Range": "bytes */20"}},
		{"if-range match", []string{"Range", "bytes=0-0", "If-Range", etag}, http.StatusPartialContent, "0", nil},
		{"if-range stale", []string{"Range", "bytes=0-0", "If-Range", `"old"`}, http.StatusOK, string(body), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := e.do("GET", "/r", tt.hdr...)
			if rec.Code != tt.wantCode {
				t.Fatalf("status = %d, want %d", rec.Code, tt.wantCode)
			}
			if tt.wantCode < 300 {
				if got := rec.Body.String(); got != tt.wantBody {
					t.Errorf("body = %q, want %q", got, tt.wantBody)
				}
			}
			checkHeaders(t, rec, tt.wantHdr)
		})
	}
}

func TestServeHead(t *testing.T) {
	e := newTestEdge(t, storeConfig{}, 0)
	body := []byte("head me")
	e.publish(t, 1, "h", body, true)
	rec := e.do("HEAD", "/h")
	checkResponse(t, rec, http.StatusOK, "")
	checkHeaders(t, rec, map[string]string{"Content-Length": fmt.Sprint(len(body)), "X-Cache": "HIT"})
}

func TestServeLargeFromDisk(t *testing.T) {
	e := newTestEdge(t, storeConfig{HotMaxObject: 1024}, 0)
	body := bytes.Repeat([]byte("0123456789"), 1000)
	e.publish(t, 1, "big", body, true)
	rec := e.do("GET", "/big")
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), body) {
		t.Fatalf("GET /big = %d, %d bytes; want 200, %d bytes", rec.Code, rec.Body.Len(), len(body))
	}
	rec = e.do("GET", "/big", "Range", "bytes=9995-")
	checkResponse(t, rec, http.StatusPartialContent, "56789")

	// Through a real connection the file goes out by sendfile, after the
	// handler moved the write deadline.
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/big")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, body) {
		t.Errorf("GET over TCP = %d, %d bytes, %v; want 200, %d bytes", resp.StatusCode, len(got), err, len(body))
	}
}

func TestServeHotRefusalServesFromDisk(t *testing.T) {
	e := newTestEdge(t, storeConfig{HotBytes: 1}, 0)
	body := []byte("too big for a one-byte hot tier")
	e.publish(t, 1, "k", body, true)
	for i := range 3 {
		rec := e.do("GET", "/k")
		checkResponse(t, rec, http.StatusOK, string(body))
		checkHeaders(t, rec, map[string]string{"X-Cache": "HIT"})
		e.st.hot.Wait()
		if i == 0 {
			if _, ok := e.st.hot.Get(hotKey(digestOf(body))); ok {
				t.Fatalf("hot tier took an object larger than its budget")
			}
		}
	}
}

func TestServeMissFillsThenHits(t *testing.T) {
	e := newTestEdge(t, storeConfig{}, 0)
	body := []byte("filled on demand")
	ent := e.publish(t, 3, "m", body, false)

	rec := e.do("GET", "/m")
	checkResponse(t, rec, http.StatusOK, string(body))
	checkHeaders(t, rec, map[string]string{
		"X-Cache":      "MISS",
		"Cache-Status": "geocdn; fwd=miss; stored",
		"ETag":         `"` + ent.Digest.String() + `"`,
		"Age":          "0",
		"GeoCDN-LSN":   "3",
	})
	rec = e.do("GET", "/m")
	checkResponse(t, rec, http.StatusOK, string(body))
	checkHeaders(t, rec, map[string]string{"X-Cache": "HIT"})
	if got := e.origin.calls.Load(); got != 1 {
		t.Errorf("fills = %d, want 1", got)
	}
	if len(e.origin.wants) != 1 || e.origin.wants[0] != ent.Digest {
		t.Errorf("fill asked for %x, want the digest %x", e.origin.wants, ent.Digest)
	}
	if e.st.hasBlob(ent.Digest) && func() bool { _, f := e.st.usage(); return f != int64(len(body)) }() {
		t.Errorf("filled blob not counted as an evictable fill")
	}
	for name, want := range map[string]float64{
		"geocdn_edge_misses_total":       1,
		"geocdn_edge_hits_total":         1,
		"geocdn_edge_served_bytes_total": float64(2 * len(body)),
	} {
		if got := e.metric(t, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// TestServeCollapsesConcurrentMisses holds the one fill until all 100
// requests are waiting on it; synctest.Wait says when they are.
func TestServeCollapsesConcurrentMisses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newTestEdge(t, storeConfig{}, 0)
		body := bytes.Repeat([]byte("collapse "), 100)
		e.publish(t, 1, "hot/key", body, false)
		e.origin.release = make(chan struct{})

		const n = 100
		recs := make([]*httptest.ResponseRecorder, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { recs[i] = e.do("GET", "/hot/key") })
		}
		synctest.Wait()
		if got := e.origin.calls.Load(); got != 1 {
			t.Fatalf("fills in flight = %d, want 1", got)
		}
		close(e.origin.release)
		wg.Wait()

		if got := e.origin.calls.Load(); got != 1 {
			t.Errorf("fills = %d, want 1", got)
		}
		collapsed := 0
		for i, rec := range recs {
			if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), body) {
				t.Fatalf("request %d: %d with %d bytes, want 200 with %d", i, rec.Code, rec.Body.Len(), len(body))
			}
			if strings.HasSuffix(rec.Header().Get("Cache-Status"), "; collapsed") {
				collapsed++
			}
		}
		if collapsed != n-1 {
			t.Errorf("responses marked collapsed = %d, want %d", collapsed, n-1)
		}
	})
}

func TestServeUnknownKey(t *testing.T) {
	body := []byte("published, log not here yet")
	tests := []struct {
		name      string
		fresh     bool
		atOrigin  bool
		wantCode  int
		wantFills int32
		wantCS    string
	}{
		{"fresh view answers 404 itself", true, true, http.StatusNotFound, 0, "geocdn; hit; detail=not-found"},
		{"stale view fills by key", false, true, http.StatusOK, 1, "geocdn; fwd=uri-miss; stored"},
		{"stale view, origin says not found", false, false, http.StatusNotFound, 1, "geocdn; fwd=uri-miss; fwd-status=404"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEdge(t, storeConfig{}, 0)
			e.view.isFresh.Store(tt.fresh)
			if tt.atOrigin {
				e.origin.publish(putEntry(9, "new", body), body)
			}
			rec := e.do("GET", "/new")
			if rec.Code != tt.wantCode {
				t.Fatalf("status = %d, want %d", rec.Code, tt.wantCode)
			}
			if got := e.origin.calls.Load(); got != tt.wantFills {
				t.Errorf("fills = %d, want %d", got, tt.wantFills)
			}
			checkHeaders(t, rec, map[string]string{"Cache-Status": tt.wantCS})
			if tt.wantCode == http.StatusOK {
				if got := rec.Body.String(); got != string(body) {
					t.Errorf("body = %q, want %q", got, body)
				}
				if len(e.origin.wants) != 1 || e.origin.wants[0] != (wire.Digest{}) {
					t.Errorf("fill asked for %x, want the zero digest (by key)", e.origin.wants)
				}
			} else {
				checkHeaders(t, rec, map[string]string{"Cache-Control": "no-store"})
			}
		})
	}
}

// TestServeKnownVersionGoneAtOrigin: the log names a version the origin
// has already replaced; the edge then fills the key's latest version.
func TestServeKnownVersionGoneAtOrigin(t *testing.T) {
	e := newTestEdge(t, storeConfig{}, 0)
	e.publish(t, 1, "k", []byte("old"), false)
	newer := []byte("newer")
	e.origin.publish(putEntry(2, "k", newer), newer)
	rec := e.do("GET", "/k")
	checkResponse(t, rec, http.StatusOK, string(newer))
	checkHeaders(t, rec, map[string]string{"Cache-Status": "geocdn; fwd=uri-miss; stored"})
	if got := e.origin.calls.Load(); got != 2 {
		t.Errorf("fills = %d, want 2 (by digest, then by key)", got)
	}
}

func TestServeFillErrors(t *testing.T) {
	t.Run("origin unreachable", func(t *testing.T) {
		e := newTestEdge(t, storeConfig{}, 0)
		e.publish(t, 1, "k", []byte("x"), false)
		e.origin.err = errors.New("dial origin: connection refused")
		rec := e.do("GET", "/k")
		if rec.Code != http.StatusBadGateway {
			t.Fatalf("status = %d, want 502", rec.Code)
		}
		checkHeaders(t, rec, map[string]string{"Cache-Control": "no-store", "Cache-Status": "geocdn; fwd=miss; detail=origin-error"})
	})
	t.Run("origin hangs", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e := newTestEdge(t, storeConfig{}, 0) // default 10 s timeout, in bubble time
			e.view.isFresh.Store(false)
			e.origin.release = make(chan struct{}) // never closed
			rec := e.do("GET", "/k")
			if rec.Code != http.StatusBadGateway || !strings.Contains(rec.Body.String(), "timed out") {
				t.Fatalf("status = %d %q, want 502 origin timed out", rec.Code, rec.Body.String())
			}
		})
	})
}

func TestServeBadPaths(t *testing.T) {
	paths := []string{
		"/a/../b",
		"/a/./b",
		"/./a",
		"/..",
		"/a//b",
		"//a",
		"/a/",
		"/",
		"/%00",
		"/a%2F..%2Fb",
		"/a%0Ab",
		"/" + strings.Repeat("k", 1025),
	}
	e := newTestEdge(t, storeConfig{}, 0)
	e.view.isFresh.Store(false) // a valid key would be filled: make sure none is
	for _, p := range paths {
		t.Run(p[:min(len(p), 20)], func(t *testing.T) {
			rec := e.do("GET", p)
			if rec.Code != http.StatusBadRequest {
				t.Errorf("GET %s = %d, want 400", p, rec.Code)
			}
		})
	}
	if got := e.origin.calls.Load(); got != 0 {
		t.Errorf("fills = %d, want 0", got)
	}

	// Through a real server the request line reaches the handler as sent:
	// no cleaning redirect anywhere in front of it.
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	for _, p := range []string{"/a/../b", "/a//b", "/./a"} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n", p)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("raw GET %s = %d, want 400", p, resp.StatusCode)
		}
		if len(msg) == 0 || len(msg) > 200 {
			t.Errorf("raw GET %s: reason %q, want a short one", p, msg)
		}
	}
}

func TestServeMethodNotAllowed(t *testing.T) {
	e := newTestEdge(t, storeConfig{}, 0)
	e.publish(t, 1, "k", []byte("x"), true)
	for _, m := range []string{"POST", "PUT", "DELETE", "OPTIONS"} {
		rec := e.do(m, "/k")
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s = %d, want 405", m, rec.Code)
		}
		checkHeaders(t, rec, map[string]string{"Allow": "GET, HEAD"})
	}
	if rec := e.do("POST", "/healthz"); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz = %d, want 405", rec.Code)
	}
}

func TestServeHealthz(t *testing.T) {
	e := newTestEdge(t, storeConfig{}, 0)
	checkResponse(t, e.do("GET", "/healthz"), http.StatusOK, "ok\n")
	e.healthy.Store(false)
	rec := e.do("GET", "/healthz")
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("unhealthy /healthz = %d, want 503", rec.Code)
	}
}

func TestServeNamespaceFromHost(t *testing.T) {
	st := openTestStore(t, storeConfig{})
	body := []byte("tenant content")
	ent := putEntry(1, "k", body)
	ent.Namespace = "tenant"
	mustApply(t, st, ent)
	mustWrite(t, st, body, true)
	view := &fakeView{}
	view.isFresh.Store(true)
	h := newHandler(handlerConfig{
		Store: st,
		Fill: fillFunc(func(context.Context, string, string, wire.Digest) (wire.LogEntry, error) {
			return wire.LogEntry{}, errNotFound
		}),
		View: view,
		NamespaceFor: func(host string) string {
			if host == "tenant.example" {
				return "tenant"
			}
			return "default"
		},
		Logger: testLogger(t),
	})
	for host, want := range map[string]int{"tenant.example": http.StatusOK, "other.example": http.StatusNotFound} {
		req := httptest.NewRequest("GET", "/k", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("Host %s: status %d, want %d", host, rec.Code, want)
		}
	}
}

// discardWriter is a ResponseWriter that keeps nothing, so the benchmark
// measures the handler.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// ReadFrom stands in for the connection's sendfile path, which a real
// server's ResponseWriter offers to io.Copy.
func (w *discardWriter) ReadFrom(r io.Reader) (int64, error) { return io.Copy(io.Discard, r) }

func BenchmarkServeHit(b *testing.B) {
	for _, bc := range []struct {
		name string
		size int
	}{{"hot-1KiB", 1 << 10}, {"disk-1MiB", 1 << 20}} {
		b.Run(bc.name, func(b *testing.B) {
			e := newTestEdge(b, storeConfig{Logger: slog.New(slog.DiscardHandler)}, 0)
			body := bytes.Repeat([]byte("x"), bc.size)
			e.publish(b, 1, "bench/object", body, true)
			if rec := e.do("GET", "/bench/object"); rec.Code != http.StatusOK {
				b.Fatalf("warm-up: status %d", rec.Code)
			}
			e.st.hot.Wait()
			req := httptest.NewRequest("GET", "/bench/object", nil)
			w := &discardWriter{h: http.Header{}}
			b.SetBytes(int64(bc.size))
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				e.h.ServeHTTP(w, req)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	var nilMetrics *metrics // tests and tools may run without metrics
	nilMetrics.hit()
	nilMetrics.miss()
	nilMetrics.served(1)
	nilMetrics.fillDone(nil, 1, time.Second)
	nilMetrics.push("stored")
	nilMetrics.setWatermark(1)
	nilMetrics.setLag(1)

	// Two sets in one process: nothing is registered globally.
	newMetrics(prometheus.NewRegistry())
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	m.fillDone(nil, 100, 20*time.Millisecond)
	m.fillDone(fmt.Errorf("origin: %w", errNotFound), 0, time.Millisecond)
	m.fillDone(errors.New("reset"), 0, time.Millisecond)
	m.push("stored")
	m.push("disk_full")
	m.setWatermark(40)
	m.setLag(2)
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"geocdn_edge_fills_total", []string{"result", "ok"}, 1},
		{"geocdn_edge_fills_total", []string{"result", "not_found"}, 1},
		{"geocdn_edge_fills_total", []string{"result", "error"}, 1},
		{"geocdn_edge_fill_bytes_total", nil, 100},
		{"geocdn_edge_fill_duration_seconds", nil, 3},
		{"geocdn_edge_pushes_total", []string{"result", "stored"}, 1},
		{"geocdn_edge_pushes_total", []string{"result", "disk_full"}, 1},
		{"geocdn_edge_pushes_total", []string{"result", "bad_digest"}, 0},
		{"geocdn_edge_watermark", nil, 40},
		{"geocdn_edge_log_lag", nil, 2},
	} {
		if got := metricValue(t, reg, tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
}

// TestServeFillDroppedBeforeOpen: a purge that drops a fill's blob
// between the fill and its open (seen under a purge storm) makes the
// edge fill again, not answer 502.
func TestServeFillDroppedBeforeOpen(t *testing.T) {
	e := newTestEdge(t, storeConfig{}, 0)
	body := []byte("filled, then purged at once")
	e.publish(t, 1, "k", body, false)
	var calls atomic.Int32
	e.h = newHandler(handlerConfig{
		Store: e.st,
		Fill: fillFunc(func(ctx context.Context, ns, key string, want wire.Digest) (wire.LogEntry, error) {
			ent, err := e.origin.fill(ctx, ns, key, want)
			if err == nil && calls.Add(1) == 1 {
				if err := e.st.drop([]wire.Digest{ent.Digest}); err != nil {
					t.Errorf("drop: %v", err)
				}
			}
			return ent, err
		}),
		View:    e.view,
		Clock:   func() time.Time { return testNow },
		Metrics: newMetrics(prometheus.NewRegistry()),
		Logger:  testLogger(t),
		Healthy: e.healthy.Load,
	})
	checkResponse(t, e.do("GET", "/k"), http.StatusOK, string(body))
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d fills, want 2: the first one's blob was dropped before it was opened", n)
	}
}
