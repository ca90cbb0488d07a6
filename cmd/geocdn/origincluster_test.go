package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/ready"
	"github.com/geocdn/geocdn/origin"
)

// testRaftTimeout is the election timeout of the process clusters: short,
// so failovers are quick, yet long enough for a loaded 2-core machine.
const testRaftTimeout = "500ms"

// originNode is one origin process of a cluster.
type originNode struct {
	id               string
	data, readyFile  string
	http, quic, raft string
	cert, key        string
	p                *proc
	starts           int
	join             string // admin URL to join, "" for the first
}

func (o *originNode) url() string { return "http://" + o.http }

// startOrigins starts n origins as one cluster: the first alone, the
// others joining it, all on ports the kernel picks; edges are then given
// every origin's QUIC address.
func (c *procCluster) startOrigins(n int, extra ...string) []*originNode {
	t := c.t
	t.Helper()
	var nodes []*originNode
	for i := range n {
		o := &originNode{id: fmt.Sprintf("o%d", i+1)}
		o.data = filepath.Join(c.dir, "origin-"+o.id)
		o.readyFile = filepath.Join(c.dir, "origin-"+o.id+".ready.json")
		o.cert, o.key = c.pki.issue(t, "origin", o.id)
		if i > 0 {
			o.join = nodes[0].url()
		}
		c.startOriginNode(o, extra...)
		nodes = append(nodes, o)
	}
	quics := make([]string, n)
	for i, o := range nodes {
		quics[i] = o.quic
	}
	c.originQUIC = strings.Join(quics, ",")
	c.originHTTP = nodes[0].http
	c.originNodes = nodes
	waitFor(t, "every origin a member and caught up", func() bool {
		cs, ok := c.clusterStatus(nodes[0])
		if !ok || len(cs.Members) != n || cs.Leader == "" {
			return false
		}
		for _, m := range cs.Members {
			if m.Error != "" || m.AppliedIndex < cs.Members[0].CommitIndex {
				return false
			}
		}
		return true
	}, nodes[0].p)
	return nodes
}

// startOriginNode starts o, on the addresses it had before if it ran.
func (c *procCluster) startOriginNode(o *originNode, extra ...string) {
	t := c.t
	t.Helper()
	args := append([]string{"origin", "--id", o.id, "--data", o.data, "--ca", c.pki.dir, "--cert", o.cert, "--key", o.key,
		"--token-file", c.tokenFile, "--raft-timeout", testRaftTimeout}, extra...)
	if o.join != "" {
		args = append(args, "--join", o.join)
	}
	name := fmt.Sprintf("origin %s#%d", o.id, o.starts)
	if o.http == "" {
		var f ready.File
		var taken bool
		o.p, f, taken = startNode(t, name, o.readyFile, append(args, "--http", anyPort, "--quic", anyPort, "--raft", anyPort)...)
		if taken {
			t.Fatalf("origin %s could not bind port 0:\n%s", o.id, o.p.out.String())
		}
		o.http, o.quic, o.raft = f.HTTP, f.QUIC, f.Raft
	} else {
		o.p, _ = restartNode(t, name, o.readyFile, append(args, "--http", o.http, "--quic", o.quic, "--raft", o.raft)...)
	}
	o.starts++
}

// clusterStatus is the cluster section of o's GET /v1/status.
func (c *procCluster) clusterStatus(o *originNode) (origin.ClusterStatus, bool) {
	g, err := c.get(o.url()+"/v1/status", true)
	if err != nil || g.status != 200 {
		return origin.ClusterStatus{}, false
	}
	var st origin.Status
	if json.Unmarshal(g.body, &st) != nil {
		return origin.ClusterStatus{}, false
	}
	return st.Cluster, true
}

// leaderOf returns the node that leads, as o reports it, or nil.
func leaderOf(c *procCluster, nodes []*originNode, o *originNode) *originNode {
	cs, ok := c.clusterStatus(o)
	if !ok {
		return nil
	}
	for _, n := range nodes {
		if n.id == cs.Leader {
			return n
		}
	}
	return nil
}

// ackedPublish is one publish an origin acknowledged.
type ackedPublish struct {
	key, digest string
	lsn         uint64
	query       string
}

// TestOriginClusterLeaderKill9: three origin processes and two edges.
// Publishers send w=1 and w=quorum publishes of unique keys to every
// origin in turn (followers forward to the leader) while the leader is
// killed with SIGKILL. Every acknowledged publish is then served by the
// new leader and by every follower under the LSN it was acknowledged
// with (none lost, none applied twice under another LSN), and both edges
// serve it; the killed origin, restarted, catches up.
func TestOriginClusterLeaderKill9(t *testing.T) {
	c := newCluster(t)
	nodes := c.startOrigins(3)
	edges := []*edgeNode{
		c.addEdge("iad", "us-east", 38.90, -77.04),
		c.addEdge("fra", "eu-central", 50.11, 8.68),
	}
	for _, e := range edges {
		c.startEdge(e)
		c.waitEdgeHealthy(e)
	}
	leader := leaderOf(c, nodes, nodes[0])
	if leader == nil {
		t.Fatal("no leader")
	}

	const publishers = 4
	var (
		mu        sync.Mutex
		acked     []ackedPublish
		ackedN    atomic.Int64
		unknown   atomic.Int64
		killed    atomic.Bool
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		afterKill atomic.Int64
	)
	for g := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("k/g%d/%04d", g, i)
				body := randomBytes(rng, 1+rng.IntN(4<<10))
				if rng.IntN(8) == 0 {
					body = randomBytes(rng, 70<<10+rng.IntN(30<<10)) // staged, not inline
				}
				query := "w=1"
				if i%2 == 1 {
					query = "w=quorum"
				}
				to := nodes[(g+i)%len(nodes)]
				a, err := publishTo(c, to, key, body, query)
				if err != nil || a.status != http.StatusCreated {
					if !killed.Load() {
						t.Errorf("publish %s to %s before the kill: %d %+v %v", key, to.id, a.status, a.res, err)
						return
					}
					if n := unknown.Add(1); n%50 == 1 {
						t.Logf("after the kill: publish %s to %s: %d %+v %v", key, to.id, a.status, a.res, err)
					}
					time.Sleep(20 * time.Millisecond)
					continue
				}
				if a.res.Digest != digestOf(body) {
					t.Errorf("publish %s: answered digest %s", key, a.res.Digest)
				}
				mu.Lock()
				acked = append(acked, ackedPublish{key: key, digest: a.res.Digest, lsn: a.res.LSN, query: query})
				mu.Unlock()
				ackedN.Add(1)
				if killed.Load() {
					afterKill.Add(1)
				}
			}
		}()
	}
	waitFor(t, "100 acknowledged publishes", func() bool { return ackedN.Load() >= 100 }, leader.p)
	killed.Store(true)
	killedAt := time.Now()
	leader.p.kill9(t)
	leader.p.wait(t)
	var survivors []*originNode
	for _, n := range nodes {
		if n != leader {
			survivors = append(survivors, n)
		}
	}
	waitFor(t, "100 publishes acknowledged after the kill", func() bool { return afterKill.Load() >= 100 }, survivors[0].p, survivors[1].p)
	firstAck := time.Since(killedAt)
	close(stop)
	wg.Wait()
	if t.Failed() {
		return
	}
	newLeader := leaderOf(c, nodes, survivors[0])
	if newLeader == nil || newLeader == leader {
		t.Fatalf("no new leader after the kill (%v)", newLeader)
	}
	t.Logf("%d publishes acknowledged, %d unanswered or refused around the kill; 100 more acknowledged %v after it; new leader %s",
		len(acked), unknown.Load(), firstAck.Round(time.Millisecond), newLeader.id)

	// Every acknowledged publish is on every surviving origin under the
	// LSN it was acknowledged with, and no two share an LSN.
	lsns := map[uint64]string{}
	for _, a := range acked {
		if prev, dup := lsns[a.lsn]; dup {
			t.Fatalf("LSN %d acknowledged for both %s and %s", a.lsn, prev, a.key)
		}
		lsns[a.lsn] = a.key
	}
	last := uint64(0)
	for _, a := range acked {
		last = max(last, a.lsn)
	}
	// Followers answer reads from their own catalog: wait for both to have
	// applied the last acknowledged LSN.
	waitFor(t, "both surviving origins at the last acknowledged LSN", func() bool {
		cs, ok := c.clusterStatus(newLeader)
		caught := 0
		for _, m := range cs.Members {
			if m.ID != leader.id && m.LSN >= last {
				caught++
			}
		}
		return ok && caught == 2
	}, survivors[0].p, survivors[1].p)
	for _, n := range survivors {
		for _, a := range acked {
			g, err := c.get(n.url()+"/v1/objects/"+a.key, true)
			if err != nil || g.status != 200 || digestOf(g.body) != a.digest || g.hdr.Get(origin.HeaderLSN) != strconv.FormatUint(a.lsn, 10) {
				t.Fatalf("origin %s: %s (%s, acknowledged as lsn %d): status %d lsn %q err %v",
					n.id, a.key, a.query, a.lsn, g.status, g.hdr.Get(origin.HeaderLSN), err)
			}
		}
	}
	// Both edges follow the new leader and serve every acknowledged key.
	for _, e := range edges {
		next := 0
		waitFor(t, e.id+" serving every acknowledged publish", func() bool {
			for ; next < len(acked); next++ {
				if !c.edgeServes(e, acked[next].key, acked[next].digest) {
					return false
				}
			}
			return true
		}, e.p)
	}
	// The killed origin comes back, on its addresses, and catches up.
	c.startOriginNode(leader)
	waitFor(t, leader.id+" caught up after its restart", func() bool {
		cs, ok := c.clusterStatus(leader)
		if !ok {
			return false
		}
		for _, m := range cs.Members {
			if m.ID == leader.id {
				return m.LSN >= last && m.MissingBlobs == 0
			}
		}
		return false
	}, leader.p)
	for _, a := range acked[len(acked)-20:] {
		g, err := c.get(leader.url()+"/v1/objects/"+a.key, true)
		if err != nil || g.status != 200 || digestOf(g.body) != a.digest || g.hdr.Get(origin.HeaderLSN) != strconv.FormatUint(a.lsn, 10) {
			t.Fatalf("restarted %s: %s: status %d lsn %q err %v", leader.id, a.key, g.status, g.hdr.Get(origin.HeaderLSN), err)
		}
	}
}

// publishTo sends PUT /v1/objects/KEY to origin o.
func publishTo(c *procCluster, o *originNode, key string, body []byte, query string) (publishAnswer, error) {
	return c.publishAt(o.url(), key, body, query)
}

// statusOf is o's GET /v1/status.
func (c *procCluster) statusOf(o *originNode) (origin.Status, bool) {
	g, err := c.get(o.url()+"/v1/status", true)
	if err != nil || g.status != 200 {
		return origin.Status{}, false
	}
	var st origin.Status
	return st, json.Unmarshal(g.body, &st) == nil
}

// TestOriginClusterFollowerWiped: a follower process loses its data
// directory and is started again on its addresses: it rejoins, receives
// the log, fetches the content staged on the others, and serves every
// object from its own catalog.
func TestOriginClusterFollowerWiped(t *testing.T) {
	c := newCluster(t)
	nodes := c.startOrigins(3)
	leader := leaderOf(c, nodes, nodes[0])
	if leader == nil {
		t.Fatal("no leader")
	}
	rng := rand.New(rand.NewPCG(9, 9))
	digests := map[string]string{}
	var last uint64
	for i := range 24 {
		body := randomBytes(rng, 100+rng.IntN(2<<10))
		if i%4 == 0 {
			body = randomBytes(rng, 80<<10) // staged, not inline
		}
		key := fmt.Sprintf("wiped/%02d", i)
		a, err := publishTo(c, nodes[i%3], key, body, "")
		if err != nil || a.status != http.StatusCreated {
			t.Fatalf("publish %s: %d %+v %v", key, a.status, a.res, err)
		}
		digests[key], last = a.res.Digest, max(last, a.res.LSN)
	}
	var f *originNode
	for _, n := range nodes {
		if n != leader && n.join != "" {
			f = n
			break
		}
	}
	if f == nil {
		t.Fatal("no follower that joins")
	}
	f.p.kill9(t)
	f.p.wait(t)
	if err := os.RemoveAll(f.data); err != nil {
		t.Fatal(err)
	}
	c.startOriginNode(f)
	waitFor(t, f.id+" caught up from an empty data directory", func() bool {
		cs, ok := c.clusterStatus(leader)
		if !ok {
			return false
		}
		for _, m := range cs.Members {
			if m.ID == f.id {
				return m.LSN >= last && m.MissingBlobs == 0
			}
		}
		return false
	}, f.p)
	for key, d := range digests {
		g, err := c.get(f.url()+"/v1/objects/"+key, true)
		if err != nil || g.status != 200 || digestOf(g.body) != d {
			t.Fatalf("%s after its wipe: %s: status %d err %v", f.id, key, g.status, err)
		}
	}
}

// TestOriginClusterPausedLeader: the leader process is stopped (SIGSTOP)
// with publishes in flight to it, as a leader cut off from the others
// would be. The two others elect a new leader and go on acknowledging
// publishes; then the old leader resumes, finds it leads no more, and
// answers the publishes that waited on it without acknowledging any the
// cluster did not commit. Every acknowledged publish is then on all three
// origins under the LSN it was acknowledged with.
func TestOriginClusterPausedLeader(t *testing.T) {
	c := newCluster(t)
	nodes := c.startOrigins(3)
	old := leaderOf(c, nodes, nodes[0])
	if old == nil {
		t.Fatal("no leader")
	}
	var others []*originNode
	for _, n := range nodes {
		if n != old {
			others = append(others, n)
		}
	}
	// Publishes to the others give up after a while, so they go on while
	// a request forwarded to the stopped leader hangs; those to the old
	// leader wait for it (the client's timeout only guards a hang).
	quick := &http.Client{Timeout: 3 * time.Second}
	t.Cleanup(quick.CloseIdleConnections)

	var (
		mu                sync.Mutex
		acked             []ackedPublish
		ackedN, othersN   atomic.Int64
		fromOld, oldAcked atomic.Int64
		paused, resumed   atomic.Bool
		stop              = make(chan struct{})
		wg                sync.WaitGroup
	)
	publisher := func(g int, toOld bool) {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(uint64(g), 11))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			key := fmt.Sprintf("p/g%d/%04d", g, i)
			body := randomBytes(rng, 1+rng.IntN(2<<10))
			query := "" // acknowledged once committed: there are no edges
			to, client := old, c.http
			if !toOld {
				to, client = others[i%2], quick
			}
			a, err := c.publishVia(client, to.url(), key, body, query)
			if toOld && resumed.Load() {
				fromOld.Add(1)
			}
			if err != nil || a.status != http.StatusCreated {
				if !paused.Load() {
					t.Errorf("publish %s to %s before the pause: %d %+v %v", key, to.id, a.status, a.res, err)
					return
				}
				time.Sleep(10 * time.Millisecond)
				continue
			}
			mu.Lock()
			acked = append(acked, ackedPublish{key: key, digest: a.res.Digest, lsn: a.res.LSN, query: query})
			mu.Unlock()
			ackedN.Add(1)
			if toOld && paused.Load() {
				oldAcked.Add(1)
			}
			if !toOld && paused.Load() && !resumed.Load() {
				othersN.Add(1)
			}
		}
	}
	for g := range 4 {
		wg.Add(1)
		go publisher(g, g < 2)
	}
	waitFor(t, "50 acknowledged publishes", func() bool { return ackedN.Load() >= 50 }, old.p)
	paused.Store(true)
	old.p.signal(t, syscall.SIGSTOP)
	t.Cleanup(func() { old.p.signal(t, syscall.SIGCONT) })
	var next *originNode
	waitFor(t, "a new leader among the others", func() bool {
		next = leaderOf(c, nodes, others[0])
		return next != nil && next != old
	}, others[0].p, others[1].p)
	waitFor(t, "30 publishes acknowledged while the old leader is stopped", func() bool { return othersN.Load() >= 30 }, others[0].p, others[1].p)
	resumed.Store(true)
	old.p.signal(t, syscall.SIGCONT)
	waitFor(t, old.id+" following "+next.id, func() bool {
		l := leaderOf(c, nodes, old)
		return l != nil && l != old
	}, old.p)
	waitFor(t, "the publishes that waited on the old leader answered", func() bool { return fromOld.Load() >= 4 }, old.p)
	close(stop)
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d publishes acknowledged; %d while %s was stopped; %d answers from %s after it resumed, %d of them acknowledged",
		len(acked), othersN.Load(), old.id, fromOld.Load(), old.id, oldAcked.Load())

	lsns := map[uint64]string{}
	var last uint64
	for _, a := range acked {
		if prev, dup := lsns[a.lsn]; dup {
			t.Fatalf("LSN %d acknowledged for both %s and %s", a.lsn, prev, a.key)
		}
		lsns[a.lsn] = a.key
		last = max(last, a.lsn)
	}
	waitFor(t, "every origin at the last acknowledged LSN", func() bool {
		cs, ok := c.clusterStatus(next)
		caught := 0
		for _, m := range cs.Members {
			if m.LSN >= last {
				caught++
			}
		}
		return ok && caught == 3
	}, old.p, others[0].p, others[1].p)
	for _, n := range nodes {
		for _, a := range acked {
			g, err := c.get(n.url()+"/v1/objects/"+a.key, true)
			if err != nil || g.status != 200 || digestOf(g.body) != a.digest || g.hdr.Get(origin.HeaderLSN) != strconv.FormatUint(a.lsn, 10) {
				t.Fatalf("origin %s: %s (%s, acknowledged as lsn %d): status %d lsn %q err %v",
					n.id, a.key, a.query, a.lsn, g.status, g.hdr.Get(origin.HeaderLSN), err)
			}
		}
	}
}
