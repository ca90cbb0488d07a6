package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/geocdn/geocdn/origin"
)

// Anti-entropy with the real binaries as separate processes: blob files
// deleted from an edge's disk behind its back are restored by one
// `geocdn resync`, the report says what it found, and every body served
// afterwards matches its ETag. An unknown edge is a clear error.
func TestResyncProcess(t *testing.T) {
	c := newCluster(t)
	e := c.addEdge("fra", "eu-central", 50.11, 8.68)
	c.start()
	digests := map[string]string{}
	for i := range 30 {
		key := fmt.Sprintf("ae/%02d.txt", i)
		body := []byte(strings.Repeat(fmt.Sprintf("resync %d ", i), 40+i))
		c.mustPublish(key, body, "w=all")
		digests[key] = digestOf(body)
	}
	removed := 0
	for _, d := range digests {
		if removed == 20 {
			break
		}
		if err := os.Remove(filepath.Join(e.data, "blobs", d[:2], d)); err != nil {
			t.Fatal(err)
		}
		removed++
	}
	cli := []string{"--origin", c.originURL(), "--token-file", c.tokenFile}
	out := mustCLI(t, append([]string{"resync", "--edge", "fra", "--json"}, cli...)...)
	var reps []origin.ResyncStatus
	if err := json.Unmarshal([]byte(out), &reps); err != nil {
		t.Fatalf("resync --json: %v\n%s", err, out)
	}
	if len(reps) != 1 || reps[0].Edge != "fra" || reps[0].Missing != 20 || reps[0].Failed != 0 || reps[0].Outcome != "repaired" {
		t.Fatalf("resync report %+v, want fra repaired with 20 missing", reps)
	}
	for key, d := range digests {
		if !c.edgeServes(e, key, d) {
			t.Fatalf("fra does not serve %s with digest %s after the resync", key, d)
		}
		if _, err := os.Stat(filepath.Join(e.data, "blobs", d[:2], d)); err != nil {
			t.Fatalf("content of %s not back on fra's disk: %v", key, err)
		}
	}
	// A second resync finds nothing, and status shows it.
	out = mustCLI(t, append([]string{"resync"}, cli...)...)
	if !strings.Contains(out, "in-sync") {
		t.Fatalf("second resync:\n%s", out)
	}
	if st := mustCLI(t, append([]string{"status"}, cli...)...); !strings.Contains(st, "in-sync") {
		t.Fatalf("status does not show the last resync:\n%s", st)
	}
	_, stderr, err := runCLI(t, append([]string{"resync", "--edge", "nope"}, cli...)...)
	if err == nil || !strings.Contains(stderr, `no edge "nope"`) {
		t.Fatalf("resync of an unknown edge: err %v, stderr %q", err, stderr)
	}
}

// Log compaction and snapshot catch-up with the real binaries on the real
// clock: an edge is stopped, the log moves far past --log-retention, the
// origin restarts (and compacts as it starts), and the returning edge
// catches up by snapshot. Objects deleted meanwhile answer 404 there, the
// others are served with their digests, and the origin records the
// edge's snapshot report.
func TestSnapshotCatchUpProcess(t *testing.T) {
	c := newCluster(t)
	e := c.addEdge("fra", "eu-central", 50.11, 8.68)
	c.start("--log-retention", "20")
	digests := map[string]string{}
	publish := func(key, body string) {
		c.mustPublish(key, []byte(body), "")
		digests[key] = digestOf([]byte(body))
	}
	for i := range 10 {
		publish(fmt.Sprintf("snap/%02d", i), fmt.Sprintf("first %d", i))
	}
	waitFor(t, "fra holds every first version", func() bool {
		for k, d := range digests {
			if !c.edgeServes(e, k, d) {
				return false
			}
		}
		return true
	}, e.p)
	e.p.signal(t, syscall.SIGTERM)
	e.p.wait(t)
	for i := range 5 {
		key := fmt.Sprintf("snap/%02d", i)
		if _, _, err := runCLI(t, "delete", "--origin", c.originURL(), "--token-file", c.tokenFile, key); err != nil {
			t.Fatalf("delete %s: %v", key, err)
		}
		digests[key] = ""
	}
	for i := 5; i < 60; i++ {
		publish(fmt.Sprintf("snap/%02d", i), fmt.Sprintf("second %d", i))
	}
	c.origin.signal(t, syscall.SIGTERM)
	c.origin.wait(t)
	c.startOrigin()
	// The origin compacts as it starts, on its own goroutine: wait for it.
	waitFor(t, "the restarted origin compacting its log past the edge's watermark", func() bool {
		return c.originMetric("geocdn_origin_log_first_lsn") > 15
	}, c.origin)
	c.startEdge(e)
	c.waitEdgeHealthy(e)
	waitFor(t, "fra caught up: deleted keys 404, the rest at the origin's versions", func() bool {
		for k, d := range digests {
			if !c.edgeServes(e, k, d) {
				return false
			}
		}
		return true
	}, e.p, c.origin)
	waitFor(t, "origin records fra's snapshot catch-up", func() bool {
		for _, st := range c.edgesStatus() {
			if st.ID == "fra" && st.LastResync != nil && st.LastResync.Snapshot && st.LastResync.Outcome == "repaired" {
				return true
			}
		}
		return false
	}, c.origin)
}

// Replica recovery with the real binaries on the real clock: an edge the
// plan gives every object is stopped for longer than --reassign-after;
// the origin places its replicas on the nearest other edge, which serves
// them, and publishes with w=all no longer wait for the stopped edge.
// Restarted, the edge gets back what the operator's plan owes it, with
// what was published while it was away, and the plan in force is the
// operator's again.
func TestReplicaRecoveryProcess(t *testing.T) {
	c := newCluster(t)
	lhr := c.addEdge("lhr", "eu-west", 51.51, -0.13)
	nrt := c.addEdge("nrt", "ap-northeast", 35.68, 139.69)
	kix := c.addEdge("kix", "ap-northeast-3", 34.69, 135.50)
	c.start("--lease", "1s", "--reassign-after", "2s")
	plan := filepath.Join(c.dir, "plan.json")
	if err := os.WriteFile(plan, []byte(`{"version": 1, "seed": 0, "objective": {"name": "", "mean_rtt_ms": 0, "min_replicas": 2, "max_replicas": 2},
		"classes": [{"name": "all", "prefixes": [""], "replicas": ["nrt", "lhr"]}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cli := []string{"--origin", c.originURL(), "--token-file", c.tokenFile}
	mustCLI(t, append(append([]string{"placement", "apply"}, cli...), plan)...)
	digests := map[string]string{}
	publish := func(i int) origin.PublishResult {
		key := fmt.Sprintf("rr/%02d.txt", i)
		body := []byte(strings.Repeat(fmt.Sprintf("recovery %d ", i), 30+i))
		digests[key] = digestOf(body)
		return c.mustPublish(key, body, "w=all")
	}
	for i := range 10 {
		publish(i)
	}
	planGives := func() string {
		g, err := c.get(c.originURL()+"/v1/placement", true)
		if err != nil || g.status != 200 {
			return ""
		}
		var p struct {
			Classes []struct{ Replicas []string }
		}
		if json.Unmarshal(g.body, &p) != nil || len(p.Classes) != 1 {
			return ""
		}
		r := p.Classes[0].Replicas
		slices.Sort(r)
		return strings.Join(r, ",")
	}
	nrt.p.signal(t, syscall.SIGTERM)
	nrt.p.wait(t)
	waitFor(t, "the origin placing nrt's replicas on kix", func() bool { return planGives() == "kix,lhr" }, c.origin)
	if st := mustCLI(t, append([]string{"status"}, cli...)...); !strings.Contains(st, "lost") {
		t.Fatalf("status does not show nrt lost:\n%s", st)
	}
	for k, d := range digests {
		if !c.edgeServes(kix, k, d) {
			t.Fatalf("kix does not serve %s with digest %s", k, d)
		}
	}
	for i := 10; i < 13; i++ {
		if res := publish(i); strings.Join(slices.Sorted(slices.Values(res.Acked)), ",") != "kix,lhr" {
			t.Fatalf("w=all acked by %v, want kix and lhr", res.Acked)
		}
	}
	c.startEdge(nrt)
	c.waitEdgeHealthy(nrt)
	waitFor(t, "the operator's plan back in force", func() bool {
		return planGives() == "lhr,nrt" && c.originMetric("geocdn_origin_edges_lost") == 0
	}, c.origin, nrt.p)
	for k, d := range digests {
		for _, e := range []*edgeNode{nrt, lhr} {
			if !c.edgeServes(e, k, d) {
				t.Fatalf("%s does not serve %s with digest %s", e.id, k, d)
			}
		}
	}
	if v := c.originMetric("geocdn_origin_edges_lost_total"); v != 1 {
		t.Fatalf("geocdn_origin_edges_lost_total = %v, want 1", v)
	}
}
