package edge

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"

	"go.etcd.io/bbolt"

	"github.com/geocdn/geocdn/internal/aetree"
	"github.com/geocdn/geocdn/internal/wire"
)

// Snapshot catch-up: when the origin's log no longer reaches back to the
// edge's watermark (LogGap), the edge
//  1. streams the catalog range of leaves by range of leaves, making each
//     range of its index equal to the origin's (keys the origin no longer
//     has are removed, which step 3 of the design names "drop what the
//     snapshot no longer names");
//  2. moves its watermark to the LSN of the first range's answer and
//     reconnects, so the log is replayed from there: an entry already
//     reflected by a later range is applied again, and the log's order
//     leaves every key as the origin has it;
//  3. fetches the content it owes.
//
// Progress is recorded with each range (keySnapshot: the snapshot's LSN
// and the next leaf), so a catch-up cut off by a disconnect resumes where
// it stopped, unless the log has moved past the snapshot's LSN meanwhile.

// snapshotLeaves is the leaves asked for at once: about 15 entries each at
// a million objects, so a few hundred KiB per answer.
const snapshotLeaves = 1024

// snapshotProgress is a catch-up under way.
type snapshotProgress struct {
	lsn  uint64 // the snapshot's LSN: the log is followed from there
	next uint32 // first leaf not yet taken
}

func (s *store) snapshotProgress() (snapshotProgress, bool) {
	var p snapshotProgress
	ok := false
	s.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keySnapshot); len(v) == 12 {
			p = snapshotProgress{binary.BigEndian.Uint64(v), binary.BigEndian.Uint32(v[8:])}
			ok = true
		}
		return nil
	})
	return p, ok
}

func (p snapshotProgress) encode() []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(nil, p.lsn), p.next)
}

// replaceLeaves makes the index's versions in leaves [from, to) exactly
// entries and records progress p, in one transaction. It returns how many
// keys it removed and how many it changed.
func (s *store) replaceLeaves(from, to uint32, entries []wire.LogEntry, p snapshotProgress) (removed, changed int, err error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	have := make(map[objKey]uint64)
	err = s.db.View(func(tx *bbolt.Tx) error {
		return aetree.ScanLeaves(tx.Bucket(bucketObjects), from, to, func(k, v []byte) error {
			ns, key, err := aetree.SplitKey(k)
			if err != nil {
				return err
			}
			e, err := wire.ParseLogEntry(v)
			if err != nil {
				return fmt.Errorf("index entry %q: %w", k, err)
			}
			have[objKey{ns, key}] = e.LSN
			return nil
		})
	})
	if err != nil {
		return 0, 0, fmt.Errorf("edge: read index: %w", err)
	}
	c := newChangeSet()
	for i := range entries {
		k := objKey{entries[i].Namespace, entries[i].Key}
		lsn, ok := have[k]
		delete(have, k)
		if ok && lsn == entries[i].LSN {
			continue
		}
		s.stageLocked(c, k, &entries[i])
		changed++
	}
	for k := range have {
		s.stageLocked(c, k, nil)
		removed++
	}
	err = s.commitLocked(c, 0, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySnapshot, p.encode())
	})
	if err != nil {
		return 0, 0, fmt.Errorf("edge: apply snapshot range: %w", err)
	}
	return removed, changed, nil
}

// finishSnapshot moves the watermark to the snapshot's LSN and forgets the
// progress, in one transaction.
func (s *store) finishSnapshot(lsn uint64) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	err := s.commitLocked(newChangeSet(), max(lsn, s.wm.Load()), func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMeta).Delete(keySnapshot)
	})
	if err != nil {
		return fmt.Errorf("edge: finish snapshot: %w", err)
	}
	return nil
}

// catchUpBySnapshot runs a snapshot catch-up on session s; first is the
// first LSN the origin's log holds.
func (e *Edge) catchUpBySnapshot(ctx context.Context, s *session, first uint64) error {
	rep := wire.ResyncReport{Snapshot: true}
	return e.exchange(ctx, s, "snapshot catch-up", &rep, func() error { return e.takeSnapshot(ctx, s, first, &rep) })
}

func (e *Edge) takeSnapshot(ctx context.Context, s *session, first uint64, rep *wire.ResyncReport) error {
	p, ok := e.store.snapshotProgress()
	if !ok || p.lsn+1 < first {
		// None under way, or the log has moved past the one that was.
		p = snapshotProgress{}
	}
	rs, err := e.openResync(ctx, s, rep)
	if err != nil {
		return err
	}
	defer func() { rs.st.CancelRead(0); rs.st.CancelWrite(0) }()
	step := uint32(snapshotLeaves)
	for p.next < aetree.Leaves {
		to := min(p.next+step, aetree.Leaves)
		from := p.next
		es, lsn, err := rs.entries(wire.SnapshotRequest{FromLeaf: from, ToLeaf: to}, func(ent *wire.LogEntry) bool {
			l := aetree.Leaf(ent.Namespace, ent.Key)
			return l >= from && l < to && ent.Validate() == nil
		})
		if err != nil && step > 1 && strings.Contains(err.Error(), "ask for fewer leaves") {
			step /= 2
			continue
		}
		if err != nil {
			return err
		}
		if p.lsn == 0 {
			p.lsn = max(lsn, 1)
		}
		p.next = to
		removed, changed, err := e.store.replaceLeaves(from, to, es, p)
		if err != nil {
			return err
		}
		rep.Extra += uint64(removed)
		rep.Stale += uint64(changed)
		rep.Repaired += uint64(removed + changed)
	}
	return e.store.finishSnapshot(p.lsn)
}
