package edge

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/geocdn/geocdn/internal/clock"
	"github.com/geocdn/geocdn/internal/wire"
)

// A session read's GeoCDN-Min-LSN above the watermark, through the handler:
// an LSN the origin has not issued is refused without asking the origin,
// one it has issued is served as before, and one the edge cannot check is
// a 503, never a fill.
func TestMinLSNBeyondTheOrigin(t *testing.T) {
	v1, v2 := []byte("version one"), []byte("version two, published at LSN 9")
	for _, tc := range []struct {
		name      string
		method    string
		key       string
		min       string
		origin    uint64 // the origin's last LSN in the fake view's answer; 0: every LSN issued
		cutOff    bool
		deliver   bool // the log brings LSN 9 while the read waits
		wantCode  int
		wantBody  string // for 200
		wantFills int32
		wantCache string // substring of Cache-Status
	}{
		{"far beyond the origin is refused", "GET", "s", "999999999999", 7, false, false, 412, "", 0, statusLSNAhead},
		{"far beyond the origin, HEAD", "HEAD", "s", "999999999999", 7, false, false, 412, "", 0, statusLSNAhead},
		{"far beyond the origin, unknown key", "GET", "missing", "999999999999", 7, false, false, 412, "", 0, statusLSNAhead},
		{"the largest LSN", "GET", "s", "18446744073709551615", 7, false, false, 412, "", 0, statusLSNAhead},
		{"one past the origin", "GET", "s", "8", 7, false, false, 412, "", 0, statusLSNAhead},
		{"new to the edge, issued at the origin: the origin answers", "GET", "s", "9", 9, false, false, 200, string(v2), 1, "fwd=stale"},
		{"new to the edge, unknown key issued at the origin", "GET", "missing", "9", 9, false, false, 404, "", 1, "fwd-status=404"},
		{"new to the edge, the log brings it meanwhile", "GET", "s", "9", 0, false, true, 200, string(v2), 0, statusHit},
		{"cut off from the origin", "GET", "s", "9", 0, true, false, 503, "", 0, statusLSNUnconfirmed},
		{"cut off, unknown key", "GET", "missing", "9", 0, true, false, 503, "", 0, statusLSNUnconfirmed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEdge(t, storeConfig{}, 0)
			e.publishLevel(t, 5, "s", v1, wire.Session, 0)
			// The client published v2 at the origin and got LSN 9; the
			// edge has not heard of it.
			next := putEntry(9, "s", v2)
			next.Consistency = wire.Session
			e.origin.publish(next, v2)
			e.view.originLSN.Store(tc.origin)
			e.view.cutOff.Store(tc.cutOff)
			var since time.Time
			e.view.onIssued = func(lsn uint64, at time.Time) {
				since = at
				if tc.deliver {
					mustApply(t, e.st, next)
					mustWrite(t, e.st, v2, true)
					e.view.logAt.Store(9)
				}
			}

			rec := e.do(tc.method, "/"+tc.key, HeaderMinLSN, tc.min)
			hd := rec.Header()
			if rec.Code != tc.wantCode {
				t.Fatalf("status %d, want %d (Cache-Status %q, body %q)", rec.Code, tc.wantCode, hd.Get("Cache-Status"), rec.Body.String())
			}
			if got := e.origin.calls.Load(); got != tc.wantFills {
				t.Fatalf("origin asked %d times, want %d", got, tc.wantFills)
			}
			if cs := hd.Get("Cache-Status"); !strings.Contains(cs, tc.wantCache) {
				t.Fatalf("Cache-Status %q, want it to contain %q", cs, tc.wantCache)
			}
			if !since.Equal(testNow) {
				t.Fatalf("the view was told the request arrived at %v, want %v (the handler's clock)", since, testNow)
			}
			switch rec.Code {
			case http.StatusOK:
				if tc.method == "GET" && rec.Body.String() != tc.wantBody {
					t.Fatalf("body %q, want %q", rec.Body.String(), tc.wantBody)
				}
			case http.StatusPreconditionFailed:
				checkHeaders(t, rec, map[string]string{
					"Cache-Control": "no-store", "Geocdn-Lsn": "5", HeaderOriginLSN: "7", "X-Cache": "",
				})
				if tc.method == "GET" && !strings.Contains(rec.Body.String(), "above the origin's last LSN 7") {
					t.Fatalf("412 body %q does not name the origin's last LSN", rec.Body.String())
				}
			case http.StatusServiceUnavailable:
				checkHeaders(t, rec, map[string]string{"Cache-Control": "no-store", "Geocdn-Lsn": "5"})
				if strings.Contains(rec.Body.String(), string(v1)) {
					t.Fatal("a 503 carried the object's body")
				}
			}
		})
	}
}

// Reads whose LSN the log has reached, and reads without one, never ask
// the view about the origin: the hit path stays as it was.
func TestMinLSNReachedDoesNotAskTheOrigin(t *testing.T) {
	e := newTestEdge(t, storeConfig{}, 0)
	e.publishLevel(t, 5, "s", []byte("five"), wire.Session, 0)
	e.view.originLSN.Store(5)
	for _, hdr := range [][]string{nil, {HeaderMinLSN, "5"}, {HeaderMinLSN, "1"}, {HeaderMinLSN, ""}} {
		rec := e.do("GET", "/s", hdr...)
		if rec.Code != http.StatusOK || rec.Header().Get("Cache-Status") != statusHit {
			t.Fatalf("%q: status %d, Cache-Status %q; want a hit", hdr, rec.Code, rec.Header().Get("Cache-Status"))
		}
	}
	if n := e.view.issuedAsk.Load(); n != 0 {
		t.Fatalf("originIssued asked %d times, want 0", n)
	}
	if n := e.origin.calls.Load(); n != 0 {
		t.Fatalf("origin asked %d times, want 0", n)
	}
}

// Edge.originIssued, the view's side: what it answers and when, on the
// bubble's clock. The edge has applied LSN 5 and last heard the origin at
// LSN 10; the read asks for LSN 20 unless the case says otherwise. Answers
// are fed as readControl records them.
func TestOriginIssued(t *testing.T) {
	const heartbeat = 250 * time.Millisecond
	type env struct {
		e      *Edge
		s      *session
		since  time.Time
		cancel context.CancelFunc
	}
	// answer records the answer to a heartbeat sent at sent, one that
	// withholds the lease so that only the origin's LSN moves.
	var seq uint64
	answer := func(v env, lsn uint64, sent time.Time) {
		seq++
		v.e.lease.Sent(seq, sent)
		v.e.lease.Answered(seq, lsn, 0, v.e.store.watermark())
		v.s.answers.Broadcast()
	}
	for _, tc := range []struct {
		name        string
		lsn         uint64
		noSession   bool
		script      func(t *testing.T, v env) // runs while the read waits
		wantVerdict lsnVerdict
		wantLast    uint64
		wantAfter   time.Duration // simulated time from arrival to verdict
	}{
		{
			name: "no session: waits for the log, then unconfirmed", noSession: true,
			wantVerdict: lsnUnconfirmed, wantLast: 10, wantAfter: sessionLogWait,
		},
		{
			name: "no session: served when a reconnect brings the log", noSession: true,
			script: func(t *testing.T, v env) {
				time.Sleep(200 * time.Millisecond)
				v.e.mu.Lock()
				v.e.sess = v.s
				v.e.mu.Unlock()
				mustApply(t, v.e.store, putEntry(20, "new", []byte("new")))
				v.e.logMoved.Broadcast()
			},
			wantVerdict: lsnApplied, wantLast: 10, wantAfter: 200 * time.Millisecond,
		},
		{
			name: "no session: a reconnect's answers count once the log shows it", noSession: true,
			script: func(t *testing.T, v env) {
				time.Sleep(100 * time.Millisecond)
				v.e.mu.Lock()
				v.e.sess = v.s
				v.e.mu.Unlock()
				mustApply(t, v.e.store, putEntry(6, "caught-up", []byte("caught up")))
				v.e.logMoved.Broadcast()
				time.Sleep(100 * time.Millisecond)
				answer(v, 10, time.Now().Add(-time.Millisecond))
			},
			wantVerdict: lsnAhead, wantLast: 10, wantAfter: 200 * time.Millisecond,
		},
		{
			name: "an LSN the origin already reported is issued at once", lsn: 10,
			wantVerdict: lsnIssued, wantLast: 10,
		},
		{
			name: "ahead once a heartbeat sent after arrival is answered below it",
			script: func(t *testing.T, v env) {
				// Heartbeats sent before the request, or at the same
				// clock reading, may have left before the client got its
				// LSN: their answers prove nothing.
				time.Sleep(100 * time.Millisecond)
				answer(v, 10, v.since.Add(-time.Millisecond))
				answer(v, 10, v.since)
				time.Sleep(150 * time.Millisecond)
				answer(v, 11, time.Now().Add(-time.Millisecond))
			},
			wantVerdict: lsnAhead, wantLast: 11, wantAfter: 250 * time.Millisecond,
		},
		{
			name: "issued when that answer shows the origin at the LSN",
			script: func(t *testing.T, v env) {
				time.Sleep(250 * time.Millisecond)
				answer(v, 20, time.Now().Add(-time.Millisecond))
			},
			wantVerdict: lsnIssued, wantLast: 20, wantAfter: 250 * time.Millisecond,
		},
		{
			name: "applied when the log brings it first",
			script: func(t *testing.T, v env) {
				time.Sleep(40 * time.Millisecond)
				mustApply(t, v.e.store, putEntry(20, "new", []byte("new")))
				v.e.logMoved.Broadcast()
			},
			wantVerdict: lsnApplied, wantLast: 10, wantAfter: 40 * time.Millisecond,
		},
		{
			name:        "unconfirmed when no answer comes",
			wantVerdict: lsnUnconfirmed, wantLast: 10, wantAfter: heartbeat + sessionLogWait,
		},
		{
			name: "the session ending leaves only the log to wait for",
			script: func(t *testing.T, v env) {
				time.Sleep(100 * time.Millisecond)
				v.e.mu.Lock()
				v.e.sess = nil
				v.e.lease.Reset()
				v.e.mu.Unlock()
				v.s.answers.Broadcast()
				// An answer after the session ended no longer counts.
				time.Sleep(100 * time.Millisecond)
				answer(v, 10, time.Now())
			},
			wantVerdict: lsnUnconfirmed, wantLast: 10, wantAfter: heartbeat + sessionLogWait,
		},
		{
			name: "the client leaving ends the wait",
			script: func(t *testing.T, v env) {
				time.Sleep(100 * time.Millisecond)
				v.cancel()
			},
			wantVerdict: lsnUnconfirmed, wantLast: 10, wantAfter: 100 * time.Millisecond,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := &Edge{clk: clock.Real{}, store: openTestStore(t, storeConfig{})}
				mustApply(t, e.store, putEntry(5, "old", []byte("old")))
				s := &session{heartbeat: heartbeat}
				e.lease.Welcomed(10)
				if !tc.noSession {
					e.sess = s
				}
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				lsn := tc.lsn
				if lsn == 0 {
					lsn = 20
				}
				v := env{e: e, s: s, since: time.Now(), cancel: cancel}
				type result struct {
					last  uint64
					v     lsnVerdict
					after time.Duration
				}
				done := make(chan result, 1)
				go func() {
					last, verdict := e.originIssued(ctx, lsn, v.since)
					done <- result{last, verdict, time.Since(v.since)}
				}()
				if tc.script != nil {
					synctest.Wait()
					tc.script(t, v)
				}
				got := <-done
				want := result{tc.wantLast, tc.wantVerdict, tc.wantAfter}
				if got != want {
					t.Fatalf("got last %d, verdict %d after %v; want last %d, verdict %d after %v",
						got.last, got.v, got.after, want.last, want.v, want.after)
				}
			})
		})
	}
}
