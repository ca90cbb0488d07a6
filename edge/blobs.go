package edge

import (
	"bufio"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

	"go.etcd.io/bbolt"

	"github.com/geocdn/geocdn/internal/wire"
)

// blob is the store's record of one digest. Fields other than lastUse are
// written only with both writeMu and mu held, so a writeMu holder may read
// them without mu.
type blob struct {
	digest   wire.Digest // never changes: the record's key in store.blobs
	size     int64
	refs     int32 // index entries whose current version names this digest
	onDisk   bool  // the file is under blobs/ and counted in usage
	required bool  // pinned by a push to a replica-set edge; never evicted
	// lastUse orders fills for eviction: the value of store.tick when the
	// blob was last written or opened.
	lastUse atomic.Uint64
}

// Values of the blobs bucket: a blob was written on purpose, and whether
// it is pinned. A blob file without a record and without a referencing
// index entry is a leftover and is removed at open.
const (
	blobFill     byte = 0
	blobRequired byte = 1
)

// hasBlob reports whether the content with digest d is on disk.
func (s *store) hasBlob(d wire.Digest) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b := s.blobs.get(d)
	return b != nil && b.onDisk
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
	if b := s.blobs.get(d); b != nil && b.onDisk {
		// A concurrent write of the same content won.
		if required && !b.required {
			return s.pinLocked([]wire.Digest{d}, true)
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
	b := s.blobs.get(d)
	if b == nil {
		b = &blob{digest: d}
		s.blobs.set(b)
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
	for b := range s.blobs.all() {
		if b.onDisk && !b.required {
			cands = append(cands, cand{b.digest, b, b.lastUse.Load()})
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

// drop removes the blobs ds from disk and forgets their records, pinned or
// not: the edge no longer owes them under the placement plan in force, or
// their files are gone or damaged (verifyFiles). Index entries stay, so a
// later request or repair fills the content as it would an evicted fill.
func (s *store) drop(ds []wire.Digest) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	var victims []evictee
	s.mu.RLock()
	for _, d := range ds {
		if b := s.blobs.get(d); b != nil && b.onDisk {
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
			s.blobs.delete(v.d)
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
	if b := s.blobs.get(d); b == nil || !b.onDisk {
		return fmt.Errorf("edge: pin blob %s: %w", shortHex(d), fs.ErrNotExist)
	}
	return s.pinLocked([]wire.Digest{d}, required)
}

// pin pins (required) or unpins the blobs ds that are on disk, in one
// transaction; blobs not on disk are skipped.
func (s *store) pin(ds []wire.Digest, required bool) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.pinLocked(ds, required)
}

// pinLocked is pin. Callers hold writeMu.
func (s *store) pinLocked(ds []wire.Digest, required bool) error {
	flag := blobFill
	if required {
		flag = blobRequired
	}
	var change []evictee
	s.mu.RLock()
	for _, d := range ds {
		if b := s.blobs.get(d); b != nil && b.onDisk && b.required != required {
			change = append(change, evictee{d, b})
		}
	}
	s.mu.RUnlock()
	if len(change) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		for _, c := range change {
			if err := tx.Bucket(bucketBlobs).Put(c.d[:], []byte{flag}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return diskErr("edge: pin blobs", err)
	}
	s.mu.Lock()
	for _, c := range change {
		s.countLocked(c.b, -1)
		c.b.required = required
		c.b.lastUse.Store(s.tick.Add(1))
		s.countLocked(c.b, +1)
	}
	s.mu.Unlock()
	return nil
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
