package edge

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"go.etcd.io/bbolt"

	"github.com/geocdn/geocdn/internal/aetree"
	"github.com/geocdn/geocdn/internal/wire"
)

// Errors a push handler maps to wire.PushBadDigest and wire.PushDiskFull.
var (
	// ErrDigestMismatch reports content whose sha256 or length differs from
	// what was announced; nothing of it is kept.
	ErrDigestMismatch = errors.New("edge: content does not match its digest")
	// ErrDiskFull reports that a blob cannot be stored without evicting a
	// blob the placement plan requires.
	ErrDiskFull = errors.New("edge: disk full")
)

const (
	defaultHotBytes     = 256 << 20
	defaultHotMaxObject = 16 << 10
)

// storeConfig configures openStore.
type storeConfig struct {
	// Dir holds blobs/ and index.db. Required; created if missing.
	Dir string
	// HotBytes is the RAM budget of the hot tier. Default 256 MiB.
	HotBytes int64
	// HotMaxObject is the largest object the hot tier takes; larger ones
	// are always served from disk (sendfile). Default 16 KiB.
	HotMaxObject int64
	// DiskBytes caps the bytes of blobs on disk. 0 means unlimited.
	DiskBytes int64
	// Logger receives housekeeping events. Nil means slog.Default().
	Logger *slog.Logger
	// Annotate builds the value the store keeps with each version (see
	// object.meta): once per version, the first time it is looked up, so
	// the serving code can precompute what it sends for that version (the
	// edge passes its response headers) without the store knowing what
	// that is, and versions never served cost nothing. The store never
	// looks inside. It must not keep e, and must return values of one
	// type. Nil stores nil.
	Annotate func(e *wire.LogEntry) any
	// Quarantined is called once for each blob found corrupt and
	// quarantined (scrub.go), after it was forgotten; by is "scrub" or
	// "read" (a read into the hot tier found it). It must not block. Nil
	// does nothing.
	Quarantined func(d wire.Digest, by string)
}

// store is the edge's replica store: content-addressed blobs on disk, an
// index of the log's current versions in bbolt mirrored in memory, and a
// Ristretto hot tier in RAM.
//
// Invariants: a blob is on disk (fsynced, renamed into place, recorded)
// before anything reports it stored; the in-memory index equals the bbolt
// index after every apply; the hot tier is only an accelerator and never
// answers for a digest the disk no longer holds.
type store struct {
	blobDir string
	tmpDir  string
	db      *bbolt.DB
	hot     *ristretto.Cache[uint64, *hotBlob]
	hotMax  int64
	files   *fileCache
	diskCap int64
	log     *slog.Logger
	// annotate is storeConfig.Annotate; nil builds nothing.
	annotate func(*wire.LogEntry) any
	// onCorrupt is storeConfig.Quarantined, never nil.
	onCorrupt func(d wire.Digest, by string)

	// writeMu serialises every mutation: bbolt write transactions, renames
	// into and removals from blobs/, and space reservation. The hit path
	// never takes it.
	writeMu  sync.Mutex
	reserved int64 // bytes promised to writes in progress; guarded by writeMu
	// receiving counts writes in progress per digest (guarded by mu), so
	// the repair loop does not start a second copy of a push under way.
	receiving map[wire.Digest]int
	// attrs shares what versions have in common (index.go); guarded by
	// writeMu.
	attrs attrsTable

	// mu guards the maps and usage counters for readers; writers hold it
	// only to publish changes already committed to bbolt, never across I/O.
	mu       sync.RWMutex
	index    versionTable
	blobs    blobTable
	required int64 // bytes on disk of required blobs
	fills    int64 // bytes on disk of evictable blobs
	// tree is the anti-entropy hash tree of index (aetree), updated with
	// it under mu, so that hashes read under mu go with the watermark.
	tree *aetree.Tree
	// touched, while a resync runs (non-nil, guarded by mu), records the
	// LSN of the latest log entry that changed each key: a difference in
	// a key the log changed after the origin's answer was read is the log
	// at work, not divergence.
	touched map[objKey]uint64

	wm   atomic.Uint64
	tick atomic.Uint64
}

var (
	bucketObjects = []byte("objects")
	bucketBlobs   = []byte("blobs")
	bucketMeta    = []byte("meta")
	keyWatermark  = []byte("watermark")
	keyFormat     = []byte("format")
	// keySnapshot records a snapshot catch-up in progress (snapshot.go).
	keySnapshot = []byte("snapshot")
)

// indexFormat is the layout of index.db. Format 2 keys objects by
// aetree.Key (leaf first); format 1, which had no format key, by
// namespace NUL key.
const indexFormat = 2

// openStore opens or creates the store in cfg.Dir. It removes temporary
// leftovers, rebuilds the in-memory index and blob reference counts, and
// removes blob files that nothing references and nothing recorded as
// stored on purpose (a crash between rename and record).
func openStore(cfg storeConfig) (*store, error) {
	if cfg.Dir == "" {
		return nil, errors.New("edge: store dir not set")
	}
	if cfg.HotBytes <= 0 {
		cfg.HotBytes = defaultHotBytes
	}
	if cfg.HotMaxObject <= 0 {
		cfg.HotMaxObject = defaultHotMaxObject
	}
	if cfg.DiskBytes < 0 {
		return nil, fmt.Errorf("edge: negative disk capacity %d", cfg.DiskBytes)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Quarantined == nil {
		cfg.Quarantined = func(wire.Digest, string) {}
	}
	s := &store{
		tree:      aetree.New(),
		blobDir:   filepath.Join(cfg.Dir, "blobs"),
		tmpDir:    filepath.Join(cfg.Dir, "blobs", "tmp"),
		hotMax:    cfg.HotMaxObject,
		diskCap:   cfg.DiskBytes,
		log:       cfg.Logger,
		annotate:  cfg.Annotate,
		onCorrupt: cfg.Quarantined,
		receiving: make(map[wire.Digest]int),
	}
	s.files = newFileCache(s.blobPath)
	if err := s.prepareDirs(); err != nil {
		return nil, err
	}
	db, err := bbolt.Open(filepath.Join(cfg.Dir, "index.db"), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("edge: open index: %w", err)
	}
	s.db = db
	if err := s.load(); err != nil {
		db.Close()
		return nil, err
	}
	hot, err := ristretto.NewCache(&ristretto.Config[uint64, *hotBlob]{
		// Ristretto wants about ten counters per item it may hold; assume
		// 4 KiB objects on average and keep the sketch within bounds.
		NumCounters:        min(max(10*cfg.HotBytes/4096, 1000), 10_000_000),
		MaxCost:            cfg.HotBytes,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("edge: hot tier: %w", err)
	}
	s.hot = hot
	return s, nil
}

// prepareDirs empties blobs/tmp and makes the 256 fan-out directories, so
// a write never has to create (and fsync) a parent directory.
func (s *store) prepareDirs() error {
	if err := os.RemoveAll(s.tmpDir); err != nil {
		return fmt.Errorf("edge: clear tmp: %w", err)
	}
	if err := os.MkdirAll(s.tmpDir, 0o755); err != nil {
		return fmt.Errorf("edge: make blob dirs: %w", err)
	}
	for i := range 256 {
		if err := os.MkdirAll(filepath.Join(s.blobDir, fmt.Sprintf("%02x", i)), 0o755); err != nil {
			return fmt.Errorf("edge: make blob dirs: %w", err)
		}
	}
	for _, d := range []string{s.blobDir, filepath.Dir(s.blobDir)} {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// load rebuilds the in-memory state from bbolt and the blob directories.
func (s *store) load() error {
	records := make(map[wire.Digest]byte)
	err := s.db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketObjects, bucketBlobs, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if v := tx.Bucket(bucketMeta).Get(keyWatermark); len(v) == 8 {
			s.wm.Store(binary.BigEndian.Uint64(v))
		}
		switch v := tx.Bucket(bucketMeta).Get(keyFormat); {
		case v == nil:
			if err := migrateIndexV1(tx); err != nil {
				return fmt.Errorf("migrate from format 1: %w", err)
			}
		case len(v) != 1 || v[0] != indexFormat:
			return fmt.Errorf("format %x not supported (want %d)", v, indexFormat)
		}
		strs := make(stringSet)
		err := tx.Bucket(bucketObjects).ForEach(func(k, v []byte) error {
			e, err := wire.ParseLogEntryInterned(v, strs.intern)
			if err != nil {
				return fmt.Errorf("index entry %q: %w", k, err)
			}
			// A strong version's visibility is not on disk: until the
			// origin confirms it, it is pending.
			b := s.blobs.get(e.Digest)
			if b == nil {
				b = &blob{digest: e.Digest, size: int64(e.Size)}
				s.blobs.set(b)
			}
			b.refs++
			ver := s.versionOf(&e, b)
			s.index.add(ver) // bbolt keys are unique
			s.tree.Add(ver.tuple())
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketBlobs).ForEach(func(k, v []byte) error {
			if len(k) == wire.DigestSize && len(v) == 1 {
				records[wire.Digest(k)] = v[0]
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("edge: load index: %w", err)
	}

	type found struct {
		d     wire.Digest
		mtime time.Time
	}
	var fills []found
	for i := range 256 {
		sub := filepath.Join(s.blobDir, fmt.Sprintf("%02x", i))
		ents, err := os.ReadDir(sub)
		if err != nil {
			return fmt.Errorf("edge: scan blobs: %w", err)
		}
		for _, de := range ents {
			var d wire.Digest
			if n, err := hex.Decode(d[:], []byte(de.Name())); err != nil || n != wire.DigestSize || de.Name()[:2] != filepath.Base(sub) {
				s.log.Warn("edge: unexpected file in blob store", "path", filepath.Join(sub, de.Name()))
				continue
			}
			info, err := de.Info()
			if err != nil {
				return fmt.Errorf("edge: scan blobs: %w", err)
			}
			b := s.blobs.get(d)
			rec, recorded := records[d]
			delete(records, d)
			if (b == nil && !recorded) || (b != nil && b.refs > 0 && b.size != info.Size()) {
				// Nothing wants it, or it cannot be the content its entry
				// names: the fill path fetches it again if needed.
				s.log.Info("edge: removing unreferenced or damaged blob", "digest", hex.EncodeToString(d[:]))
				if err := os.Remove(filepath.Join(sub, de.Name())); err != nil {
					return fmt.Errorf("edge: remove blob: %w", err)
				}
				continue
			}
			if b == nil {
				b = &blob{digest: d}
				s.blobs.set(b)
			}
			b.size = info.Size()
			b.onDisk = true
			b.required = rec == blobRequired
			if b.required {
				s.required += b.size
			} else {
				s.fills += b.size
				fills = append(fills, found{d, info.ModTime()})
			}
		}
	}
	// Older fills go first when room is needed; the order of use before a
	// restart is not kept, the order of writing is the best guess.
	slices.SortFunc(fills, func(a, b found) int { return a.mtime.Compare(b.mtime) })
	for _, f := range fills {
		s.blobs.get(f.d).lastUse.Store(s.tick.Add(1))
	}
	if len(records) > 0 {
		// Records whose file is gone (removed after the record's commit was
		// lost, or by hand): drop them so they cannot pin anything.
		err := s.db.Update(func(tx *bbolt.Tx) error {
			for d := range records {
				if err := tx.Bucket(bucketBlobs).Delete(d[:]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("edge: clean blob records: %w", err)
		}
	}
	return nil
}

// migrateIndexV1 refiles the objects of a format 1 index under
// aetree.Key, in the transaction that records format 2.
func migrateIndexV1(tx *bbolt.Tx) error {
	old := tx.Bucket(bucketObjects)
	var entries [][]byte
	if err := old.ForEach(func(_, v []byte) error {
		entries = append(entries, slices.Clone(v))
		return nil
	}); err != nil {
		return err
	}
	if err := tx.DeleteBucket(bucketObjects); err != nil {
		return err
	}
	b, err := tx.CreateBucket(bucketObjects)
	if err != nil {
		return err
	}
	for _, v := range entries {
		e, err := wire.ParseLogEntry(v)
		if err != nil {
			return err
		}
		if err := b.Put(aetree.Key(e.Namespace, e.Key), v); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketMeta).Put(keyFormat, []byte{indexFormat})
}

// close releases the hot tier and the index.
func (s *store) close() error {
	s.files.closeAll()
	s.hot.Close()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("edge: close index: %w", err)
	}
	return nil
}
