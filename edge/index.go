package edge

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	"github.com/geocdn/geocdn/internal/aetree"
	"github.com/geocdn/geocdn/internal/wire"
	"github.com/geocdn/geocdn/invalidation"
)

// object is what the index says about one key.
type object struct {
	Entry wire.LogEntry
	// Present reports whether the version's blob is on disk.
	Present bool
	// meta is what storeConfig.Annotate built for this version the first
	// time it was looked up (the response headers, for the edge), so the
	// hit path does not rebuild it; the store never looks inside.
	meta any
	// Stale reports that a soft purge marked the version for revalidation
	// with the origin before it is served again.
	Stale bool
	// Pending reports a strong version not yet confirmed visible.
	Pending bool
}

// objKey names an object in the in-memory index. A struct rather than the
// concatenated ns\x00key string keeps lookups free of allocations.
type objKey struct{ ns, key string }

// version is the index's record of the current version of one key: what
// the edge needs of its log entry, a put, which logEntry rebuilds. An
// edge holds one per object, a million or more, so it keeps 64 bytes
// rather than a wire.LogEntry's 288 and its strings: the fields that
// repeat across versions are shared (attrs), the digest and size are
// those of the blob record, the purge selectors are empty for a put, and
// the modification time is unix nanoseconds.
type version struct {
	key   string
	attrs *attrs
	// blob is the record of the content, store.blobs.get(digest), which
	// stays filed while a current version refers to it (blob.refs): the
	// version's digest and size are the record's, the size checked
	// against the content when it was written. A staged version may hold
	// a record not yet filed; commitLocked points it to the filed one.
	blob *blob
	lsn  uint64
	// modTime is the entry's ModTime in unix nanoseconds, if hasModTime.
	modTime int64
	// meta is storeConfig.Annotate's value for the version, built on the
	// first lookup rather than at load: a million versions are loaded at
	// start, and only those served need it.
	meta       atomic.Pointer[any]
	hasModTime bool
	// stale is set by a soft purge (guarded by mu); it is kept in memory
	// only, so a restart forgets it.
	stale bool
	// pending marks a strong version the origin has not yet confirmed
	// visible (guarded by mu): it is not served before it is.
	pending bool
}

// attrs are the fields of a version that most versions share with many
// others: namespace, headers, surrogate keys, consistency, replica set.
// They are never changed once made.
//
// A pulled version's stored response (status, fields, times) is its own:
// its attrs are made for it alone and hold it, so that published versions,
// which share theirs, pay nothing for it.
type attrs struct {
	ns, contentType, cacheControl string
	surrogateKeys, replicas       []string
	consistency                   wire.Consistency
	bound                         time.Duration
	pulled                        *wire.Pulled
}

// newVersion makes the index's record of the put e, pending if strong,
// with the filed blob record of e.Digest or, if there is none, a new one
// that commitLocked files. Callers hold writeMu.
func (s *store) newVersion(e *wire.LogEntry) *version {
	b := s.blobs.get(e.Digest)
	if b == nil {
		b = &blob{digest: e.Digest, size: int64(e.Size)}
	}
	return s.versionOf(e, b)
}

// versionOf is newVersion with b, the blob record of e.Digest.
func (s *store) versionOf(e *wire.LogEntry, b *blob) *version {
	v := &version{
		key:     e.Key,
		attrs:   s.attrs.intern(e),
		blob:    b,
		lsn:     e.LSN,
		pending: e.Consistency == wire.Strong,
	}
	if !e.ModTime.IsZero() {
		v.modTime, v.hasModTime = e.ModTime.UnixNano(), true
	}
	return v
}

// logEntry rebuilds the log entry of v. It allocates nothing: the strings
// and slices are v's, shared, and must not be written through. A ModTime
// comes back in UTC, as wire.ParseLogEntry returns it.
func (v *version) logEntry() wire.LogEntry {
	var e wire.LogEntry
	v.setEntry(&e)
	return e
}

// setEntry is logEntry into *e, every field set: the hit path builds the
// entry in place rather than copying its 288 bytes around.
func (v *version) setEntry(e *wire.LogEntry) {
	a := v.attrs
	e.LSN = v.lsn
	e.Op = wire.OpPut
	e.Namespace = a.ns
	e.Key = v.key
	e.Digest = v.blob.digest
	e.Size = uint64(v.blob.size)
	e.ContentType = a.contentType
	e.CacheControl = a.cacheControl
	e.SurrogateKeys = a.surrogateKeys
	e.Consistency = a.consistency
	e.Bound = a.bound
	e.ModTime = time.Time{}
	if v.hasModTime {
		e.ModTime = time.Unix(0, v.modTime).UTC()
	}
	e.Replicas = a.replicas
	e.PurgeKeys, e.PurgePrefixes, e.PurgeTags, e.Soft = nil, nil, nil, false
	e.Pulled = a.pulled
}

// tuple is what v contributes to the hash tree.
func (v *version) tuple() aetree.Tuple {
	return aetree.Tuple{Namespace: v.attrs.ns, Key: v.key, LSN: v.lsn, Digest: v.blob.digest}
}

// attrsTable shares attrs between versions, and with them the strings and
// slices that a million decoded entries would otherwise hold a copy each
// of. It holds at most maxSharedAttrs and starts over when full: versions
// keep what they have, and sets no longer published are not kept for
// ever. The zero value is empty; store.writeMu guards it.
type attrsTable map[attrsKey]*attrs

// attrsKey is attrs as a map key: the lists are each element prefixed
// with its length, the surrogate keys after their count.
type attrsKey struct {
	ns, contentType, cacheControl, lists string
	consistency                          wire.Consistency
	bound                                time.Duration
}

const maxSharedAttrs = 4096

// intern returns the shared attrs of e.
func (t *attrsTable) intern(e *wire.LogEntry) *attrs {
	if e.Pulled != nil {
		p := *e.Pulled
		p.Header = slices.Clip(slices.Clone(p.Header))
		p.Selecting = slices.Clip(slices.Clone(p.Selecting))
		return &attrs{
			ns: e.Namespace, contentType: e.ContentType, cacheControl: e.CacheControl,
			surrogateKeys: slices.Clip(slices.Clone(e.SurrogateKeys)),
			replicas:      slices.Clip(slices.Clone(e.Replicas)),
			consistency:   e.Consistency, bound: e.Bound,
			pulled: &p,
		}
	}
	k := attrsKey{ns: e.Namespace, contentType: e.ContentType, cacheControl: e.CacheControl, consistency: e.Consistency, bound: e.Bound}
	if len(e.SurrogateKeys)+len(e.Replicas) > 0 {
		b := binary.AppendUvarint(nil, uint64(len(e.SurrogateKeys)))
		for _, l := range [][]string{e.SurrogateKeys, e.Replicas} {
			for _, s := range l {
				b = binary.AppendUvarint(b, uint64(len(s)))
				b = append(b, s...)
			}
		}
		k.lists = string(b)
	}
	if a := (*t)[k]; a != nil {
		return a
	}
	if *t == nil || len(*t) >= maxSharedAttrs {
		*t = make(attrsTable)
	}
	a := &attrs{
		ns: e.Namespace, contentType: e.ContentType, cacheControl: e.CacheControl,
		// Clipped copies: nothing the caller does to its slices reaches
		// the index.
		surrogateKeys: slices.Clip(slices.Clone(e.SurrogateKeys)),
		replicas:      slices.Clip(slices.Clone(e.Replicas)),
		consistency:   e.Consistency, bound: e.Bound,
	}
	(*t)[k] = a
	return a
}

// stringSet makes one copy of each string that load parses again and
// again (namespace, content type, cache control): attrsTable shares them
// between versions in any case, but copies made for each parsed entry
// and dropped would leave a million small holes in the heap. It keeps at
// most maxSharedAttrs strings, copying others each time.
type stringSet map[string]string

func (m stringSet) intern(b []byte) string {
	if s, ok := m[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(m) < maxSharedAttrs {
		m[s] = s
	}
	return s
}

// watermark is the highest LSN applied.
func (s *store) watermark() uint64 { return s.wm.Load() }

// lookup returns the current version of ns/key, from memory only.
func (s *store) lookup(ns, key string) (o object, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v := s.index.get(ns, key)
	if v == nil {
		return object{}, false
	}
	b := v.blob
	if p := v.meta.Load(); p != nil {
		o.meta = *p
	} else if s.annotate != nil {
		o.meta = s.annotateVersion(v)
	}
	v.setEntry(&o.Entry)
	o.Present, o.Stale, o.Pending = b != nil && b.onDisk, v.stale, v.pending
	return o, true
}

// annotateVersion builds v's meta and keeps it, if not nil. Several
// readers may build it at once; they build the same. It is apart from
// lookup so that only this first lookup of a version puts an entry on
// the heap for Annotate to see.
func (s *store) annotateVersion(v *version) any {
	e := v.logEntry()
	m := s.annotate(&e)
	if m != nil {
		v.meta.Store(&m)
	}
	return m
}

// purge carries out a purge entry the log has reached: the current
// versions it matches lose their blobs (hard) or are marked stale (soft).
// A pulled version a hard purge matches is removed, as the origin removes
// it from its catalog (origin's purgePulled): the next request pulls the
// key anew, and a push of it still on its way cannot bring it back. It
// returns how many versions matched.
func (s *store) purge(p wire.LogEntry) (int, error) {
	var digests []wire.Digest
	var pulled []versionAt
	n := 0
	s.mu.Lock()
	for v := range s.index.all() {
		e := v.logEntry()
		if !invalidation.PurgeMatches(&p, &e) {
			continue
		}
		n++
		switch {
		case p.Soft:
			v.stale = true
		case e.Pulled != nil:
			pulled = append(pulled, versionAt{objKey{e.Namespace, e.Key}, v.lsn})
		default:
			digests = append(digests, v.blob.digest)
		}
	}
	s.mu.Unlock()
	if err := s.forget(pulled, p.LSN); err != nil {
		return n, err
	}
	return n, s.drop(digests)
}

// versionAt names the version of a key committed at lsn.
type versionAt struct {
	k   objKey
	lsn uint64
}

// forget removes the versions vs from the index, as of the log position
// lsn; one replaced since is left alone. A blob no version references any
// more goes with it.
func (s *store) forget(vs []versionAt, lsn uint64) error {
	if len(vs) == 0 {
		return nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	c := newChangeSet()
	for _, va := range vs {
		if v := s.index.get(va.k.ns, va.k.key); v != nil && v.lsn == va.lsn {
			s.stageLocked(c, va.k, nil)
			c.lsn[va.k] = lsn
		}
	}
	if len(c.staged) == 0 {
		return nil
	}
	if err := s.commitLocked(c, 0, nil); err != nil {
		return fmt.Errorf("edge: purge at lsn %d: %w", lsn, err)
	}
	return nil
}

// markStale marks ns/key's current version stale, as a soft purge of it
// alone would: it is revalidated before it is served again.
func (s *store) markStale(ns, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.index.get(ns, key); v != nil {
		v.stale = true
	}
}

// revalidated clears the stale and pending marks of ns/key once the origin
// confirmed version d as its current, visible version.
func (s *store) revalidated(ns, key string, d wire.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.index.get(ns, key); v != nil && v.blob.digest == d {
		v.stale = false
		v.pending = false
	}
}

// missing returns, in LSN order, the current versions whose content is not
// on disk and for which owes is true: replicas a lost push or a crash left
// behind, for the repair loop to fill.
func (s *store) missing(owes func(wire.LogEntry) bool) []wire.LogEntry {
	return s.absent(owes, false)
}

// absent is missing, with the versions whose content is being received
// too if inFlight: a resync reports every owed version it found absent,
// and fetches it even if a push or a repair fill is under way, so that
// the edge holds what it owes when the resync ends (a second copy of the
// same content is stored once).
func (s *store) absent(owes func(wire.LogEntry) bool, inFlight bool) []wire.LogEntry {
	s.mu.RLock()
	var out []wire.LogEntry
	for v := range s.index.all() {
		if b := v.blob; !b.onDisk && (inFlight || s.receiving[b.digest] == 0) {
			out = append(out, v.logEntry())
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
	entries := make([]wire.LogEntry, 0, s.index.len())
	for v := range s.index.all() {
		entries = append(entries, v.logEntry())
	}
	var pinned []wire.Digest
	for b := range s.blobs.all() {
		if b.onDisk && b.required && b.refs > 0 {
			pinned = append(pinned, b.digest)
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

// unpinnedOwed returns the blobs on disk as evictable fills that a
// current version this edge owes refers to: replicas it holds only as
// cache, for instance after a plan moved them away and back.
func (s *store) unpinnedOwed(owes func(wire.LogEntry) bool) []wire.Digest {
	s.mu.RLock()
	var cand []wire.LogEntry
	for v := range s.index.all() {
		if b := v.blob; b.onDisk && !b.required {
			cand = append(cand, v.logEntry())
		}
	}
	s.mu.RUnlock()
	var out []wire.Digest
	for _, e := range cand {
		if owes(e) {
			out = append(out, e.Digest)
		}
	}
	return out
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
	c := newChangeSet()
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
		if e.Op == wire.OpPut {
			s.stageLocked(c, k, e)
		} else {
			s.stageLocked(c, k, nil)
		}
		c.lsn[k] = e.LSN
		wm = e.LSN
	}
	if wm == s.wm.Load() {
		return nil
	}
	if err := s.commitLocked(c, wm, nil); err != nil {
		return fmt.Errorf("edge: apply up to lsn %d: %w", wm, err)
	}
	return nil
}

// changeSet is a set of index changes committed in one transaction.
type changeSet struct {
	staged   map[objKey]*version // nil value: key deleted
	delta    map[wire.Digest]int
	sizes    map[wire.Digest]int64 // of digests first named in this set
	released map[wire.Digest]struct{}
	// lsn is the log position of each change the log made, for resyncs
	// running meanwhile (store.touched); repairs leave it empty.
	lsn map[objKey]uint64
}

func newChangeSet() *changeSet {
	return &changeSet{
		staged:   make(map[objKey]*version),
		delta:    make(map[wire.Digest]int),
		sizes:    make(map[wire.Digest]int64),
		released: make(map[wire.Digest]struct{}),
		lsn:      make(map[objKey]uint64),
	}
}

// stageLocked stages e as k's current version, or k's removal if e is nil.
// Callers hold writeMu.
func (s *store) stageLocked(c *changeSet, k objKey, e *wire.LogEntry) {
	old, ok := c.staged[k]
	if !ok {
		old = s.index.get(k.ns, k.key) // writeMu held: no one writes index concurrently
	}
	if old != nil {
		c.delta[old.blob.digest]--
		c.released[old.blob.digest] = struct{}{}
	}
	if e == nil {
		c.staged[k] = nil
		return
	}
	c.staged[k] = s.newVersion(e)
	c.delta[e.Digest]++
	c.sizes[e.Digest] = int64(e.Size)
}

// commitLocked makes the staged changes durable in one bbolt transaction,
// with the watermark wm (0 leaves it alone) and whatever more writes
// does, then publishes them in memory, hash tree included: a blob no
// current version references any more is deleted. On error nothing
// changed. Callers hold writeMu.
func (s *store) commitLocked(c *changeSet, wm uint64, more func(*bbolt.Tx) error) error {
	var dead []wire.Digest
	for d := range c.released {
		refs := c.delta[d]
		if b := s.blobs.get(d); b != nil {
			refs += int(b.refs)
		}
		if refs == 0 {
			dead = append(dead, d)
		}
	}

	err := s.db.Update(func(tx *bbolt.Tx) error {
		// In key order: bbolt splits a node only at commit, so puts in
		// random order shift its entries on every insert, and a batch of
		// a snapshot's tens of thousands of keys would cost their square.
		type put struct {
			key []byte
			v   *version
		}
		puts := make([]put, 0, len(c.staged))
		for k, v := range c.staged {
			puts = append(puts, put{indexKey(k), v})
		}
		slices.SortFunc(puts, func(a, b put) int { return bytes.Compare(a.key, b.key) })
		objs := tx.Bucket(bucketObjects)
		for _, p := range puts {
			var err error
			if p.v == nil {
				err = objs.Delete(p.key)
			} else {
				err = objs.Put(p.key, p.v.logEntry().Append(nil))
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
		if more != nil {
			if err := more(tx); err != nil {
				return err
			}
		}
		if wm == 0 {
			return nil
		}
		return tx.Bucket(bucketMeta).Put(keyWatermark, binary.BigEndian.AppendUint64(nil, wm))
	})
	if err != nil {
		return err
	}

	var remove []wire.Digest
	s.mu.Lock()
	for d, n := range c.delta {
		b := s.blobs.get(d)
		if b == nil {
			// Named before its content arrived; writeBlob makes it Present.
			b = &blob{digest: d, size: c.sizes[d]}
			s.blobs.set(b)
		}
		b.refs += int32(n)
	}
	for k, v := range c.staged {
		if old := s.index.get(k.ns, k.key); old != nil {
			s.tree.Remove(old.tuple())
		}
		if v == nil {
			s.index.remove(k.ns, k.key)
		} else {
			v.blob = s.blobs.get(v.blob.digest) // filed above, if it was not
			s.index.set(v)
			s.tree.Add(v.tuple())
		}
		if lsn, ok := c.lsn[k]; ok && s.touched != nil {
			s.touched[k] = lsn
		}
	}
	for _, d := range dead {
		b := s.blobs.get(d)
		if b == nil {
			continue
		}
		if b.onDisk {
			s.countLocked(b, -1)
			remove = append(remove, d)
		}
		s.blobs.delete(d)
	}
	if wm != 0 {
		s.wm.Store(wm)
	}
	s.mu.Unlock()

	for _, d := range remove {
		s.removeFile(d)
	}
	return nil
}

// indexKey is the bbolt key of an object: its leaf in the anti-entropy
// hash tree, namespace, NUL, key (aetree.Key), so that a leaf's objects
// are one cursor scan.
func indexKey(k objKey) []byte { return aetree.Key(k.ns, k.key) }
