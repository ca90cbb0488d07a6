package origin

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// fsm is the raft state machine: the catalog, the LSN-ordered log edges
// follow, and the blobs. Raft orders and replicates the commands; the FSM
// gives each committed mutation the next LSN as it applies it, so every
// origin assigns the same LSNs.
//
// The catalog is persistent: it records the raft index it has applied, and
// raft is configured not to restore a snapshot at start
// (NoSnapshotRestoreOnStart). Raft then replays the entries after its
// latest snapshot; those the catalog already holds, content included, are
// skipped.
type fsm struct {
	s   *store
	log *slog.Logger
	// stopping ends the retries of an apply the disk refuses.
	stopping <-chan struct{}
	// applied is called after every batch that committed entries, with
	// their results, on the FSM's goroutine.
	applied func([]applyResult)
	// restored is called after a snapshot replaced the catalog.
	restored func()
	// fetch brings content a restored catalog names from a peer.
	fetch fetcher
	// oneByOne applies each command in a transaction of its own (group
	// commit off; see Config.NoGroupCommit).
	oneByOne bool
}

var (
	_ raft.BatchingFSM = (*fsm)(nil)

	// errReplayed is the result of a command raft replayed after a
	// restart, which nobody waits for.
	errReplayed = errors.New("command replayed at start")
)

func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies a batch of committed raft entries in one catalog
// transaction: one fsync for every publish and purge in it.
//
// Raft cannot take "no" from an FSM: an entry committed must be applied,
// or this origin's state would part from the others'. So a transaction the
// disk refuses is retried, with backoff, until it succeeds or the origin
// stops; meanwhile this origin falls behind, and as a leader its writes
// time out.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	applied := f.s.applied.Load()
	var (
		cmds []*command
		at   []int
		last uint64
	)
	for i, l := range logs {
		last = max(last, l.Index)
		if l.Type != raft.LogCommand {
			continue
		}
		c, err := decodeCommand(l.Data)
		if err != nil {
			f.log.Error("raft entry is not a command; skipped", "index", l.Index, "err", err)
			out[i] = applyResult{Err: err}
			continue
		}
		if l.Index <= applied {
			out[i] = applyResult{Err: errReplayed}
			continue
		}
		cmds = append(cmds, c)
		at = append(at, i)
	}
	if last <= applied {
		return out
	}
	var res []applyResult
	if !f.retry("apply", func() (err error) {
		if f.oneByOne && len(cmds) > 1 {
			return f.applyOneByOne(logs, &res)
		}
		res, err = f.s.apply(last, cmds)
		return err
	}) {
		for _, i := range at {
			out[i] = applyResult{Err: errShuttingDown}
		}
		return out
	}
	for j, i := range at {
		out[i] = res[j]
	}
	if f.applied != nil && len(res) > 0 {
		f.applied(res)
	}
	return out
}

// errShuttingDown is the result of a write the origin stopped before
// applying.
var errShuttingDown = errors.New("origin shutting down")

// retry runs op until it succeeds (true) or the origin stops (false).
func (f *fsm) retry(what string, op func() error) bool {
	backoff := 10 * time.Millisecond
	for {
		err := op()
		if err == nil {
			return true
		}
		f.log.Error("raft state machine: "+what+" failed; retrying", "err", err, "in", backoff)
		select {
		case <-f.stopping:
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// Snapshot captures the catalog as it stands: a read transaction is a
// point-in-time view, which Persist copies out.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	tx, err := f.s.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("snapshot catalog: %w", err)
	}
	return &fsmSnapshot{s: f.s, tx: tx}, nil
}

// Restore replaces the catalog with a snapshot's and brings the content it
// names (see store.restore).
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.s.restore(rc, f.fetch, f.log); err != nil {
		return err
	}
	if f.restored != nil {
		f.restored()
	}
	return nil
}

// fsmSnapshot is a catalog snapshot: the whole bbolt file as one read
// transaction saw it, inline content included.
type fsmSnapshot struct {
	s  *store
	tx *bolt.Tx
}

func (sn *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sn.tx.WriteTo(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("snapshot: write catalog: %w", err)
	}
	return sink.Close()
}

func (sn *fsmSnapshot) Release() { sn.tx.Rollback() }

// applyOneByOne applies the commands of logs one transaction each, the
// raft index of each with it. A retry after a failure goes on where the
// failed one stopped.
func (f *fsm) applyOneByOne(logs []*raft.Log, res *[]applyResult) error {
	for _, l := range logs {
		if l.Type != raft.LogCommand || l.Index <= f.s.applied.Load() {
			continue
		}
		c, err := decodeCommand(l.Data)
		if err != nil {
			continue
		}
		r, err := f.s.apply(l.Index, []*command{c})
		if err != nil {
			return err
		}
		*res = append(*res, r...)
	}
	return nil
}
