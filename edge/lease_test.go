package edge

import (
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/clock"
	"github.com/geocdn/geocdn/invalidation"
)

// The lease rules of DESIGN.md § The one mechanism, on the edge's side.
func TestLeaseAccounting(t *testing.T) {
	start := time.Unix(1_000_000, 0)
	term := 2 * time.Second
	newEdge := func() (*Edge, *clock.Fake) {
		clk := clock.NewFake(start)
		return &Edge{clk: clk}, clk
	}

	t.Run("measured from the renewal's send time minus the margin", func(t *testing.T) {
		e, clk := newEdge()
		sent := start
		clk.Advance(300 * time.Millisecond) // the answer took 300 ms
		e.pendingAcks = []pendingAck{{lsn: 0, sent: sent, term: term}}
		e.countAcksLocked(0)
		want := sent.Add(term - invalidation.Margin(term))
		if !e.leaseUntil.Equal(want) {
			t.Fatalf("lease until %v, want %v (send time + term − margin)", e.leaseUntil, want)
		}
		clk.Advance(want.Sub(clk.Now()) - time.Millisecond)
		if !e.leaseValid() {
			t.Fatal("lease invalid before its expiry")
		}
		clk.Advance(time.Millisecond)
		if e.leaseValid() {
			t.Fatal("lease still valid at its expiry")
		}
	})

	t.Run("a renewal counts only once the log reached its LSN", func(t *testing.T) {
		e, _ := newEdge()
		e.pendingAcks = []pendingAck{{lsn: 7, sent: start, term: term}}
		e.countAcksLocked(6)
		if e.leaseValid() || !e.confirmed.IsZero() {
			t.Fatal("a renewal carrying LSN 7 counted with the watermark at 6")
		}
		if len(e.pendingAcks) != 1 {
			t.Fatalf("pending renewals %d, want the one kept for later", len(e.pendingAcks))
		}
		e.countAcksLocked(7)
		if !e.leaseValid() || !e.confirmed.Equal(start) {
			t.Fatalf("renewal not counted once the watermark reached 7: confirmed %v", e.confirmed)
		}
		if len(e.pendingAcks) != 0 {
			t.Fatal("a counted renewal stayed pending")
		}
	})

	t.Run("an older renewal never moves the lease back", func(t *testing.T) {
		e, _ := newEdge()
		e.pendingAcks = []pendingAck{{lsn: 0, sent: start.Add(time.Second), term: term}}
		e.countAcksLocked(0)
		until := e.leaseUntil
		e.pendingAcks = []pendingAck{{lsn: 0, sent: start, term: term}}
		e.countAcksLocked(0)
		if !e.leaseUntil.Equal(until) {
			t.Fatalf("lease moved from %v to %v by an older renewal", until, e.leaseUntil)
		}
	})
}
