// Package invalidation holds geocdn's freshness machinery: the volume lease
// an origin grants each edge, the rules both sides use to reason about it,
// and what may be served under it (DESIGN.md § The one mechanism):
//
//   - Margin and EdgeExpiry (lease.go): how long a granted term lasts.
//   - Grantor (grantor.go): the origin's side; when a lease may be renewed,
//     the grace period after a start, when a strong write or a wait=true
//     purge is settled.
//   - Holder (holder.go): the edge's side; renewals sent, answers taken,
//     a renewal counted once the log reaches its LSN, valid-until and the
//     last confirmation, the origin's LSN for session reads.
//   - MayServe (serve.go): whether an edge may serve a version of a given
//     consistency level now.
//   - PurgeMatches (purge.go): which versions a purge selects.
//
// Nothing here reads a clock (every instant is an argument) or does I/O,
// so it is tested with explicit instants; it imports neither edge nor
// origin, which both import it.
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
