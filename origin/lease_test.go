package origin

import (
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/clock"
	"github.com/geocdn/geocdn/invalidation"
)

// The rules are invalidation.Grantor's and tested there; these check the
// origin feeds it: every commit is recorded, and a restart starts it over
// the store's log.

// An edge that leaves log entries unacknowledged longer than half a term
// gets no renewal, so a one-way partition (renewals through, log not)
// cannot keep its lease alive.
func TestNoRenewalWithOldUnacknowledgedEntries(t *testing.T) {
	clk := clock.NewFake(time.Now())
	to := startTestOrigin(t, func(c *Config) { c.Clock = clk; c.LeaseTerm = 2 * time.Second })
	g := to.grantor
	mayRenew := func(watermark uint64) bool { return g.MayRenew(watermark, to.LastLSN(), clk.Now()) }

	if !mayRenew(0) {
		t.Fatal("an edge that is caught up must be renewed")
	}
	clk.Advance(10 * time.Second)
	if status, _ := to.publish(t, "a.txt", []byte("a"), ""); status != 201 {
		t.Fatalf("publish: %d", status)
	}
	lsn := to.LastLSN()
	if !mayRenew(lsn) {
		t.Fatal("an edge that acknowledged the latest entry must be renewed")
	}
	if !mayRenew(lsn - 1) {
		t.Fatal("an entry committed just now is not overdue")
	}
	clk.Advance(g.UnackedBound())
	if !mayRenew(lsn - 1) {
		t.Fatal("an entry exactly as old as the bound is not overdue")
	}
	clk.Advance(time.Millisecond)
	if mayRenew(lsn - 1) {
		t.Fatalf("an entry unacknowledged for over %v must stop renewals", g.UnackedBound())
	}
	if !mayRenew(lsn) {
		t.Fatal("acknowledging it must restore renewals")
	}
}

// A restarted origin cannot know when edges were sent what it committed
// before: those entries count as committed at its start, and its grace
// period runs from then.
func TestEntriesFromBeforeARestartCountFromIt(t *testing.T) {
	clk := clock.NewFake(time.Now())
	dir := t.TempDir()
	mod := func(c *Config) { c.Clock = clk; c.LeaseTerm = 2 * time.Second; c.DataDir = dir }
	t.Run("first run", func(t *testing.T) {
		to := startTestOrigin(t, mod)
		if status, _ := to.publish(t, "a.txt", []byte("a"), ""); status != 201 {
			t.Fatalf("publish: %d", status)
		}
	})
	clk.Advance(time.Minute)
	start := clk.Now()
	to := startTestOrigin(t, mod)
	clk.Advance(time.Second)
	if got := to.grantor.CommittedAt(to.LastLSN(), clk.Now()); !got.Equal(start) {
		t.Fatalf("CommittedAt of an entry from the first run: start%+v, want the restart", got.Sub(start))
	}
	if got, want := to.grantor.GraceEnds(), start.Add(to.cfg.LeaseTerm+invalidation.Margin(to.cfg.LeaseTerm)); !got.Equal(want) {
		t.Fatalf("grace ends at start%+v, want start%+v", got.Sub(start), want.Sub(start))
	}
}
