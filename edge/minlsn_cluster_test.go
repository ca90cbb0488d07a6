package edge_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/geocdn/geocdn/edge"
	"github.com/geocdn/geocdn/internal/cluster"
	"github.com/geocdn/geocdn/origin"
)

// A real origin and edge on the simulated WAN (origin in Washington DC,
// edge in London): a GeoCDN-Min-LSN beyond anything the origin issued is
// refused with 412 and costs the origin no fill, while a client reading at
// the LSN its own publish just returned, before the edge can have heard of
// it, gets the new content.
func TestMinLSNBeyondTheOriginOnTheWAN(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var fills atomic.Int64
		w, err := cluster.StartWAN(cluster.WANConfig{
			Dir: t.TempDir(), LeaseTerm: 2 * time.Second, PublishTimeout: 6 * time.Second,
			Edges:  []cluster.WANEdge{{ID: "lhr", Region: "London"}},
			Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
			OnEvent: func(ev origin.Event) {
				if ev.Kind == origin.EventFillServed {
					fills.Add(1)
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := w.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		}()
		en := w.Edge("lhr")
		waitUntil(t, "the edge holds a lease", func() bool { return en.Edge() != nil && en.Edge().Healthy() })

		lsn := wanPublish(t, w, "doc", "first")
		if a := wanRead(t, w, en.URL+"/doc", lsn); a.status != http.StatusOK || a.body != "first" {
			t.Fatalf("read at the publish's LSN %d: status %d %q, want 200 %q", lsn, a.status, a.body, "first")
		}

		before := fills.Load()
		bogus := lsn + 1_000_000
		for _, key := range []string{"doc", "never-published"} {
			a := wanRead(t, w, en.URL+"/"+key, bogus)
			if a.status != http.StatusPreconditionFailed {
				t.Fatalf("GET /%s with %s %d: status %d %q, want 412", key, edge.HeaderMinLSN, bogus, a.status, a.body)
			}
			if got := a.header.Get(edge.HeaderOriginLSN); got != strconv.FormatUint(lsn, 10) {
				t.Errorf("GET /%s: %s %q, want the origin's last LSN %d", key, edge.HeaderOriginLSN, got, lsn)
			}
			if got := a.header.Get("GeoCDN-LSN"); got != strconv.FormatUint(lsn, 10) {
				t.Errorf("GET /%s: GeoCDN-LSN %q, want the edge's watermark %d", key, got, lsn)
			}
			if got := a.header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("GET /%s: Cache-Control %q, want no-store", key, got)
			}
		}
		if got := fills.Load() - before; got != 0 {
			t.Fatalf("the origin served %d fills for reads beyond its LSN, want 0", got)
		}

		// A session client reads at its own publish's LSN at once: the
		// edge has not heard of it yet, and must still serve it.
		lsn2 := wanPublish(t, w, "doc", "second")
		if got := en.Edge().Watermark(); got >= lsn2 {
			t.Fatalf("the edge's watermark %d already reached the new LSN %d: the read below tests nothing", got, lsn2)
		}
		if a := wanRead(t, w, en.URL+"/doc", lsn2); a.status != http.StatusOK || a.body != "second" {
			t.Fatalf("read at the new publish's LSN %d: status %d %q (Cache-Status %q), want 200 %q",
				lsn2, a.status, a.body, a.header.Get("Cache-Status"), "second")
		}

		// Cut off, the edge can no longer tell: 503, still no fill.
		if err := w.Partition("lhr"); err != nil {
			t.Fatal(err)
		}
		before = fills.Load()
		if a := wanRead(t, w, en.URL+"/doc", lsn2+1_000_000); a.status != http.StatusServiceUnavailable {
			t.Fatalf("cut off: status %d %q, want 503", a.status, a.body)
		}
		if got := fills.Load() - before; got != 0 {
			t.Fatalf("cut off: the origin served %d fills, want 0", got)
		}
		w.HealAll()
	})
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // simulated
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wanPublish publishes value under key at session consistency and returns
// its LSN.
func wanPublish(t *testing.T, w *cluster.WAN, key, value string) uint64 {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, w.OriginURL()+"/v1/objects/"+key+"?consistency=session", bytes.NewReader([]byte(value)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+w.Token)
	resp, err := w.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("publish %s: status %d %s", key, resp.StatusCode, body)
	}
	lsn, err := strconv.ParseUint(resp.Header.Get("GeoCDN-LSN"), 10, 64)
	if err != nil {
		t.Fatalf("publish %s: GeoCDN-LSN %q: %v", key, resp.Header.Get("GeoCDN-LSN"), err)
	}
	return lsn
}

type wanAnswer struct {
	status int
	body   string
	header http.Header
}

func wanRead(t *testing.T, w *cluster.WAN, url string, minLSN uint64) wanAnswer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(edge.HeaderMinLSN, strconv.FormatUint(minLSN, 10))
	resp, err := w.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return wanAnswer{resp.StatusCode, string(body), resp.Header}
}
