package invalidation

import (
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/wire"
)

// The per-level decision at the instants where it turns.
func TestMayServe(t *testing.T) {
	const term = 2 * time.Second
	const bound = 10 * time.Second
	t0 := time.Unix(1_000_000, 0)
	held := HeldLease{Until: EdgeExpiry(t0, term), Confirmed: t0}
	boundEnds := t0.Add(bound - Margin(bound)) // 10 s − 150 ms after the confirmation
	for _, tc := range []struct {
		name    string
		level   wire.Consistency
		bound   time.Duration
		pending bool
		lease   HeldLease
		now     time.Time
		want    bool
	}{
		{"strong, leased, visible", wire.Strong, 0, false, held, t0, true},
		{"strong, just before valid-until", wire.Strong, 0, false, held, held.Until.Add(-time.Nanosecond), true},
		{"strong, at valid-until", wire.Strong, 0, false, held, held.Until, false},
		{"strong, pending visibility", wire.Strong, 0, true, held, t0, false},
		{"strong, never leased", wire.Strong, 0, false, HeldLease{}, t0, false},

		{"bounded, just confirmed", wire.Bounded, bound, false, held, t0, true},
		{"bounded, just before Δ − margin", wire.Bounded, bound, false, held, boundEnds.Add(-time.Nanosecond), true},
		{"bounded, at Δ − margin", wire.Bounded, bound, false, held, boundEnds, false},
		{"bounded, confirmed within Δ though the lease is gone", wire.Bounded, bound, false, held, held.Until.Add(time.Second), true},
		{"bounded, never confirmed", wire.Bounded, bound, false, HeldLease{}, t0, false},
		{"bounded, Δ no larger than its margin serves nothing", wire.Bounded, MarginBase, false, held, t0, false},

		{"session without a lease", wire.Session, 0, false, HeldLease{}, t0, true},
		{"consistent prefix without a lease", wire.ConsistentPrefix, 0, false, HeldLease{}, t0, true},
		{"eventual without a lease", wire.Eventual, 0, false, HeldLease{}, t0, true},
		{"eventual long after the lease", wire.Eventual, 0, false, held, held.Until.Add(time.Hour), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := MayServe(tc.level, tc.bound, tc.pending, tc.lease, tc.now); got != tc.want {
				t.Fatalf("MayServe = %v, want %v", got, tc.want)
			}
		})
	}
}
