package cluster

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/geocdn/geocdn/origin"
)

// wanGet fetches url through the WAN's in-memory client.
func wanGet(t *testing.T, w *WAN, url string) got {
	t.Helper()
	resp, err := w.Client.Get(url)
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

func wanPublish(t *testing.T, w *WAN, key string, body []byte, query string) origin.PublishResult {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, w.OriginURL()+"/v1/objects/"+key+"?"+query, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+w.Token)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := w.Client.Do(req)
	if err != nil {
		t.Fatalf("publish %s: %v", key, err)
	}
	defer resp.Body.Close()
	var res origin.PublishResult
	raw, _ := io.ReadAll(resp.Body)
	json.Unmarshal(raw, &res)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("publish %s: status %d %s, want 201", key, resp.StatusCode, raw)
	}
	return res
}

func wanEdgeState(w *WAN, id string) origin.EdgeState {
	o := w.Origin()
	if o == nil {
		return ""
	}
	for _, st := range o.Edges() {
		if st.ID == id {
			return st.State
		}
	}
	return ""
}

// TestWANPublishPartitionHeal runs an origin in Washington DC and edges
// in London, Tokyo and Sydney over the simulated WAN, entirely in
// simulated time.
func TestWANPublishPartitionHeal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lease = 2 * time.Second
		w, err := StartWAN(WANConfig{
			Dir: t.TempDir(), LeaseTerm: lease, PublishTimeout: 10 * time.Second, Logger: testLogger(t),
			Edges: []WANEdge{{"lhr", "London"}, {"nrt", "Tokyo"}, {"syd", "Sydney"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := w.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		}()
		begin := time.Now()
		waitFor(t, "every edge healthy", func() bool {
			for _, e := range w.Edges() {
				if ed := e.Edge(); ed == nil || !ed.Healthy() {
					return false
				}
			}
			return true
		})
		t.Logf("every edge healthy %v after start (simulated)", time.Since(begin))

		farthest := time.Duration(0)
		for _, e := range w.Edges() {
			d, _ := w.Net.Matrix().RTT("Washington DC", e.Spec.Region)
			farthest = max(farthest, d)
		}
		body := []byte("hello, world\n")
		start := time.Now()
		res := wanPublish(t, w, "greeting.txt", body, "w=all")
		took := time.Since(start)
		t.Logf("publish w=all to %d edges took %v simulated (farthest RTT %v)", len(res.Acked), took, farthest)
		if len(res.Acked) != 3 {
			t.Fatalf("acked by %v, want all three edges", res.Acked)
		}
		if took < farthest || took > 5*farthest {
			t.Errorf("publish took %v, want between 1 and 5 farthest RTTs (%v)", took, farthest)
		}
		for _, e := range w.Edges() {
			g := wanGet(t, w, e.URL+"/greeting.txt")
			if g.status != 200 || !bytes.Equal(g.body, body) || g.hdr.Get("X-Cache") != "HIT" {
				t.Errorf("edge %s: %d %q X-Cache %q, want 200 HIT with the body", e.Spec.ID, g.status, g.body, g.hdr.Get("X-Cache"))
			}
		}

		syd := w.Edge("syd")
		if err := w.Partition("syd"); err != nil {
			t.Fatal(err)
		}
		cut := time.Now()
		waitFor(t, "origin marks syd down", func() bool { return wanEdgeState(w, "syd") == origin.EdgeDown })
		down := time.Since(cut)
		waitFor(t, "syd /healthz 503", func() bool { return wanGet(t, w, syd.URL+"/healthz").status == http.StatusServiceUnavailable })
		unhealthy := time.Since(cut)
		t.Logf("partitioned syd: origin marked it down after %v, its /healthz 503 after %v (lease %v)", down, unhealthy, lease)
		if down > 3*lease || unhealthy > 2*lease {
			t.Errorf("down after %v, unhealthy after %v: want within about one lease term (%v)", down, unhealthy, lease)
		}
		if g := wanGet(t, w, w.Edge("nrt").URL+"/healthz"); g.status != 200 {
			t.Errorf("nrt /healthz %d while syd is cut off, want 200", g.status)
		}

		// Written while syd is cut off: it must catch up after the heal.
		body2 := []byte("written during the partition\n")
		res2 := wanPublish(t, w, "later.txt", body2, "w=all")
		if len(res2.Acked) != 2 {
			t.Errorf("w=all during partition acked by %v, want lhr and nrt", res2.Acked)
		}
		if err := w.Heal("syd"); err != nil {
			t.Fatal(err)
		}
		healed := time.Now()
		waitFor(t, "syd back up and caught up", func() bool {
			ed := syd.Edge()
			return wanEdgeState(w, "syd") == origin.EdgeUp && ed.Healthy() && ed.Watermark() >= res2.LSN
		})
		t.Logf("syd up and caught up %v after heal", time.Since(healed))
		if g := wanGet(t, w, syd.URL+"/later.txt"); g.status != 200 || !bytes.Equal(g.body, body2) {
			t.Errorf("syd after heal: %d %q, want 200 with the new body", g.status, g.body)
		}
		t.Logf("scenario took %v of simulated time; network %+v", time.Since(begin), w.Net.Stats())
	})
}

// TestWANOneWayPartitionAndRestart checks the harness's one-way
// partitions (either direction loses the edge its lease, since renewals
// need a round trip) and that a killed edge comes back on its host.
func TestWANOneWayPartitionAndRestart(t *testing.T) {
	for _, d := range []Direction{ToEdge, FromEdge} {
		t.Run(map[Direction]string{ToEdge: "to-edge", FromEdge: "from-edge"}[d], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w, err := StartWAN(WANConfig{
					Dir: t.TempDir(), LeaseTerm: time.Second, Logger: testLogger(t),
					Edges: []WANEdge{{"fra", "Frankfurt"}, {"gru", "Sao Paulo"}},
				})
				if err != nil {
					t.Fatal(err)
				}
				defer w.Close()
				healthy := func(id string) func() bool {
					return func() bool { ed := w.Edge(id).Edge(); return ed != nil && ed.Healthy() }
				}
				waitFor(t, "fra healthy", healthy("fra"))
				waitFor(t, "gru healthy", healthy("gru"))
				if err := w.PartitionOneWay("gru", d); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "gru unhealthy", func() bool { return !healthy("gru")() })
				if !healthy("fra")() {
					t.Error("fra lost its lease while only gru was cut")
				}
				if err := w.Heal("gru"); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "gru healthy after heal", healthy("gru"))

				res := wanPublish(t, w, "k", []byte("v"), "w=all")
				if err := w.RestartEdge("fra"); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "fra healthy after restart", healthy("fra"))
				if g := wanGet(t, w, w.Edge("fra").URL+"/k"); g.status != 200 || string(g.body) != "v" {
					t.Errorf("fra after restart: %d %q, want 200 \"v\" (lsn %d)", g.status, g.body, res.LSN)
				}
			})
		})
	}
}
