package invalidation

import (
	"sync"
	"testing"
	"time"
)

// holdStart is when the holder tests begin.
var holdStart = time.Unix(1_000_000, 0)

// holdAt is holdStart plus d: the instants of the holder tests.
func holdAt(d time.Duration) time.Time { return holdStart.Add(d) }

// holderState is what a Holder exposes.
type holderState struct {
	until, confirmed time.Time
	originLSN        uint64
	asOf             time.Time
}

func holderStateOf(h *Holder) holderState {
	lsn, asOf := h.Origin()
	return holderState{until: h.ValidUntil(), confirmed: h.Confirmed(), originLSN: lsn, asOf: asOf}
}

func (s holderState) equal(o holderState) bool {
	return s.until.Equal(o.until) && s.confirmed.Equal(o.confirmed) && s.originLSN == o.originLSN && s.asOf.Equal(o.asOf)
}

// holderStep is one call on a Holder, or a check of its state.
type holderStep struct {
	name string
	do   func(h *Holder) bool // false: Answered refused the answer
	// ok is what do must return; want, if set, the state after it.
	ok   bool
	want *holderState
}

func stepSent(seq uint64, d time.Duration) holderStep {
	return holderStep{name: "sent", ok: true, do: func(h *Holder) bool { h.Sent(seq, holdAt(d)); return true }}
}

func stepAnswered(seq, lsn uint64, term time.Duration, wm uint64, ok bool) holderStep {
	return holderStep{name: "answered", ok: ok, do: func(h *Holder) bool { return h.Answered(seq, lsn, term, wm) }}
}

func stepApplied(wm uint64) holderStep {
	return holderStep{name: "applied", ok: true, do: func(h *Holder) bool { h.Applied(wm); return true }}
}

func stepWelcomed(lsn uint64) holderStep {
	return holderStep{name: "welcomed", ok: true, do: func(h *Holder) bool { h.Welcomed(lsn); return true }}
}

func stepReset() holderStep {
	return holderStep{name: "reset", ok: true, do: func(h *Holder) bool { h.Reset(); return true }}
}

func stepWant(s holderState) holderStep {
	return holderStep{name: "check", ok: true, do: func(*Holder) bool { return true }, want: &s}
}

// The lease rules of DESIGN.md § The one mechanism, on the edge's side.
func TestHolder(t *testing.T) {
	const term = 2 * time.Second
	// lease is the state a renewal sent at d leaves, with the origin at
	// lsn as of asOf.
	lease := func(d time.Duration, lsn uint64, asOf time.Duration) holderState {
		return holderState{until: EdgeExpiry(holdAt(d), term), confirmed: holdAt(d), originLSN: lsn, asOf: holdAt(asOf)}
	}
	// origin is the state of a holder that has no lease.
	origin := func(lsn uint64, asOf time.Time) holderState {
		return holderState{originLSN: lsn, asOf: asOf}
	}
	for _, tc := range []struct {
		name  string
		steps []holderStep
	}{
		{"a new holder holds nothing", []holderStep{stepWant(holderState{})}},
		{"measured from the renewal's send time minus the margin, not the answer's arrival", []holderStep{
			stepSent(1, 0), stepAnswered(1, 0, term, 0, true),
			stepWant(holderState{until: holdStart.Add(term - Margin(term)), confirmed: holdStart, asOf: holdStart}),
		}},
		{"counted only once the watermark reaches the answer's LSN", []holderStep{
			stepSent(1, 0), stepAnswered(1, 7, term, 6, true), stepWant(origin(7, holdStart)),
			stepApplied(6), stepWant(origin(7, holdStart)),
			stepApplied(7), stepWant(lease(0, 7, 0)),
		}},
		{"counted at once when the watermark given with the answer has reached it", []holderStep{
			stepSent(1, 0), stepAnswered(1, 7, term, 7, true), stepWant(lease(0, 7, 0)),
		}},
		{"counted when the log got there before the answer, whatever watermark the answer brings", []holderStep{
			// The caller read the watermark before a log batch that
			// Applied reported first: the race of two streams.
			stepSent(1, 0), stepApplied(9), stepAnswered(1, 7, term, 5, true), stepWant(lease(0, 7, 0)),
		}},
		{"a watermark going back changes nothing", []holderStep{
			stepSent(1, 0), stepApplied(9), stepApplied(3), stepAnswered(1, 9, term, 3, true), stepWant(lease(0, 9, 0)),
		}},
		{"an older answer arriving later never moves the lease back", []holderStep{
			stepSent(1, 0), stepSent(2, 500*time.Millisecond),
			stepAnswered(2, 3, term, 3, true), stepWant(lease(500*time.Millisecond, 3, 500*time.Millisecond)),
			stepAnswered(1, 3, term, 3, true), stepWant(lease(500*time.Millisecond, 3, 500*time.Millisecond)),
		}},
		{"answers arriving out of order, both waiting for the log: the newer one holds", []holderStep{
			stepSent(1, 0), stepSent(2, time.Second),
			stepAnswered(2, 9, term, 5, true), stepWant(origin(9, holdAt(time.Second))),
			stepAnswered(1, 9, term, 5, true), stepWant(origin(9, holdAt(time.Second))),
			stepApplied(9), stepWant(lease(time.Second, 9, time.Second)),
		}},
		{"a newer renewal counted before an older one still pending", []holderStep{
			stepSent(1, 0), stepSent(2, time.Second),
			stepAnswered(1, 9, term, 5, true), stepAnswered(2, 6, term, 6, true),
			stepWant(lease(time.Second, 9, time.Second)),
			stepApplied(9), stepWant(lease(time.Second, 9, time.Second)),
		}},
		{"a later renewal with a shorter term shortens the lease: the newest grant rules", []holderStep{
			stepSent(1, 0), stepAnswered(1, 1, term, 1, true),
			stepSent(2, time.Second), stepAnswered(2, 1, 200*time.Millisecond, 1, true),
			stepWant(holderState{until: EdgeExpiry(holdAt(time.Second), 200*time.Millisecond), confirmed: holdAt(time.Second), originLSN: 1, asOf: holdAt(time.Second)}),
		}},
		{"an answer's LSN below one already heard keeps the higher", []holderStep{
			stepSent(1, 0), stepSent(2, time.Second),
			stepAnswered(2, 9, term, 9, true), stepAnswered(1, 4, term, 9, true),
			stepWant(lease(time.Second, 9, time.Second)),
		}},
		{"a withheld lease (term 0) renews nothing but reports the origin's LSN", []holderStep{
			stepSent(1, 0), stepAnswered(1, 12, 0, 12, true), stepWant(origin(12, holdStart)),
		}},
		{"a withheld lease leaves the lease already held", []holderStep{
			stepSent(1, 0), stepAnswered(1, 2, term, 2, true), stepSent(2, time.Second), stepAnswered(2, 12, 0, 2, true),
			stepWant(holderState{until: EdgeExpiry(holdStart, term), confirmed: holdStart, originLSN: 12, asOf: holdAt(time.Second)}),
		}},
		{"a withheld answer still counts renewals the log has reached", []holderStep{
			stepSent(1, 0), stepAnswered(1, 8, term, 5, true), stepSent(2, time.Second), stepAnswered(2, 12, 0, 8, true),
			stepWant(holderState{until: EdgeExpiry(holdStart, term), confirmed: holdStart, originLSN: 12, asOf: holdAt(time.Second)}),
		}},
		{"an answer to a heartbeat never sent is refused", []holderStep{
			stepAnswered(5, 99, term, 99, false), stepWant(holderState{}),
		}},
		{"a second answer to one heartbeat is refused", []holderStep{
			stepSent(1, 0), stepAnswered(1, 3, term, 3, true), stepAnswered(1, 50, term, 50, false), stepWant(lease(0, 3, 0)),
		}},
		{"answers more than 64 heartbeats old are refused", []holderStep{
			stepSent(1, 0), stepSent(2, time.Millisecond),
			func() holderStep {
				return holderStep{name: "sent 3..65", ok: true, do: func(h *Holder) bool {
					for seq := uint64(3); seq <= 65; seq++ {
						h.Sent(seq, holdAt(time.Duration(seq)*time.Millisecond))
					}
					return true
				}}
			}(),
			stepAnswered(1, 1, term, 1, false), stepAnswered(2, 1, term, 1, true),
			stepWant(lease(time.Millisecond, 1, time.Millisecond)),
		}},
		{"reset forgets the session's heartbeats, pending answers and as-of time, not the lease", []holderStep{
			stepSent(1, 0), stepAnswered(1, 2, term, 2, true),
			stepSent(2, time.Second), stepAnswered(2, 7, term, 6, true),
			stepSent(3, 1500*time.Millisecond),
			stepReset(),
			stepWant(holderState{until: EdgeExpiry(holdStart, term), confirmed: holdStart, originLSN: 7}),
			stepApplied(7), stepWant(holderState{until: EdgeExpiry(holdStart, term), confirmed: holdStart, originLSN: 7}),
			stepAnswered(3, 7, term, 7, false),
			// The next session's sequence numbers start again.
			stepSent(1, 3*time.Second), stepAnswered(1, 8, term, 8, true), stepWant(lease(3*time.Second, 8, 3*time.Second)),
		}},
		{"a welcome raises the origin's LSN, never lowers it, and is no answer", []holderStep{
			stepWelcomed(10), stepWant(origin(10, time.Time{})),
			stepWelcomed(4), stepWant(origin(10, time.Time{})),
			stepSent(1, 0), stepAnswered(1, 5, term, 5, true),
			stepWant(holderState{until: EdgeExpiry(holdStart, term), confirmed: holdStart, originLSN: 10, asOf: holdStart}),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Holder
			for i, s := range tc.steps {
				if got := s.do(&h); got != s.ok {
					t.Fatalf("step %d (%s) returned %v, want %v", i, s.name, got, s.ok)
				}
				if s.want == nil {
					continue
				}
				if got := holderStateOf(&h); !got.equal(*s.want) {
					t.Fatalf("step %d: got %+v\nwant %+v", i, got, *s.want)
				}
			}
		})
	}
}

func TestHolderValidAndFresh(t *testing.T) {
	const term = 2 * time.Second
	var h Holder
	h.Sent(1, holdStart)
	h.Answered(1, 5, term, 5)
	until := EdgeExpiry(holdStart, term)
	for _, tc := range []struct {
		name      string
		now       time.Time
		watermark uint64
		valid     bool
		fresh     bool
	}{
		{"at the renewal's send time", holdStart, 5, true, true},
		{"just before valid-until", until.Add(-time.Nanosecond), 5, true, true},
		{"at valid-until", until, 5, false, false},
		{"after valid-until", until.Add(time.Second), 5, false, false},
		{"valid, log behind the origin", holdStart, 4, true, false},
		{"valid, log ahead of the last answer", holdStart, 6, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := h.Valid(tc.now); got != tc.valid {
				t.Errorf("Valid = %v, want %v", got, tc.valid)
			}
			if got := h.Lease().Valid(tc.now); got != tc.valid {
				t.Errorf("Lease().Valid = %v, want %v", got, tc.valid)
			}
			if got := h.Fresh(tc.now, tc.watermark); got != tc.fresh {
				t.Errorf("Fresh = %v, want %v", got, tc.fresh)
			}
		})
	}
	var zero Holder
	if zero.Valid(holdStart) || zero.Fresh(holdStart, 0) {
		t.Error("a zero Holder is valid or fresh")
	}
}

// Readers of the lock-free snapshot always see the valid-until and the
// confirmation of one renewal, whatever the writers do meanwhile. Run
// with -race; it checks consistency, not timing.
func TestHolderSnapshotConsistent(t *testing.T) {
	const term = 2 * time.Second
	var h Holder
	var wg sync.WaitGroup
	const n = 2000
	wg.Add(3)
	go func() {
		defer wg.Done()
		for seq := uint64(1); seq <= n; seq++ {
			h.Sent(seq, holdAt(time.Duration(seq)*time.Millisecond))
			h.Answered(seq, seq, term, seq-1)
		}
	}()
	go func() {
		defer wg.Done()
		for wm := uint64(1); wm <= n; wm++ {
			h.Applied(wm)
		}
	}()
	go func() {
		defer wg.Done()
		last := time.Time{}
		for range n {
			l := h.Lease()
			if l.Confirmed.IsZero() {
				continue
			}
			if !l.Until.Equal(EdgeExpiry(l.Confirmed, term)) {
				t.Errorf("snapshot until %v with confirmed %v: not one renewal's", l.Until, l.Confirmed)
				return
			}
			if l.Confirmed.Before(last) {
				t.Errorf("confirmation moved back from %v to %v", last, l.Confirmed)
				return
			}
			last = l.Confirmed
			h.Origin()
		}
	}()
	wg.Wait()
	h.Applied(n)
	if got, want := h.Confirmed(), holdAt(n*time.Millisecond); !got.Equal(want) {
		t.Fatalf("confirmed %v after every answer counted, want %v", got, want)
	}
}
