package edge

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/wire"
)

// publishLevel puts key at consistency c (with bound for Bounded) into the
// fake origin and the edge's store, content pushed.
func (e *testEdge) publishLevel(t *testing.T, lsn uint64, key string, body []byte, c wire.Consistency, bound time.Duration) wire.LogEntry {
	t.Helper()
	ent := putEntry(lsn, key, body)
	ent.Consistency, ent.Bound = c, bound
	e.origin.publish(ent, body)
	mustApply(t, e.st, ent)
	mustWrite(t, e.st, body, true)
	return ent
}

func TestConsistencyGatesServingWithoutALease(t *testing.T) {
	body := []byte("versioned body")
	for _, tc := range []struct {
		name      string
		level     wire.Consistency
		bound     time.Duration
		unleased  bool
		originErr error
		wantCode  int
		wantFill  bool
		wantCache string // substring of Cache-Status
	}{
		{"strong with a lease, not yet confirmed visible, asks the origin", wire.Strong, 0, false, nil, 200, true, "fwd=stale"},
		{"strong without a lease revalidates", wire.Strong, 0, true, nil, 200, true, "fwd=stale"},
		{"strong without a lease and no origin is 503", wire.Strong, 0, true, errors.New("unreachable"), 503, true, "detail=unconfirmed"},
		{"bounded confirmed within the bound is a hit", wire.Bounded, 10 * time.Second, true, nil, 200, false, "hit"},
		{"bounded confirmed too long ago revalidates", wire.Bounded, 3 * time.Second, false, nil, 200, true, "fwd=stale"},
		{"bounded too old and no origin is 503", wire.Bounded, 3 * time.Second, false, errors.New("unreachable"), 503, true, "detail=unconfirmed"},
		{"eventual without a lease is served", wire.Eventual, 0, true, errors.New("unreachable"), 200, false, "hit"},
		{"consistent prefix without a lease is served", wire.ConsistentPrefix, 0, true, errors.New("unreachable"), 200, false, "hit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEdge(t, storeConfig{}, 0)
			e.view.unleased.Store(tc.unleased)
			e.publishLevel(t, 3, "obj", body, tc.level, tc.bound)
			e.origin.err = tc.originErr
			rec := e.do("GET", "/obj")
			if rec.Code != tc.wantCode {
				t.Fatalf("status %d, want %d (Cache-Status %q)", rec.Code, tc.wantCode, rec.Header().Get("Cache-Status"))
			}
			if got := e.origin.calls.Load() > 0; got != tc.wantFill {
				t.Fatalf("asked the origin: %v, want %v", got, tc.wantFill)
			}
			if cs := rec.Header().Get("Cache-Status"); !strings.Contains(cs, tc.wantCache) {
				t.Fatalf("Cache-Status %q, want it to contain %q", cs, tc.wantCache)
			}
			if rec.Code == 503 && bytes.Contains(rec.Body.Bytes(), body) {
				t.Fatal("a 503 carried the object's body")
			}
			if rec.Code == 200 && !bytes.Equal(rec.Body.Bytes(), body) {
				t.Fatalf("body %q, want %q", rec.Body.Bytes(), body)
			}
		})
	}
}

func TestSessionReadWaitsForTheClientsLSN(t *testing.T) {
	body := []byte("session")
	e := newTestEdge(t, storeConfig{}, 0)
	e.publishLevel(t, 5, "s", body, wire.Session, 0)

	// The log has reached the client's LSN: served locally.
	rec := e.do("GET", "/s", HeaderMinLSN, "5")
	if rec.Code != 200 || e.origin.calls.Load() != 0 {
		t.Fatalf("min LSN reached: status %d, origin calls %d; want 200 and none", rec.Code, e.origin.calls.Load())
	}
	// Ahead of the log, which does not catch up in time: the origin answers.
	rec = e.do("GET", "/s", HeaderMinLSN, "9")
	if rec.Code != 200 || e.origin.calls.Load() != 1 {
		t.Fatalf("min LSN ahead: status %d, origin calls %d; want 200 and one", rec.Code, e.origin.calls.Load())
	}
	// An unknown key with the log behind the client is not a local 404.
	rec = e.do("GET", "/missing", HeaderMinLSN, "9")
	if rec.Code != http.StatusNotFound || e.origin.calls.Load() != 2 {
		t.Fatalf("unknown key, log behind: status %d, origin calls %d; want the origin's 404", rec.Code, e.origin.calls.Load())
	}
	if rec := e.do("GET", "/s", HeaderMinLSN, "soon"); rec.Code != http.StatusBadRequest {
		t.Fatalf("malformed %s: status %d, want 400", HeaderMinLSN, rec.Code)
	}
}

func TestUnleasedEventualHitSaysSo(t *testing.T) {
	e := newTestEdge(t, storeConfig{}, 0)
	e.publishLevel(t, 2, "ev", []byte("eventual"), wire.Eventual, 0)
	if cs := e.do("GET", "/ev").Header().Get("Cache-Status"); cs != statusHit {
		t.Fatalf("leased hit: Cache-Status %q, want %q", cs, statusHit)
	}
	e.view.unleased.Store(true)
	rec := e.do("GET", "/ev")
	if cs := rec.Header().Get("Cache-Status"); cs != statusHit+"; detail=unleased" {
		t.Fatalf("unleased hit: Cache-Status %q, want the unleased detail", cs)
	}
	if rec.Header().Get("Age") != "5" {
		t.Fatalf("Age %q, want 5: seconds since the edge last confirmed its view", rec.Header().Get("Age"))
	}
}

// A strong version is served locally only once the origin confirmed it
// visible and while the lease is valid.
func TestStrongVersionServedLocallyOnceConfirmed(t *testing.T) {
	e := newTestEdge(t, storeConfig{}, 0)
	e.publishLevel(t, 4, "st", []byte("strong"), wire.Strong, 0)
	if rec := e.do("GET", "/st"); rec.Code != 200 || e.origin.calls.Load() != 1 {
		t.Fatalf("first read: status %d, origin calls %d; want 200 after one confirmation", rec.Code, e.origin.calls.Load())
	}
	rec := e.do("GET", "/st")
	if rec.Code != 200 || e.origin.calls.Load() != 1 || rec.Header().Get("Cache-Status") != statusHit {
		t.Fatalf("second read: status %d, origin calls %d, Cache-Status %q; want a local hit", rec.Code, e.origin.calls.Load(), rec.Header().Get("Cache-Status"))
	}
	e.view.unleased.Store(true)
	e.origin.err = errors.New("unreachable")
	if rec := e.do("GET", "/st"); rec.Code != 503 {
		t.Fatalf("confirmed but unleased and cut off: status %d, want 503", rec.Code)
	}
}

func TestMinLSNKeyIsCanonical(t *testing.T) {
	if got := http.CanonicalHeaderKey(HeaderMinLSN); got != minLSNKey {
		t.Fatalf("canonical %s is %q, minLSNKey is %q", HeaderMinLSN, got, minLSNKey)
	}
}
