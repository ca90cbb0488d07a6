package origin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/geocdn/geocdn/internal/wire"
	"github.com/geocdn/geocdn/invalidation"
)

// The origin cluster: the replication log is a raft log (hashicorp/raft),
// stored with raft-boltdb in DataDir/raft, and the catalog is its state
// machine (fsm.go). A single origin is a cluster of one.

// localRaftAddr is the raft address of an origin that is a cluster of one.
const localRaftAddr = "local"

// raftNode is the origin's raft instance and what it is made of.
type raftNode struct {
	r     *raft.Raft
	fsm   *fsm
	logs  *raftboltdb.BoltStore
	snaps raft.SnapshotStore
	trans raft.Transport
	// timeout is the heartbeat and election timeout.
	timeout time.Duration
}

// Raft's own defaults for a cluster of one would keep a starting origin
// from taking writes for a second or two while it waits out an election
// timeout nobody else can interrupt.
const aloneTimeout = 50 * time.Millisecond

// logCacheSize is how many of the newest raft entries are kept in memory,
// so that replicating them to followers and applying them reads no disk:
// four appends of MaxAppendEntries, more than a follower that keeps up
// trails by.
const logCacheSize = 1024

// raftConfig is the raft configuration of this origin.
func (o *Origin) raftConfig(timeout time.Duration) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(o.cfg.ID)
	c.Logger = newHCLogger(o.log.With("component", "raft"))
	c.HeartbeatTimeout = timeout
	c.ElectionTimeout = timeout
	c.LeaderLeaseTimeout = timeout / 2
	c.CommitTimeout = min(c.CommitTimeout, timeout/2)
	// The catalog is persistent: raft replays what followed its latest
	// snapshot instead of restoring it (see fsm).
	c.NoSnapshotRestoreOnStart = true
	// Group commit: publishes waiting to be appended go into one log
	// write (and one fsync) of up to MaxAppendEntries.
	c.BatchApplyCh = true
	c.MaxAppendEntries = 256
	if o.cfg.NoGroupCommit {
		c.BatchApplyCh = false
		c.MaxAppendEntries = 1
	}
	c.SnapshotInterval = 2 * time.Minute
	c.SnapshotThreshold = 16384
	c.TrailingLogs = 10240
	return c
}

// openRaft starts the origin's raft node. A data directory without raft
// state is bootstrapped as a cluster of one, whose catalog (possibly from
// an origin that predates the cluster) is the state machine as it stands.
func (o *Origin) openRaft() error {
	dir := filepath.Join(o.cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("raft dir: %w", err)
	}
	n := &raftNode{timeout: aloneTimeout}
	var err error
	n.logs, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db"), BoltOptions: boltOptions()})
	if err != nil {
		return fmt.Errorf("open raft log %s: %w", filepath.Join(dir, "raft.db"), err)
	}
	fail := func(err error) error {
		n.fsm.stopApplier()
		n.logs.Close()
		return err
	}
	n.snaps, err = raft.NewFileSnapshotStoreWithLogger(dir, 2, newHCLogger(o.log.With("component", "raft")))
	if err != nil {
		return fail(fmt.Errorf("raft snapshots: %w", err))
	}
	if o.cnet != nil {
		n.timeout = o.cfg.RaftTimeout
		n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream:  o.cnet.StreamLayer(o.raftPeerID),
			MaxPool: 3,
			Timeout: 10 * time.Second,
			Logger:  newHCLogger(o.log.With("component", "raft")),
		})
	} else {
		_, n.trans = raft.NewInmemTransport(localRaftAddr)
	}
	n.fsm = &fsm{
		s:        o.store,
		log:      o.log,
		stopping: o.stopping,
		applied:  func(int) { o.committed() },
		fetch:    o.fetchFromPeers,
		restored: o.restored,
		oneByOne: o.cfg.NoGroupCommit,
	}
	has, err := raft.HasExistingState(n.logs, n.logs, n.snaps)
	if err != nil {
		return fail(fmt.Errorf("raft state: %w", err))
	}
	if !has && o.store.applied.Load() > 0 {
		// The raft log is gone but the catalog remains: the catalog is
		// the state, and a new log starts after it.
		if err := o.store.resetApplied(); err != nil {
			return fail(err)
		}
	}
	if !has && o.store.lastLSN() > 0 {
		// The catalog (from before the cluster, or outliving its raft
		// log) holds what the new log will not.
		if err := o.store.setBase(); err != nil {
			return fail(err)
		}
	}
	if has {
		if err := o.restoreIfBehind(n); err != nil {
			return fail(err)
		}
	}
	if !o.cfg.NoGroupCommit {
		// Group commit for the catalog: merged transactions, and no
		// fsync of its own where raft can rebuild it (checkpoint.go).
		snaps, err := n.snaps.List()
		if err != nil {
			return fail(fmt.Errorf("raft snapshots: %w", err))
		}
		if len(snaps) > 0 || !o.store.hasBase() {
			if err := o.store.stopSyncing(); err != nil {
				return fail(err)
			}
		}
		n.fsm.startApplier()
	}
	logs, err := raft.NewLogCache(logCacheSize, n.logs)
	if err != nil {
		return fail(fmt.Errorf("raft log cache: %w", err))
	}
	n.r, err = raft.NewRaft(o.raftConfig(n.timeout), n.fsm, logs, n.logs, n.snaps, n.trans)
	if err != nil {
		return fail(fmt.Errorf("start raft: %w", err))
	}
	if boot, ok := o.bootstrapConfig(n); !has && ok {
		if err := n.r.BootstrapCluster(boot).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			n.r.Shutdown()
			return fail(fmt.Errorf("bootstrap raft: %w", err))
		}
	}
	o.raft = n
	return nil
}

// restoreIfBehind restores the latest raft snapshot into the catalog when
// the catalog has applied less than it covers (the catalog file was lost
// or replaced by an older one): raft will only replay what follows it.
func (o *Origin) restoreIfBehind(n *raftNode) error {
	metas, err := n.snaps.List()
	if err != nil || len(metas) == 0 {
		return err
	}
	latest := metas[0]
	if o.store.applied.Load() >= latest.Index {
		return nil
	}
	o.log.Warn("catalog is behind the latest raft snapshot; restoring it", "catalog_index", o.store.applied.Load(), "snapshot_index", latest.Index)
	_, rc, err := n.snaps.Open(latest.ID)
	if err != nil {
		return fmt.Errorf("open raft snapshot %s: %w", latest.ID, err)
	}
	return n.fsm.Restore(rc)
}

// closeRaft stops raft (waiting for the state machine) and closes its log.
func (o *Origin) closeRaft() {
	if o.raft == nil {
		return
	}
	if err := o.raft.r.Shutdown().Error(); err != nil {
		o.log.Warn("raft shutdown", "err", err)
	}
	o.raft.fsm.stopApplier()
	if err := o.raft.logs.Close(); err != nil {
		o.log.Warn("close raft log", "err", err)
	}
}

// errNotLeader is a write refused because this origin does not lead the
// cluster; leaderHTTP names the leader when it is known.
type errNotLeader struct{ leader string }

func (e *errNotLeader) Error() string {
	if e.leader == "" {
		return "this origin is not the cluster leader, and no leader is known"
	}
	return "this origin is not the cluster leader; the leader is " + e.leader
}

// errOutcomeUnknown is a proposal whose fate this origin cannot tell: it
// lost leadership after the entry was appended, so the entry may yet
// commit under the next leader. A retry with the same idempotency key is
// applied at most once.
var errOutcomeUnknown = errors.New("leadership changed while the write was being committed: it may or may not be committed; retry it with the same Idempotency-Key")

// propose commits c through raft and returns its entry as applied here.
// Errors: errNotLeader (nothing was appended), errOutcomeUnknown, the
// command's own refusal (ErrNotFound, wire.ErrMalformed), or
// errShuttingDown.
func (o *Origin) propose(ctx context.Context, c *command) (wire.LogEntry, error) {
	if o.isClosing() {
		return wire.LogEntry{}, errShuttingDown
	}
	if !o.isLeader() {
		if lead, _, lid := o.awaitLeader(ctx, o.requestWait()); !lead {
			return wire.LogEntry{}, &errNotLeader{leader: o.peerHTTP(lid)}
		}
	}
	f := o.raft.r.Apply(c.encode(), o.cfg.PublishTimeout)
	err := f.Error()
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return wire.LogEntry{}, &errNotLeader{}
	case errors.Is(err, raft.ErrRaftShutdown):
		return wire.LogEntry{}, errShuttingDown
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrEnqueueTimeout):
		return wire.LogEntry{}, errOutcomeUnknown
	case err != nil:
		return wire.LogEntry{}, fmt.Errorf("raft: %w", err)
	}
	resp := f.Response()
	if p, ok := resp.(pendingResult); ok {
		resp = p.wait()
	}
	res, ok := resp.(applyResult)
	if !ok {
		return wire.LogEntry{}, fmt.Errorf("raft: unexpected apply result %T", resp)
	}
	return res.Entry, res.Err
}

// isLeader reports whether this origin leads the cluster and has applied
// everything committed before it took the lead (see watchLeadership).
func (o *Origin) isLeader() bool { return o.leading.Load() }

// watchLeadership follows this origin's raft state. On taking the lead it
// first applies everything committed before (a barrier), then restarts
// the grantor's grace period, since leases the previous leader granted may
// still run, reloads the plan in force and the recovery state from the
// catalog, and starts serving edges. On losing it, it stops serving
// edges, which then look for the new leader.
func (o *Origin) watchLeadership(ctx context.Context) {
	ch := o.raft.r.LeaderCh()
	// Any leader change, another origin's included, wakes those waiting
	// for a leader to be known (awaitLeader) and the peer book.
	obs := make(chan raft.Observation, 16)
	observer := raft.NewObserver(obs, false, func(ob *raft.Observation) bool {
		_, ok := ob.Data.(raft.LeaderObservation)
		return ok
	})
	o.raft.r.RegisterObserver(observer)
	defer o.raft.r.DeregisterObserver(observer)
	for {
		select {
		case <-ctx.Done():
			return
		case ob := <-obs:
			if lo, ok := ob.Data.(raft.LeaderObservation); ok && lo.LeaderID != "" {
				if p, _ := o.peers.get(string(lo.LeaderID)); p.Raft == "" {
					o.peers.set(Peer{ID: string(lo.LeaderID), Raft: string(lo.LeaderAddr)})
				}
			}
			o.leaderChanged.Broadcast()
		case leader := <-ch:
			if leader {
				o.tookLead(ctx)
			} else {
				o.lostLead()
			}
		}
	}
}

func (o *Origin) tookLead(ctx context.Context) {
	if err := o.raft.r.Barrier(o.cfg.PublishTimeout).Error(); err != nil {
		o.log.Warn("took the lead but could not apply the log before it", "err", err)
		return
	}
	o.raft.fsm.flush()
	// A lease granted by the previous leader lasts at most a term from its
	// grant, and that leader stopped granting at most a raft leader lease
	// after it lost its quorum, before this election could start. The
	// first leader a cluster ever had has nobody's leases to wait out.
	if o.hadEarlierLeader() {
		o.grantor.Restart(o.clk.Now().Add(o.raft.timeout/2), o.store.lastLSN())
	} else {
		o.grantor.Restart(o.clk.Now().Add(-o.grantor.Term()-invalidation.Margin(o.grantor.Term())), o.store.lastLSN())
	}
	if err := o.loadPlan(); err != nil {
		o.log.Error("leader: load placement plan", "err", err)
	}
	if err := o.loadRecovery(); err != nil {
		o.log.Error("leader: load replica recovery state", "err", err)
	}
	o.leading.Store(true)
	o.leaderChanged.Broadcast()
	o.log.Info("leading the origin cluster", "lsn", o.store.lastLSN(), "grace_ends", o.grantor.GraceEnds())
}

func (o *Origin) lostLead() {
	if !o.leading.Swap(false) {
		return
	}
	o.leaderChanged.Broadcast()
	o.log.Info("no longer leading the origin cluster")
	o.closeEdgeConns(codeNormal, "origin is no longer the leader")
}

// electionWait is about two election timeouts: how long an edge's hello
// waits for a leader to be known.
func (o *Origin) electionWait() time.Duration { return 2*o.raft.timeout + 100*time.Millisecond }

// requestWait is how long an admin request waits for a leader, or for
// this origin to catch up with the log: two election timeouts, but never
// less than 5 s, which covers an origin replaying its log after a start.
func (o *Origin) requestWait() time.Duration { return max(o.electionWait(), 5*time.Second) }

// awaitLeader waits, at most for wait, until this origin leads or knows
// another leader, and reports whether it leads.
func (o *Origin) awaitLeader(ctx context.Context, wait time.Duration) (leading bool, leader raft.ServerAddress, id raft.ServerID) {
	deadline := o.clk.Now().Add(wait)
	for {
		wait := o.leaderChanged.C()
		if o.isLeader() {
			return true, "", ""
		}
		if addr, lid := o.raft.r.LeaderWithID(); lid != "" && lid != raft.ServerID(o.cfg.ID) {
			return false, addr, lid
		}
		left := deadline.Sub(o.clk.Now())
		if left <= 0 {
			return false, "", ""
		}
		t := o.clk.NewTimer(min(left, 20*time.Millisecond))
		select {
		case <-wait:
		case <-t.C():
		case <-ctx.Done():
			t.Stop()
			return false, "", ""
		}
		t.Stop()
	}
}

// raftStats is what status reports of this origin's raft state.
type raftStats struct {
	State        string `json:"state"`
	Leader       string `json:"leader"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
	LastIndex    uint64 `json:"last_index"`
}

func (o *Origin) raftStats() raftStats {
	r := o.raft.r
	_, lid := r.LeaderWithID()
	return raftStats{
		State: r.State().String(), Leader: string(lid), Term: r.CurrentTerm(),
		AppliedIndex: r.AppliedIndex(), CommitIndex: r.CommitIndex(), LastIndex: r.LastIndex(),
	}
}

// boltOptions opens the catalog and the raft log: a second origin on the
// same data directory fails instead of waiting on the file lock, and the
// free list is not written with every commit (it is rebuilt by a scan when
// the file is opened), which takes pages off every commit's fsync: 12-15%
// more writes per second with three origins on one disk. The scan costs
// the open: a catalog of a million objects (570 MiB) opens in 0.58 s
// against 0.11 s with the free list synced (BenchmarkCatalogOpen).
func boltOptions() *bolt.Options {
	return &bolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType}
}

// edgeAddrOf is the QUIC address edges dial for origin id, or "" when
// this origin does not know it.
func (o *Origin) edgeAddrOf(id raft.ServerID) string {
	if id == "" {
		return ""
	}
	return o.peers.edgeAddr(string(id))
}

// peerHTTP is the admin address of origin id, or "" when unknown.
func (o *Origin) peerHTTP(id raft.ServerID) string {
	p, _ := o.peers.get(string(id))
	return p.HTTP
}

// caughtUp reports whether this origin's catalog holds every entry it
// knows to be committed: it leads (and applied what came before), or it
// follows a known leader and has applied up to the commit index the
// leader told it. A follower cut off from its leader stays caught up with
// what it last heard, and its reads may lag the cluster's.
func (o *Origin) caughtUp() bool {
	if o.isLeader() {
		return true
	}
	r := o.raft.r
	if _, lid := r.LeaderWithID(); lid == "" || lid == raft.ServerID(o.cfg.ID) {
		return false
	}
	return r.AppliedIndex() >= r.CommitIndex() && o.raft.fsm.settled()
}

// awaitCaughtUp waits, at most for requestWait, until caughtUp, and
// reports whether it is.
func (o *Origin) awaitCaughtUp(ctx context.Context) bool {
	deadline := o.clk.Now().Add(o.requestWait())
	for !o.caughtUp() {
		left := deadline.Sub(o.clk.Now())
		if left <= 0 {
			return false
		}
		wait := o.leaderChanged.C()
		t := o.clk.NewTimer(min(left, 10*time.Millisecond))
		select {
		case <-wait:
		case <-t.C():
		case <-ctx.Done():
			t.Stop()
			return false
		}
		t.Stop()
	}
	return true
}

// hadEarlierLeader reports whether the cluster had a leader before this
// origin's current term: every leader starts its term with an entry, so
// a log whose first entry after the bootstrap configuration belongs to
// this term had none. A log that does not reach back that far (compacted,
// or restored from a snapshot) had one.
func (o *Origin) hadEarlierLeader() bool {
	first, err := o.raft.logs.FirstIndex()
	if err != nil || first > 1 {
		return true
	}
	var l raft.Log
	for i := first; ; i++ {
		if err := o.raft.logs.GetLog(i, &l); err != nil {
			return true
		}
		if l.Type == raft.LogConfiguration && l.Term <= 1 {
			continue // the bootstrap configuration
		}
		return l.Term < o.raft.r.CurrentTerm()
	}
}

// bootstrapConfig is the configuration a data directory without raft
// state starts with: the configured peers, or this origin alone. An origin
// that joins an existing cluster starts with none and waits to be added.
func (o *Origin) bootstrapConfig(n *raftNode) (raft.Configuration, bool) {
	if o.cnet == nil {
		return raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: raft.ServerID(o.cfg.ID), Address: n.trans.LocalAddr(),
		}}}, true
	}
	if o.cfg.Join != "" {
		return raft.Configuration{}, false
	}
	if len(o.cfg.Peers) == 0 {
		return raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: raft.ServerID(o.cfg.ID), Address: n.trans.LocalAddr(),
		}}}, true
	}
	var c raft.Configuration
	for _, p := range o.cfg.Peers {
		addr := raft.ServerAddress(p.Raft)
		if p.ID == o.cfg.ID {
			addr = n.trans.LocalAddr()
		}
		c.Servers = append(c.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: addr})
	}
	return c, true
}

// raftPeerID is the origin id expected at a raft address, for the cluster
// port to insist on when it dials.
func (o *Origin) raftPeerID(addr raft.ServerAddress) (raft.ServerID, bool) {
	if id, ok := o.peers.idAt(string(addr)); ok {
		return raft.ServerID(id), true
	}
	return "", false
}

// restored follows a snapshot restore: the plan in force may have changed.
func (o *Origin) restored() {
	if err := o.loadPlan(); err != nil {
		o.log.Error("after a snapshot restore: load placement plan", "err", err)
	}
}
