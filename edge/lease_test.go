package edge

import (
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/clock"
	"github.com/geocdn/geocdn/invalidation"
)

// The edge reads its lease (invalidation.Holder, where the rules are
// tested) on its own clock: valid, and healthy, until the renewal's send
// time plus the term minus the margin, and not at that instant.
func TestLeaseOnTheEdgesClock(t *testing.T) {
	start := time.Unix(1_000_000, 0)
	term := 2 * time.Second
	clk := clock.NewFake(start)
	e := &Edge{clk: clk}
	if e.leaseValid() || e.Healthy() {
		t.Fatal("a new edge holds a lease")
	}
	e.lease.Sent(1, clk.Now())
	clk.Advance(300 * time.Millisecond) // the answer took 300 ms
	e.lease.Answered(1, 0, term, 0)

	want := start.Add(term - invalidation.Margin(term))
	if got := e.heldLease(); !got.Until.Equal(want) || !got.Confirmed.Equal(start) {
		t.Fatalf("held lease %+v, want until %v confirmed %v", got, want, start)
	}
	clk.Advance(want.Sub(clk.Now()) - time.Millisecond)
	if !e.leaseValid() || !e.Healthy() {
		t.Fatal("lease invalid (or edge unhealthy) before its expiry")
	}
	clk.Advance(time.Millisecond)
	if e.leaseValid() || e.Healthy() {
		t.Fatal("lease valid (or edge healthy) at its expiry")
	}
}
