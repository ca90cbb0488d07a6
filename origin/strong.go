package origin

import (
	"io"
	"time"

	"github.com/geocdn/geocdn/internal/fsys"
	"github.com/geocdn/geocdn/internal/wire"
	"github.com/geocdn/geocdn/invalidation"
)

// pendingStrong is a strong write committed but not yet visible: until
// every edge that may hold a lease has applied it (or lost its lease),
// fills of the key are answered with the old version, flagged pending so
// edges do not keep it as current.
type pendingStrong struct {
	lsn uint64
	old *wire.LogEntry // nil when the key did not exist
	// oldBlob stays open while pending: the new version's commit may have
	// collected the old blob's file, and an open file stays readable.
	oldBlob fsys.File
}

func pendingKey(ns, key string) string { return ns + "\x00" + key }

// beginStrong records a strong write's previous version before it commits.
func (o *Origin) strongBefore(ns, key string) *pendingStrong {
	p := &pendingStrong{}
	if cur, err := o.store.get(ns, key); err == nil {
		if f, err := o.store.openBlob(cur.Digest); err == nil {
			p.old, p.oldBlob = &cur, f
		}
	}
	return p
}

// strongCommitted marks the write at lsn pending.
func (o *Origin) strongCommitted(ns, key string, p *pendingStrong, lsn uint64) {
	p.lsn = lsn
	o.mu.Lock()
	defer o.mu.Unlock()
	if prev := o.pending[pendingKey(ns, key)]; prev != nil && prev.oldBlob != nil {
		// A later strong write of the same key supersedes the earlier
		// one's pending state; the oldest visible version stays the one
		// served, so keep the earlier "old".
		p.old, p.oldBlob, prev.oldBlob = prev.old, prev.oldBlob, nil
		if p.oldBlob == nil {
			p.old = nil
		}
	}
	o.pending[pendingKey(ns, key)] = p
}

// makeVisible ends the pending state of the write at lsn, unless a later
// strong write of the key took it over.
func (o *Origin) makeVisible(ns, key string, lsn uint64) {
	o.mu.Lock()
	p := o.pending[pendingKey(ns, key)]
	if p == nil || p.lsn != lsn {
		o.mu.Unlock()
		return
	}
	delete(o.pending, pendingKey(ns, key))
	o.mu.Unlock()
	if p.oldBlob != nil {
		p.oldBlob.Close()
	}
}

// pendingFor returns the pending state of ns/key, if any.
func (o *Origin) pendingFor(ns, key string) (*pendingStrong, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p, ok := o.pending[pendingKey(ns, key)]
	return p, ok
}

// awaitVisible waits until the write at lsn may become visible: every edge
// not known down when it committed has applied it or lost its lease, and
// one lease term plus margin has passed since this origin started. It
// returns false if deadline passes (a zero deadline never does) or done
// closes first.
func (o *Origin) awaitVisible(lsn uint64, told []string, deadline time.Time, done <-chan struct{}) bool {
	term := o.cfg.LeaseTerm
	notBefore := o.started.Add(term + invalidation.Margin(term))
	tick := o.clk.NewTicker(o.cfg.HeartbeatInterval)
	defer tick.Stop()
	for {
		acks := o.acked.C()
		acked, expired := o.purgeProgress(lsn, told)
		now := o.clk.Now()
		if len(acked)+len(expired) == len(told) && !now.Before(notBefore) {
			return true
		}
		if !deadline.IsZero() && !now.Before(deadline) {
			return false
		}
		select {
		case <-acks:
		case <-tick.C():
		case <-done:
			return false
		}
	}
}

// liveEdges lists the edges not known to be down now: the ones a strong
// write or a waiting purge must hear from.
func (o *Origin) liveEdges() []string {
	now := o.clk.Now()
	var ids []string
	for _, e := range o.edges.all() {
		if e.state(now, o.stateRule()) != EdgeDown {
			ids = append(ids, e.info.ID)
		}
	}
	return ids
}

// inRestartGrace reports whether leases granted before this origin started
// may still run: until then it cannot know which strong versions edges
// treat as visible.
func (o *Origin) inRestartGrace() bool {
	term := o.cfg.LeaseTerm
	return o.clk.Now().Before(o.started.Add(term + invalidation.Margin(term)))
}

// servePending answers a fill of a key whose strong write is pending: the
// old version, flagged so the edge serves it without keeping it as
// current; or not-found when the key is new.
func (o *Origin) servePending(w io.Writer, p *pendingStrong) (int64, error) {
	if p.old == nil || p.oldBlob == nil {
		return 0, wire.WriteFrame(w, wire.FillResponse{Status: wire.FillNotFound, Reason: wire.PendingReason})
	}
	ent := *p.old
	if err := wire.WriteFrame(w, wire.FillResponse{Status: wire.FillOK, Reason: wire.PendingReason, Entry: ent}); err != nil {
		return 0, err
	}
	return io.Copy(w, io.NewSectionReader(p.oldBlob, 0, int64(ent.Size)))
}

// strongVisible runs a strong write's wait in the background and makes it
// visible at the end. The wait ends by the lease rules alone: an edge that
// does not acknowledge stops being renewed and its lease runs out. The
// returned channel closes once the version is visible.
func (o *Origin) strongVisible(ns, key string, lsn uint64, told []string) <-chan struct{} {
	visible := make(chan struct{})
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		if o.awaitVisible(lsn, told, time.Time{}, o.stopping) {
			o.makeVisible(ns, key, lsn)
			close(visible)
		}
	}()
	return visible
}
