package origin

import (
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/clock"
)

// An edge that leaves log entries unacknowledged longer than half a term
// gets no renewal, so a one-way partition (renewals through, log not)
// cannot keep its lease alive.
func TestNoRenewalWithOldUnacknowledgedEntries(t *testing.T) {
	clk := clock.NewFake(time.Now())
	to := startTestOrigin(t, func(c *Config) { c.Clock = clk; c.LeaseTerm = 2 * time.Second })
	o := to.Origin

	if !o.mayRenew(0) {
		t.Fatal("an edge that is caught up must be renewed")
	}
	// Entries committed before this process started count from its start.
	clk.Advance(10 * time.Second)
	if status, _ := to.publish(t, "a.txt", []byte("a"), ""); status != 201 {
		t.Fatalf("publish: %d", status)
	}
	lsn := o.LastLSN()
	if !o.mayRenew(lsn) {
		t.Fatal("an edge that acknowledged the latest entry must be renewed")
	}
	if !o.mayRenew(lsn - 1) {
		t.Fatal("an entry committed just now is not overdue")
	}
	clk.Advance(o.unackedBound() - time.Millisecond)
	if !o.mayRenew(lsn - 1) {
		t.Fatal("an entry younger than the bound is not overdue")
	}
	clk.Advance(2 * time.Millisecond)
	if o.mayRenew(lsn - 1) {
		t.Fatalf("an entry unacknowledged for over %v must stop renewals", o.unackedBound())
	}
	if !o.mayRenew(lsn) {
		t.Fatal("acknowledging it must restore renewals")
	}
}

func TestCommittedAtBeforeStartCountsFromStart(t *testing.T) {
	clk := clock.NewFake(time.Now())
	to := startTestOrigin(t, func(c *Config) { c.Clock = clk })
	if got := to.Origin.committedAt(1); !got.Equal(to.Origin.started) {
		t.Fatalf("committedAt of an entry this process never saw: %v, want its start %v", got, to.Origin.started)
	}
}
