package invalidation

import (
	"time"

	"github.com/geocdn/geocdn/internal/wire"
)

// MayServe reports whether an edge holding lease l may serve, at now and
// without asking the origin, the version its log names as current for a
// key of consistency level c (bound is Bounded's Δ). pending says the
// version is a strong write the origin has not yet confirmed visible to
// this edge. The rules are DESIGN.md's per-level table:
//
//   - Strong: the lease is valid (it vouches for the log view) and the
//     version is not pending.
//   - Bounded(Δ): the last counted renewal was sent less than
//     Δ − Margin(Δ) before now; a lease never confirmed serves nothing.
//   - Session, ConsistentPrefix and Eventual: always. The session check of
//     the client's LSN against the watermark comes before this, and a
//     superseded version is never the one the log names.
//
// It is pure: the edge calls it on every hit with one snapshot of its
// lease and one clock reading.
func MayServe(c wire.Consistency, bound time.Duration, pending bool, l HeldLease, now time.Time) bool {
	switch c {
	case wire.Strong:
		return l.Valid(now) && !pending
	case wire.Bounded:
		return !l.Confirmed.IsZero() && now.Sub(l.Confirmed) < bound-Margin(bound)
	}
	return true
}
