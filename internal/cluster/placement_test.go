package cluster

import (
	"bytes"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/geocdn/geocdn/origin"
	"github.com/geocdn/geocdn/placement"
)

// pushLog records which edges stored which LSNs.
type pushLog struct {
	mu     sync.Mutex
	stored map[string][]uint64
}

func (l *pushLog) event(ev origin.Event) {
	if ev.Kind != origin.EventPushStored {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stored[ev.Edge] = append(l.stored[ev.Edge], ev.LSN)
}

func (l *pushLog) has(edge string, lsn uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.stored[edge], lsn)
}

func applyPlan(t *testing.T, c *Cluster, replicas ...string) {
	t.Helper()
	applyPlanVia(t, http.DefaultClient, c.OriginURL(), c.Token, replicas...)
}

// applyPlanVia puts in force a plan of one class, every key, on replicas.
func applyPlanVia(t *testing.T, client *http.Client, originURL, token string, replicas ...string) {
	t.Helper()
	p := &placement.Plan{Version: placement.PlanVersion, Classes: []placement.PlanClass{
		{Name: "everything", Prefixes: []string{""}, Replicas: replicas},
	}}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPut, originURL+"/v1/placement", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("PUT /v1/placement: %d %s", resp.StatusCode, body)
	}
}

func TestPlacementApplyMovesReplicas(t *testing.T) {
	pushes := &pushLog{stored: map[string][]uint64{}}
	c := startCluster(t, Config{OnEvent: pushes.event})
	edge := map[string]*EdgeNode{}
	for _, e := range c.Edges() {
		edge[e.Spec.ID] = e
	}

	applyPlan(t, c, "iad", "lhr")
	body := []byte("placed by the plan")
	res := mustPublish(t, c, "placed/object.txt", body, "w=all")
	if want := []string{"iad", "lhr"}; !slices.Equal(res.Replicas, want) {
		t.Fatalf("replicas %v, want %v from the plan in force", res.Replicas, want)
	}
	if slices.Sort(res.Acked); !slices.Equal(res.Acked, []string{"iad", "lhr"}) {
		t.Fatalf("w=all acked %v, want iad and lhr", res.Acked)
	}
	if pushes.has("nrt", res.LSN) {
		t.Fatalf("nrt received a push of an object the plan does not give it")
	}
	if g := get(t, edge["iad"].URL+"/placed/object.txt", nil); g.hdr.Get("X-Cache") != "HIT" {
		t.Fatalf("iad: X-Cache %q, want HIT for a replica it owes", g.hdr.Get("X-Cache"))
	}

	// The plan moves the class to nrt alone: nrt gets a push of the
	// existing object, iad and lhr drop their replicas.
	applyPlan(t, c, "nrt")
	waitFor(t, "a push of the object to nrt", func() bool { return pushes.has("nrt", res.LSN) })
	if g := get(t, edge["nrt"].URL+"/placed/object.txt", nil); g.status != 200 || g.hdr.Get("X-Cache") != "HIT" || !bytes.Equal(g.body, body) {
		t.Fatalf("nrt: status %d X-Cache %q, want a HIT with the body", g.status, g.hdr.Get("X-Cache"))
	}
	for _, id := range []string{"iad", "lhr"} {
		// The replica becomes an evictable fill: still served, no
		// longer pinned.
		waitFor(t, id+" unpinning the replica it no longer owes", func() bool {
			return heldAs(edge[id], "placed/object.txt") == "fill"
		})
		if g := get(t, edge[id].URL+"/placed/object.txt", nil); g.status != 200 || !bytes.Equal(g.body, body) {
			t.Fatalf("%s: the unpinned replica served %d", id, g.status)
		}
	}

	// The plan in force survives an origin restart and is served back.
	if err := c.RestartOrigin(); err != nil {
		t.Fatal(err)
	}
	g := get(t, c.OriginURL()+"/v1/placement", map[string]string{"Authorization": "Bearer " + c.Token})
	p, err := placement.UnmarshalPlan(g.body)
	if err != nil || g.status != 200 {
		t.Fatalf("GET /v1/placement after restart: %d %v", g.status, err)
	}
	if got := p.ReplicasFor("default", "placed/object.txt"); !slices.Equal(got, []string{"nrt"}) {
		t.Fatalf("plan after restart gives %v, want [nrt]", got)
	}
	waitFor(t, "the restarted origin seeing every edge up", func() bool {
		for _, e := range c.Edges() {
			if edgeState(t, c, e.Spec.ID) != origin.EdgeUp {
				return false
			}
		}
		return true
	})
	res2 := mustPublish(t, c, "placed/second.txt", []byte("after restart"), "w=all")
	if !slices.Equal(res2.Replicas, []string{"nrt"}) || !slices.Equal(res2.Acked, []string{"nrt"}) {
		t.Fatalf("after restart: replicas %v acked %v, want [nrt] for both", res2.Replicas, res2.Acked)
	}
}

func TestPlacementApplyRefusesBadPlans(t *testing.T) {
	c := startCluster(t, Config{})
	for _, tc := range []struct {
		name string
		body string
	}{
		{"not json", "{"},
		{"unknown edge", `{"version":1,"seed":0,"objective":{"name":"x","mean_rtt_ms":0,"min_replicas":1,"max_replicas":1},"classes":[{"name":"a","prefixes":[""],"replicas":["nowhere"]}]}`},
		{"wrong version", `{"version":99,"classes":[]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPut, c.OriginURL()+"/v1/placement", bytes.NewReader([]byte(tc.body)))
			req.Header.Set("Authorization", "Bearer "+c.Token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 400 {
				t.Fatalf("status %d (%s), want 400", resp.StatusCode, b)
			}
		})
	}
	g := get(t, c.OriginURL()+"/v1/placement", map[string]string{"Authorization": "Bearer " + c.Token})
	if g.status != 404 {
		t.Fatalf("GET /v1/placement with no plan applied: %d, want 404", g.status)
	}
}

// heldAs says how en holds key: "replica" (pinned), "fill" (evictable),
// "absent" (known, content not on disk) or "unknown".
func heldAs(en *EdgeNode, key string) string {
	for _, h := range en.Edge().Holdings() {
		if h.Entry.Namespace != "default" || h.Entry.Key != key {
			continue
		}
		switch {
		case h.Pinned:
			return "replica"
		case h.Present:
			return "fill"
		}
		return "absent"
	}
	return "unknown"
}
