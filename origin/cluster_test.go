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
	"sync"
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
}

func newTestCluster(t testing.TB, n int) *testCluster {
	t.Helper()
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tc := &testCluster{t: t, ca: ca, token: "test-token-0123456789abcdef"}
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
	o, err := New(Config{
		ID: id, DataDir: tc.dirs[i], HTTPAddr: "127.0.0.1:0", QUICAddr: "127.0.0.1:0",
		RaftListener: ln, Peers: tc.peers, RaftTimeout: 200 * time.Millisecond,
		CA: tc.ca, Cert: cert, Token: tc.token, Logger: quicTestLogger(t).With("node", id),
	})
	if err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	to := &testOrigin{Origin: o, ca: tc.ca, token: tc.token, events: &eventLog{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	to.stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: Run: %v", id, err)
		}
	})
	t.Cleanup(to.stop)
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
			if !n.store.blobIntact(n.store.blobPath(ent.Digest), ent.Digest) {
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
