package cluster

import (
	"encoding/json"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/geocdn/geocdn/origin"
)

// listedScrub is edge id's scrub progress in the origin's GET /v1/edges,
// nil if the origin does not answer or lists none.
func listedScrub(t *testing.T, c *Cluster, id string) *origin.ScrubProgress {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.OriginURL()+"/v1/edges", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil // restarting
	}
	defer resp.Body.Close()
	var rows []origin.EdgeStatus
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&rows) != nil {
		return nil
	}
	for _, row := range rows {
		if row.ID == id {
			return row.Scrub
		}
	}
	return nil
}

// Fault 2 as an operator sees it: blob files rot on an edge's disk, and
// after the edge's next scrub pass the origin's GET /v1/edges reports the
// pass with the blobs it found corrupt, while another edge's pass is
// clean. A restarted origin learns it again as soon as the edge
// reconnects.
func TestOriginListsEdgeScrubProgress(t *testing.T) {
	c := startCluster(t, Config{Edges: threeEdges[:2]})
	bodies := resyncObjects(t, c, 20)
	en, other := c.Edges()[0], c.Edges()[1]
	// Each edge's first pass ran at its start.
	for _, n := range c.Edges() {
		waitFor(t, n.Spec.ID+"'s first scrub pass listed", func() bool {
			p := listedScrub(t, c, n.Spec.ID)
			return p != nil && p.LastFullPass >= 1
		})
	}

	keys := slices.Sorted(maps.Keys(bodies))
	for _, key := range keys[:3] {
		d := digestOf(bodies[key])
		flipBit(t, filepath.Join(en.Dir(), "blobs", d[:2], d))
	}
	e := en.Edge()
	before := e.ScrubStatus()
	e.ScrubNow()
	var p *origin.ScrubProgress
	waitFor(t, "the origin listing "+en.Spec.ID+"'s pass after the flips", func() bool {
		p = listedScrub(t, c, en.Spec.ID)
		return p != nil && !p.Running && p.LastFullPass > uint64(before.Pass)
	})
	st := e.ScrubStatus()
	if p.LastFullPass != uint64(st.LastFullPass) || p.LastFullPassCorrupt != 3 || p.PassCorrupt != 3 ||
		p.CorruptTotal != uint64(before.CorruptTotal)+3 || p.Progress != 1 {
		t.Fatalf("origin lists %+v; want the edge's pass %d done with 3 corrupt blobs (%+v)", *p, st.LastFullPass, st)
	}
	if p.PassTotalBlobs != uint64(st.PassTotalBlobs) || p.PassTotalBlobs < 20 || p.PassBytes != p.PassTotalBytes {
		t.Fatalf("origin lists %+v; want every one of the edge's %d blobs checked", *p, st.PassTotalBlobs)
	}
	if !p.LastPassFinished.Equal(st.LastPassFinished.Truncate(time.Millisecond)) {
		t.Fatalf("origin lists the pass ended at %v, the edge says %v", p.LastPassFinished, st.LastPassFinished)
	}
	if q := listedScrub(t, c, other.Spec.ID); q == nil || q.LastFullPassCorrupt != 0 || q.CorruptTotal != 0 {
		t.Fatalf("origin lists %s's scrubbing as %+v, want clean", other.Spec.ID, q)
	}

	// The origin keeps reports in memory only; the edge repeats its own
	// when it reconnects.
	if err := c.RestartOrigin(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the restarted origin listing "+en.Spec.ID+"'s scrubbing", func() bool {
		q := listedScrub(t, c, en.Spec.ID)
		return q != nil && q.LastFullPass == p.LastFullPass && q.LastFullPassCorrupt == 3
	})
}
