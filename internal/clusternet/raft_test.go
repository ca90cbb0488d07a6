package clusternet

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestRaft runs a three-node raft cluster over StreamLayer and checks that
// every node applies the leader's commands in order.
func TestRaft(t *testing.T) {
	ca := newCA(t)
	ids := []string{"o1", "o2", "o3"}
	nets := make([]*node, len(ids))
	var servers []raft.Server
	for i, id := range ids {
		nets[i] = newNode(t, ca, id)
		servers = append(servers, raft.Server{
			ID:      raft.ServerID(id),
			Address: raft.ServerAddress(nets[i].Addr().String()),
		})
	}
	// An origin looks the address up in its current raft configuration;
	// here the configuration never changes.
	expect := func(addr raft.ServerAddress) (raft.ServerID, bool) {
		for _, s := range servers {
			if s.Address == addr {
				return s.ID, true
			}
		}
		return "", false
	}

	rafts := make([]*raft.Raft, len(ids))
	fsms := make([]*listFSM, len(ids))
	for i, id := range ids {
		cfg := raft.DefaultConfig()
		cfg.LocalID = raft.ServerID(id)
		cfg.HeartbeatTimeout = 200 * time.Millisecond
		cfg.ElectionTimeout = 200 * time.Millisecond
		cfg.LeaderLeaseTimeout = 100 * time.Millisecond
		cfg.LogOutput = io.Discard
		trans := raft.NewNetworkTransport(nets[i].StreamLayer(expect), 3, 2*time.Second, io.Discard)
		fsms[i] = &listFSM{}
		r, err := raft.NewRaft(cfg, fsms[i], raft.NewInmemStore(), raft.NewInmemStore(), raft.NewInmemSnapshotStore(), trans)
		if err != nil {
			t.Fatalf("NewRaft %s: %v", id, err)
		}
		rafts[i] = r
		t.Cleanup(func() {
			if err := r.Shutdown().Error(); err != nil {
				t.Errorf("shut down %s: %v", id, err)
			}
			trans.Close()
		})
	}
	if err := rafts[0].BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatalf("BootstrapCluster: %v", err)
	}

	leader := waitLeader(t, rafts)
	var want []string
	for i := range 20 {
		cmd := fmt.Sprintf("cmd-%02d", i)
		want = append(want, cmd)
		if err := leader.Apply([]byte(cmd), patience).Error(); err != nil {
			t.Fatalf("Apply %s: %v", cmd, err)
		}
	}
	// Followers apply what the leader has committed on their own time.
	deadline := time.Now().Add(patience)
	for i, f := range fsms {
		for len(f.applied()) < len(want) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := f.applied(); !slices.Equal(got, want) {
			t.Errorf("%s applied %q; want %q", ids[i], got, want)
		}
	}
}

// waitLeader polls until one of rafts is the leader.
func waitLeader(t *testing.T, rafts []*raft.Raft) *raft.Raft {
	t.Helper()
	deadline := time.Now().Add(patience)
	for time.Now().Before(deadline) {
		for _, r := range rafts {
			if r.State() == raft.Leader {
				return r
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no leader within %v", patience)
	return nil
}

// listFSM is a raft.FSM that keeps every command in order.
type listFSM struct {
	mu   sync.Mutex
	cmds []string
}

func (f *listFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = append(f.cmds, string(l.Data))
	return nil
}

func (f *listFSM) applied() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cmds)
}

func (f *listFSM) Snapshot() (raft.FSMSnapshot, error) { return listSnapshot(f.applied()), nil }

func (f *listFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var cmds []string
	if err := json.NewDecoder(rc).Decode(&cmds); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cmds = cmds
	return nil
}

type listSnapshot []string

func (s listSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode([]string(s)); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (listSnapshot) Release() {}
