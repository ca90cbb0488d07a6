package origin

import (
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/geocdn/geocdn/internal/aetree"
	"github.com/geocdn/geocdn/internal/wire"
)

// The store's side of anti-entropy: every answer is read together with the
// last LSN it reflects, so the edge can tell a real difference from an
// entry still on its way down the log.

// treeNodes returns the hashes of the given nodes of one level of the
// catalog's hash tree, and the LSN they reflect.
func (s *store) treeNodes(level int, indices []uint32) ([]wire.NodeHash, uint64, error) {
	s.treeMu.RLock()
	defer s.treeMu.RUnlock()
	hs, err := s.tree.Nodes(nil, level, indices)
	if err != nil {
		return nil, 0, err
	}
	out := make([]wire.NodeHash, len(hs))
	for i, h := range hs {
		out[i] = wire.NodeHash(h)
	}
	return out, s.last.Load(), nil
}

// readAt runs fn in one read transaction and returns the last LSN that
// transaction saw: what fn read is the catalog at that LSN.
func (s *store) readAt(fn func(catalog *bolt.Bucket) error) (uint64, error) {
	var lsn uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		if lsn, err = s.readLSN(tx.Bucket([]byte(bucketMeta))); err != nil {
			return err
		}
		return fn(tx.Bucket([]byte(bucketCatalog)))
	})
	if err != nil {
		return 0, fmt.Errorf("read catalog %s: %w", s.catalogPath, err)
	}
	return lsn, nil
}

// leafTuples returns the tuples of the current versions in leaves.
func (s *store) leafTuples(leaves []uint32) ([]wire.Tuple, uint64, error) {
	var out []wire.Tuple
	lsn, err := s.readAt(func(c *bolt.Bucket) error {
		for _, l := range leaves {
			err := aetree.ScanLeaves(c, l, l+1, func(k, v []byte) error {
				e, err := wire.ParseLogEntry(v)
				if err != nil {
					return fmt.Errorf("catalog entry %q: %w", k, err)
				}
				out = append(out, wire.Tuple{Namespace: e.Namespace, Key: e.Key, LSN: e.LSN, Digest: e.Digest})
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return out, lsn, err
}

// currentEntries returns the current entries of refs that exist.
func (s *store) currentEntries(refs []wire.ObjectRef) ([]wire.LogEntry, uint64, error) {
	var out []wire.LogEntry
	lsn, err := s.readAt(func(c *bolt.Bucket) error {
		for _, r := range refs {
			v := c.Get(aetree.Key(r.Namespace, r.Key))
			if v == nil {
				continue
			}
			e, err := wire.ParseLogEntry(v)
			if err != nil {
				return fmt.Errorf("catalog entry %q: %w", r.Key, err)
			}
			out = append(out, e)
		}
		return nil
	})
	return out, lsn, err
}

// maxSnapshotBytes bounds the entries one snapshot answer gathers before
// it is sent: they are read in one transaction, then written.
const maxSnapshotBytes = 16 << 20

// errSnapshotRange refuses a snapshot range whose entries exceed
// maxSnapshotBytes; the edge asks for narrower ranges.
var errSnapshotRange = fmt.Errorf("snapshot range holds more than %d bytes of entries; ask for fewer leaves", maxSnapshotBytes)

// snapshotRange returns every current entry whose leaf is in [from, to).
func (s *store) snapshotRange(from, to uint32) ([]wire.LogEntry, uint64, error) {
	var out []wire.LogEntry
	size := 0
	lsn, err := s.readAt(func(c *bolt.Bucket) error {
		return aetree.ScanLeaves(c, from, to, func(k, v []byte) error {
			if size += len(v); size > maxSnapshotBytes {
				return errSnapshotRange
			}
			e, err := wire.ParseLogEntry(v)
			if err != nil {
				return fmt.Errorf("catalog entry %q: %w", k, err)
			}
			out = append(out, e)
			return nil
		})
	})
	return out, lsn, err
}

// Objects calls fn with the current version of every object in the
// catalog, for operators' tools and tests.
func (o *Origin) Objects(fn func(wire.LogEntry) error) error {
	return o.store.forEachObject(fn)
}

// CompactLog compacts the log to its retention now, as the origin does
// every minute, and returns how many entries it dropped.
func (o *Origin) CompactLog() (int, error) {
	var c compactor
	return o.store.compact(c.keepFrom(o.cfg.LogRetention, o.store.lastLSN(), o.clk.Now()))
}

// FirstLSN is the first LSN the log holds; earlier entries were compacted.
func (o *Origin) FirstLSN() uint64 { return o.store.firstLSN() }
