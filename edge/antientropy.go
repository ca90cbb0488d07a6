package edge

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"go.etcd.io/bbolt"

	"github.com/geocdn/geocdn/internal/aetree"
	"github.com/geocdn/geocdn/internal/wire"
)

// The store's side of anti-entropy (resync.go drives it, and reads the
// hash tree, which has a lock of its own, directly): the entries of a
// leaf, read with the watermark they reflect; repairs that apply only if
// the key has not moved since it was compared; and a check of the blob
// files themselves.

// leafEntries returns the current versions in leaves, read from the index
// on disk in one transaction, and the watermark it was at.
func (s *store) leafEntries(leaves []uint32) (map[objKey]wire.LogEntry, uint64, error) {
	out := make(map[objKey]wire.LogEntry)
	var wm uint64
	err := s.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyWatermark); len(v) == 8 {
			wm = binary.BigEndian.Uint64(v)
		}
		objs := tx.Bucket(bucketObjects)
		for _, l := range leaves {
			err := aetree.ScanLeaves(objs, l, l+1, func(k, v []byte) error {
				e, err := wire.ParseLogEntry(v)
				if err != nil {
					return fmt.Errorf("index entry %q: %w", k, err)
				}
				out[objKey{e.Namespace, e.Key}] = e
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("edge: read index: %w", err)
	}
	return out, wm, nil
}

// trackTouched starts recording which keys the log changes (store.touched)
// and returns the function that stops it. One resync runs at a time.
func (s *store) trackTouched() (stop func()) {
	s.mu.Lock()
	s.touched = make(map[objKey]uint64)
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.touched = nil
		s.mu.Unlock()
	}
}

// touchedAfter reports whether the log changed k at an LSN above lsn
// since trackTouched.
func (s *store) touchedAfter(k objKey, lsn uint64) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.touched[k] > lsn
}

// repair is one change anti-entropy makes to the index: k becomes entry
// (nil: k is removed), provided k's current version still has LSN expect
// (0: k has none).
type repair struct {
	k      objKey
	expect uint64
	entry  *wire.LogEntry
}

// reconcile applies repairs in one transaction, skipping those whose key
// moved since it was compared, and returns how many it applied. The
// watermark does not move: the log's position is the log's business.
func (s *store) reconcile(rs []repair) (int, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	c := newChangeSet()
	n := 0
	for _, r := range rs {
		var cur uint64
		if v := s.index.get(r.k.ns, r.k.key); v != nil {
			cur = v.lsn
		}
		if _, dup := c.staged[r.k]; dup || cur != r.expect {
			continue
		}
		s.stageLocked(c, r.k, r.entry)
		n++
	}
	if n == 0 {
		return 0, nil
	}
	if err := s.commitLocked(c, 0, nil); err != nil {
		return 0, fmt.Errorf("edge: repair index: %w", err)
	}
	return n, nil
}

// verifyFiles checks that every blob recorded on disk still has its file,
// of its size, and forgets those that do not (deleted or truncated behind
// the edge's back), so they are fetched again rather than served short.
// It costs a stat per blob and reads no content; the scrubber reads it.
func (s *store) verifyFiles() (lost int, err error) {
	type rec struct {
		d    wire.Digest
		size int64
	}
	var all []rec
	s.mu.RLock()
	for b := range s.blobs.all() {
		if b.onDisk {
			all = append(all, rec{b.digest, b.size})
		}
	}
	s.mu.RUnlock()
	var gone []wire.Digest
	for _, r := range all {
		fi, err := os.Stat(s.blobPath(r.d))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			gone = append(gone, r.d)
		case err != nil:
			return 0, fmt.Errorf("edge: check blob %s: %w", shortHex(r.d), err)
		case fi.Size() != r.size:
			gone = append(gone, r.d)
		}
	}
	if len(gone) == 0 {
		return 0, nil
	}
	s.log.Warn("edge: blob files missing or damaged; they will be fetched again", "count", len(gone))
	return len(gone), s.drop(gone)
}

// Holding is one current version in an edge's index.
type Holding struct {
	Entry wire.LogEntry
	// Present reports the content on disk; Owed that the edge must hold
	// it (placement plan, or replica set at publish); Pinned that it is
	// held as a replica, never evicted, rather than as an evictable fill.
	Present, Owed, Pinned bool
}

// Holdings lists the edge's index, for operators' tools and tests.
func (e *Edge) Holdings() []Holding {
	e.store.mu.RLock()
	out := make([]Holding, 0, e.store.index.len())
	for v := range e.store.index.all() {
		b := v.blob
		out = append(out, Holding{Entry: v.logEntry(), Present: b.onDisk, Pinned: b.onDisk && b.required})
	}
	e.store.mu.RUnlock()
	for i := range out {
		out[i].Owed = e.owes(out[i].Entry)
	}
	return out
}
