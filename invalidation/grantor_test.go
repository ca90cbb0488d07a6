package invalidation

import (
	"slices"
	"testing"
	"time"
)

var grantStart = time.Unix(1000, 0)

// grantAt is grantStart plus n milliseconds.
func grantAt(n int) time.Time { return grantStart.Add(time.Duration(n) * time.Millisecond) }

func TestMayRenewAtTheHalfTermBoundary(t *testing.T) {
	g := NewGrantor(2*time.Second, grantStart, 4) // LSNs 1-4 are from before the start
	g.Committed(5, grantAt(10_000))
	g.Committed(6, grantAt(10_500))
	for _, tc := range []struct {
		name      string
		watermark uint64
		last      uint64
		now       time.Time
		want      bool
	}{
		{"caught up, no commits since start", 0, 0, grantAt(60_000), true},
		{"caught up", 6, 6, grantAt(60_000), true},
		{"ahead of last (a lagging reader of last)", 7, 6, grantAt(60_000), true},
		{"pre-start entry within the bound", 3, 6, grantAt(1_000), true},
		{"pre-start entry past the bound", 3, 6, grantAt(1_001), false},
		{"oldest unapplied committed just now", 4, 6, grantAt(10_000), true},
		{"one tick below the bound", 4, 6, grantAt(10_999), true},
		{"exactly at the bound", 4, 6, grantAt(11_000), true},
		{"just past the bound", 4, 6, grantAt(11_000).Add(time.Nanosecond), false},
		{"only the newest unapplied, within the bound", 5, 6, grantAt(11_400), true},
		{"not recorded yet counts as now", 6, 7, grantAt(99_000), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := g.MayRenew(tc.watermark, tc.last, tc.now); got != tc.want {
				t.Fatalf("MayRenew(%d, %d, %v) = %v, want %v", tc.watermark, tc.last, tc.now.Sub(grantStart), got, tc.want)
			}
		})
	}
	if got, want := g.UnackedBound(), time.Second; got != want {
		t.Fatalf("UnackedBound = %v, want %v", got, want)
	}
}

func TestCommittedAt(t *testing.T) {
	g := NewGrantor(2*time.Second, grantStart, 8)
	g.Committed(8, grantAt(50)) // from before the start: it counts from the start
	g.Committed(10, grantAt(100))
	g.Committed(12, grantAt(200))
	g.Committed(12, grantAt(250)) // a duplicate keeps the earlier time
	g.Committed(11, grantAt(300)) // out of order: covered by 12's record
	g.Committed(15, grantAt(400))
	now := grantAt(5_000)
	for _, tc := range []struct {
		name string
		lsn  uint64
		want time.Time
	}{
		{"before the start", 7, grantStart},
		{"last before the start", 8, grantStart},
		{"committed after the start, never recorded", 9, grantAt(100)},
		{"first recorded", 10, grantAt(100)},
		{"between records", 11, grantAt(200)},
		{"recorded twice", 12, grantAt(200)},
		{"gap before the last", 14, grantAt(400)},
		{"last recorded", 15, grantAt(400)},
		{"not recorded yet", 16, now},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := g.CommittedAt(tc.lsn, now); !got.Equal(tc.want) {
				t.Fatalf("CommittedAt(%d) = start+%v, want start+%v", tc.lsn, got.Sub(grantStart), tc.want.Sub(grantStart))
			}
		})
	}
}

func TestCommittedAtWithNothingRecorded(t *testing.T) {
	g := NewGrantor(2*time.Second, grantStart, 5)
	now := grantAt(5_000)
	if got := g.CommittedAt(5, now); !got.Equal(grantStart) {
		t.Errorf("CommittedAt(5), from before the start = start+%v, want start", got.Sub(grantStart))
	}
	if got := g.CommittedAt(6, now); !got.Equal(now) {
		t.Errorf("CommittedAt(6), committed but not recorded yet = start+%v, want now start+%v", got.Sub(grantStart), now.Sub(grantStart))
	}
}

// Forgetting old records must not make an entry look older than it is:
// an entry committed after the start but no longer remembered counts as
// committed at the oldest record kept, not at the start.
func TestCommittedAtAfterPruning(t *testing.T) {
	g := NewGrantor(2*time.Second, grantStart, 1)
	// One record more than are kept: the older half is forgotten.
	for lsn := 2; lsn <= commitsKept+2; lsn++ {
		g.Committed(uint64(lsn), grantAt(lsn))
	}
	oldestKept := commitsKept + 2 - commitsKept/2 + 1
	now := grantAt(commitsKept + 100)
	for _, tc := range []struct {
		name string
		lsn  uint64
		want time.Time
	}{
		{"from before the start", 1, grantAt(oldestKept)},
		{"forgotten", 2, grantAt(oldestKept)},
		{"just before the oldest kept", uint64(oldestKept - 1), grantAt(oldestKept)},
		{"oldest kept", uint64(oldestKept), grantAt(oldestKept)},
		{"newest", commitsKept + 2, grantAt(commitsKept + 2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := g.CommittedAt(tc.lsn, now); !got.Equal(tc.want) {
				t.Fatalf("CommittedAt(%d) = start+%v, want start+%v", tc.lsn, got.Sub(grantStart), tc.want.Sub(grantStart))
			}
		})
	}
	if got, want := len(g.commits), commitsKept/2; got != want {
		t.Fatalf("%d records kept, want %d", got, want)
	}
}

func TestGraceAfterStartAndRestart(t *testing.T) {
	const term = 2 * time.Second
	grace := term + Margin(term) // 2.07 s
	g := NewGrantor(term, grantStart, 0)
	if got, want := g.GraceEnds(), grantStart.Add(grace); !got.Equal(want) {
		t.Fatalf("GraceEnds = %v, want %v", got, want)
	}
	g.Committed(3, grantAt(500))
	restart := grantAt(10_000)
	check := func(when string, cases []struct {
		now  time.Time
		want bool
	}) {
		t.Helper()
		for _, c := range cases {
			if got := g.InGrace(c.now); got != c.want {
				t.Errorf("%s: InGrace(start+%v) = %v, want %v", when, c.now.Sub(grantStart), got, c.want)
			}
		}
	}
	check("after start", []struct {
		now  time.Time
		want bool
	}{
		{grantStart, true},
		{grantStart.Add(grace - time.Nanosecond), true},
		{grantStart.Add(grace), false},
		{restart, false},
	})

	g.Restart(restart, 3)
	check("after restart", []struct {
		now  time.Time
		want bool
	}{
		{restart, true},
		{restart.Add(grace - time.Nanosecond), true},
		{restart.Add(grace), false},
	})
	// A new leader cannot tell when edges were sent what came before it.
	if got := g.CommittedAt(3, grantAt(20_000)); !got.Equal(restart) {
		t.Fatalf("CommittedAt of an entry from before the restart = start+%v, want the restart start+%v", got.Sub(grantStart), restart.Sub(grantStart))
	}
	if !g.MayRenew(2, 3, restart.Add(g.UnackedBound())) {
		t.Fatal("an entry from before the restart is overdue only half a term after it")
	}
	if g.MayRenew(2, 3, restart.Add(g.UnackedBound()+time.Nanosecond)) {
		t.Fatal("an entry from before the restart is overdue half a term after it")
	}
}

func TestSettled(t *testing.T) {
	const lsn = 10
	now := grantAt(60_000)
	type lease struct {
		watermark uint64
		expires   time.Time
	}
	leases := map[string]lease{
		"applied":        {12, grantAt(59_000)}, // acked: its expired lease does not matter
		"exactly":        {10, now.Add(time.Second)},
		"behind":         {9, now.Add(time.Nanosecond)},
		"expires-at-now": {9, now},
		"expired":        {9, grantAt(1_000)},
		"never-leased":   {0, time.Time{}},
	}
	state := func(id string) (uint64, time.Time) {
		l := leases[id] // an id it has never heard of: never leased
		return l.watermark, l.expires
	}
	for _, tc := range []struct {
		name        string
		told        []string
		now         time.Time
		wantAcked   []string
		wantExpired []string
		wantOK      bool
	}{
		{"nobody told", nil, now, nil, nil, true},
		{"all acked", []string{"applied", "exactly"}, now, []string{"applied", "exactly"}, nil, true},
		{"one behind with a valid lease", []string{"applied", "behind"}, now, []string{"applied"}, nil, false},
		{"lease expiring exactly at now", []string{"expires-at-now"}, now, nil, []string{"expires-at-now"}, true},
		{"a nanosecond before that", []string{"expires-at-now"}, now.Add(-time.Nanosecond), nil, nil, false},
		{"expired and never leased", []string{"expired", "never-leased", "unknown"}, now, nil, []string{"expired", "never-leased", "unknown"}, true},
		{"mixed", []string{"applied", "behind", "expired"}, now, []string{"applied"}, []string{"expired"}, false},
		{"all acked, in the grace period", []string{"applied"}, grantAt(1_000), []string{"applied"}, nil, false},
		{"never leased, in the grace period", []string{"never-leased"}, grantAt(1_000), nil, []string{"never-leased"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewGrantor(2*time.Second, grantStart, 0)
			acked, expired, ok := g.Settled(lsn, tc.told, state, tc.now)
			if !slices.Equal(acked, tc.wantAcked) || !slices.Equal(expired, tc.wantExpired) || ok != tc.wantOK {
				t.Fatalf("Settled = acked %v expired %v ok %v, want acked %v expired %v ok %v",
					acked, expired, ok, tc.wantAcked, tc.wantExpired, tc.wantOK)
			}
		})
	}
}

func TestOriginExpiryEndsAfterEdgeExpiry(t *testing.T) {
	for _, term := range []time.Duration{200 * time.Millisecond, 2 * time.Second, time.Minute} {
		g := NewGrantor(term, grantStart, 0)
		sent := grantAt(5_000) // the edge sends its renewal; the origin answers later
		if got, want := g.Expiry(sent), sent.Add(term); !got.Equal(want) {
			t.Fatalf("term %v: Expiry = %v, want %v", term, got, want)
		}
		if edge := EdgeExpiry(sent, term); !edge.Before(g.Expiry(sent)) {
			t.Fatalf("term %v: edge's lease ends at %v, not before the origin's %v", term, edge, g.Expiry(sent))
		}
	}
}
