package invalidation

import (
	"sync"
	"sync/atomic"
	"time"
)

// Holder is the edge's side of the volume lease: it remembers when each
// renewal request (heartbeat) went out, takes the origin's answers, and
// renews the lease from an answer only once the edge's log has reached the
// LSN the answer carried, since heartbeats and log entries travel on
// different streams and the answer may outrun the entries it vouches for.
// It also keeps what the answers say about the origin's log (OriginLSN,
// and as of when: Origin), which session reads use to tell an LSN the
// origin never issued from one the log has not brought yet.
//
// It never reads a clock: every instant is an argument, so the caller
// decides what "now" is (the edge's injected clock) and tests use explicit
// instants. Its rules:
//
//   - a counted renewal sent at t with term T makes the lease valid until
//     EdgeExpiry(t, T), measured from the send time, not the answer's
//     arrival, so the edge's view ends before the origin's;
//   - a renewal counts only once the watermark (Applied, or the one given
//     with the answer) reaches the LSN of its answer; until then it waits;
//   - only a renewal sent after the last counted one moves the lease, so
//     an answer that arrives late never moves it back (a later renewal
//     with a shorter term does shorten it: the newest grant rules);
//   - an answer with term 0 (the origin withholds the lease) renews
//     nothing, but still reports the origin's LSN.
//
// The lease outlives a session (it is per edge, not per connection); Reset
// forgets only what belongs to one session.
//
// The zero Holder holds no lease and is ready to use; it must not be
// copied after first use. A Holder is safe for concurrent use. Sent,
// Answered, Applied, Welcomed, Reset, OriginLSN, Origin and Fresh
// serialise on an internal mutex, which is a leaf: it is never held while
// calling out, so callers may hold their own locks around any method. Lease, Valid, ValidUntil and
// Confirmed take no lock: they read one atomic snapshot replaced whenever
// a renewal counts, so a cache hit pays one atomic load for them and sees
// the valid-until and confirmation of the same renewal.
type Holder struct {
	mu sync.Mutex
	// sent maps a heartbeat's sequence number to its send time.
	sent map[uint64]time.Time
	// pending are answers waiting for the watermark to reach their LSN.
	pending []renewal
	// applied is the highest watermark reported; watermarks only grow.
	applied uint64
	// originLSN is the highest LSN the origin reported (answers and
	// welcomes).
	originLSN uint64
	// asOf is the send time of the latest heartbeat answered in this
	// session: every LSN the origin issued by then is at most originLSN.
	asOf time.Time

	// lease is written under mu and read without it.
	lease atomic.Pointer[HeldLease]
}

// renewal is an answer that grants a lease, not counted yet.
type renewal struct {
	lsn  uint64
	sent time.Time
	term time.Duration
}

// HeldLease is an edge's lease as its last counted renewal left it.
type HeldLease struct {
	// Until is when the lease ends: EdgeExpiry of that renewal. Zero if
	// no renewal ever counted.
	Until time.Time
	// Confirmed is that renewal's send time: the edge's log was as
	// current as the origin's then. Zero if no renewal ever counted.
	Confirmed time.Time
}

// Valid reports whether the lease is valid at now; it is not at Until.
func (l HeldLease) Valid(now time.Time) bool { return now.Before(l.Until) }

// sentKept is how many heartbeats back an answer is still taken: answers
// older than a few dozen heartbeats renew nothing useful, and forgetting
// them bounds the memory a silent origin costs.
const sentKept = 64

// Sent records that the heartbeat seq was sent at at. Sequence numbers
// increase within a session and start again after Reset.
func (h *Holder) Sent(seq uint64, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sent == nil {
		h.sent = make(map[uint64]time.Time)
	}
	h.sent[seq] = at
	delete(h.sent, seq-sentKept)
}

// Answered takes the origin's answer to heartbeat seq: the origin's last
// LSN when it answered, and the lease term it grants (0: withheld, the
// edge has left log entries unacknowledged too long). watermark is the
// edge's watermark now. It reports false, and changes nothing, for a seq
// not sent since the last Reset, already answered, or too old (sentKept).
//
// The answer raises OriginLSN and, since the origin answered after the
// heartbeat was sent, Origin's as-of time to that send time, whether or
// not it grants a term. A granted term is counted at once if the
// watermark has reached originLSN, else when Applied reports it has.
func (h *Holder) Answered(seq, originLSN uint64, term time.Duration, watermark uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	at, ok := h.sent[seq]
	if !ok {
		return false
	}
	delete(h.sent, seq)
	h.originLSN = max(h.originLSN, originLSN)
	if at.After(h.asOf) {
		h.asOf = at
	}
	h.applied = max(h.applied, watermark)
	if term > 0 {
		h.pending = append(h.pending, renewal{lsn: originLSN, sent: at, term: term})
	}
	h.countLocked()
	return true
}

// Applied reports that the edge's log has reached watermark, and counts
// the answers waiting for it.
func (h *Holder) Applied(watermark uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.applied = max(h.applied, watermark)
	h.countLocked()
}

// countLocked renews the lease from every pending answer whose LSN the log
// has reached. The watermark is kept here, not read by the caller outside
// mu, so an answer and a log batch that race are counted by whichever of
// Answered and Applied comes second.
func (h *Holder) countLocked() {
	keep := h.pending[:0]
	cur := h.Lease()
	for _, p := range h.pending {
		if p.lsn > h.applied {
			keep = append(keep, p)
			continue
		}
		if p.sent.After(cur.Confirmed) {
			// A new value each time: readers may hold the previous one.
			next := HeldLease{Until: EdgeExpiry(p.sent, p.term), Confirmed: p.sent}
			h.lease.Store(&next)
			cur = next
		}
	}
	h.pending = keep
}

// Welcomed records the origin's last LSN as a session's welcome gave it.
// It raises OriginLSN but not Origin's as-of time: the welcome answers no
// heartbeat.
func (h *Holder) Welcomed(originLSN uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.originLSN = max(h.originLSN, originLSN)
}

// Reset ends a session: heartbeats sent in it (whose sequence numbers the
// next session reuses), answers still waiting for the log, and Origin's
// as-of time are forgotten. The lease, OriginLSN and the watermark stay.
func (h *Holder) Reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.sent)
	h.pending = nil
	h.asOf = time.Time{}
}

// Lease is the lease as the last counted renewal left it; the zero
// HeldLease if none has counted. It takes no lock.
func (h *Holder) Lease() HeldLease {
	if l := h.lease.Load(); l != nil {
		return *l
	}
	return HeldLease{}
}

// Valid reports whether the lease is valid at now.
func (h *Holder) Valid(now time.Time) bool { return h.Lease().Valid(now) }

// ValidUntil is when the lease ends; zero if it was never held.
func (h *Holder) ValidUntil() time.Time { return h.Lease().Until }

// Confirmed is the send time of the last counted renewal; zero if none.
func (h *Holder) Confirmed() time.Time { return h.Lease().Confirmed }

// OriginLSN is the highest LSN the origin has reported.
func (h *Holder) OriginLSN() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.originLSN
}

// Origin returns OriginLSN with asOf, the send time of the latest
// heartbeat answered since the last Reset (zero if none). The origin
// answered after asOf with its last LSN then, so it had issued no LSN
// above lsn by asOf: a client whose request arrived before asOf cannot
// hold a higher one. The two are read together because an lsn read before
// the answer that moved asOf would be too low for that claim.
func (h *Holder) Origin() (lsn uint64, asOf time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.originLSN, h.asOf
}

// Fresh reports whether the edge's log view may answer for keys it does
// not know (a 404 without asking the origin): the lease is valid at now
// and watermark has reached the origin's LSN as last reported.
func (h *Holder) Fresh(now time.Time, watermark uint64) bool {
	return h.Valid(now) && watermark >= h.OriginLSN()
}
