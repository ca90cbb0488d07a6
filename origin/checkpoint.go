package origin

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"github.com/geocdn/geocdn/internal/fsys"
)

// The catalog's durability under raft.
//
// Every catalog change is a raft entry, and raft fsyncs its log before an
// entry commits. The catalog is therefore a view of the log that can be
// rebuilt (from the latest raft snapshot and the entries after it), as
// etcd treats its backend, and syncing it on every transaction only paid
// for the same durability twice: with three origins on a machine, the
// catalog's fsyncs were the largest single cost of a write.
//
// So with group commit on, the catalog commits without fsync. Its pages
// still reach the kernel at once, so a process that dies, even by
// SIGKILL, leaves a catalog as of its last transaction: the page cache
// outlives the process, and bbolt's copy-on-write never overwrites a page
// the last committed state uses. Only the machine itself stopping (power
// loss, a kernel crash) can leave pages on the disk out of order, a torn
// file. The marker file tells which: it is written, and fsynced, with the
// boot ID before the first unsynced transaction, and removed after a final
// fsync when the origin closes. A marker from another boot means the file
// may be torn: it is set aside and rebuilt from raft.
//
// A catalog that holds state the raft log cannot give back (one from
// before the cluster, or one whose raft log was lost) keeps syncing every
// transaction until raft has a snapshot of it; metaBase marks it.

// metaBase in the meta bucket marks a catalog whose content raft's log
// alone cannot rebuild (see above).
const metaBase = "base"

// markerPath is the path of the unsynced-catalog marker of the catalog at
// catalogPath.
func markerPath(catalogPath string) string { return catalogPath + ".unsynced" }

// bootID identifies this boot of the machine, or is empty where the
// system does not tell.
func bootID() []byte {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return nil
	}
	return bytes.TrimSpace(b)
}

// setAsideTornCatalog moves the catalog at catalogPath aside when its
// marker shows the machine stopped while it had unsynced transactions.
// It does so only when raftDir holds a raft
// log to rebuild it from; otherwise the catalog is the best there is, and
// it is kept with a warning.
func setAsideTornCatalog(catalogPath, raftDir string, log *slog.Logger) error {
	mark, err := os.ReadFile(markerPath(catalogPath))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("read %s: %w", markerPath(catalogPath), err)
	}
	if boot := bootID(); len(boot) > 0 && bytes.Equal(bytes.TrimSpace(mark), boot) {
		return nil // the process stopped, the machine did not
	}
	if _, err := os.Stat(filepath.Join(raftDir, "raft.db")); err != nil {
		log.Warn("the machine stopped while the catalog had unsynced writes, and there is no raft log to rebuild it from; keeping it as it is",
			"catalog", catalogPath, "err", err)
		return nil
	}
	aside := catalogPath + ".untrusted"
	if err := os.Rename(catalogPath, aside); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("set aside catalog %s: %w", catalogPath, err)
	}
	if err := os.Remove(markerPath(catalogPath)); err != nil {
		return fmt.Errorf("set aside catalog %s: %w", catalogPath, err)
	}
	if err := fsys.OS().SyncDir(filepath.Dir(catalogPath)); err != nil {
		return fmt.Errorf("set aside catalog %s: %w", catalogPath, err)
	}
	log.Warn("the machine stopped while the catalog had unsynced writes; it was set aside and is rebuilt from the raft snapshot and log",
		"catalog", catalogPath, "set_aside", aside)
	return nil
}

// hasBase reports whether the catalog holds content raft cannot rebuild.
func (s *store) hasBase() bool {
	var base bool
	s.db.View(func(tx *bolt.Tx) error {
		base = tx.Bucket([]byte(bucketMeta)).Get([]byte(metaBase)) != nil
		return nil
	})
	return base
}

// setBase marks the catalog as holding content raft cannot rebuild.
func (s *store) setBase() error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketMeta)).Put([]byte(metaBase), []byte{1})
	})
	if err != nil {
		return fmt.Errorf("mark catalog %s: %w", s.catalogPath, err)
	}
	return nil
}

// stopSyncing makes the catalog's later transactions skip fsync, after
// writing the marker that says so. It must run before any other goroutine
// writes the catalog.
func (s *store) stopSyncing() error {
	path := markerPath(s.catalogPath)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("catalog marker: %w", err)
	}
	_, err = f.Write(append(bootID(), '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsys.OS().SyncDir(filepath.Dir(path))
	}
	if err != nil {
		return fmt.Errorf("catalog marker %s: %w", path, err)
	}
	s.db.NoSync = true
	s.unsynced = true
	return nil
}

// syncAndUnmark fsyncs the catalog and removes its marker, at close.
func (s *store) syncAndUnmark() error {
	if !s.unsynced {
		return nil
	}
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("sync catalog %s: %w", s.catalogPath, err)
	}
	if err := os.Remove(markerPath(s.catalogPath)); err != nil {
		return fmt.Errorf("catalog marker: %w", err)
	}
	return fsys.OS().SyncDir(filepath.Dir(s.catalogPath))
}
