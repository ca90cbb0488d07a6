package origin

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"

	"github.com/geocdn/geocdn/internal/aetree"
	"github.com/geocdn/geocdn/internal/wire"
)

// fetcher opens the content with digest d on some peer origin, or fails.
type fetcher func(ctx context.Context, d wire.Digest) (io.ReadCloser, error)

// restoreParallel bounds the blob fetches a restore runs at once.
const restoreParallel = 8

// restore replaces the catalog with the bbolt file read from r (a raft
// snapshot) and brings every blob it names that this node lacks, through
// fetch. Content no peer could give is recorded as missing, for
// fetchMissing to retry, rather than failing the restore: a restore that
// failed would be tried again with the same result, and the node would
// never follow the log.
//
// The catalog is replaced in place, bucket by bucket in one transaction,
// so readers see the old state or the new one and never a closed database.
func (s *store) restore(r io.Reader, fetch fetcher, log *slog.Logger) error {
	path := s.catalogPath + ".restore"
	os.Remove(path)
	defer os.Remove(path)
	if err := writeSynced(path, r); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	snap, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("restore: open snapshot: %w", err)
	}
	defer snap.Close()

	var need []blobRef
	err = snap.View(func(tx *bolt.Tx) error {
		refs := tx.Bucket([]byte(bucketRefs))
		if refs == nil {
			return errors.New("snapshot has no reference counts")
		}
		sizes := map[wire.Digest]uint64{}
		if err := tx.Bucket([]byte(bucketCatalog)).ForEach(func(_, v []byte) error {
			e, err := wire.ParseLogEntry(v)
			if err == nil {
				sizes[e.Digest] = e.Size
			}
			return err
		}); err != nil {
			return err
		}
		inline := tx.Bucket([]byte(bucketInline))
		for d, size := range sizes {
			if inline != nil && inline.Get(d[:]) != nil {
				continue // the snapshot carries it
			}
			if !s.blobPresent(s.blobPath(d), int64(size)) {
				need = append(need, blobRef{d, size})
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("restore: read snapshot: %w", err)
	}
	var (
		g       errgroup.Group
		fetched atomic.Int64
	)
	g.SetLimit(restoreParallel)
	missing := make([]bool, len(need))
	for i, b := range need {
		g.Go(func() error {
			ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout(b.size))
			defer cancel()
			if err := s.fetchBlob(ctx, fetch, b.digest, b.size); err != nil {
				log.Warn("restore: blob not fetched; recorded as missing", "digest", b.digest.String(), "err", err)
				missing[i] = true
				return nil
			}
			fetched.Add(1)
			return nil
		})
	}
	g.Wait()

	s.mu.Lock()
	defer s.mu.Unlock()
	err = s.db.Update(func(tx *bolt.Tx) error {
		return snap.View(func(from *bolt.Tx) error {
			if err := replaceBuckets(tx, from); err != nil {
				return err
			}
			m := tx.Bucket([]byte(bucketMissing))
			for i, b := range need {
				if missing[i] {
					if err := m.Put(b.digest[:], binary.BigEndian.AppendUint64(nil, b.size)); err != nil {
						return err
					}
				}
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("restore: replace catalog: %w", err)
	}
	s.collected = s.collected[:0]
	if err := s.reload(); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	log.Info("catalog restored from a raft snapshot", "lsn", s.lastLSN(), "raft_index", s.applied.Load(),
		"blobs_fetched", fetched.Load(), "blobs_missing", len(need)-int(fetched.Load()))
	return nil
}

type blobRef struct {
	digest wire.Digest
	size   uint64
}

// fetchTimeout allows a minute plus a second per MiB.
func fetchTimeout(size uint64) time.Duration {
	return time.Minute + time.Duration(size>>20)*time.Second
}

// replaceBuckets makes tx's buckets what from's are.
func replaceBuckets(tx, from *bolt.Tx) error {
	var names [][]byte
	if err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		names = append(names, append([]byte(nil), name...))
		return nil
	}); err != nil {
		return err
	}
	for _, n := range names {
		if err := tx.DeleteBucket(n); err != nil {
			return err
		}
	}
	if err := from.ForEach(func(name []byte, src *bolt.Bucket) error {
		dst, err := tx.CreateBucket(name)
		if err != nil {
			return err
		}
		dst.FillPercent = 1 // keys arrive in order
		return src.ForEach(func(k, v []byte) error { return dst.Put(k, v) })
	}); err != nil {
		return err
	}
	// A snapshot from before pull-through has no pulled bucket, and
	// named no pulled version.
	_, err := tx.CreateBucketIfNotExists([]byte(bucketPulled))
	return err
}

// reload reads the in-memory state (LSNs, applied index, hash tree) from
// the catalog again. Callers hold mu.
func (s *store) reload() error {
	tree := aetree.New()
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, name := range []string{bucketLog, bucketCatalog, bucketRefs, bucketGC, bucketMeta, bucketRequests, bucketReqOrder, bucketMissing, bucketInline, bucketPulled} {
			if tx.Bucket([]byte(name)) == nil {
				return fmt.Errorf("catalog has no bucket %s", name)
			}
		}
		meta := tx.Bucket([]byte(bucketMeta))
		lsn, err := s.readLSN(meta)
		if err != nil {
			return err
		}
		first, applied := uint64(1), uint64(0)
		if v := meta.Get([]byte(metaFirst)); len(v) == 8 {
			first = binary.BigEndian.Uint64(v)
		}
		if v := meta.Get([]byte(metaRaftIndex)); len(v) == 8 {
			applied = binary.BigEndian.Uint64(v)
		}
		if err := tx.Bucket([]byte(bucketCatalog)).ForEach(func(k, v []byte) error {
			e, err := wire.ParseLogEntry(v)
			if err != nil {
				return fmt.Errorf("entry %q: %w", k, err)
			}
			tree.Add(tupleOf(&e))
			return nil
		}); err != nil {
			return err
		}
		s.treeMu.Lock()
		s.tree = tree
		s.last.Store(lsn)
		s.treeMu.Unlock()
		s.first.Store(first)
		s.applied.Store(applied)
		return nil
	})
	if err != nil {
		return fmt.Errorf("reload catalog %s: %w", s.catalogPath, err)
	}
	return nil
}

// fetchBlob brings the content d of size bytes from a peer and puts it in
// place durably, after checking it hashes to d.
func (s *store) fetchBlob(ctx context.Context, fetch fetcher, d wire.Digest, size uint64) error {
	if fetch == nil {
		return errors.New("no peer to fetch from")
	}
	rc, err := fetch(ctx, d)
	if err != nil {
		return err
	}
	defer rc.Close()
	st, err := s.stage(ctx, io.LimitReader(rc, int64(size)+1), int64(size))
	if err != nil {
		return err
	}
	if st.digest != d || uint64(st.size) != size {
		s.unstage(st.name)
		return fmt.Errorf("peer sent %d bytes hashing to %s, want %d bytes of %s", st.size, st.digest, size, d)
	}
	return s.placeFetched(st)
}

// placeFetched moves fetched content into place and syncs its directory.
// The content was named by the catalog before it arrived, so no commit
// follows; the missing record is cleared.
func (s *store) placeFetched(st staged) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	dst := s.blobPath(st.digest)
	if err := s.ensureDirLocked(filepath.Dir(dst)); err != nil {
		s.unstage(st.name)
		return err
	}
	if err := s.fs.Rename(s.stagePath(st.name), dst); err != nil {
		s.unstage(st.name)
		return fmt.Errorf("link blob: %w", err)
	}
	if err := s.fs.SyncDir(filepath.Dir(dst)); err != nil {
		return fmt.Errorf("link blob: %w", err)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketMissing)).Delete(st.digest[:])
	})
}

// missingBlobs lists the content the catalog names that this node lacks.
func (s *store) missingBlobs() ([]blobRef, error) {
	var out []blobRef
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketMissing)).ForEach(func(k, v []byte) error {
			var d wire.Digest
			if len(k) == len(d) && len(v) == 8 {
				copy(d[:], k)
				out = append(out, blobRef{digest: d, size: binary.BigEndian.Uint64(v)})
			}
			return nil
		})
	})
	return out, err
}

// writeSynced copies r into a new file at path on the real filesystem and
// fsyncs it.
func writeSynced(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// resetApplied forgets the raft index the catalog applied, for a catalog
// whose raft log is gone: a new log starts after what it holds.
func (s *store) resetApplied() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketMeta)).Delete([]byte(metaRaftIndex))
	})
	if err != nil {
		return fmt.Errorf("reset raft index of %s: %w", s.catalogPath, err)
	}
	s.applied.Store(0)
	return nil
}
