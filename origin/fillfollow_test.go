package origin

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	edgenode "github.com/geocdn/geocdn/edge"
	"github.com/geocdn/geocdn/internal/pki"
	"github.com/geocdn/geocdn/internal/wire"
)

// fillRequests reads geocdn_edge_fill_requests_total{to=to} from reg.
func fillRequests(t *testing.T, reg *prometheus.Registry, to string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "geocdn_edge_fill_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "to" && l.GetValue() == to {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no geocdn_edge_fill_requests_total{to=%q}", to)
	return 0
}

// TestFollowersServeFills: edges given every origin of a cluster follow
// the leader's log and fill by digest from a follower over a fill
// connection. Each object is pushed to one of two edges (--replicas 1) and
// asked of the other. Content the follower lacks it declines, and the
// leader serves it; a follower never answers for the current version.
func TestFollowersServeFills(t *testing.T) {
	tc := newTestClusterWith(t, 3, func(c *Config) { c.Replicas = 1 })
	l := tc.leader()
	leader := tc.nodes[l]
	var origins []net.Addr
	for _, n := range tc.nodes {
		origins = append(origins, n.QUICAddr())
	}
	edges := map[string]*edgenode.Edge{}
	regs := map[string]*prometheus.Registry{}
	for _, id := range []string{"e1", "e2"} {
		edges[id], regs[id] = startEdgeWith(t, leader, id, func(c *edgenode.Config) { c.Origin = nil; c.Origins = origins })
	}
	for id, e := range edges {
		eventually(t, id+" filling from a follower", func() bool {
			f := e.FillOrigin()
			return f != "" && f != leader.cfg.ID
		})
	}

	type object struct {
		body   []byte
		holder string
	}
	objects := map[string]object{}
	var last uint64
	for i := range 8 {
		body := []byte(fmt.Sprintf("small %d", i))
		if i%2 == 1 {
			body = bytes.Repeat([]byte(fmt.Sprintf("staged %d ", i)), maxInline/8) // a blob file of its own
		}
		key := fmt.Sprintf("f/%d", i)
		code, res := leader.publish(t, key, body, "w=1")
		if code != http.StatusCreated || len(res.Replicas) != 1 {
			t.Fatalf("publish %s: %d %+v", key, code, res)
		}
		objects[key] = object{body, res.Replicas[0]}
		last = res.LSN
	}
	tc.converged(last)
	for id, e := range edges {
		eventually(t, id+" at the last LSN", func() bool { return e.Watermark() >= last })
	}

	// The followers lose one staged blob: they decline that fill.
	lost := "f/3"
	ent, err := leader.store.get("default", lost)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range tc.nodes {
		if i != l {
			if err := os.Remove(n.store.blobPath(ent.Digest)); err != nil {
				t.Fatal(err)
			}
		}
	}

	for key, obj := range objects {
		other := "e1"
		if obj.holder == "e1" {
			other = "e2"
		}
		resp, err := http.Get("http://" + edges[other].HTTPAddr().String() + "/" + key)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Equal(got, obj.body) {
			t.Fatalf("GET %s from %s: %d, %d bytes, want %d", key, other, resp.StatusCode, len(got), len(obj.body))
		}
	}
	sum := func(to string) float64 { return fillRequests(t, regs["e1"], to) + fillRequests(t, regs["e2"], to) }
	if f, d, l := sum("follower"), sum("follower_declined"), sum("leader"); f != float64(len(objects)-1) || d != 1 || l != 1 {
		t.Fatalf("fills answered by followers %v, declined %v, sent to the leader %v; want %d, 1, 1", f, d, l, len(objects)-1)
	}

	via := tc.nodes[tc.follower(l)]
	small, err := via.store.get("default", "f/0")
	if err != nil {
		t.Fatal(err)
	}
	// Asked for the current version, a follower declines; asked by
	// digest, it serves what it holds. Any edge the cluster CA vouches
	// for may ask, one that never connected to the leader included.
	conn := newRawClient(t, via).mustDial(t, via.issue(t, pki.RoleEdge, "e3"))
	if _, f, err := exchange(t, conn, wire.AppendFrame(nil, hello(wire.ConnFill, "e3")), true); err != nil {
		t.Fatal(err)
	} else if _, ok := f.(wire.Welcome); !ok {
		t.Fatalf("a follower answered a fill connection's hello with %+v", f)
	}
	for _, c := range []struct {
		req  wire.FillRequest
		want wire.FillStatus
	}{
		{wire.FillRequest{Namespace: "default", Key: "f/0"}, wire.FillError},
		{wire.FillRequest{Namespace: "default", Key: "f/0", Digest: small.Digest}, wire.FillOK},
		{wire.FillRequest{Namespace: "default", Key: lost, Digest: ent.Digest}, wire.FillError},
	} {
		_, f, err := exchange(t, conn, wire.AppendFrame(nil, c.req), true)
		if resp, ok := f.(wire.FillResponse); err != nil || !ok || resp.Status != c.want {
			t.Fatalf("follower asked for %+v answered %+v, %v; want status %v", c.req, f, err, c.want)
		}
	}
}
