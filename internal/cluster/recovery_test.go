package cluster

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/geocdn/geocdn/origin"
	"github.com/geocdn/geocdn/placement"
)

// Fault 6, replica recovery: an edge is lost for longer than
// ReassignAfter. The plan's replicas it held are placed on another edge,
// which holds them before the plan in force lets the lost edge go; writes
// that wait for every replica no longer wait for the lost edge. Back, the
// edge is brought to what the operator's plan owes it, the substitute
// lets go, and the plan in force is the operator's again. Every body
// served is checked against its ETag.

// recoveryEdges: Tokyo's nearest other edge is Osaka.
var recoveryEdges = []EdgeSpec{
	{ID: "iad", Region: "us-east", Lat: 38.90, Lon: -77.04},
	{ID: "lhr", Region: "eu-west", Lat: 51.51, Lon: -0.13},
	{ID: "nrt", Region: "ap-northeast", Lat: 35.68, Lon: 139.69},
	{ID: "kix", Region: "ap-northeast-3", Lat: 34.69, Lon: 135.50},
}

// planReplicas returns the replica set the plan in force gives key.
func planReplicas(o *origin.Origin, key string) []string {
	r := o.PlanInForce().ReplicasFor("default", key)
	slices.Sort(r)
	return r
}

// holdsAll reports whether en holds every key of want as an owed, pinned
// replica.
func holdsAll(en *EdgeNode, want map[string][]byte) bool {
	held := 0
	for _, h := range en.Edge().Holdings() {
		if _, ok := want[h.Entry.Key]; ok && h.Entry.Namespace == "default" && h.Owed && h.Pinned &&
			h.Entry.Digest.String() == digestOf(want[h.Entry.Key]) {
			held++
		}
	}
	return held == len(want)
}

// holdsNone reports whether en holds none of the keys of want as a
// pinned replica (it may keep them as evictable fills).
func holdsNone(en *EdgeNode, want map[string][]byte) bool {
	for _, h := range en.Edge().Holdings() {
		if _, ok := want[h.Entry.Key]; ok && h.Pinned {
			return false
		}
	}
	return true
}

func TestReplicaRecovery(t *testing.T) {
	c := startCluster(t, Config{Edges: recoveryEdges, LeaseTerm: 500 * time.Millisecond, ReassignAfter: time.Second, PublishTimeout: 5 * time.Second})
	edge := map[string]*EdgeNode{}
	for _, e := range c.Edges() {
		edge[e.Spec.ID] = e
	}
	applyPlan(t, c, "nrt", "lhr")
	want := map[string][]byte{}
	for i := range 20 {
		k := fmt.Sprintf("rr/%02d", i)
		want[k] = []byte(strings.Repeat(k, 40+i))
		mustPublish(t, c, k, want[k], "w=all")
	}
	if err := c.KillEdge(2); err != nil { // nrt
		t.Fatal(err)
	}
	waitFor(t, "nrt declared lost", func() bool { _, lost := c.Origin().LostEdges()["nrt"]; return lost })
	waitFor(t, "the plan in force placing nrt's replicas on kix", func() bool {
		return slices.Equal(planReplicas(c.Origin(), "rr/00"), []string{"kix", "lhr"})
	})
	// The plan dropped nrt only once kix had shown it holds the class.
	if !holdsAll(edge["kix"], want) {
		t.Fatal("kix took nrt's place in the plan before holding its replicas")
	}
	if metric(t, c, "geocdn_origin_placement_reassigned") != 1 || metric(t, c, "geocdn_origin_edges_lost") != 1 {
		t.Fatal("metrics do not show the lost edge and the reassigned plan")
	}
	// w=all waits for kix and lhr, not for the lost nrt.
	publishAckedBy(t, want, "rr", 20, 25, func(k string, body []byte) origin.PublishResult {
		return mustPublish(t, c, k, body, "w=all")
	}, "kix", "lhr")
	for _, id := range []string{"kix", "lhr"} {
		checkServes(t, edge[id], want)
	}

	// An origin restart keeps the lost edge lost and the plan in force.
	if err := c.RestartOrigin(); err != nil {
		t.Fatal(err)
	}
	if _, lost := c.Origin().LostEdges()["nrt"]; !lost || !slices.Equal(planReplicas(c.Origin(), "rr/00"), []string{"kix", "lhr"}) {
		t.Fatalf("after an origin restart: lost %v, plan gives %v", c.Origin().LostEdges(), planReplicas(c.Origin(), "rr/00"))
	}

	// nrt returns: it is brought to what the operator's plan owes it,
	// and only then does kix let go.
	if err := c.StartEdge(2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the operator's plan back in force", func() bool {
		return len(c.Origin().LostEdges()) == 0 && slices.Equal(planReplicas(c.Origin(), "rr/00"), []string{"lhr", "nrt"})
	})
	if !holdsAll(edge["nrt"], want) {
		t.Fatal("kix was let go of the class before nrt held it")
	}
	waitFor(t, "kix unpinning the replicas it no longer owes", func() bool { return holdsNone(edge["kix"], want) })
	checkConverged(t, c, edge["nrt"])
	if metric(t, c, "geocdn_origin_placement_reassigned") != 0 || metric(t, c, "geocdn_origin_edges_lost") != 0 {
		t.Fatal("metrics still show a lost edge or a reassigned plan")
	}
	g := get(t, c.OriginURL()+"/v1/placement", map[string]string{"Authorization": "Bearer " + c.Token})
	if p, err := placement.UnmarshalPlan(g.body); err != nil || !slices.Equal(p.ReplicasFor("default", "x"), []string{"nrt", "lhr"}) {
		t.Fatalf("GET /v1/placement: %d %v %s", g.status, err, g.body)
	}
}

// metric reads an unlabelled metric from the origin's /metrics.
func metric(t *testing.T, c *Cluster, name string) float64 {
	t.Helper()
	g := get(t, c.OriginURL()+"/metrics", nil)
	for _, line := range strings.Split(string(g.body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not in /metrics", name)
	return 0
}

// publishAckedBy publishes the keys prefix/from .. prefix/to-1 with w=all
// through publish, adds their bodies to want, and requires each to be
// acknowledged by exactly the edges acked.
func publishAckedBy(t *testing.T, want map[string][]byte, prefix string, from, to int, publish func(key string, body []byte) origin.PublishResult, acked ...string) {
	t.Helper()
	slices.Sort(acked)
	for i := from; i < to; i++ {
		k := fmt.Sprintf("%s/%02d", prefix, i)
		want[k] = []byte(strings.Repeat(k, 40+i))
		res := publish(k, want[k])
		if slices.Sort(res.Acked); !slices.Equal(res.Acked, acked) {
			t.Fatalf("%s: w=all acked by %v, want %v", k, res.Acked, acked)
		}
	}
}

// checkServes requires en to serve every key of want with its body and
// an ETag that matches it.
func checkServes(t *testing.T, en *EdgeNode, want map[string][]byte) {
	t.Helper()
	for k, body := range want {
		g := get(t, en.URL+"/"+k, nil)
		if g.status != http.StatusOK || digestOf(g.body) != digestOf(body) || g.hdr.Get("ETag") != `"`+digestOf(body)+`"` {
			t.Fatalf("%s: GET %s: %d, ETag %s, body sha256 %s", en.Spec.ID, k, g.status, g.hdr.Get("ETag"), digestOf(g.body))
		}
	}
}

// Fault 6 over the simulated WAN, in simulated time, with the default
// --reassign-after of ten minutes: Tokyo is cut off, Osaka takes its
// replicas, and when Tokyo is reachable again it gets back what the
// operator's plan owes it, including what was published while it was
// away, and Osaka lets go.
func TestWANReplicaRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := startHealthyWAN(t, WANConfig{
			LeaseTerm: 2 * time.Second, PublishTimeout: 10 * time.Second,
			Edges: []WANEdge{{"lhr", "London"}, {"fra", "Frankfurt"}, {"nrt", "Tokyo"}, {"kix", "Osaka"}},
		})
		applyPlanVia(t, w.Client, w.OriginURL(), w.Token, "nrt", "lhr")
		want := map[string][]byte{}
		for i := range 10 {
			k := fmt.Sprintf("wr/%02d", i)
			want[k] = []byte(strings.Repeat(k, 50+i))
			wanPublish(t, w, k, want[k], "w=all")
		}
		if err := w.Partition("nrt"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		waitForWithin(t, "the plan in force placing nrt's replicas on kix", 15*time.Minute, func() bool {
			return slices.Equal(planReplicas(w.Origin(), "wr/00"), []string{"kix", "lhr"})
		})
		lostAt := w.Origin().LostEdges()["nrt"]
		if d := lostAt.Sub(start); d < 10*time.Minute || d > 10*time.Minute+30*time.Second {
			t.Fatalf("nrt declared lost %v after the partition, want ten minutes past its lease", d)
		}
		if !holdsAll(w.Edge("kix"), want) {
			t.Fatal("kix took nrt's place in the plan before holding its replicas")
		}
		publishAckedBy(t, want, "wr", 10, 15, func(k string, body []byte) origin.PublishResult {
			return wanPublish(t, w, k, body, "w=all")
		}, "kix", "lhr")
		if err := w.Heal("nrt"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the operator's plan back in force", func() bool {
			return len(w.Origin().LostEdges()) == 0 && slices.Equal(planReplicas(w.Origin(), "wr/00"), []string{"lhr", "nrt"})
		})
		if !holdsAll(w.Edge("nrt"), want) {
			t.Fatal("kix was let go of the class before nrt held it")
		}
		waitFor(t, "kix unpinning the replicas it no longer owes", func() bool { return holdsNone(w.Edge("kix"), want) })
		for _, id := range []string{"nrt", "lhr", "kix"} {
			wanCheckConverged(t, w, w.Edge(id), want)
		}
	})
}
