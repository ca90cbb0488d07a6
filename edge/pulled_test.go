package edge

import (
	"bytes"
	"context"
	"errors"
	"io"
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
)

// fakePuller stands in for the origin of a pull namespace: every pull is
// held until release closes, then answered with page, stored (its entry
// applied to the edge's log and its content written, as a fill does), or
// streamed through when pass is set.
type fakePuller struct {
	t       testing.TB
	st      *store
	release chan struct{}
	page    []byte
	pass    bool
	calls   atomic.Int32
}

func (p *fakePuller) pull(ctx context.Context, ns, key string, have wire.Digest, info *wire.PullInfo) (fillAnswer, error) {
	p.calls.Add(1)
	select {
	case <-p.release:
	case <-ctx.Done():
		return fillAnswer{}, ctx.Err()
	}
	if p.pass {
		e := wire.LogEntry{Op: wire.OpPut, Namespace: ns, Key: key, Pulled: &wire.Pulled{Status: http.StatusOK, Header: []wire.HeaderField{{Name: "Cache-Control", Value: "private"}}}}
		return fillAnswer{entry: e, pass: &passThrough{entry: e, reason: "private", body: io.NopCloser(bytes.NewReader(p.page))}}, nil
	}
	e := putEntry(1, key, p.page)
	e.Pulled = &wire.Pulled{Status: http.StatusOK, Header: []wire.HeaderField{{Name: "Cache-Control", Value: "max-age=60"}}, Requested: testNow, Received: testNow}
	mustWrite(p.t, p.st, p.page, false)
	mustApply(p.t, p.st, e)
	return fillAnswer{entry: e}, nil
}

func (p *fakePuller) forward(context.Context, wire.ForwardRequest, io.Reader) (*passThrough, error) {
	return nil, errors.New("not in this test")
}

func newPullHandler(t *testing.T, p *fakePuller) *handler {
	st := openTestStore(t, storeConfig{})
	p.t, p.st = t, st
	return newHandler(handlerConfig{
		Store: st, Fill: &fakeOrigin{st: st}, View: &fakeView{at: testNow},
		Clock: func() time.Time { return testNow }, Metrics: newMetrics(prometheus.NewRegistry()),
		Logger: testLogger(t), Pulls: func(string) bool { return true }, Pull: p,
	})
}

// TestPullCollapsesConcurrentMisses (simulated time): 50 concurrent
// misses for one pulled page make one pull; every client gets the page,
// all but one marked collapsed; the next request is a hit.
func TestPullCollapsesConcurrentMisses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &fakePuller{release: make(chan struct{}), page: []byte("the page")}
		h := newPullHandler(t, p)
		const n = 50
		recs := make([]*httptest.ResponseRecorder, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				recs[i] = httptest.NewRecorder()
				h.ServeHTTP(recs[i], httptest.NewRequest("GET", "/page?x=1", nil))
			})
		}
		synctest.Wait()
		if got := p.calls.Load(); got != 1 {
			t.Fatalf("pulls in flight: %d, want 1", got)
		}
		close(p.release)
		wg.Wait()
		collapsed := 0
		for i, rec := range recs {
			if rec.Code != http.StatusOK || rec.Body.String() != "the page" {
				t.Fatalf("request %d: %d %q", i, rec.Code, rec.Body)
			}
			if strings.Contains(rec.Header().Get("Cache-Status"), "collapsed") {
				collapsed++
			}
		}
		if got := p.calls.Load(); got != 1 || collapsed != n-1 {
			t.Fatalf("%d pulls, %d responses collapsed; want 1 and %d", got, collapsed, n-1)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/page?x=1", nil))
		if cs := rec.Header().Get("Cache-Status"); !strings.HasPrefix(cs, "geocdn; hit") || p.calls.Load() != 1 {
			t.Fatalf("the next request: Cache-Status %q after %d pulls", cs, p.calls.Load())
		}
	})
}

// TestPullPassThroughIsNotShared (simulated time): a response the origin
// streams through is one client's: requests that waited on the same pull
// each pull again for their own, and each gets a whole body.
func TestPullPassThroughIsNotShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &fakePuller{release: make(chan struct{}), page: []byte("yours only"), pass: true}
		h := newPullHandler(t, p)
		const n = 5
		recs := make([]*httptest.ResponseRecorder, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				recs[i] = httptest.NewRecorder()
				h.ServeHTTP(recs[i], httptest.NewRequest("GET", "/account", nil))
			})
		}
		synctest.Wait()
		close(p.release)
		wg.Wait()
		for i, rec := range recs {
			if rec.Code != http.StatusOK || rec.Body.String() != "yours only" || !strings.Contains(rec.Header().Get("Cache-Status"), "stored=?0") {
				t.Fatalf("request %d: %d %q, Cache-Status %q", i, rec.Code, rec.Body, rec.Header().Get("Cache-Status"))
			}
		}
		if got := p.calls.Load(); got != n {
			t.Fatalf("%d pulls for %d requests answered by pass-through, want one each", got, n)
		}
	})
}

// pullAll makes every namespace of e a pull namespace, its pulls answered
// by p (a fakePuller with release closed if nil).
func (e *testEdge) pullAll(t testing.TB, p *fakePuller) {
	t.Helper()
	if p == nil {
		p = &fakePuller{release: make(chan struct{}), page: []byte("pulled")}
		close(p.release)
	}
	p.t, p.st = t, e.st
	e.h = newHandler(handlerConfig{
		Store: e.st, Fill: e.origin, View: e.view,
		Clock: func() time.Time { return testNow }, Metrics: e.h.m,
		Logger: e.h.log, Healthy: e.healthy.Load,
		Pulls: func(string) bool { return true }, Pull: p,
	})
}

// publishPulled applies a pulled version of key to e's log, stored at
// testNow with status 200 and the response fields given as name, value
// pairs, and writes its content.
func (e *testEdge) publishPulled(t testing.TB, lsn uint64, key string, body []byte, fields ...string) wire.LogEntry {
	t.Helper()
	ent := putEntry(lsn, key, body)
	p := &wire.Pulled{Status: http.StatusOK, Requested: testNow, Received: testNow}
	for i := 0; i+1 < len(fields); i += 2 {
		p.Header = append(p.Header, wire.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	ent.Pulled = p
	mustApply(t, e.st, ent)
	mustWrite(t, e.st, body, true)
	return ent
}

// TestHardPurgeForgetsPulledVersions: a hard purge removes a pulled
// version from the index (the origin removes it from its catalog), so a
// push of its content still on its way when the purge lands cannot make
// it servable again; a published version keeps its index entry and loses
// its content, and a soft purge only marks a pulled one stale.
func TestHardPurgeForgetsPulledVersions(t *testing.T) {
	e := newTestEdge(t, storeConfig{}, 0)
	e.pullAll(t, nil)
	page := []byte("a pulled page")
	e.publishPulled(t, 1, "page", page, "Cache-Control", "max-age=600", "Surrogate-Key", "pages")
	e.publishPulled(t, 2, "other", []byte("another page"), "Cache-Control", "max-age=600", "Surrogate-Key", "pages")
	e.publish(t, 3, "published", []byte("published"), true)

	soft := wire.LogEntry{LSN: 4, Op: wire.OpPurge, Namespace: "default", PurgeKeys: []string{"other"}, Soft: true}
	mustApply(t, e.st, soft)
	if n, err := e.st.purge(soft); n != 1 || err != nil {
		t.Fatalf("soft purge: %d matched, %v", n, err)
	}
	if obj, ok := e.st.lookup("default", "other"); !ok || !obj.Stale || !obj.Present {
		t.Fatalf("after a soft purge: %+v (known %v); want it kept, stale", obj, ok)
	}

	hard := wire.LogEntry{LSN: 5, Op: wire.OpPurge, Namespace: "default", PurgeKeys: []string{"page", "published"}}
	mustApply(t, e.st, hard)
	if n, err := e.st.purge(hard); n != 2 || err != nil {
		t.Fatalf("hard purge: %d matched, %v", n, err)
	}
	if _, ok := e.st.lookup("default", "page"); ok {
		t.Fatal("a hard-purged pulled version is still in the index")
	}
	if obj, ok := e.st.lookup("default", "published"); !ok || obj.Present {
		t.Fatalf("a hard-purged published version: known %v, present %v; want known, content gone", ok, obj.Present)
	}
	mustWrite(t, e.st, page, false) // the push of the purged version, late
	if _, ok := e.st.lookup("default", "page"); ok {
		t.Fatal("a late push brought a hard-purged pulled version back")
	}
	rec := e.do("GET", "/page")
	if cs := rec.Header().Get("Cache-Status"); strings.Contains(cs, "hit") {
		t.Fatalf("GET of a hard-purged pulled key: Cache-Status %q, want a pull", cs)
	}
}
