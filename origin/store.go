package origin

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/geocdn/geocdn/internal/aetree"
	"github.com/geocdn/geocdn/internal/fsys"
	"github.com/geocdn/geocdn/internal/wire"
)

var (
	// ErrNotFound is returned for a key with no current version.
	ErrNotFound = errors.New("object not found")
	// ErrTooLarge is returned by a put whose body exceeds its limit;
	// nothing was stored and no LSN was used.
	ErrTooLarge = errors.New("object too large")
)

// PutMeta is what a publisher says about an object besides its content.
type PutMeta struct {
	ContentType   string
	CacheControl  string
	SurrogateKeys []string
	Consistency   wire.Consistency
	// Bound is Δ for wire.Bounded, zero otherwise.
	Bound time.Duration
	// Replicas are the edge ids that must hold the version; empty means
	// every edge.
	Replicas []string
	ModTime  time.Time
	// Pulled describes an upstream response this version was fetched as
	// (pull-through); nil for a publish.
	Pulled *wire.Pulled
}

// Buckets of the catalog database.
const (
	bucketLog     = "log"     // 8-byte big-endian LSN → wire.LogEntry
	bucketCatalog = "catalog" // aetree.Key(namespace, key) → wire.LogEntry of the current version
	bucketRefs    = "refs"    // digest → uvarint count of catalog entries naming it
	bucketGC      = "gc"      // digest → empty: unreferenced, blob file not yet removed
	bucketMeta    = "meta"
)

// Keys of the meta bucket.
const (
	metaLSN    = "lsn"    // 8-byte big-endian last LSN used
	metaFormat = "format" // 1 byte: storeFormat
	metaFirst  = "first"  // 8-byte big-endian first LSN the log holds; absent: 1
)

// storeFormat is the layout of the catalog database; a later layout bumps
// it and migrates on open. Format 2 files catalog entries under
// aetree.Key, leaf first, so that anti-entropy lists a leaf's entries with
// one cursor scan; format 1 keyed them by namespace NUL key.
const storeFormat = 2

const (
	// copyBufSize is the unit in which bodies are streamed to disk.
	copyBufSize = 128 << 10
	// readChunkEntries and readChunkBytes bound the work done inside one
	// read transaction of readLog and forEachObject. A bbolt read
	// transaction that stays open blocks a writer that needs to grow the
	// memory map, so a slow consumer must never hold one.
	readChunkEntries = 256
	readChunkBytes   = 1 << 20
)

// store is the origin's durable state: content-addressed blobs on an
// fsys.FS, and the catalog plus replication log in bbolt.
//
// Invariant: a committed catalog entry names a blob that is durable. put
// makes the blob durable (file Sync, rename, SyncDir of its directory and of
// any directory it created) before the transaction that references it
// commits, and blobs are only removed once no committed entry references
// them. The catalog lives in bbolt on the real filesystem, not behind the
// seam, since bbolt does its own I/O through mmap and fsync; its Commit
// fsyncs, so a transaction that returned is durable.
//
// Safe for concurrent use. Bodies are streamed and hashed concurrently;
// linking blobs, committing and collecting garbage are serialised by mu, so
// LSNs are assigned in commit order.
type store struct {
	fs          fsys.FS
	blobDir     string
	tmpDir      string
	stageDir    string
	catalogPath string
	db          *bolt.DB
	bufs        sync.Pool // *[]byte of copyBufSize
	last        atomic.Uint64
	// applied is the raft index the catalog has applied up to (0 for a
	// store used outside raft).
	applied atomic.Uint64
	first   atomic.Uint64 // first LSN the log holds (compaction)

	// tree is the anti-entropy hash tree of the catalog's current
	// versions (aetree). treeMu makes its hashes and last one reading:
	// a commit moves both under it, so hashes read with an LSN are the
	// catalog's at that LSN.
	treeMu sync.RWMutex
	tree   *aetree.Tree

	// mu serialises "link blob, commit, collect garbage". Without it a put
	// could find its blob already in place, and a concurrent commit that
	// drops the last reference could remove that blob before the put's
	// own reference commits.
	mu sync.Mutex
	// durableDirs are the blob fan-out directories whose entries in their
	// parents this process has synced. After a crash a directory may exist
	// without being durable, so each one is synced once per process.
	durableDirs map[string]bool
	// collected are digests whose blobs were removed durably; the next
	// commit clears them from bucketGC.
	collected []wire.Digest
	// unsynced is set when the catalog's transactions skip fsync (see
	// checkpoint.go).
	unsynced bool
}

// openStore opens (creating if needed) the store with blobs under blobDir
// on files and the catalog at catalogPath on the real filesystem. Temporary
// files left by uploads that never committed are removed, as are blobs whose
// removal a crash interrupted.
func openStore(files fsys.FS, blobDir, catalogPath string) (*store, error) {
	s := &store{
		fs:          files,
		blobDir:     filepath.Clean(blobDir),
		catalogPath: catalogPath,
		bufs: sync.Pool{New: func() any {
			b := make([]byte, copyBufSize)
			return &b
		}},
		durableDirs: map[string]bool{},
	}
	s.tmpDir = filepath.Join(s.blobDir, "tmp")
	s.stageDir = filepath.Join(s.blobDir, "stage")
	if err := s.initBlobDir(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(catalogPath), 0o755); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	_, statErr := os.Stat(catalogPath)
	// The timeout turns a second origin on the same data dir into an
	// error instead of a hang on bbolt's file lock.
	db, err := bolt.Open(catalogPath, 0o600, boltOptions())
	if err != nil {
		return nil, fmt.Errorf("open catalog %s: %w", catalogPath, err)
	}
	s.db = db
	if errors.Is(statErr, fs.ErrNotExist) {
		// bbolt syncs the file it creates but not the directory entry.
		if err := fsys.OS().SyncDir(filepath.Dir(catalogPath)); err != nil {
			db.Close()
			return nil, fmt.Errorf("open catalog %s: %w", catalogPath, err)
		}
	}
	if err := s.initCatalog(); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.collectPending(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// initBlobDir creates blobDir and its tmp and stage directories durably,
// empties tmp, and removes staged content too old to be proposed still.
func (s *store) initBlobDir() error {
	for _, d := range []string{s.tmpDir, s.stageDir} {
		if err := s.fs.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("open store: %w", err)
		}
	}
	// MkdirAll may have created any directory on the path, and one made by
	// a run that died moments ago may exist without being durable; syncing
	// every ancestor once at open is cheap and needs no bookkeeping. (For a
	// relative blobDir, the entries of the working directory's ancestors
	// are the operator's.)
	if err := s.fs.SyncDir(s.blobDir); err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	for d := s.blobDir; filepath.Dir(d) != d; d = filepath.Dir(d) {
		if err := s.fs.SyncDir(filepath.Dir(d)); err != nil {
			return fmt.Errorf("open store: %w", err)
		}
	}
	ents, err := s.fs.ReadDir(s.tmpDir)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	// Nothing references a temp file: a blob is only named by the catalog
	// once it has been renamed out of tmp.
	for _, e := range ents {
		if err := s.fs.Remove(filepath.Join(s.tmpDir, e.Name())); err != nil {
			return fmt.Errorf("open store: remove leftover upload: %w", err)
		}
	}
	return s.sweepStage(time.Now().Add(-stageKeep))
}

// stageKeep is how long staged content is kept for a command to name it.
// A leader proposes its command as soon as a quorum holds the content,
// and a new leader commits what its predecessor appended within an
// election; an hour is ample.
const stageKeep = time.Hour

// sweepStage removes staged content last written before cutoff.
func (s *store) sweepStage(cutoff time.Time) error {
	ents, err := s.fs.ReadDir(s.stageDir)
	if err != nil {
		return fmt.Errorf("sweep staged content: %w", err)
	}
	for _, e := range ents {
		p := filepath.Join(s.stageDir, e.Name())
		if fi, err := s.fs.Stat(p); err == nil && fi.ModTime().Before(cutoff) {
			s.fs.Remove(p)
		}
	}
	return nil
}

func (s *store) initCatalog() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{bucketLog, bucketCatalog, bucketRefs, bucketGC, bucketMeta, bucketRequests, bucketReqOrder, bucketMissing, bucketInline, bucketPulled} {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return fmt.Errorf("open catalog %s: bucket %s: %w", s.catalogPath, name, err)
			}
		}
		meta := tx.Bucket([]byte(bucketMeta))
		switch v := meta.Get([]byte(metaFormat)); {
		case v == nil:
			if err := meta.Put([]byte(metaFormat), []byte{storeFormat}); err != nil {
				return fmt.Errorf("open catalog %s: %w", s.catalogPath, err)
			}
		case len(v) == 1 && v[0] == 1:
			if err := migrateCatalogV1(tx); err != nil {
				return fmt.Errorf("open catalog %s: migrate from format 1: %w", s.catalogPath, err)
			}
			if err := meta.Put([]byte(metaFormat), []byte{storeFormat}); err != nil {
				return fmt.Errorf("open catalog %s: %w", s.catalogPath, err)
			}
		case len(v) != 1 || v[0] != storeFormat:
			return fmt.Errorf("open catalog %s: format %x not supported (want %d)", s.catalogPath, v, storeFormat)
		}
		lsn, err := s.readLSN(meta)
		if err != nil {
			return err
		}
		s.last.Store(lsn)
		s.first.Store(1)
		if v := meta.Get([]byte(metaRaftIndex)); len(v) == 8 {
			s.applied.Store(binary.BigEndian.Uint64(v))
		}
		if v := meta.Get([]byte(metaFirst)); len(v) == 8 {
			s.first.Store(binary.BigEndian.Uint64(v))
		}
		// The hash tree is the catalog's, rebuilt at open: about a
		// second per million objects, once per start.
		s.tree = aetree.New()
		return tx.Bucket([]byte(bucketCatalog)).ForEach(func(k, v []byte) error {
			e, err := wire.ParseLogEntry(v)
			if err != nil {
				return fmt.Errorf("open catalog %s: entry %q: %w", s.catalogPath, k, err)
			}
			s.tree.Add(tupleOf(&e))
			return nil
		})
	})
}

// migrateCatalogV1 refiles every catalog entry of format 1 (keyed by
// namespace NUL key) under aetree.Key, in the transaction that records
// format 2: a crash leaves the catalog wholly in one format.
func migrateCatalogV1(tx *bolt.Tx) error {
	old := tx.Bucket([]byte(bucketCatalog))
	type kv struct{ k, v []byte }
	var all []kv
	err := old.ForEach(func(k, v []byte) error {
		all = append(all, kv{slices.Clone(k), slices.Clone(v)})
		return nil
	})
	if err != nil {
		return err
	}
	if err := tx.DeleteBucket([]byte(bucketCatalog)); err != nil {
		return err
	}
	b, err := tx.CreateBucket([]byte(bucketCatalog))
	if err != nil {
		return err
	}
	for _, e := range all {
		ent, err := wire.ParseLogEntry(e.v)
		if err != nil {
			return fmt.Errorf("entry %q: %w", e.k, err)
		}
		if err := b.Put(aetree.Key(ent.Namespace, ent.Key), e.v); err != nil {
			return err
		}
	}
	return nil
}

// tupleOf is what a current version contributes to the hash tree.
func tupleOf(e *wire.LogEntry) aetree.Tuple {
	return aetree.Tuple{Namespace: e.Namespace, Key: e.Key, LSN: e.LSN, Digest: e.Digest}
}

func (s *store) readLSN(meta *bolt.Bucket) (uint64, error) {
	v := meta.Get([]byte(metaLSN))
	switch len(v) {
	case 0:
		return 0, nil
	case 8:
		return binary.BigEndian.Uint64(v), nil
	}
	return 0, fmt.Errorf("catalog %s: last lsn is %d bytes, want 8", s.catalogPath, len(v))
}

// collectPending removes the blobs that a previous run committed as
// unreferenced but did not get to remove durably before it stopped.
func (s *store) collectPending() error {
	var pending []wire.Digest
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketGC)).ForEach(func(k, _ []byte) error {
			var d wire.Digest
			if len(k) != len(d) {
				return fmt.Errorf("catalog %s: gc entry of %d bytes", s.catalogPath, len(k))
			}
			copy(d[:], k)
			pending = append(pending, d)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range pending {
		if err := s.removeBlobLocked(d); err != nil {
			return fmt.Errorf("open store: %w", err)
		}
	}
	// Clear them now rather than with the next commit, so a store that is
	// only read from does not redo this on every open.
	err = s.db.Update(func(tx *bolt.Tx) error {
		gc := tx.Bucket([]byte(bucketGC))
		for _, d := range pending {
			if err := gc.Delete(d[:]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("open store: clear gc entries in %s: %w", s.catalogPath, err)
	}
	return nil
}

func (s *store) blobPath(d wire.Digest) string {
	h := d.String()
	return filepath.Join(s.blobDir, h[:2], h[2:4], h)
}

// put stores body as the new current version of ns/key and returns the
// committed log entry: it stages the body (streamed to disk while it is
// hashed, so memory stays constant whatever its size) and applies the put
// outside raft. A body longer than limit bytes (negative: no limit) fails
// with ErrTooLarge and leaves nothing behind. ctx is checked between reads
// of body. Content already stored under the same digest is reused, not
// written twice. When put returns nil the entry and its blob are durable.
func (s *store) put(ctx context.Context, ns, key string, body io.Reader, limit int64, m PutMeta) (wire.LogEntry, error) {
	e, err := putEntry(ns, key, m)
	if err != nil {
		return wire.LogEntry{}, err
	}
	st, err := s.stage(ctx, body, limit)
	if err != nil {
		return wire.LogEntry{}, fmt.Errorf("put %q in %q: %w", key, ns, err)
	}
	e.Digest, e.Size = st.digest, uint64(st.size)
	return s.applyOne(&command{Entry: e, Stage: st.name})
}

// putEntry is the log entry of a put of ns/key with m, before its content
// is known. The metadata is checked at its largest encoding, before what
// may be gigabytes of body is read only to refuse the entry afterwards.
func putEntry(ns, key string, m PutMeta) (wire.LogEntry, error) {
	e := wire.LogEntry{
		Op:            wire.OpPut,
		Namespace:     ns,
		Key:           key,
		ContentType:   m.ContentType,
		CacheControl:  m.CacheControl,
		SurrogateKeys: m.SurrogateKeys,
		Consistency:   m.Consistency,
		Bound:         m.Bound,
		ModTime:       m.ModTime,
		Replicas:      m.Replicas,
		Pulled:        m.Pulled,
	}
	probe := e
	probe.LSN, probe.Size = wire.MaxVarint, wire.MaxVarint
	if err := probe.Validate(); err != nil {
		return wire.LogEntry{}, fmt.Errorf("put %q in %q: %w", key, ns, err)
	}
	return e, nil
}

// applyOne applies c alone, outside raft (index 0), for the store's own
// callers and tests.
func (s *store) applyOne(c *command) (wire.LogEntry, error) {
	res, err := s.apply(0, []*command{c})
	if err != nil {
		if c.Stage != "" {
			s.unstage(c.Stage)
		}
		return wire.LogEntry{}, err
	}
	return res[0].Entry, res[0].Err
}

// staged is content written and fsynced under the tmp directory, not yet
// referenced by any entry.
type staged struct {
	name   string // file name under stageDir
	digest wire.Digest
	size   int64
}

// stage streams body into a new synced file (see writeTemp) and moves it
// durably into the stage directory, where it stays, unlike what tmp
// holds, across a restart: a raft entry committed before a crash and
// applied after it still finds its content there.
func (s *store) stage(ctx context.Context, body io.Reader, limit int64) (staged, error) {
	return s.stageAs(ctx, rand.Text(), body, limit)
}

// stageAs is stage under a name the caller chose: a follower keeps the
// leader's content under the leader's name for it, which the command
// carries.
func (s *store) stageAs(ctx context.Context, name string, body io.Reader, limit int64) (staged, error) {
	if !validStageName(name) {
		return staged{}, fmt.Errorf("stage content: bad name %q", name)
	}
	tmp, d, size, err := s.writeTemp(ctx, body, limit)
	if err != nil {
		return staged{}, err
	}
	return s.stageTemp(name, tmp, d, size)
}

// stageTemp moves tmp, a synced file writeTemp wrote, durably into the
// stage directory as name. On error tmp is removed.
func (s *store) stageTemp(name, tmp string, d wire.Digest, size int64) (staged, error) {
	if err := s.fs.Rename(tmp, s.stagePath(name)); err != nil {
		s.fs.Remove(tmp)
		return staged{}, fmt.Errorf("stage content: %w", err)
	}
	if err := s.fs.SyncDir(s.stageDir); err != nil {
		s.unstage(name)
		return staged{}, fmt.Errorf("stage content: %w", err)
	}
	return staged{name: name, digest: d, size: size}, nil
}

// unstage removes staged content no command will use.
func (s *store) unstage(name string) { s.fs.Remove(s.stagePath(name)) }

// stagePath is where staged content named name lives.
func (s *store) stagePath(name string) string { return filepath.Join(s.stageDir, name) }

// validStageName reports whether name can be a staged file's name: what a
// follower receives from the leader must not name a path elsewhere.
func validStageName(name string) bool {
	if name == "" || len(name) > maxStageName {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// writeTemp streams body into a new file under tmpDir, hashing it, and
// syncs the file. On error nothing is left behind.
func (s *store) writeTemp(ctx context.Context, body io.Reader, limit int64) (name string, d wire.Digest, size int64, err error) {
	tmp := filepath.Join(s.tmpDir, rand.Text())
	f, err := s.fs.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", d, 0, fmt.Errorf("create upload file: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			s.fs.Remove(tmp)
		}
	}()
	bufp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bufp)
	buf := *bufp
	h := sha256.New()
	for {
		if err := ctx.Err(); err != nil {
			return "", d, 0, fmt.Errorf("upload: %w", err)
		}
		n, rerr := body.Read(buf)
		if n > 0 {
			size += int64(n)
			if limit >= 0 && size > limit {
				return "", d, 0, fmt.Errorf("body exceeds %d bytes: %w", limit, ErrTooLarge)
			}
			h.Write(buf[:n])
			if _, err := f.Write(buf[:n]); err != nil {
				return "", d, 0, fmt.Errorf("write upload: %w", err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return "", d, 0, fmt.Errorf("read body: %w", rerr)
		}
	}
	// The data must be durable before the rename can make it reachable.
	if err := f.Sync(); err != nil {
		return "", d, 0, fmt.Errorf("sync upload %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return "", d, 0, fmt.Errorf("close upload %s: %w", tmp, err)
	}
	h.Sum(d[:0])
	return tmp, d, size, nil
}

// ensureDirLocked creates the fan-out directory dir under blobDir and makes
// it and its parent durable entries, once per process.
func (s *store) ensureDirLocked(dir string) error {
	if s.durableDirs[dir] {
		return nil
	}
	if err := s.fs.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create blob dir: %w", err)
	}
	for d := dir; d != s.blobDir && !s.durableDirs[d]; d = filepath.Dir(d) {
		if err := s.fs.SyncDir(filepath.Dir(d)); err != nil {
			return fmt.Errorf("create blob dir %s: %w", d, err)
		}
		s.durableDirs[d] = true
	}
	return nil
}

// delete records the removal of ns/key at modTime, outside raft (see
// deleteEntry).
func (s *store) delete(ns, key string, modTime time.Time) (wire.LogEntry, error) {
	return s.applyOne(&command{Entry: deleteEntry(ns, key, modTime)})
}

// deleteEntry is the command entry of a delete of ns/key. Applying it
// fills in the object's consistency level, so a strong object's delete is
// propagated as strictly as its puts.
func deleteEntry(ns, key string, modTime time.Time) wire.LogEntry {
	return wire.LogEntry{Op: wire.OpDelete, Namespace: ns, Key: key, ModTime: modTime}
}

// appendLog gives e the LSN after last, checks it and appends it to the
// log in tx. It returns e's encoding.
func appendLog(tx *bolt.Tx, e *wire.LogEntry, last uint64) ([]byte, error) {
	e.LSN = last + 1
	if err := e.Validate(); err != nil {
		return nil, err
	}
	enc := e.Append(nil)
	if err := tx.Bucket([]byte(bucketLog)).Put(binary.BigEndian.AppendUint64(nil, e.LSN), enc); err != nil {
		return nil, err
	}
	return enc, nil
}

// addRef adds delta to d's reference count and returns the new count. A
// digest whose count reaches zero is recorded in gc until its blob is gone;
// one that gains a reference leaves gc.
func addRef(refs, gc *bolt.Bucket, d wire.Digest, delta int) (uint64, error) {
	var n uint64
	if v := refs.Get(d[:]); v != nil {
		var k int
		if n, k = binary.Uvarint(v); k <= 0 {
			return 0, fmt.Errorf("reference count of %s is malformed", d)
		}
	}
	switch {
	case delta > 0:
		n++
		if err := gc.Delete(d[:]); err != nil {
			return 0, err
		}
	case n == 0:
		return 0, fmt.Errorf("reference count of %s would go below zero", d)
	default:
		n--
	}
	if n == 0 {
		if err := refs.Delete(d[:]); err != nil {
			return 0, err
		}
		return 0, gc.Put(d[:], nil)
	}
	return n, refs.Put(d[:], binary.AppendUvarint(nil, n))
}

// removeBlobLocked removes d's blob durably; a blob already gone is fine.
func (s *store) removeBlobLocked(d wire.Digest) error {
	p := s.blobPath(d)
	if err := s.fs.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove blob: %w", err)
	}
	// Without this a crash could bring the file back after bucketGC forgot
	// it, leaking its space for good.
	if err := s.fs.SyncDir(filepath.Dir(p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove blob: %w", err)
	}
	return nil
}

// get returns the current version of ns/key.
func (s *store) get(ns, key string) (wire.LogEntry, error) {
	var e wire.LogEntry
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte(bucketCatalog)).Get(aetree.Key(ns, key))
		if v == nil {
			return ErrNotFound
		}
		var err error
		e, err = wire.ParseLogEntry(v)
		return err
	})
	if err != nil {
		return wire.LogEntry{}, fmt.Errorf("get %q in %q: %w", key, ns, err)
	}
	return e, nil
}

// openBlob opens the content with digest d for reading: its file (on
// fsys.OS an *os.File), or, for content the catalog holds inline, a
// read-only copy in memory.
func (s *store) openBlob(d wire.Digest) (fsys.File, error) {
	f, err := s.fs.OpenFile(s.blobPath(d), os.O_RDONLY, 0)
	if err == nil {
		return f, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open blob: %w", err)
	}
	var b []byte
	if verr := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket([]byte(bucketInline)).Get(d[:]); v != nil {
			b = bytes.Clone(v)
		}
		return nil
	}); verr != nil {
		return nil, fmt.Errorf("open blob: %w", verr)
	}
	if b == nil {
		return nil, fmt.Errorf("open blob: %w", err)
	}
	return newMemBlob(d.String(), b), nil
}

// holds reports whether this store holds content d, intact.
func (s *store) holds(d wire.Digest) bool {
	f, err := s.openBlob(d)
	if err != nil {
		return false
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false
	}
	return bytes.Equal(h.Sum(nil), d[:])
}

// lastLSN returns the LSN of the last committed mutation (0 if none).
func (s *store) lastLSN() uint64 { return s.last.Load() }

// firstLSN returns the first LSN the log still holds; entries before it
// were compacted (1: none were).
func (s *store) firstLSN() uint64 { return s.first.Load() }

// errLogGap reports that the log no longer holds the entries asked for.
var errLogGap = errors.New("log compacted past the entries asked for")

// readLog calls fn with every log entry whose LSN is above after, in LSN
// order, until fn returns an error, which readLog returns. Entries are read
// in short transactions, so fn may be slow; entries committed while readLog
// runs are included.
//
// Once compaction has removed entries after `after`, readLog returns
// errLogGap (wrapped) before calling fn: the caller catches up by other
// means (a snapshot, or the catalog).
func (s *store) readLog(after uint64, fn func(wire.LogEntry) error) error {
	for after < math.MaxUint64 {
		var batch []wire.LogEntry
		err := s.db.View(func(tx *bolt.Tx) error {
			// Compaction moves the first LSN in the transaction that
			// deletes entries: checked here, a stretch it removed is
			// never taken for the end of the log.
			if v := tx.Bucket([]byte(bucketMeta)).Get([]byte(metaFirst)); len(v) == 8 {
				if first := binary.BigEndian.Uint64(v); after+1 < first {
					return fmt.Errorf("%w (first kept: %d)", errLogGap, first)
				}
			}
			c := tx.Bucket([]byte(bucketLog)).Cursor()
			bytes := 0
			for k, v := c.Seek(binary.BigEndian.AppendUint64(nil, after+1)); k != nil; k, v = c.Next() {
				e, err := wire.ParseLogEntry(v)
				if err != nil {
					return fmt.Errorf("log entry %x: %w", k, err)
				}
				batch = append(batch, e)
				if bytes += len(v); len(batch) == readChunkEntries || bytes >= readChunkBytes {
					break
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read log of %s after lsn %d: %w", s.catalogPath, after, err)
		}
		if len(batch) == 0 {
			return nil
		}
		for _, e := range batch {
			if err := fn(e); err != nil {
				return err
			}
			after = e.LSN
		}
	}
	return nil
}

// forEachObject calls fn with the current version of every object, in
// catalog order (leaf, namespace, key), until fn returns an error. Like readLog it reads
// in short transactions, so the result is not a point-in-time snapshot:
// each entry was current when it was read. A consistent snapshot is
// lastLSN taken before the walk plus a replay of the log from there, which
// is correct because applying an entry whose LSN is not above the stored
// one is a no-op.
func (s *store) forEachObject(fn func(wire.LogEntry) error) error {
	var after []byte
	for {
		var batch []wire.LogEntry
		err := s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket([]byte(bucketCatalog)).Cursor()
			k, v := c.First()
			if after != nil {
				if k, v = c.Seek(after); k != nil && string(k) == string(after) {
					k, v = c.Next()
				}
			}
			bytes := 0
			for ; k != nil; k, v = c.Next() {
				e, err := wire.ParseLogEntry(v)
				if err != nil {
					return fmt.Errorf("catalog entry %q: %w", k, err)
				}
				batch = append(batch, e)
				after = append(after[:0], k...)
				if bytes += len(v); len(batch) == readChunkEntries || bytes >= readChunkBytes {
					break
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read catalog %s: %w", s.catalogPath, err)
		}
		if len(batch) == 0 {
			return nil
		}
		for _, e := range batch {
			if err := fn(e); err != nil {
				return err
			}
		}
	}
}

// close closes the catalog. Calls in flight must have returned.
func (s *store) close() error {
	// A failed final sync leaves the marker, and the next start after a
	// machine failure rebuilds the catalog from raft.
	serr := s.syncAndUnmark()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close catalog %s: %w", s.catalogPath, err)
	}
	return serr
}
