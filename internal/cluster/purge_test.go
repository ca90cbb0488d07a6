package cluster

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/geocdn/geocdn/origin"
)

func purge(t *testing.T, c *Cluster, query, body string) (int, origin.PurgeResult) {
	t.Helper()
	u := c.OriginURL() + "/v1/purge"
	if query != "" {
		u += "?" + query
	}
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var res origin.PurgeResult
	json.Unmarshal(raw, &res)
	return resp.StatusCode, res
}

func TestPurgeByKeyPrefixAndTag(t *testing.T) {
	c := startCluster(t, Config{})
	objects := map[string][]byte{
		"a.txt": []byte("a"), "css/x.css": []byte("x"), "css/y.css": []byte("y"),
		"tagged.txt": []byte("tagged"), "kept.txt": []byte("kept"),
	}
	for k, b := range objects {
		hdr := map[string]string{"Content-Type": "text/plain"}
		if k == "tagged.txt" {
			hdr["Surrogate-Key"] = "home banner"
		}
		if a := publish(t, c, k, b, "w=all", hdr); a.status != 201 {
			t.Fatalf("publish %s: %d", k, a.status)
		}
	}
	xcache := func(e *EdgeNode, key string) string {
		g := get(t, e.URL+"/"+key, nil)
		if g.status != 200 || !bytes.Equal(g.body, objects[key]) {
			t.Fatalf("%s GET %s: status %d body %q", e.Spec.ID, key, g.status, g.body)
		}
		return g.hdr.Get("X-Cache")
	}
	for _, tc := range []struct {
		name   string
		body   string
		purged []string
	}{
		{"key", `{"keys":["a.txt"]}`, []string{"a.txt"}},
		{"prefix", `{"prefixes":["css/"]}`, []string{"css/x.css", "css/y.css"}},
		{"tag", `{"tags":["banner"]}`, []string{"tagged.txt"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, res := purge(t, c, "wait=true", tc.body)
			if status != 200 {
				t.Fatalf("purge: status %d (%+v)", status, res)
			}
			if slices.Sort(res.Acked); len(res.Acked) != 3 || len(res.Edges) != 3 {
				t.Fatalf("purge wait=true: edges %v acked %v, want all 3 acked", res.Edges, res.Acked)
			}
			for _, e := range c.Edges() {
				for _, k := range tc.purged {
					// The purge is acknowledged: the next GET must fill.
					if x := xcache(e, k); x != "MISS" {
						t.Errorf("%s: first GET of purged %s: X-Cache %s, want MISS", e.Spec.ID, k, x)
					}
					if x := xcache(e, k); x != "HIT" {
						t.Errorf("%s: second GET of %s: X-Cache %s, want HIT after the fill", e.Spec.ID, k, x)
					}
				}
				if x := xcache(e, "kept.txt"); x != "HIT" {
					t.Errorf("%s: kept.txt X-Cache %s; a purge must touch only what it names", e.Spec.ID, x)
				}
			}
		})
	}
}

func TestSoftPurgeRevalidates(t *testing.T) {
	var fills int64
	c := startCluster(t, Config{OnEvent: func(ev origin.Event) {
		if ev.Kind == origin.EventFillServed && ev.Bytes > 0 {
			fills++
		}
	}})
	res := mustPublish(t, c, "soft.txt", []byte("unchanged"), "w=all")
	status, pr := purge(t, c, "wait=true&soft=true", `{"keys":["soft.txt"]}`)
	if status != 200 || len(pr.Acked) != 3 {
		t.Fatalf("soft purge: status %d acked %v", status, pr.Acked)
	}
	e := c.Edges()[0]
	g := get(t, e.URL+"/soft.txt", nil)
	if g.status != 200 || string(g.body) != "unchanged" || !strings.Contains(g.hdr.Get("Cache-Status"), "fwd=stale") {
		t.Fatalf("GET after soft purge: status %d Cache-Status %q, want a revalidation (fwd=stale)", g.status, g.hdr.Get("Cache-Status"))
	}
	if g.hdr.Get("ETag") != `"`+res.Digest+`"` {
		t.Fatalf("ETag %s, want the unchanged version's", g.hdr.Get("ETag"))
	}
	if fills != 0 {
		t.Fatalf("revalidating an unchanged version moved %d bodies; want none", fills)
	}
	if g := get(t, e.URL+"/soft.txt", nil); g.hdr.Get("X-Cache") != "HIT" {
		t.Fatalf("second GET after revalidation: X-Cache %q, want HIT", g.hdr.Get("X-Cache"))
	}
}

func TestPurgeThenPublishServesTheNewVersion(t *testing.T) {
	c := startCluster(t, Config{})
	mustPublish(t, c, "p.txt", []byte("old"), "w=all")
	if status, _ := purge(t, c, "", `{"keys":["p.txt"]}`); status != 200 {
		t.Fatalf("purge: %d", status)
	}
	res := mustPublish(t, c, "p.txt", []byte("new"), "w=all")
	for _, e := range c.Edges() {
		g := get(t, e.URL+"/p.txt", nil)
		if string(g.body) != "new" || g.hdr.Get("X-Cache") != "HIT" || g.hdr.Get("ETag") != `"`+res.Digest+`"` {
			t.Fatalf("%s: body %q X-Cache %q; a purge before a publish must not evict the new version", e.Spec.ID, g.body, g.hdr.Get("X-Cache"))
		}
	}
}

func TestPurgeWaitsForAnEdgeThatLosesItsLease(t *testing.T) {
	c := startCluster(t, Config{LeaseTerm: 500 * time.Millisecond})
	mustPublish(t, c, "w.txt", []byte("w"), "w=all")
	gone := c.Edges()[2].Spec.ID
	if err := c.KillEdge(2); err != nil {
		t.Fatal(err)
	}
	status, res := purge(t, c, "wait=true", `{"keys":["w.txt"]}`)
	if status != 200 {
		t.Fatalf("purge: status %d (%+v)", status, res)
	}
	if slices.Contains(res.Edges, gone) && !slices.Contains(res.Expired, gone) {
		t.Fatalf("edge %s was told but neither acked nor expired: %+v", gone, res)
	}
	if len(res.Acked) != 2 {
		t.Fatalf("acked %v, want the 2 live edges", res.Acked)
	}
}

func TestPurgeRefusesBadRequests(t *testing.T) {
	c := startCluster(t, Config{})
	before := c.Origin().LastLSN()
	for _, body := range []string{``, `{}`, `{"keys":[]}`, `{"keys":["a/../b"]}`, `{"nope":1}`, `{"keys":["a"]} trailing`} {
		if status, _ := purge(t, c, "", body); status != 400 {
			t.Errorf("purge %q: status %d, want 400", body, status)
		}
	}
	if got := c.Origin().LastLSN(); got != before {
		t.Errorf("refused purges moved the log from %d to %d", before, got)
	}
}
