package origin

import (
	"io"
	"time"

	"github.com/geocdn/geocdn/internal/fsys"
	"github.com/geocdn/geocdn/internal/wire"
)

// Strong writes of one key become visible one at a time, in LSN order.
// While any is pending, fills of the key are answered with the version
// visible so far, flagged pending, so edges serve it without keeping it as
// current; a write is visible (and its publish returns) once every edge
// that may hold a lease has applied it or lost its lease.

// heldBlob is a version whose content stays readable while fills may still
// answer with it: the catalog may have moved on and the blob's file been
// collected, but an open file stays readable. refs counts its users.
type heldBlob struct {
	entry wire.LogEntry
	f     fsys.File
	refs  int
}

// strongKey is the strong-write state of one key.
type strongKey struct {
	visible  *heldBlob // the version fills answer with; nil: the key is absent
	waiting  []*strongWrite
	reserved int // writes between reserve and commit (or abort)
}

// strongWrite is one committed strong write waiting to become visible.
type strongWrite struct {
	lsn     uint64
	held    *heldBlob
	visible chan struct{} // closed when the write is visible
}

func pendingKey(ns, key string) string { return ns + "\x00" + key }

// holdBlob opens ent's content and holds it.
func (o *Origin) holdBlob(ent wire.LogEntry) *heldBlob {
	f, err := o.store.openBlob(ent.Digest)
	if err != nil {
		return nil
	}
	return &heldBlob{entry: ent, f: f, refs: 1}
}

// releaseLocked drops one reference to h. Callers hold strongMu.
func releaseLocked(h *heldBlob) {
	if h == nil {
		return
	}
	if h.refs--; h.refs == 0 {
		h.f.Close()
	}
}

// strongReserve is called before a strong write commits. The first
// reservation of a key captures its visible version, so every later write
// of the key, committed in whatever order, pends behind the same one.
func (o *Origin) strongReserve(ns, key string) {
	o.strongMu.Lock()
	defer o.strongMu.Unlock()
	k := pendingKey(ns, key)
	sk := o.strong[k]
	if sk == nil {
		sk = &strongKey{}
		if cur, err := o.store.get(ns, key); err == nil {
			sk.visible = o.holdBlob(cur)
		}
		o.strong[k] = sk
	}
	sk.reserved++
}

// strongAbort undoes a reservation whose write did not commit.
func (o *Origin) strongAbort(ns, key string) {
	o.strongMu.Lock()
	defer o.strongMu.Unlock()
	k := pendingKey(ns, key)
	sk := o.strong[k]
	sk.reserved--
	o.retireLocked(k, sk)
}

// retireLocked forgets a key with nothing pending or reserved.
func (o *Origin) retireLocked(k string, sk *strongKey) {
	if len(sk.waiting) == 0 && sk.reserved == 0 {
		releaseLocked(sk.visible)
		delete(o.strong, k)
	}
}

// strongCommitted turns a reservation into a pending write of ent.
func (o *Origin) strongCommitted(ent wire.LogEntry) *strongWrite {
	w := &strongWrite{lsn: ent.LSN, held: o.holdBlob(ent), visible: make(chan struct{})}
	o.strongMu.Lock()
	defer o.strongMu.Unlock()
	sk := o.strong[pendingKey(ent.Namespace, ent.Key)]
	sk.reserved--
	i := len(sk.waiting)
	for i > 0 && sk.waiting[i-1].lsn > w.lsn {
		i--
	}
	sk.waiting = append(sk.waiting[:i], append([]*strongWrite{w}, sk.waiting[i:]...)...)
	return w
}

// makeVisible makes the write at lsn, and every earlier pending write of
// the key, visible: an edge that applied lsn applied them too.
func (o *Origin) makeVisible(ns, key string, lsn uint64) {
	o.strongMu.Lock()
	defer o.strongMu.Unlock()
	k := pendingKey(ns, key)
	sk := o.strong[k]
	if sk == nil {
		return
	}
	for len(sk.waiting) > 0 && sk.waiting[0].lsn <= lsn {
		w := sk.waiting[0]
		sk.waiting = sk.waiting[1:]
		releaseLocked(sk.visible)
		sk.visible = w.held
		close(w.visible)
	}
	o.retireLocked(k, sk)
}

// fillVersion is what a fill asking for the current version of ns/key
// answers. With pending true, a strong write of the key has committed but
// is not visible yet, and h is the version visible so far (nil when the
// key has none), with a reference the caller gives back with o.unhold.
// Otherwise ent and err are the catalog's current entry.
//
// The catalog is read under strongMu, with the pending state: a strong
// write reserves its key (strongReserve) before it commits, but becomes a
// waiting write (strongCommitted) only after, so between the two the
// catalog already names a version nobody may see. A read made alone could
// answer it as current in that window, and a later fill, once the write
// is waiting, the version before it: a read going back in time. Under the
// lock, a key with a reservation whose catalog entry moved past the
// visible version is pending; a key without one cannot have committed an
// invisible version.
func (o *Origin) fillVersion(ns, key string) (ent wire.LogEntry, err error, h *heldBlob, pending bool) {
	o.strongMu.Lock()
	defer o.strongMu.Unlock()
	ent, err = o.store.get(ns, key)
	sk := o.strong[pendingKey(ns, key)]
	if sk == nil {
		return ent, err, nil, false
	}
	if len(sk.waiting) == 0 && !movedPast(ent, err, sk.visible) {
		return ent, err, nil, false
	}
	if sk.visible != nil {
		sk.visible.refs++
	}
	return ent, err, sk.visible, true
}

// movedPast reports whether the catalog's current entry (ent, err) is a
// version written after visible was captured.
func movedPast(ent wire.LogEntry, err error, visible *heldBlob) bool {
	if err != nil {
		return false // deleted meanwhile (deletes are not strong writes)
	}
	return visible == nil || ent.LSN != visible.entry.LSN
}

func (o *Origin) unhold(h *heldBlob) {
	o.strongMu.Lock()
	defer o.strongMu.Unlock()
	releaseLocked(h)
}

// servePending answers a fill of a key with a strong write pending: the
// version visible so far, flagged so the edge serves it without keeping
// it as current, or not-found when the key has none yet.
func (o *Origin) servePending(w io.Writer, h *heldBlob) (int64, error) {
	if h == nil {
		return 0, wire.WriteFrame(w, wire.FillResponse{Status: wire.FillNotFound, Reason: wire.PendingReason})
	}
	defer o.unhold(h)
	if err := wire.WriteFrame(w, wire.FillResponse{Status: wire.FillOK, Reason: wire.PendingReason, Entry: h.entry}); err != nil {
		return 0, err
	}
	return io.Copy(w, io.NewSectionReader(h.f, 0, int64(h.entry.Size)))
}

// strongVisible runs a strong write's wait in the background and makes it
// visible at the end. The wait ends by the lease rules alone: an edge that
// does not acknowledge stops being renewed and its lease runs out.
func (o *Origin) strongVisible(ns, key string, w *strongWrite) {
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		if _, _, ok := o.awaitSettled(w.lsn, time.Time{}, o.stopping); ok {
			o.makeVisible(ns, key, w.lsn)
		}
	}()
}
