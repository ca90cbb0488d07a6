package invalidation

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// Grantor is the origin's side of the volume lease: when the log entries
// it hands out were committed, whether an edge's lease may be renewed,
// the grace period after a start or a leadership change, and when an
// entry is settled (every edge told has applied it or lost its lease).
//
// It never reads a clock: every method that depends on the time takes it
// as an argument, so the caller decides what "now" is (the origin's
// injected clock) and tests use explicit instants. It does not care how
// LSNs are produced, only that they grow.
//
// A Grantor is safe for concurrent use. Committed and Restart are the only
// methods that change it; each happens entirely before or after any other
// call.
type Grantor struct {
	term time.Duration

	mu sync.Mutex
	// start is when the grace period began: the process start, or the
	// last leadership change.
	start time.Time
	// startLSN is the latest LSN committed before start.
	startLSN uint64
	// commits are recent commits since start, LSN strictly increasing.
	commits []commitRecord
	// pruned is set once commits dropped its oldest records.
	pruned bool
}

// commitRecord is a time at or after LSN lsn was committed.
type commitRecord struct {
	lsn uint64
	at  time.Time
}

// commitsKept bounds the commit times a Grantor remembers; past it, the
// older half is forgotten. An entry it no longer remembers only matters
// for an edge that many entries behind, which is long overdue anyway.
const commitsKept = 1 << 14

// NewGrantor returns a Grantor for leases of term, whose grace period
// begins at start (when the origin started); last is the latest LSN
// committed before start.
func NewGrantor(term time.Duration, start time.Time, last uint64) *Grantor {
	return &Grantor{term: term, start: start, startLSN: last}
}

// Term is the lease term the Grantor grants.
func (g *Grantor) Term() time.Duration { return g.term }

// Restart begins a new grace period at at and forgets every commit time,
// as NewGrantor(term, at, last) would: a new leader calls it, since it
// knows no more than a restarted origin about which leases are out, or
// when the entries edges have not acknowledged reached them.
func (g *Grantor) Restart(at time.Time, last uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.start = at
	g.startLSN = last
	g.commits = nil
	g.pruned = false
}

// GraceEnds is when the current grace period ends: one full term plus
// Margin(term) after the start or the last Restart. Until then an edge
// may still hold a lease granted before, which the Grantor cannot know
// of, so no strong write or wait=true purge completes and strong versions
// are not confirmed to fills.
func (g *Grantor) GraceEnds() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.start.Add(g.term + Margin(g.term))
}

// InGrace reports whether now falls in the grace period; GraceEnds itself
// does not.
func (g *Grantor) InGrace(now time.Time) bool { return now.Before(g.GraceEnds()) }

// Committed records that the entry lsn was committed by at. Call it after
// the commit, with a time read after it: then every recorded time is at or
// after the real commit, so entries can only look younger than they are.
// An lsn not above every one recorded already (or the start's) is covered
// by the later record (committed after it, so recorded no earlier) and is
// dropped, which keeps concurrent callers from disordering the records.
func (g *Grantor) Committed(lsn uint64, at time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if n := len(g.commits); lsn <= g.startLSN || n > 0 && lsn <= g.commits[n-1].lsn {
		return
	}
	g.commits = append(g.commits, commitRecord{lsn, at})
	if len(g.commits) > commitsKept {
		g.commits = append(g.commits[:0], g.commits[len(g.commits)-commitsKept/2:]...)
		g.pruned = true
	}
}

// CommittedAt is when the entry lsn was committed, as far as the Grantor
// knows, erring late, never early: an entry from before the start counts
// as committed at the start (once old records have been forgotten, at the
// oldest record kept); one recorded at its record's time; one between
// records at the next record's time; one newer than every record at now
// (committed a moment ago, not recorded yet).
func (g *Grantor) CommittedAt(lsn uint64, now time.Time) time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	if lsn <= g.startLSN && !g.pruned {
		return g.start
	}
	i, _ := slices.BinarySearchFunc(g.commits, lsn, func(r commitRecord, l uint64) int { return cmp.Compare(r.lsn, l) })
	if i == len(g.commits) {
		return now
	}
	return g.commits[i].at
}

// UnackedBound is how old an entry an edge has not acknowledged may be
// before its lease is no longer renewed: half a term. An edge whose
// renewals get through while its log does not (a one-way partition, a
// stuck stream) then loses its lease within one term and a half, so a
// strong write waiting for it is never stalled for ever.
func (g *Grantor) UnackedBound() time.Duration { return g.term / 2 }

// MayRenew reports whether an edge that has applied the log up to
// watermark may have its lease renewed at now, when last is the latest
// committed LSN: it may unless its oldest unapplied entry was committed
// more than UnackedBound before now.
func (g *Grantor) MayRenew(watermark, last uint64, now time.Time) bool {
	if watermark >= last {
		return true
	}
	return now.Sub(g.CommittedAt(watermark+1, now)) <= g.UnackedBound()
}

// Expiry is when the origin holds a lease granted at sent to run out. The
// origin reads sent after the grant has gone out, while the edge counts
// its lease from before it asked (EdgeExpiry), so the origin never
// believes a lease ends earlier than the edge does.
func (g *Grantor) Expiry(sent time.Time) time.Time { return sent.Add(g.term) }

// Settled reports how the entry lsn stands at now with the edges told of
// it: acked lists those that applied it (lease says their watermark is at
// least lsn), expired those that did not and whose lease has run out
// (expiry at or before now, or none granted since the start: one granted
// before is what the grace period waits out), and ok whether it is
// settled: every edge told is in one of the two and the grace period is
// over, so no edge can still serve what lsn replaced.
// Strong writes and wait=true purges complete on ok.
//
// lease returns what the origin knows of an edge: the highest LSN it
// acknowledged applying and when its lease expires (zero: never granted).
// Settled calls it once per edge told, without holding any lock.
func (g *Grantor) Settled(lsn uint64, told []string, lease func(id string) (watermark uint64, expires time.Time), now time.Time) (acked, expired []string, ok bool) {
	for _, id := range told {
		wm, expires := lease(id)
		switch {
		case wm >= lsn:
			acked = append(acked, id)
		case !now.Before(expires):
			expired = append(expired, id)
		}
	}
	return acked, expired, len(acked)+len(expired) == len(told) && !g.InGrace(now)
}
