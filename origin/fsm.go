package origin

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
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
	// applied is called after every transaction that applied commands,
	// with their number, on the goroutine that applied them.
	applied func(commands int)
	// restored is called after a snapshot replaced the catalog.
	restored func()
	// fetch brings content a restored catalog names from a peer.
	fetch fetcher
	// oneByOne applies each command in a transaction of its own (group
	// commit off; see Config.NoGroupCommit).
	oneByOne bool

	// jobs carries batches from ApplyBatch to the applier, when one runs.
	jobs chan *applyJob
	// enqueued is the last raft index handed to the applier, and through
	// the last it has applied (or given up on at shutdown).
	enqueued, through atomic.Uint64
	// applierDone closes when the applier has drained jobs and returned.
	applierDone chan struct{}
}

var (
	_ raft.BatchingFSM = (*fsm)(nil)

	// errReplayed is the result of a command raft replayed after a
	// restart, which nobody waits for.
	errReplayed = errors.New("command replayed at start")
)

func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies a batch of committed raft entries. With an applier
// running (see startApplier) it hands them over and returns a pending
// result for each command; otherwise it applies them (applyJobs) before
// it returns, in one catalog transaction, or one per command with group
// commit off.
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
	job := &applyJob{last: last, cmds: cmds, done: make(chan struct{})}
	if f.jobs != nil {
		f.enqueued.Store(last)
		f.jobs <- job
		for j, i := range at {
			out[i] = pendingResult{job: job, i: j}
		}
		return out
	}
	jobs := []*applyJob{job}
	if f.oneByOne && len(cmds) > 1 {
		// Group commit off: a transaction, and an fsync, per command,
		// each recording its own raft index; the last records the
		// batch's.
		jobs = jobs[:0]
		for j, i := range at {
			jobs = append(jobs, &applyJob{last: logs[i].Index, cmds: cmds[j : j+1], done: make(chan struct{})})
		}
		jobs[len(jobs)-1].last = last
	}
	var res []applyResult
	for _, j := range jobs {
		f.applyJobs([]*applyJob{j}, len(j.cmds))
		res = append(res, j.res...)
	}
	for j, i := range at {
		out[i] = res[j]
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

// Snapshot captures the catalog as it stands once every entry raft has
// handed over is in it: a read transaction is a point-in-time view, which
// Persist copies out.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.flush()
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
	f.flush()
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

// The applier: group commit for the catalog.
//
// Raft hands the FSM one batch per commit, and under load commits come
// faster than a catalog transaction can be written: every follower's
// answer may advance the commit index by a few entries. Applying each
// batch in a transaction of its own made the catalog the busiest part of
// every origin. Instead, ApplyBatch queues its batch for the applier,
// which applies everything queued since its last transaction in one, and
// the writes that waited on those entries get their results then (see
// pendingResult).
//
// Raft counts an entry applied when ApplyBatch returns, so the catalog may
// trail raft's applied index by what is queued. Whatever must see the
// catalog at raft's applied index waits for the applier first: snapshots
// and restores (flush), a new leader's barrier, consistent reads and a
// follower's caught-up test (settled).

// maxMergedCommands bounds the commands one merged transaction holds, so
// that a long queue after a stall is applied in steps.
const maxMergedCommands = 4096

// applyJobsQueued bounds the batches waiting for the applier; raft's FSM
// goroutine waits when it is full.
const applyJobsQueued = 256

// applyJob is one batch raft handed over: its commands and the raft index
// of its last entry. done closes once res holds their results.
type applyJob struct {
	last uint64
	cmds []*command
	res  []applyResult
	done chan struct{}
}

// pendingResult is the result ApplyBatch gives for a command the applier
// has queued: the i-th of job.
type pendingResult struct {
	job *applyJob
	i   int
}

// wait returns the command's result once the applier has applied it.
func (p pendingResult) wait() applyResult {
	<-p.job.done
	return p.job.res[p.i]
}

// startApplier starts the applier; ApplyBatch hands it every later batch.
// stopApplier ends it, once raft no longer calls the FSM.
func (f *fsm) startApplier() {
	f.jobs = make(chan *applyJob, applyJobsQueued)
	f.applierDone = make(chan struct{})
	f.through.Store(f.s.applied.Load())
	f.enqueued.Store(f.s.applied.Load())
	go f.runApplier()
}

// stopApplier applies what is queued and stops the applier. Raft must
// have shut down: ApplyBatch is not to be called after.
func (f *fsm) stopApplier() {
	if f == nil || f.jobs == nil {
		return
	}
	close(f.jobs)
	<-f.applierDone
}

func (f *fsm) runApplier() {
	defer close(f.applierDone)
	for job := range f.jobs {
		batch := []*applyJob{job}
		n := len(job.cmds)
	merge:
		for n < maxMergedCommands {
			select {
			case j, ok := <-f.jobs:
				if !ok {
					break merge
				}
				batch = append(batch, j)
				n += len(j.cmds)
			default:
				break merge
			}
		}
		f.applyJobs(batch, n)
	}
}

// applyJobs applies the commands of batch, n in all, in one transaction,
// and gives each job its results.
func (f *fsm) applyJobs(batch []*applyJob, n int) {
	var last uint64
	cmds := make([]*command, 0, n)
	for _, j := range batch {
		last = max(last, j.last)
		cmds = append(cmds, j.cmds...)
	}
	var res []applyResult
	ok := last <= f.s.applied.Load() || f.retry("apply", func() (err error) {
		res, err = f.s.apply(last, cmds)
		return err
	})
	for _, j := range batch {
		j.res = make([]applyResult, len(j.cmds))
		if !ok {
			for i := range j.res {
				j.res[i] = applyResult{Err: errShuttingDown}
			}
		} else if len(res) >= len(j.cmds) {
			copy(j.res, res)
			res = res[len(j.cmds):]
		} else {
			// Not applied here: the catalog was already past them.
			for i := range j.res {
				j.res[i] = applyResult{Err: errReplayed}
			}
		}
	}
	if last > f.through.Load() {
		f.through.Store(last)
	}
	// Before any write learns its result: what applied does (the commit
	// time the lease rule measures by, waking the pushers) must have
	// happened when the write is acknowledged, as with a synchronous FSM.
	if ok && f.applied != nil && n > 0 {
		f.applied(n)
	}
	for _, j := range batch {
		close(j.done)
	}
}

// flush waits until the applier has applied every batch queued before
// the call. Without an applier, or once it stopped, it returns at once.
func (f *fsm) flush() {
	if f.jobs == nil {
		return
	}
	job := &applyJob{done: make(chan struct{})}
	select {
	case f.jobs <- job:
		<-job.done
	case <-f.applierDone:
	}
}

// settled reports whether the catalog holds every entry raft has handed
// the FSM so far.
func (f *fsm) settled() bool {
	return f.jobs == nil || f.through.Load() >= f.enqueued.Load()
}
