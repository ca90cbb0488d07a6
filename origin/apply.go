package origin

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"

	"github.com/geocdn/geocdn/internal/aetree"
	"github.com/geocdn/geocdn/internal/wire"
	"github.com/geocdn/geocdn/invalidation"
)

// Buckets and meta keys the raft state machine adds to the catalog.
const (
	bucketRequests = "requests" // request id → 8-byte LSN it was committed as
	bucketReqOrder = "reqorder" // 8-byte sequence → request id, oldest first
	bucketMissing  = "missing"  // digest → 8-byte size: named by the catalog, content not here yet
	bucketInline   = "inline"   // digest → content of up to maxInline bytes, held in the catalog itself
	bucketPulled   = "pulled"   // catalog key of a current version pulled from an upstream → empty

	metaRaftIndex = "raftindex" // 8-byte big-endian raft index applied last
	metaReqSeq    = "reqseq"    // 8-byte big-endian sequence of the last request recorded
)

// requestsKept bounds the request ids remembered for deduplication: a
// retry arriving after this many later requests is applied again.
const requestsKept = 1 << 16

// maxInline is the largest content carried inside a command.
const maxInline = 64 << 10

// syncParallel bounds the fsyncs a store runs at once: the filesystem's
// journal commits concurrent fsyncs together, so a group of them costs
// little more than one.
const syncParallel = 32

// apply applies cmds in order as one transaction, the mutations of the
// raft log up to index (0 outside raft), and returns each command's
// result. A command refused on its own merits (a delete of nothing, an
// entry that does not validate) gets its error in its result and uses no
// LSN; every node refuses it alike. An error from apply itself means
// nothing was applied (the disk failed) and the whole call may be retried.
//
// Staged content is put in place before the transaction that names it
// commits: renamed, and its directory synced, several at once. Inline
// content (up to maxInline bytes) is kept in the catalog itself, written
// by the same transaction: no file, no directory, no fsync of its own. A
// put whose content this node has neither staged nor inline (it missed the
// leader's stream) is recorded as missing, for fetchMissing to bring from
// a peer.
func (s *store) apply(index uint64, cmds []*command) ([]applyResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A repeated request is answered from its first commit; its content,
	// if staged again, is not needed.
	dup := make([]bool, len(cmds))
	if err := s.db.View(func(tx *bolt.Tx) error {
		reqs := tx.Bucket([]byte(bucketRequests))
		for i, c := range cmds {
			dup[i] = c.ID != (requestID{}) && reqs.Get(c.ID[:]) != nil
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read %s: %w", s.catalogPath, err)
	}
	missing, inFile, dirs, err := s.placeAll(cmds, dup)
	if err != nil {
		return nil, err
	}
	if err := s.syncDirs(dirs); err != nil {
		return nil, err
	}

	var (
		results []applyResult
		last    uint64
		treeOps []treeOp
		garbage []wire.Digest
	)
	err = s.db.Update(func(tx *bolt.Tx) error {
		results, treeOps, garbage = make([]applyResult, len(cmds)), nil, nil
		b := txBuckets(tx)
		for _, d := range s.collected {
			if err := b.gc.Delete(d[:]); err != nil {
				return err
			}
		}
		var err error
		if last, err = s.readLSN(b.meta); err != nil {
			return err
		}
		touched := map[wire.Digest]bool{}
		for i, c := range cmds {
			if c.ID != (requestID{}) {
				if v := b.requests.Get(c.ID[:]); len(v) == 8 {
					results[i] = applyResult{Entry: loggedEntry(tx, binary.BigEndian.Uint64(v))}
					continue
				}
			}
			if c.Entry.Op == wire.OpPut {
				// Content placed for a put refused below is collected
				// with the rest.
				touched[c.Entry.Digest] = true
			}
			e, ops, err := applyCommand(b, c, last, missing[i], inFile[i], touched)
			if err != nil {
				if errors.Is(err, ErrNotFound) || errors.Is(err, wire.ErrMalformed) || errors.Is(err, errBadCommand) || errors.Is(err, errPublishedWins) || errors.Is(err, errRefreshGone) {
					results[i].Err = err
					continue
				}
				return err
			}
			last = e.LSN
			treeOps = append(treeOps, ops...)
			results[i].Entry = e
			if c.ID != (requestID{}) {
				if err := rememberRequest(b, c.ID, e.LSN); err != nil {
					return err
				}
			}
		}
		for d := range touched {
			if b.refs.Get(d[:]) != nil {
				continue
			}
			if err := b.missing.Delete(d[:]); err != nil {
				return err
			}
			if b.inline.Get(d[:]) != nil {
				// Held in the catalog: gone with this commit. It has no
				// file, unless an older run left one.
				if err := b.inline.Delete(d[:]); err != nil {
					return err
				}
				if err := b.gc.Delete(d[:]); err != nil {
					return err
				}
				continue
			}
			garbage = append(garbage, d)
		}
		if err := b.meta.Put([]byte(metaLSN), binary.BigEndian.AppendUint64(nil, last)); err != nil {
			return err
		}
		if index > 0 {
			return b.meta.Put([]byte(metaRaftIndex), binary.BigEndian.AppendUint64(nil, index))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("commit to %s: %w", s.catalogPath, err)
	}
	s.collected = s.collected[:0]
	s.treeMu.Lock()
	for _, op := range treeOps {
		if op.add {
			s.tree.Add(op.t)
		} else {
			s.tree.Remove(op.t)
		}
	}
	s.last.Store(last)
	s.treeMu.Unlock()
	if index > 0 {
		s.applied.Store(index)
	}
	// A failure leaves a digest in bucketGC for the next open to retry;
	// the commit itself stands.
	s.collected = append(s.collected, s.removeBlobsLocked(garbage)...)
	return results, nil
}

// buckets are the catalog buckets apply works in.
type buckets struct {
	catalog, refs, gc, missing, inline, requests, order, meta, pulled *bolt.Bucket
}

func txBuckets(tx *bolt.Tx) buckets {
	return buckets{
		catalog:  tx.Bucket([]byte(bucketCatalog)),
		refs:     tx.Bucket([]byte(bucketRefs)),
		gc:       tx.Bucket([]byte(bucketGC)),
		missing:  tx.Bucket([]byte(bucketMissing)),
		inline:   tx.Bucket([]byte(bucketInline)),
		requests: tx.Bucket([]byte(bucketRequests)),
		order:    tx.Bucket([]byte(bucketReqOrder)),
		meta:     tx.Bucket([]byte(bucketMeta)),
		pulled:   tx.Bucket([]byte(bucketPulled)),
	}
}

// treeOp is a change to the hash tree, made once the transaction commits.
type treeOp struct {
	t   aetree.Tuple
	add bool
}

// applyCommand commits c's entry as the LSN after last. touched collects
// the digests whose reference counts moved. Inline content not held as a
// file (inFile) is kept in the inline bucket.
func applyCommand(b buckets, c *command, last uint64, missing, inFile bool, touched map[wire.Digest]bool) (wire.LogEntry, []treeOp, error) {
	e := c.Entry
	if e.Op == wire.OpPurge {
		if _, err := appendLog(b.catalog.Tx(), &e, last); err != nil {
			return wire.LogEntry{}, nil, err
		}
		ops, err := purgePulled(b, &e, touched)
		return e, ops, err
	}
	id := aetree.Key(e.Namespace, e.Key)
	var cur *wire.LogEntry
	if v := b.catalog.Get(id); v != nil {
		ce, err := wire.ParseLogEntry(v)
		if err != nil {
			return wire.LogEntry{}, nil, fmt.Errorf("catalog entry: %w", err)
		}
		cur = &ce
	}
	switch e.Op {
	case wire.OpPut:
		if c.Inline != nil && (uint64(len(c.Inline)) != e.Size || sha256.Sum256(c.Inline) != e.Digest) {
			return wire.LogEntry{}, nil, fmt.Errorf("%w: inline content does not match its digest and size", errBadCommand)
		}
		if e.Pulled != nil && cur != nil && cur.Pulled == nil {
			// A published key wins over its upstream, whichever came
			// first to the leader.
			return wire.LogEntry{}, nil, errPublishedWins
		}
		if e.Pulled != nil && c.Inline == nil && c.Stage == "" && (cur == nil || cur.Digest != e.Digest) {
			// A refresh names the content of the version it revalidated,
			// which may have been collected once that version went.
			return wire.LogEntry{}, nil, errRefreshGone
		}
	case wire.OpDelete:
		if cur == nil {
			return wire.LogEntry{}, nil, ErrNotFound
		}
		e.Consistency, e.Bound = cur.Consistency, cur.Bound
	default:
		return wire.LogEntry{}, nil, fmt.Errorf("%w: op %v", errBadCommand, e.Op)
	}
	enc, err := appendLog(b.catalog.Tx(), &e, last)
	if err != nil {
		return wire.LogEntry{}, nil, err
	}
	var ops []treeOp
	if cur != nil {
		ops = append(ops, treeOp{t: tupleOf(cur)})
	}
	if err := markPulled(b, id, e.Op == wire.OpPut && e.Pulled != nil); err != nil {
		return wire.LogEntry{}, nil, err
	}
	if e.Op == wire.OpPut {
		if err := b.catalog.Put(id, enc); err != nil {
			return wire.LogEntry{}, nil, err
		}
		// Count the new reference before dropping the old one, so
		// replacing content by itself never reaches zero.
		if _, err := addRef(b.refs, b.gc, e.Digest, +1); err != nil {
			return wire.LogEntry{}, nil, err
		}
		touched[e.Digest] = true
		if missing && b.inline.Get(e.Digest[:]) != nil {
			missing = false // an earlier put left it in the catalog
		}
		if c.Inline != nil && !inFile && b.inline.Get(e.Digest[:]) == nil {
			if err := b.inline.Put(e.Digest[:], c.Inline); err != nil {
				return wire.LogEntry{}, nil, err
			}
		}
		if missing {
			if err := b.missing.Put(e.Digest[:], binary.BigEndian.AppendUint64(nil, e.Size)); err != nil {
				return wire.LogEntry{}, nil, err
			}
		} else if err := b.missing.Delete(e.Digest[:]); err != nil {
			return wire.LogEntry{}, nil, err
		}
		ops = append(ops, treeOp{t: tupleOf(&e), add: true})
	} else if err := b.catalog.Delete(id); err != nil {
		return wire.LogEntry{}, nil, err
	}
	if cur != nil {
		if _, err := addRef(b.refs, b.gc, cur.Digest, -1); err != nil {
			return wire.LogEntry{}, nil, err
		}
		touched[cur.Digest] = true
	}
	return e, ops, nil
}

// markPulled records in the pulled bucket whether the current version
// under id was pulled.
func markPulled(b buckets, id []byte, pulled bool) error {
	if pulled {
		return b.pulled.Put(id, nil)
	}
	return b.pulled.Delete(id)
}

// purgePulled carries a purge out on the pulled versions it matches (the
// published ones the origin keeps: a purge only makes edges fetch them
// again). The origin's copy of a pulled response is a cache like the
// edges', so a purge reaches it too, or the edges would fetch the very
// copy the purge meant to be rid of: a hard purge removes the version
// from the catalog, so the next request fetches it from the upstream; a
// soft one forgets when it was received, which makes it stale, so the
// next request revalidates it. Every origin decides alike from the
// catalog alone; the log carries only the purge.
func purgePulled(b buckets, p *wire.LogEntry, touched map[wire.Digest]bool) ([]treeOp, error) {
	var ids [][]byte
	if len(p.PurgePrefixes)+len(p.PurgeTags) == 0 {
		for _, k := range p.PurgeKeys {
			if id := aetree.Key(p.Namespace, k); b.pulled.Get(id) != nil {
				ids = append(ids, id)
			}
		}
	} else {
		c := b.pulled.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			ids = append(ids, bytes.Clone(k))
		}
	}
	var ops []treeOp
	for _, id := range ids {
		v := b.catalog.Get(id)
		if v == nil {
			continue
		}
		cur, err := wire.ParseLogEntry(v)
		if err != nil {
			return nil, fmt.Errorf("catalog entry: %w", err)
		}
		if cur.Pulled == nil || !invalidation.PurgeMatches(p, &cur) {
			continue
		}
		if p.Soft {
			pl := *cur.Pulled
			pl.Requested, pl.Received = time.Time{}, time.Time{}
			cur.Pulled = &pl
			if err := b.catalog.Put(id, cur.Append(nil)); err != nil {
				return nil, err
			}
			continue
		}
		if err := b.catalog.Delete(id); err != nil {
			return nil, err
		}
		if err := b.pulled.Delete(id); err != nil {
			return nil, err
		}
		if _, err := addRef(b.refs, b.gc, cur.Digest, -1); err != nil {
			return nil, err
		}
		touched[cur.Digest] = true
		ops = append(ops, treeOp{t: tupleOf(&cur)})
	}
	return ops, nil
}

// rememberRequest records that request id was committed as lsn, and
// forgets the oldest request once more than requestsKept are recorded.
func rememberRequest(b buckets, id requestID, lsn uint64) error {
	var seq uint64
	if v := b.meta.Get([]byte(metaReqSeq)); len(v) == 8 {
		seq = binary.BigEndian.Uint64(v)
	}
	seq++
	if err := b.requests.Put(id[:], binary.BigEndian.AppendUint64(nil, lsn)); err != nil {
		return err
	}
	if err := b.order.Put(binary.BigEndian.AppendUint64(nil, seq), id[:]); err != nil {
		return err
	}
	if seq > requestsKept {
		old := binary.BigEndian.AppendUint64(nil, seq-requestsKept)
		if v := b.order.Get(old); v != nil {
			if err := b.requests.Delete(v); err != nil {
				return err
			}
			if err := b.order.Delete(old); err != nil {
				return err
			}
		}
	}
	return b.meta.Put([]byte(metaReqSeq), binary.BigEndian.AppendUint64(nil, seq))
}

// loggedEntry is the log entry lsn, or just its LSN once compaction
// removed it: what a repeated request learns of its first commit.
func loggedEntry(tx *bolt.Tx, lsn uint64) wire.LogEntry {
	if v := tx.Bucket([]byte(bucketLog)).Get(binary.BigEndian.AppendUint64(nil, lsn)); v != nil {
		if e, err := wire.ParseLogEntry(v); err == nil {
			return e
		}
	}
	return wire.LogEntry{LSN: lsn}
}

// placeAll puts the staged content of the batch's puts in place and
// reports which puts this node lacks the content of, which inline puts
// find their content already held as a file (inFile), and the directories
// to sync before the commit: a staged file is renamed into place, and its
// directory (and any it created) synced, as the catalog will name it.
// Content already in place is reused; a staged copy of it is dropped.
func (s *store) placeAll(cmds []*command, dup []bool) (missing, inFile []bool, dirs map[string]bool, err error) {
	missing, inFile = make([]bool, len(cmds)), make([]bool, len(cmds))
	dirs = map[string]bool{}
	var stagedDirs []string
	for i, c := range cmds {
		if c.Entry.Op != wire.OpPut {
			continue
		}
		if dup[i] {
			if c.Stage != "" {
				s.unstage(c.Stage)
			}
			continue
		}
		dst := s.blobPath(c.Entry.Digest)
		switch {
		case c.Inline != nil:
			inFile[i] = s.blobPresent(dst, int64(c.Entry.Size))
		case s.blobPresent(dst, int64(c.Entry.Size)):
			if c.Stage != "" {
				s.unstage(c.Stage)
			}
			// Its data was synced before it was put in place, but its
			// name may have appeared in a run that died before syncing
			// the directory: sync again rather than trust it.
			dirs[filepath.Dir(dst)] = true
		case c.Stage != "" && validStageName(c.Stage):
			stagedDirs = append(stagedDirs, filepath.Dir(dst))
		default:
			// Held inline by an earlier put, or missed: decided in the
			// transaction, which sees the inline bucket.
			missing[i] = true
		}
	}
	if err := s.ensureDirsLocked(stagedDirs); err != nil {
		return nil, nil, nil, err
	}
	for i, c := range cmds {
		if c.Entry.Op != wire.OpPut || dup[i] || missing[i] || c.Inline != nil || c.Stage == "" || !validStageName(c.Stage) {
			continue
		}
		dst := s.blobPath(c.Entry.Digest)
		if s.blobPresent(dst, int64(c.Entry.Size)) {
			s.unstage(c.Stage) // an earlier put of the batch placed it
			continue
		}
		err := s.fs.Rename(s.stagePath(c.Stage), dst)
		if errors.Is(err, fs.ErrNotExist) {
			missing[i] = true
			continue
		} else if err != nil {
			return nil, nil, nil, fmt.Errorf("link blob: %w", err)
		}
		dirs[filepath.Dir(dst)] = true
	}
	return missing, inFile, dirs, nil
}

// blobPresent reports whether a blob of size is in place at path.
func (s *store) blobPresent(path string, size int64) bool {
	fi, err := s.fs.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Size() == size
}

// syncDirs fsyncs every directory in dirs, several at once.
func (s *store) syncDirs(dirs map[string]bool) error {
	var g errgroup.Group
	g.SetLimit(syncParallel)
	for d := range dirs {
		g.Go(func() error {
			if err := s.fs.SyncDir(d); err != nil {
				return fmt.Errorf("sync blob dir: %w", err)
			}
			return nil
		})
	}
	return g.Wait()
}

// removeBlobsLocked removes the blobs of ds durably: every file first,
// then each directory once, several at once. It returns the digests whose
// removal is durable.
func (s *store) removeBlobsLocked(ds []wire.Digest) []wire.Digest {
	if len(ds) == 0 {
		return nil
	}
	dirs := map[string][]wire.Digest{}
	for _, d := range ds {
		p := s.blobPath(d)
		if err := s.fs.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		dirs[filepath.Dir(p)] = append(dirs[filepath.Dir(p)], d)
	}
	var (
		mu   sync.Mutex
		done []wire.Digest
		g    errgroup.Group
	)
	g.SetLimit(syncParallel)
	for dir, in := range dirs {
		g.Go(func() error {
			// Without this a crash could bring the file back after
			// bucketGC forgot it, leaking its space for good.
			if err := s.fs.SyncDir(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			mu.Lock()
			done = append(done, in...)
			mu.Unlock()
			return nil
		})
	}
	g.Wait()
	return done
}

// ensureDirsLocked is ensureDirLocked for several fan-out directories at
// once: each is created, then the parents whose entries changed are
// synced, several at once. A fresh store creates a directory for nearly
// every blob, and one sync after another would cost a batch dearly.
func (s *store) ensureDirsLocked(dirs []string) error {
	parents := map[string]bool{}
	var made []string
	for _, dir := range dirs {
		if s.durableDirs[dir] {
			continue
		}
		if err := s.fs.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create blob dir: %w", err)
		}
		for d := dir; d != s.blobDir && !s.durableDirs[d]; d = filepath.Dir(d) {
			parents[filepath.Dir(d)] = true
			made = append(made, d)
		}
	}
	if err := s.syncDirs(parents); err != nil {
		return fmt.Errorf("create blob dir: %w", err)
	}
	for _, d := range made {
		s.durableDirs[d] = true
	}
	return nil
}
