package origin

import (
	"fmt"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"github.com/geocdn/geocdn/internal/aetree"
	"github.com/geocdn/geocdn/internal/fsys"
	"github.com/geocdn/geocdn/internal/wire"
)

// Test seams for the external tests of this package (origin_test).

// BulkLoadCatalog commits n puts to the store in the data directory
// dataDir, entry(i) for i in [0, n), as publishes would have committed
// them, but batch puts to a bbolt transaction: a catalog of a million
// objects is built in seconds rather than with a million fsyncs. Each put
// goes through the commit path's own steps (the next LSN and a log entry,
// the catalog entry under its leaf-first key, the blob's reference count);
// the hash tree is the catalog's, rebuilt when the origin opens. Every
// entry must be an OpPut naming content the store already holds (publish
// it once first), so that the catalog only names durable blobs. The
// origin must not be running on dataDir. It returns the LSNs of the first
// and the last put.
func BulkLoadCatalog(dataDir string, n, batch int, entry func(i int) wire.LogEntry) (first, last uint64, err error) {
	s, err := openStore(fsys.OS(), filepath.Join(dataDir, "blobs"), filepath.Join(dataDir, "catalog.db"))
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		if cerr := s.close(); err == nil {
			err = cerr
		}
	}()
	held := map[wire.Digest]bool{}
	for start := 0; start < n; start += batch {
		err := s.db.Update(func(tx *bolt.Tx) error {
			catalog := tx.Bucket([]byte(bucketCatalog))
			refs, gc := tx.Bucket([]byte(bucketRefs)), tx.Bucket([]byte(bucketGC))
			for i := start; i < min(start+batch, n); i++ {
				e := entry(i)
				if e.Op != wire.OpPut {
					return fmt.Errorf("entry %d: op %v, want a put", i, e.Op)
				}
				if !held[e.Digest] {
					fi, err := s.fs.Stat(s.blobPath(e.Digest))
					if err != nil || fi.Size() != int64(e.Size) {
						return fmt.Errorf("entry %d names blob %s, not held with %d bytes: %v", i, e.Digest, e.Size, err)
					}
					held[e.Digest] = true
				}
				id := aetree.Key(e.Namespace, e.Key)
				var cur *wire.LogEntry
				if v := catalog.Get(id); v != nil {
					c, err := wire.ParseLogEntry(v)
					if err != nil {
						return err
					}
					cur = &c
				}
				enc, err := s.appendLog(tx, &e)
				if err != nil {
					return fmt.Errorf("entry %d: %w", i, err)
				}
				if err := catalog.Put(id, enc); err != nil {
					return err
				}
				if _, err := addRef(refs, gc, e.Digest, +1); err != nil {
					return err
				}
				if cur != nil {
					if k, err := addRef(refs, gc, cur.Digest, -1); err != nil || k == 0 {
						return fmt.Errorf("entry %d replaces the last reference to %s (%v): not supported here", i, cur.Digest, err)
					}
				}
				if first == 0 {
					first = e.LSN
				}
				last = e.LSN
			}
			return nil
		})
		if err != nil {
			return 0, 0, fmt.Errorf("bulk load of %s: %w", s.catalogPath, err)
		}
	}
	return first, last, nil
}
