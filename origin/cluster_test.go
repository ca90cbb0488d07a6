package origin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/geocdn/geocdn/internal/pki"
	"github.com/geocdn/geocdn/internal/wire"
)

// testCluster is a cluster of origins on loopback, each with its own data
// directory and cluster port, sharing one CA.
type testCluster struct {
	t     testing.TB
	ca    *pki.CA
	token string
	peers []Peer
	dirs  []string
	nodes []*testOrigin // nil while stopped
	// mod, when set, changes each node's configuration before it starts.
	mod func(*Config)
}

func newTestCluster(t testing.TB, n int) *testCluster {
	return newTestClusterWith(t, n, nil)
}

// newTestClusterWith is newTestCluster with every node's configuration
// changed by mod.
func newTestClusterWith(t testing.TB, n int, mod func(*Config)) *testCluster {
	t.Helper()
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tc := &testCluster{t: t, ca: ca, token: "test-token-0123456789abcdef", mod: mod}
	lns := make([]net.Listener, n)
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
		tc.peers = append(tc.peers, Peer{ID: fmt.Sprintf("o%d", i+1), Raft: ln.Addr().String()})
		tc.dirs = append(tc.dirs, t.TempDir())
	}
	tc.nodes = make([]*testOrigin, n)
	for i := range n {
		tc.start(i, lns[i])
	}
	return tc
}

// start starts node i on ln, or on a new listener at its address.
func (tc *testCluster) start(i int, ln net.Listener) {
	t := tc.t
	t.Helper()
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", tc.peers[i].Raft); err != nil {
			t.Fatal(err)
		}
	}
	id := tc.peers[i].ID
	cert, err := tc.ca.Issue(pki.Identity{Role: pki.RoleOrigin, ID: id}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		ID: id, DataDir: tc.dirs[i], HTTPAddr: "127.0.0.1:0", QUICAddr: "127.0.0.1:0",
		RaftListener: ln, Peers: tc.peers, RaftTimeout: 200 * time.Millisecond,
		CA: tc.ca, Cert: cert, Token: tc.token, Logger: quicTestLogger(t).With("node", id),
	}
	if tc.mod != nil {
		tc.mod(&cfg)
	}
	o, err := New(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	to := &testOrigin{Origin: o, ca: tc.ca, token: tc.token, events: &eventLog{}}
	to.run(t)
	tc.nodes[i] = to
}

func (tc *testCluster) stop(i int) {
	tc.nodes[i].stop()
	tc.nodes[i] = nil
}

// leader waits for one running node to lead and returns its index.
func (tc *testCluster) leader() int {
	tc.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for i, n := range tc.nodes {
			if n != nil && n.isLeader() {
				return i
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	tc.t.Fatal("no leader within 20 s")
	return -1
}

// follower returns a running node other than the leader.
func (tc *testCluster) follower(leader int) int {
	for i, n := range tc.nodes {
		if n != nil && i != leader {
			return i
		}
	}
	tc.t.Fatal("no running follower")
	return -1
}

// converged waits until every running node has applied LSN lsn and holds
// every blob its catalog names.
func (tc *testCluster) converged(lsn uint64) {
	tc.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok := true
		for _, n := range tc.nodes {
			if n == nil {
				continue
			}
			missing, _ := n.store.missingBlobs()
			ok = ok && n.LastLSN() >= lsn && len(missing) == 0
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			for _, n := range tc.nodes {
				if n != nil {
					missing, _ := n.store.missingBlobs()
					tc.t.Logf("%s: lsn %d, %d blobs missing", n.cfg.ID, n.LastLSN(), len(missing))
				}
			}
			tc.t.Fatalf("nodes did not converge on lsn %d within 20 s", lsn)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestClusterReplicatesAndForwards: a three-origin cluster. A publish sent
// to a follower is forwarded to the leader; small and staged content
// reaches every origin, and every catalog has the same entries under the
// same LSNs. Followers answer reads from their own catalog. The leader
// stops: another takes over, writes go on, and the old leader, restarted,
// catches up.
func TestClusterReplicatesAndForwards(t *testing.T) {
	tc := newTestCluster(t, 3)
	l := tc.leader()
	f := tc.nodes[tc.follower(l)]

	small := []byte("small content, inside the raft entry")
	large := bytes.Repeat([]byte("staged content "), maxInline/8)
	code, r1 := f.publish(t, "a/small", small, "")
	if code != http.StatusCreated {
		t.Fatalf("publish via a follower: %d %+v", code, r1)
	}
	code, r2 := f.publish(t, "a/large", large, "")
	if code != http.StatusCreated || r2.LSN != r1.LSN+1 {
		t.Fatalf("publish of staged content via a follower: %d %+v (first lsn %d)", code, r2, r1.LSN)
	}
	tc.converged(r2.LSN)
	for _, n := range tc.nodes {
		for key, body := range map[string][]byte{"a/small": small, "a/large": large} {
			ent, err := n.store.get("default", key)
			if err != nil {
				t.Fatalf("%s: %s: %v", n.cfg.ID, key, err)
			}
			if ent.Digest != wire.Digest(sha256.Sum256(body)) {
				t.Errorf("%s: %s has digest %s", n.cfg.ID, key, ent.Digest)
			}
			if !n.store.holds(ent.Digest) {
				t.Errorf("%s: %s: blob not held intact", n.cfg.ID, key)
			}
		}
	}
	// A follower answers a read from its own catalog.
	if got := getObject(t, f, "a/large", ""); !bytes.Equal(got, large) {
		t.Fatalf("read on a follower: %d bytes, want %d", len(got), len(large))
	}
	// consistent=true goes through the leader.
	if got := getObject(t, f, "a/small", "consistent=true"); !bytes.Equal(got, small) {
		t.Fatalf("consistent read via a follower: %q", got)
	}

	// The leader goes; another takes over and writes go on.
	tc.stop(l)
	l2 := tc.leader()
	code, r3 := tc.nodes[l2].publish(t, "b/after", []byte("after the leader went"), "")
	if code != http.StatusCreated || r3.LSN != r2.LSN+1 {
		t.Fatalf("publish on the new leader: %d %+v, want lsn %d", code, r3, r2.LSN+1)
	}
	// The old leader comes back and catches up.
	tc.start(l, nil)
	tc.converged(r3.LSN)
	if ent, err := tc.nodes[l].store.get("default", "b/after"); err != nil || ent.LSN != r3.LSN {
		t.Fatalf("restarted origin: %+v %v, want lsn %d", ent, err, r3.LSN)
	}
}

func getObject(t *testing.T, to *testOrigin, key, query string) []byte {
	t.Helper()
	u := "http://" + to.HTTPAddr().String() + objectsPrefix + key
	if query != "" {
		u += "?" + query
	}
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+to.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s on %s: %d %s", key, to.cfg.ID, resp.StatusCode, b)
	}
	return b
}

// TestClusterSelfInfo: members learn each other's edge and admin
// addresses, which followers hand to edges and publishers.
func TestClusterSelfInfo(t *testing.T) {
	tc := newTestCluster(t, 3)
	l := tc.leader()
	f := tc.nodes[tc.follower(l)]
	leaderID := tc.nodes[l].cfg.ID
	deadline := time.Now().Add(20 * time.Second)
	for f.edgeAddrOf(raftID(leaderID)) != tc.nodes[l].QUICAddr().String() {
		if time.Now().After(deadline) {
			t.Fatalf("follower knows the leader's edge address as %q, want %s", f.edgeAddrOf(raftID(leaderID)), tc.nodes[l].QUICAddr())
		}
		time.Sleep(10 * time.Millisecond)
	}
	si, err := f.peerSelf(context.Background(), leaderID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(si)
	if si.ID != leaderID || si.Raft.State != "Leader" || si.HTTP != tc.nodes[l].HTTPAddr().String() {
		t.Fatalf("leader's self info: %s", b)
	}
}

func raftID(id string) raft.ServerID { return raft.ServerID(id) }

// TestClusterFollowerRebuiltFromSnapshot: a follower that lost its data
// directory is given the leader's raft snapshot (the leader's log no
// longer reaches back far enough) and fetches every blob the snapshot's
// catalog names from the other origins.
func TestClusterFollowerRebuiltFromSnapshot(t *testing.T) {
	tc := newTestCluster(t, 3)
	l := tc.leader()
	leader := tc.nodes[l]
	var last uint64
	bodies := map[string][]byte{}
	for i := range 12 {
		body := bytes.Repeat([]byte{byte('a' + i)}, 1000+i*(maxInline/4)) // inline and staged
		key := fmt.Sprintf("snap/%d", i)
		code, res := leader.publish(t, key, body, "")
		if code != http.StatusCreated {
			t.Fatalf("publish: %d %+v", code, res)
		}
		bodies[key], last = body, res.LSN
	}
	tc.converged(last)
	// No origin keeps log behind its snapshot, so whichever leads when
	// the follower comes back (leadership may move on a loaded machine)
	// must send it a snapshot.
	f := tc.follower(l)
	for i, n := range tc.nodes {
		if i == f {
			continue
		}
		rc := n.raft.r.ReloadableConfig()
		rc.TrailingLogs = 0
		if err := n.raft.r.ReloadConfig(rc); err != nil {
			t.Fatal(err)
		}
		if err := n.raft.r.Snapshot().Error(); err != nil {
			t.Fatal(err)
		}
		if first, _ := n.raft.logs.FirstIndex(); first == 1 {
			t.Fatalf("%s's log still starts at 1 after the snapshot", n.cfg.ID)
		}
	}
	tc.stop(f)
	if err := os.RemoveAll(tc.dirs[f]); err != nil {
		t.Fatal(err)
	}
	tc.start(f, nil)
	tc.converged(last)
	n := tc.nodes[f]
	// Raft records the installed snapshot just after the catalog restored
	// from it shows the LSNs converged looks for.
	deadline := time.Now().Add(20 * time.Second)
	for idx := n.raft.r.Stats()["last_snapshot_index"]; idx == "" || idx == "0"; idx = n.raft.r.Stats()["last_snapshot_index"] {
		if time.Now().After(deadline) {
			t.Fatalf("the rebuilt follower did not install a snapshot (last_snapshot_index %q)", idx)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for key, body := range bodies {
		ent, err := n.store.get("default", key)
		if err != nil {
			t.Fatalf("rebuilt follower: %s: %v", key, err)
		}
		if !n.store.holds(ent.Digest) || ent.Size != uint64(len(body)) {
			t.Fatalf("rebuilt follower: %s: blob not brought", key)
		}
	}
	if n.LastLSN() != leader.LastLSN() {
		t.Fatalf("rebuilt follower at lsn %d, leader at %d", n.LastLSN(), leader.LastLSN())
	}
}

// TestClusterMinorityNeverAcknowledges: an origin cut off from the other
// two (here: they are stopped) commits nothing, so it never answers a
// write with success, whether it led or not; it says nothing was written
// or that the outcome is unknown.
func TestClusterMinorityNeverAcknowledges(t *testing.T) {
	for _, wasLeader := range []bool{false, true} {
		tc := newTestCluster(t, 3)
		l := tc.leader()
		keep := tc.follower(l)
		if wasLeader {
			keep = l
		}
		lone := tc.nodes[keep]
		for i := range tc.nodes {
			if i != keep {
				tc.stop(i)
			}
		}
		before := lone.LastLSN()
		for i := range 3 {
			code, res, err := lone.tryPublish(fmt.Sprintf("lone/%d", i), []byte("never acknowledged"), "")
			if err != nil {
				t.Fatal(err)
			}
			if code/100 == 2 || res.Committed {
				t.Fatalf("an origin without a quorum answered %d %+v", code, res)
			}
			if code != http.StatusServiceUnavailable && code != http.StatusInternalServerError && code != http.StatusBadGateway {
				t.Fatalf("an origin without a quorum answered %d %+v, want 503, or 500 or 502 with the outcome unknown", code, res)
			}
		}
		if lone.LastLSN() != before {
			t.Fatalf("the lone origin applied entries: lsn %d, was %d", lone.LastLSN(), before)
		}
	}
}

// TestClusterRefusesCertificateForAnotherID: an origin given the
// certificate of another id does not start its cluster port.
func TestClusterRefusesCertificateForAnotherID(t *testing.T) {
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(pki.Identity{Role: pki.RoleOrigin, ID: "o3"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{
		ID: "o2", DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", QUICAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		CA: ca, Cert: cert, Token: "test-token-0123456789abcdef", Logger: quicTestLogger(t),
	})
	if err == nil || !strings.Contains(err.Error(), "o3") || !strings.Contains(err.Error(), "o2") {
		t.Fatalf("New with o3's certificate as o2: %v, want an error naming both", err)
	}
}
