package origin

import "time"

// The lease rules themselves are invalidation.Grantor's; what is here is
// the origin's side of them: which edges a write must hear from, what it
// knows of each edge's lease, and waiting on the injected clock and the
// ack signal until an entry is settled.

// edgeIDs is every edge the origin knows, up or not.
func (o *Origin) edgeIDs() []string {
	var ids []string
	for _, e := range o.edges.all() {
		ids = append(ids, e.info.ID)
	}
	return ids
}

// leaseOf is what the origin knows of edge id's lease, as Grantor.Settled
// asks for it: the highest LSN the edge acknowledged applying and when
// its lease expires (zero: never granted since this origin started).
func (o *Origin) leaseOf(id string) (watermark uint64, expires time.Time) {
	e := o.edges.get(id)
	if e == nil {
		return 0, time.Time{}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.watermark, e.leaseExpires
}

// awaitSettled waits until the entry lsn is settled with every edge the
// origin knows (every one applied it or lost its lease, and the grace
// period is over), and returns Grantor.Settled's answer at the last check:
// ok is false if deadline passed first (a zero deadline never does) or
// done closed. Strong writes and wait=true purges both wait here.
//
// Every edge, not only those up when the write began, and read anew at
// each check: an edge that was down (paused, cut off) can come back and
// have its lease renewed before the entry commits, with an answer naming
// an older LSN, and would then serve what the entry replaced as current.
// A down edge whose lease ran out counts as expired, so it delays
// nothing.
//
// Nothing signals a lease running out or the grace ending, so besides
// acks it re-checks every heartbeat interval.
func (o *Origin) awaitSettled(lsn uint64, deadline time.Time, done <-chan struct{}) (acked, expired []string, ok bool) {
	tick := o.clk.NewTicker(o.cfg.HeartbeatInterval)
	defer tick.Stop()
	for {
		acks := o.acked.C()
		now := o.clk.Now()
		acked, expired, ok = o.grantor.Settled(lsn, o.edgeIDs(), o.leaseOf, now)
		if ok || !deadline.IsZero() && !now.Before(deadline) {
			return acked, expired, ok
		}
		select {
		case <-acks:
		case <-tick.C():
		case <-done:
			return acked, expired, false
		}
	}
}
