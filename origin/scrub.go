package origin

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/geocdn/geocdn/internal/scrub"
	"github.com/geocdn/geocdn/internal/wire"
)

const (
	// maxCorruptListed caps the corrupt blobs /v1/status names; the
	// counts in its scrub section are not capped.
	maxCorruptListed = 100
	// maxCorruptRefs caps the catalog keys named for one corrupt blob, and
	// corruptLookupsPerPass the corrupt blobs of one pass whose keys are
	// looked up: each lookup walks the whole catalog, which is fine for a
	// rare finding and not for a disk that went bad wholesale.
	maxCorruptRefs        = 10
	corruptLookupsPerPass = 16
)

// ObjectRef names an object: its namespace and key.
type ObjectRef struct {
	Namespace string `json:"namespace"`
	Key       string `json:"key"`
}

func (r ObjectRef) String() string { return r.Namespace + ":" + r.Key }

// CorruptBlob is a blob whose content no longer matches its digest, as the
// scrubber found it.
type CorruptBlob struct {
	Digest wire.Digest `json:"digest"`
	Path   string      `json:"path"`
	// Reason is "digest mismatch", "truncated" or "too long".
	Reason string `json:"reason"`
	Size   int64  `json:"size"`
	Read   int64  `json:"read"`
	// Keys are catalog keys whose current version is this blob (at most
	// 10; none when they were not looked up).
	Keys    []ObjectRef `json:"keys,omitempty"`
	Pass    int         `json:"pass"`
	FoundAt time.Time   `json:"found_at"`
}

// ScrubStatus is the scrub section of GET /v1/status.
type ScrubStatus struct {
	scrub.Status
	// Progress is the fraction of the running pass done (1 when idle
	// after a full pass).
	Progress float64 `json:"progress"`
	// Rate is the bound in bytes per second; Interval how often a pass
	// starts.
	Rate     int64  `json:"rate_bytes_per_second"`
	Interval string `json:"interval"`
	// CorruptBlobs are those found by the last full pass and any since
	// (so a blob that was replaced drops out after a full pass), at most
	// 100.
	CorruptBlobs []CorruptBlob `json:"corrupt_blobs"`
}

// corruptList remembers the corrupt blobs the scrubber reported.
type corruptList struct {
	mu    sync.Mutex
	blobs map[wire.Digest]CorruptBlob
	// lookupPass and lookups count the key lookups of the current pass.
	lookupPass, lookups int
}

// lookupAllowed reports whether a finding of pass may have its keys looked
// up, and counts it.
func (c *corruptList) lookupAllowed(pass int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lookupPass != pass {
		c.lookupPass, c.lookups = pass, 0
	}
	c.lookups++
	return c.lookups <= corruptLookupsPerPass
}

// add records b, forgetting the blobs found before pass keepFrom (the last
// full one) and, when the list is full, one found before b's pass.
func (c *corruptList) add(b CorruptBlob, keepFrom int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.blobs == nil {
		c.blobs = map[wire.Digest]CorruptBlob{}
	}
	for d, old := range c.blobs {
		if old.Pass < keepFrom {
			delete(c.blobs, d)
		}
	}
	if _, ok := c.blobs[b.Digest]; !ok && len(c.blobs) >= maxCorruptListed {
		for d, old := range c.blobs {
			if old.Pass < b.Pass {
				delete(c.blobs, d)
				break
			}
		}
		if len(c.blobs) >= maxCorruptListed {
			return // counted in the scrub status, not listed
		}
	}
	c.blobs[b.Digest] = b
}

// list returns the blobs found by pass from or a later one, in digest
// order.
func (c *corruptList) list(from int) []CorruptBlob {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := []CorruptBlob{}
	for _, b := range c.blobs {
		if b.Pass >= from {
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(a, b CorruptBlob) int { return bytes.Compare(a.Digest[:], b.Digest[:]) })
	return out
}

// newScrubber makes the scrubber of o's blobs. It must run after the store
// is open and stop before it closes.
func (o *Origin) newScrubber() (*scrub.Scrubber, error) {
	return scrub.New(scrub.Config{
		Rate:     o.cfg.ScrubRate,
		Interval: o.cfg.ScrubInterval,
		List:     o.store.referencedBlobs,
		Open: func(d wire.Digest) (io.ReadCloser, error) {
			return o.store.openBlob(d)
		},
		OnCorrupt: o.scrubCorrupt,
		Clock:     o.clk,
		Logger:    o.log,
	})
}

// scrubCorrupt reports a corrupt blob. The origin cannot repair it (it
// holds the only copy; an origin cluster will fetch it from a peer). Edges
// refuse it on their digest check, so fills of it fail rather than spread
// it, and republishing the same content reuses the damaged file: the keys
// that name it must be deleted first, or the file restored.
func (o *Origin) scrubCorrupt(f scrub.Finding) {
	b := CorruptBlob{
		Digest: f.Digest, Path: o.store.blobPath(f.Digest), Reason: f.Reason(),
		Size: f.Size, Read: f.Read, Pass: f.Pass, FoundAt: f.At,
	}
	if o.corrupt.lookupAllowed(f.Pass) {
		refs, err := o.store.objectsNaming(f.Digest, maxCorruptRefs)
		if err != nil {
			o.log.Warn("scrub: find the keys of a corrupt blob", "digest", f.Digest.String(), "err", err)
		}
		b.Keys = refs
	}
	o.corrupt.add(b, o.scrubber.Status().LastFullPass)
	o.metrics.scrubCorrupt.Inc()
	keys := make([]string, len(b.Keys))
	for i, r := range b.Keys {
		keys[i] = r.String()
	}
	o.log.Error("scrub: CORRUPT BLOB at origin; it cannot be repaired here: restore the file, or delete the keys naming it and publish them again",
		"digest", f.Digest.String(), "path", b.Path, "reason", b.Reason, "size", f.Size, "read", f.Read,
		"keys", keys, "pass", f.Pass)
}

// ScrubNow starts a scrub pass at once, or as soon as the running one ends.
func (o *Origin) ScrubNow() { o.scrubber.Trigger() }

// ScrubStatus is the scrubber's progress and the corrupt blobs it found.
func (o *Origin) ScrubStatus() ScrubStatus {
	st := o.scrubber.Status()
	return ScrubStatus{
		Status:   st,
		Progress: st.Progress(),
		Rate:     o.cfg.ScrubRate,
		Interval: o.cfg.ScrubInterval.String(),
		// The last full pass's findings stand until another pass has got
		// through the whole list without finding them.
		CorruptBlobs: o.corrupt.list(st.LastFullPass),
	}
}

// referencedBlobs lists every blob the catalog references, once each, in
// digest order, with its size. Like forEachObject it reads in short
// transactions, so it may miss a blob committed while it runs (the next
// pass has it) or list one collected meanwhile (opening it then fails
// with fs.ErrNotExist, and the scrubber skips it).
func (s *store) referencedBlobs(ctx context.Context) ([]scrub.Blob, error) {
	var blobs []scrub.Blob
	err := s.forEachObject(func(e wire.LogEntry) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		blobs = append(blobs, scrub.Blob{Digest: e.Digest, Size: int64(e.Size)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	cmp := func(a, b scrub.Blob) int { return bytes.Compare(a.Digest[:], b.Digest[:]) }
	slices.SortFunc(blobs, cmp)
	return slices.CompactFunc(blobs, func(a, b scrub.Blob) bool { return a.Digest == b.Digest }), nil
}

// errEnough ends a catalog walk that has found what it wanted.
var errEnough = errors.New("enough")

// objectsNaming returns up to limit objects whose current version is the
// blob d, walking the catalog.
func (s *store) objectsNaming(d wire.Digest, limit int) ([]ObjectRef, error) {
	var refs []ObjectRef
	err := s.forEachObject(func(e wire.LogEntry) error {
		if e.Digest == d {
			refs = append(refs, ObjectRef{Namespace: e.Namespace, Key: e.Key})
			if len(refs) == limit {
				return errEnough
			}
		}
		return nil
	})
	if errors.Is(err, errEnough) {
		err = nil
	}
	return refs, err
}
