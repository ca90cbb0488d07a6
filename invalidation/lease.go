// Package invalidation holds geocdn's freshness machinery: the volume lease
// an origin grants each edge and the rules both sides use to reason about
// it (DESIGN.md § The one mechanism).
//
// Key invariant: an edge's view of its lease always ends before the
// origin's, because the edge counts from when it sent the renewal request
// and subtracts a margin for clock drift, while the origin counts from when
// it sent the grant.
package invalidation

import "time"

// DriftBound is ρ, the largest relative rate difference assumed between the
// origin's and an edge's monotonic clocks (1%). Monotonic clocks that stop
// across a VM pause break this assumption; it is documented, not detected.
const DriftBound = 0.01

// MarginBase is the constant part of the lease margin: scheduling delay
// between reading the clock and acting on the lease.
const MarginBase = 50 * time.Millisecond

// Margin is how much earlier than the granted term an edge treats its lease
// as expired: ρ·term plus MarginBase.
func Margin(term time.Duration) time.Duration {
	return time.Duration(float64(term)*DriftBound) + MarginBase
}

// EdgeExpiry is when an edge must consider a lease over: the renewal
// request's send time plus the term, minus the margin.
func EdgeExpiry(sent time.Time, term time.Duration) time.Time {
	return sent.Add(term - Margin(term))
}
