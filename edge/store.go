package edge

import (
	"bufio"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"go.etcd.io/bbolt"

	"github.com/geocdn/geocdn/internal/wire"
	"github.com/geocdn/geocdn/invalidation"
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
}

// object is what the index says about one key.
type object struct {
	Entry wire.LogEntry
	// Present reports whether the version's blob is on disk.
	Present bool
	// hdr holds the response header values of this version, formatted once
	// when the version was applied so the hit path does not rebuild them.
	hdr *respHeaders
	// Stale reports that a soft purge marked the version for revalidation
	// with the origin before it is served again.
	Stale bool
	// Pending reports a strong version not yet confirmed visible.
	Pending bool
}

// content is an opened blob: either hot bytes held in RAM or a file the
// caller must close (see close).
type content struct {
	hot  []byte
	file *os.File
	size int64
	// shared, when set, owns file: it is the store's open copy, read only
	// by sendfile at explicit offsets (openShared).
	shared *sharedFile
}

// close releases the file, if any.
func (c content) close() error {
	if c.shared != nil {
		c.shared.release()
		return nil
	}
	if c.file == nil {
		return nil
	}
	return c.file.Close()
}

// objKey names an object in the in-memory index. A struct rather than the
// concatenated ns\x00key string keeps lookups free of allocations.
type objKey struct{ ns, key string }

// version is the index's record of the current version of one key.
type version struct {
	entry wire.LogEntry
	hdr   *respHeaders
	// stale is set by a soft purge (guarded by mu); it is kept in memory
	// only, so a restart forgets it.
	stale bool
	// pending marks a strong version the origin has not yet confirmed
	// visible (guarded by mu): it is not served before it is.
	pending bool
}

// blob is the store's record of one digest. Fields other than lastUse are
// written only with both writeMu and mu held, so a writeMu holder may read
// them without mu.
type blob struct {
	size     int64
	refs     int  // index entries whose current version names this digest
	onDisk   bool // the file is under blobs/ and counted in usage
	required bool // pinned by a push to a replica-set edge; never evicted
	// lastUse orders fills for eviction: the value of store.tick when the
	// blob was last written or opened.
	lastUse atomic.Uint64
}

// hotBlob is a hot-tier value. The tier is keyed by the first 8 bytes of
// the digest (a uint64 key costs no hashing and no allocation on the hit
// path), and a publisher could search out two contents whose digests share
// those 64 bits, so the value carries the full digest and a Get whose
// digest differs is a miss.
type hotBlob struct {
	digest wire.Digest
	data   []byte
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

	// writeMu serialises every mutation: bbolt write transactions, renames
	// into and removals from blobs/, and space reservation. The hit path
	// never takes it.
	writeMu  sync.Mutex
	reserved int64 // bytes promised to writes in progress; guarded by writeMu
	// receiving counts writes in progress per digest (guarded by mu), so
	// the repair loop does not start a second copy of a push under way.
	receiving map[wire.Digest]int

	// mu guards the maps and usage counters for readers; writers hold it
	// only to publish changes already committed to bbolt, never across I/O.
	mu       sync.RWMutex
	index    map[objKey]*version
	blobs    map[wire.Digest]*blob
	required int64 // bytes on disk of required blobs
	fills    int64 // bytes on disk of evictable blobs

	wm   atomic.Uint64
	tick atomic.Uint64
}

var (
	bucketObjects = []byte("objects")
	bucketBlobs   = []byte("blobs")
	bucketMeta    = []byte("meta")
	keyWatermark  = []byte("watermark")
)

// Values of the blobs bucket: a blob was written on purpose, and whether
// it is pinned. A blob file without a record and without a referencing
// index entry is a leftover and is removed at open.
const (
	blobFill     byte = 0
	blobRequired byte = 1
)

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
	s := &store{
		blobDir:   filepath.Join(cfg.Dir, "blobs"),
		tmpDir:    filepath.Join(cfg.Dir, "blobs", "tmp"),
		hotMax:    cfg.HotMaxObject,
		diskCap:   cfg.DiskBytes,
		log:       cfg.Logger,
		index:     make(map[objKey]*version),
		blobs:     make(map[wire.Digest]*blob),
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
		err := tx.Bucket(bucketObjects).ForEach(func(k, v []byte) error {
			e, err := wire.ParseLogEntry(v)
			if err != nil {
				return fmt.Errorf("index entry %q: %w", k, err)
			}
			// A strong version's visibility is not on disk: until the
			// origin confirms it, it is pending.
			s.index[objKey{e.Namespace, e.Key}] = &version{entry: e, hdr: newRespHeaders(&e), pending: e.Consistency == wire.Strong}
			b := s.blobs[e.Digest]
			if b == nil {
				b = &blob{size: int64(e.Size)}
				s.blobs[e.Digest] = b
			}
			b.refs++
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
			b := s.blobs[d]
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
				b = &blob{}
				s.blobs[d] = b
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
		s.blobs[f.d].lastUse.Store(s.tick.Add(1))
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

// close releases the hot tier and the index.
func (s *store) close() error {
	s.files.closeAll()
	s.hot.Close()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("edge: close index: %w", err)
	}
	return nil
}

// watermark is the highest LSN applied.
func (s *store) watermark() uint64 { return s.wm.Load() }

// lookup returns the current version of ns/key, from memory only.
func (s *store) lookup(ns, key string) (object, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v := s.index[objKey{ns, key}]
	if v == nil {
		return object{}, false
	}
	b := s.blobs[v.entry.Digest]
	return object{Entry: v.entry, Present: b != nil && b.onDisk, hdr: v.hdr, Stale: v.stale, Pending: v.pending}, true
}

// purge carries out a purge entry the log has reached: the current
// versions it matches lose their blobs (hard) or are marked stale (soft).
// It returns how many versions matched.
func (s *store) purge(p wire.LogEntry) (int, error) {
	var digests []wire.Digest
	n := 0
	s.mu.Lock()
	for _, v := range s.index {
		if !invalidation.PurgeMatches(&p, &v.entry) {
			continue
		}
		n++
		if p.Soft {
			v.stale = true
		} else {
			digests = append(digests, v.entry.Digest)
		}
	}
	s.mu.Unlock()
	return n, s.drop(digests)
}

// revalidated clears the stale and pending marks of ns/key once the origin
// confirmed version d as its current, visible version.
func (s *store) revalidated(ns, key string, d wire.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.index[objKey{ns, key}]; v != nil && v.entry.Digest == d {
		v.stale = false
		v.pending = false
	}
}

// hasBlob reports whether the content with digest d is on disk.
func (s *store) hasBlob(d wire.Digest) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b := s.blobs[d]
	return b != nil && b.onDisk
}

// missing returns, in LSN order, the current versions whose content is not
// on disk and for which owes is true: replicas a lost push or a crash left
// behind, for the repair loop to fill.
func (s *store) missing(owes func(wire.LogEntry) bool) []wire.LogEntry {
	s.mu.RLock()
	var out []wire.LogEntry
	for _, v := range s.index {
		if b := s.blobs[v.entry.Digest]; (b == nil || !b.onDisk) && s.receiving[v.entry.Digest] == 0 {
			out = append(out, v.entry)
		}
	}
	s.mu.RUnlock()
	// owes runs without the lock: it is the caller's code.
	out = slices.DeleteFunc(out, func(e wire.LogEntry) bool { return !owes(e) })
	slices.SortFunc(out, func(a, b wire.LogEntry) int { return cmp.Compare(a.LSN, b.LSN) })
	return out
}

// unowed returns the pinned blobs on disk that some current version refers
// to but none this edge owes: replicas a new placement plan moved away.
// Pinned blobs no version refers to yet (a push ahead of its log entry)
// are left alone.
func (s *store) unowed(owes func(wire.LogEntry) bool) []wire.Digest {
	s.mu.RLock()
	entries := make([]wire.LogEntry, 0, len(s.index))
	for _, v := range s.index {
		entries = append(entries, v.entry)
	}
	var pinned []wire.Digest
	for d, b := range s.blobs {
		if b.onDisk && b.required && b.refs > 0 {
			pinned = append(pinned, d)
		}
	}
	s.mu.RUnlock()
	owed := make(map[wire.Digest]bool)
	for _, e := range entries {
		if owes(e) {
			owed[e.Digest] = true
		}
	}
	return slices.DeleteFunc(pinned, func(d wire.Digest) bool { return owed[d] })
}

// usage reports the bytes on disk of required blobs and of evictable fills.
func (s *store) usage() (required, fills int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.required, s.fills
}

// apply applies log entries in LSN order in one bbolt transaction and sets
// the watermark to the last LSN applied. Entries at or below the watermark
// are skipped, so replaying a batch is harmless. An OpPut makes its entry
// the key's current version (Present if its blob is already here) and an
// OpDelete removes the key; a blob no current version references any more
// is deleted. On error nothing is applied.
func (s *store) apply(entries []wire.LogEntry) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()

	wm := s.wm.Load()
	staged := make(map[objKey]*version) // nil value: key deleted
	delta := make(map[wire.Digest]int)
	sizes := make(map[wire.Digest]int64) // of digests first named in this batch
	released := make(map[wire.Digest]struct{})
	for i := range entries {
		e := &entries[i]
		if e.LSN <= wm {
			continue
		}
		if e.Op == wire.OpPurge {
			// The caller carries purges out (store.purge) after applying
			// the entries before them; here they only move the watermark.
			wm = e.LSN
			continue
		}
		if e.Op != wire.OpPut && e.Op != wire.OpDelete {
			return fmt.Errorf("edge: apply lsn %d: unknown op %v", e.LSN, e.Op)
		}
		k := objKey{e.Namespace, e.Key}
		old, ok := staged[k]
		if !ok {
			old = s.index[k] // writeMu held: no one writes index concurrently
		}
		if old != nil {
			delta[old.entry.Digest]--
			released[old.entry.Digest] = struct{}{}
		}
		if e.Op == wire.OpPut {
			staged[k] = &version{entry: *e, hdr: newRespHeaders(e), pending: e.Consistency == wire.Strong}
			delta[e.Digest]++
			sizes[e.Digest] = int64(e.Size)
		} else {
			staged[k] = nil
		}
		wm = e.LSN
	}
	if wm == s.wm.Load() {
		return nil
	}
	var dead []wire.Digest
	for d := range released {
		refs := delta[d]
		if b := s.blobs[d]; b != nil {
			refs += b.refs
		}
		if refs == 0 {
			dead = append(dead, d)
		}
	}

	err := s.db.Update(func(tx *bbolt.Tx) error {
		objs := tx.Bucket(bucketObjects)
		for k, v := range staged {
			var err error
			if v == nil {
				err = objs.Delete(indexKey(k))
			} else {
				err = objs.Put(indexKey(k), v.entry.Append(nil))
			}
			if err != nil {
				return err
			}
		}
		for _, d := range dead {
			if err := tx.Bucket(bucketBlobs).Delete(d[:]); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyWatermark, binary.BigEndian.AppendUint64(nil, wm))
	})
	if err != nil {
		return fmt.Errorf("edge: apply up to lsn %d: %w", wm, err)
	}

	var remove []wire.Digest
	s.mu.Lock()
	for k, v := range staged {
		if v == nil {
			delete(s.index, k)
		} else {
			s.index[k] = v
		}
	}
	for d, n := range delta {
		b := s.blobs[d]
		if b == nil {
			// Named before its content arrived; writeBlob makes it Present.
			b = &blob{size: sizes[d]}
			s.blobs[d] = b
		}
		b.refs += n
	}
	for _, d := range dead {
		b := s.blobs[d]
		if b == nil {
			continue
		}
		if b.onDisk {
			s.countLocked(b, -1)
			remove = append(remove, d)
		}
		delete(s.blobs, d)
	}
	s.wm.Store(wm)
	s.mu.Unlock()

	for _, d := range remove {
		s.removeFile(d)
	}
	return nil
}

// indexKey is the bbolt key of an object, the bytes of its entry's
// ObjectID: namespace, NUL, key (neither may contain NUL).
func indexKey(k objKey) []byte {
	b := make([]byte, 0, len(k.ns)+1+len(k.key))
	b = append(b, k.ns...)
	b = append(b, 0)
	return append(b, k.key...)
}

// countLocked adds (sign +1) or removes (sign -1) b from the usage
// counters. Callers hold mu for writing.
func (s *store) countLocked(b *blob, sign int64) {
	if b.required {
		s.required += sign * b.size
	} else {
		s.fills += sign * b.size
	}
}

// removeFile unlinks a blob that is no longer recorded. A reader that
// already opened it keeps reading the unlinked file. Callers hold writeMu,
// so no write of the same digest can be renaming into place meanwhile.
func (s *store) removeFile(d wire.Digest) {
	s.hot.Del(hotKey(d))
	if err := os.Remove(s.blobPath(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// The file is unrecorded now; the next open removes it.
		s.log.Warn("edge: remove blob", "digest", hex.EncodeToString(d[:]), "err", err)
	}
	// After the unlink: an open racing with it is then either refused or
	// seen by the cache as racing (fileCache.forgets).
	s.files.forget(d)
}

func (s *store) blobPath(d wire.Digest) string {
	h := hex.EncodeToString(d[:])
	return filepath.Join(s.blobDir, h[:2], h)
}

func hotKey(d wire.Digest) uint64 { return binary.BigEndian.Uint64(d[:8]) }

// shortHex names a digest in messages. It takes d by value so that error
// paths do not make the caller's digest escape to the heap.
func shortHex(d wire.Digest) string { return hex.EncodeToString(d[:8]) }

// writeBlob streams size bytes of r into the store as the blob d, checking
// both the length and the sha256 (ErrDigestMismatch: nothing is kept), and
// makes it durable before returning: fsync, rename into place, fsync the
// directory, record it. required=false stores an evictable fill. With a
// disk capacity, room is made by evicting the least recently used fills,
// and the write is refused with ErrDiskFull when only required blobs would
// be left to evict. Index entries naming d become Present.
//
// r is read for exactly size bytes; if the blob is already stored r is not
// read at all (and required pins it).
func (s *store) writeBlob(d wire.Digest, size int64, r io.Reader, required bool) error {
	if size < 0 {
		return fmt.Errorf("edge: write blob: negative size %d", size)
	}
	if s.hasBlob(d) {
		if required {
			return s.setRequired(d, true)
		}
		return nil
	}

	s.writeMu.Lock()
	err := s.makeRoomLocked(size)
	if err == nil {
		s.reserved += size
	}
	s.writeMu.Unlock()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.receiving[d]++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.receiving[d]--; s.receiving[d] == 0 {
			delete(s.receiving, d)
		}
		s.mu.Unlock()
	}()
	committed := false
	defer func() {
		if !committed {
			s.writeMu.Lock()
			s.reserved -= size
			s.writeMu.Unlock()
		}
	}()

	tmp, err := s.receive(d, size, r)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // no-op once renamed

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.reserved -= size
	committed = true
	if b := s.blobs[d]; b != nil && b.onDisk {
		// A concurrent write of the same content won.
		if required && !b.required {
			return s.setRequiredLocked(d, b, true)
		}
		return nil
	}
	final := s.blobPath(d)
	if err := os.Rename(tmp, final); err != nil {
		return diskErr("edge: write blob: rename", err)
	}
	if err := syncDir(filepath.Dir(final)); err != nil {
		os.Remove(final)
		return diskErr("edge: write blob", err)
	}
	flag := blobFill
	if required {
		flag = blobRequired
	}
	err = s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketBlobs).Put(d[:], []byte{flag})
	})
	if err != nil {
		os.Remove(final)
		return diskErr("edge: write blob: record", err)
	}
	s.mu.Lock()
	b := s.blobs[d]
	if b == nil {
		b = &blob{}
		s.blobs[d] = b
	}
	b.size = size
	b.onDisk = true
	b.required = required
	b.lastUse.Store(s.tick.Add(1))
	s.countLocked(b, +1)
	s.mu.Unlock()
	return nil
}

// blobWriteSize is the size of the writes that make a blob file. The page
// cache of ext4 (and XFS) keeps a file in folios as large as the writes
// that filled it, and sendfile moves a file of large folios at far less
// CPU on both ends of the socket: 1 MiB objects written 256 KiB at a time
// were served at 5.5k–5.6k req/s against 3.5k–3.7k when written 32 KiB at
// a time (io.Copy's buffer), side by side under wrk. 1 MiB writes served
// as well but slowed a 256 MiB push from 382 to 242 MiB/s (large folios
// then wait for memory compaction).
const blobWriteSize = 256 << 10

var blobWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, blobWriteSize) }}

// receive copies the content into a synced temporary file and returns its
// path, or removes it and returns an error.
func (s *store) receive(d wire.Digest, size int64, r io.Reader) (path string, err error) {
	f, err := os.CreateTemp(s.tmpDir, "blob-*")
	if err != nil {
		return "", diskErr("edge: write blob", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	bw := blobWriters.Get().(*bufio.Writer)
	bw.Reset(f)
	defer func() {
		bw.Reset(nil)
		blobWriters.Put(bw)
	}()
	n, err := io.Copy(io.MultiWriter(bw, h), io.LimitReader(r, size))
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		// io.Copy reports write errors of f and read errors of r alike;
		// ENOSPC can only come from f.
		return "", diskErr("edge: write blob", err)
	}
	if n != size {
		return "", fmt.Errorf("%w: got %d of %d bytes", ErrDigestMismatch, n, size)
	}
	if wire.Digest(h.Sum(nil)) != d {
		return "", fmt.Errorf("%w: %s", ErrDigestMismatch, shortHex(d))
	}
	if err := f.Sync(); err != nil {
		return "", diskErr("edge: write blob: sync", err)
	}
	if err := f.Close(); err != nil {
		return "", diskErr("edge: write blob: close", err)
	}
	return f.Name(), nil
}

// makeRoomLocked evicts least recently used fills until need more bytes
// fit under the capacity, or evicts nothing and returns ErrDiskFull if
// evicting every fill would not be enough. Callers hold writeMu.
func (s *store) makeRoomLocked(need int64) error {
	if s.diskCap == 0 {
		return nil
	}
	over := s.required + s.fills + s.reserved + need - s.diskCap
	if over <= 0 {
		return nil
	}
	type cand struct {
		d    wire.Digest
		b    *blob
		used uint64
	}
	var cands []cand
	var avail int64
	for d, b := range s.blobs {
		if b.onDisk && !b.required {
			cands = append(cands, cand{d, b, b.lastUse.Load()})
			avail += b.size
		}
	}
	if avail < over {
		return fmt.Errorf("%w: %d bytes wanted, %d of %d in use by required blobs", ErrDiskFull, need, s.required, s.diskCap)
	}
	slices.SortFunc(cands, func(a, b cand) int { return cmp.Compare(a.used, b.used) })
	var victims []evictee
	for _, c := range cands {
		if over <= 0 {
			break
		}
		victims = append(victims, evictee{c.d, c.b})
		over -= c.b.size
	}
	return s.evictLocked(victims)
}

// admit reports whether a blob of size bytes could be stored, evicting
// fills if need be, without reserving anything: a push is refused at the
// offer rather than after its bytes crossed the network.
func (s *store) admit(size int64) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.diskCap == 0 {
		return nil
	}
	if s.required+s.reserved+size > s.diskCap {
		return fmt.Errorf("%w: %d bytes offered, %d of %d in use by required blobs", ErrDiskFull, size, s.required, s.diskCap)
	}
	return nil
}

// evictee is a blob chosen for removal.
type evictee struct {
	d wire.Digest
	b *blob
}

// drop removes the blobs ds from disk, pinned or not: the edge no longer
// owes them under the placement plan in force. Index entries stay, so a
// later request fills the content as it would an evicted fill.
func (s *store) drop(ds []wire.Digest) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	var victims []evictee
	s.mu.RLock()
	for _, d := range ds {
		if b := s.blobs[d]; b != nil && b.onDisk {
			victims = append(victims, evictee{d, b})
		}
	}
	s.mu.RUnlock()
	return s.evictLocked(victims)
}

// evictLocked forgets and unlinks victims. Callers hold writeMu.
func (s *store) evictLocked(victims []evictee) error {
	if len(victims) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		for _, v := range victims {
			if err := tx.Bucket(bucketBlobs).Delete(v.d[:]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return diskErr("edge: evict fills", err)
	}
	s.mu.Lock()
	for _, v := range victims {
		s.countLocked(v.b, -1)
		v.b.onDisk = false
		if v.b.refs == 0 {
			delete(s.blobs, v.d)
		}
	}
	s.mu.Unlock()
	for _, v := range victims {
		s.log.Debug("edge: evicted blob", "digest", hex.EncodeToString(v.d[:]), "size", v.b.size)
		s.removeFile(v.d)
	}
	return nil
}

// setRequired pins (or unpins) a stored blob: a push of content already
// present as a fill makes it required. It fails with an error wrapping
// fs.ErrNotExist if the blob is not on disk (evicted meanwhile), so a push
// handler can ask for the bytes instead of answering "have".
func (s *store) setRequired(d wire.Digest, required bool) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	b := s.blobs[d]
	if b == nil || !b.onDisk {
		return fmt.Errorf("edge: pin blob %s: %w", shortHex(d), fs.ErrNotExist)
	}
	if b.required == required {
		return nil
	}
	return s.setRequiredLocked(d, b, required)
}

func (s *store) setRequiredLocked(d wire.Digest, b *blob, required bool) error {
	flag := blobFill
	if required {
		flag = blobRequired
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketBlobs).Put(d[:], []byte{flag})
	})
	if err != nil {
		return diskErr("edge: pin blob", err)
	}
	s.mu.Lock()
	s.countLocked(b, -1)
	b.required = required
	s.countLocked(b, +1)
	s.mu.Unlock()
	return nil
}

// openContent opens the blob d: from the hot tier if it holds it, else
// from disk. Small objects read from disk are returned as bytes and
// offered to the hot tier, which may refuse them. A file in the result
// must be closed by the caller. A blob that is not on disk yields an error
// wrapping fs.ErrNotExist.
func (s *store) openContent(d wire.Digest) (content, error) {
	return s.open(d, false)
}

// openShared is openContent for a reader that sends the file only with
// sendfile at explicit offsets (h1.Reply.SendFile), never reading, seeking
// or closing it itself: the file may be the store's cached open copy,
// which other requests send at the same time. close releases it.
func (s *store) openShared(d wire.Digest) (content, error) {
	return s.open(d, true)
}

func (s *store) open(d wire.Digest, shared bool) (content, error) {
	s.mu.RLock()
	b := s.blobs[d]
	var size int64
	ok := b != nil && b.onDisk
	if ok {
		size = b.size
	}
	s.mu.RUnlock()
	if !ok {
		return content{}, fmt.Errorf("edge: open blob %s: %w", shortHex(d), fs.ErrNotExist)
	}
	// Repeated hits on the most recently used blob leave the shared counter
	// alone, so a hot object does not make every hit write one cache line.
	if b.lastUse.Load() != s.tick.Load() {
		b.lastUse.Store(s.tick.Add(1))
	}
	if size == 0 {
		return content{}, nil
	}
	small := size <= s.hotMax
	if small {
		if hb, ok := s.hot.Get(hotKey(d)); ok && hb.digest == d {
			return content{hot: hb.data, size: size}, nil
		}
	}
	if shared && !small {
		sf, err := s.files.acquire(d)
		if err != nil {
			return content{}, fmt.Errorf("edge: open blob: %w", err)
		}
		return content{file: sf.f, size: size, shared: sf}, nil
	}
	f, err := os.Open(s.blobPath(d))
	if err != nil {
		// Evicted or superseded between the check above and the open.
		return content{}, fmt.Errorf("edge: open blob: %w", err)
	}
	if !small {
		return content{file: f, size: size}, nil
	}
	data := make([]byte, size)
	_, err = io.ReadFull(f, data)
	f.Close()
	if err != nil {
		return content{}, fmt.Errorf("edge: read blob: %w", err)
	}
	hb := &hotBlob{data: data}
	hb.digest = d
	s.hot.Set(hotKey(d), hb, size)
	return content{hot: data, size: size}, nil
}

// diskErr wraps err, mapping ENOSPC to ErrDiskFull.
func diskErr(op string, err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("%s: %w: %w", op, ErrDiskFull, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// syncDir makes the names created in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("edge: sync dir: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("edge: sync dir %s: %w", dir, err)
	}
	return nil
}
