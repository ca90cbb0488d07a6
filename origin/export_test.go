package origin

import (
	"fmt"
	"path/filepath"

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
		var cmds []*command
		for i := start; i < min(start+batch, n); i++ {
			e := entry(i)
			if e.Op != wire.OpPut {
				return 0, 0, fmt.Errorf("entry %d: op %v, want a put", i, e.Op)
			}
			if !held[e.Digest] {
				if !s.blobPresent(s.blobPath(e.Digest), int64(e.Size)) {
					return 0, 0, fmt.Errorf("entry %d names blob %s, not held with %d bytes", i, e.Digest, e.Size)
				}
				held[e.Digest] = true
			}
			cmds = append(cmds, &command{Entry: e})
		}
		res, err := s.apply(0, cmds)
		if err != nil {
			return 0, 0, fmt.Errorf("bulk load of %s: %w", s.catalogPath, err)
		}
		for i, r := range res {
			if r.Err != nil {
				return 0, 0, fmt.Errorf("entry %d: %w", start+i, r.Err)
			}
			if first == 0 {
				first = r.Entry.LSN
			}
			last = r.Entry.LSN
		}
	}
	return first, last, nil
}
