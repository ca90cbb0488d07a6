package cluster

import (
	"sync/atomic"
	"testing"
	"time"
)

// A strong write with one edge cut off returns only once that edge's lease
// has run out, and reads at the other edges never go back in time: no read
// that starts after the write returned, or after another read saw the new
// version, sees the old one.
func TestStrongWriteWaitsForLeasesAndReadsStayLinear(t *testing.T) {
	c := startCluster(t, Config{LeaseTerm: time.Second})
	mustPublish(t, c, "strong.txt", []byte("v1"), "consistency=strong&w=all")
	for _, e := range c.Edges() {
		if g := get(t, e.URL+"/strong.txt", nil); g.status != 200 || string(g.body) != "v1" {
			t.Fatalf("%s: v1 read: %d %q", e.Spec.ID, g.status, g.body)
		}
	}
	cut := c.Edges()[2]
	if err := c.KillEdge(2); err != nil {
		t.Fatal(err)
	}
	var returned atomic.Int64 // unix nanos when the write returned
	var res publishAnswer
	done := make(chan struct{})
	go func() {
		defer close(done)
		res = publish(t, c, "strong.txt", []byte("v2"), "consistency=strong", map[string]string{"Content-Type": "text/plain"})
		returned.Store(time.Now().UnixNano())
	}()

	var newSeenEnd int64 // when the first read that saw v2 ended
	reads := 0
	for {
		for _, e := range c.Edges()[:2] {
			start := time.Now().UnixNano()
			g := get(t, e.URL+"/strong.txt", nil)
			end := time.Now().UnixNano()
			reads++
			if g.status != 200 {
				t.Fatalf("%s: status %d during the write (Cache-Status %q)", e.Spec.ID, g.status, g.hdr.Get("Cache-Status"))
			}
			switch string(g.body) {
			case "v2":
				if newSeenEnd == 0 {
					newSeenEnd = end
				}
			case "v1":
				if r := returned.Load(); r != 0 && start > r {
					t.Fatalf("%s: read started after the strong write returned and saw v1", e.Spec.ID)
				}
				if newSeenEnd != 0 && start > newSeenEnd {
					t.Fatalf("%s: read saw v1 after another read had seen v2", e.Spec.ID)
				}
			default:
				t.Fatalf("%s: body %q", e.Spec.ID, g.body)
			}
		}
		select {
		case <-done:
		default:
			continue
		}
		break
	}
	if res.status != 201 {
		t.Fatalf("strong write: status %d (%+v)", res.status, res.res)
	}
	for _, st := range c.Origin().Edges() {
		if st.ID == cut.Spec.ID && time.Unix(0, returned.Load()).Before(st.LeaseExpires) {
			t.Fatalf("strong write returned at %v while %s's lease ran until %v", time.Unix(0, returned.Load()), st.ID, st.LeaseExpires)
		}
	}
	for _, e := range c.Edges()[:2] {
		if g := get(t, e.URL+"/strong.txt", nil); string(g.body) != "v2" {
			t.Fatalf("%s after the write: %q, want v2", e.Spec.ID, g.body)
		}
	}
	t.Logf("%d reads during the write", reads)
}
