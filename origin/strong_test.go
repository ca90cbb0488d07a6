package origin

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/wire"
)

// TestFillDuringStrongCommit walks a strong write through the steps of
// handlePut and asks, between each, what a fill of the key answers. The
// window that broke linearizability in real time is the one between the
// catalog commit and strongCommitted: a fill there was answered the new
// version as current, and a later fill, once the write was waiting, the
// version before it.
func TestFillDuringStrongCommit(t *testing.T) {
	to := startTestOrigin(t, func(c *Config) { c.LeaseTerm = 200 * time.Millisecond })
	o := to.Origin
	const ns, key = "default", "k"
	strong := PutMeta{Consistency: wire.Strong, ModTime: time.Now()}
	put := func(body string) wire.LogEntry {
		t.Helper()
		ent, err := o.store.put(context.Background(), ns, key, strings.NewReader(body), 1<<20, strong)
		if err != nil {
			t.Fatal(err)
		}
		return ent
	}
	// fill reports the LSN a fill answers (0: not found) and whether it
	// is flagged pending.
	fill := func() (lsn uint64, pending bool) {
		t.Helper()
		ent, err, h, pending := o.fillVersion(ns, key)
		if pending {
			if h == nil {
				return 0, true
			}
			defer o.unhold(h)
			return h.entry.LSN, true
		}
		if errors.Is(err, ErrNotFound) {
			return 0, false
		} else if err != nil {
			t.Fatalf("fill: %v", err)
		}
		return ent.LSN, false
	}
	check := func(step string, wantLSN uint64, wantPending bool) {
		t.Helper()
		if lsn, pending := fill(); lsn != wantLSN || pending != wantPending {
			t.Errorf("%s: fill answers LSN %d pending=%v, want LSN %d pending=%v", step, lsn, pending, wantLSN, wantPending)
		}
	}

	// The first version, written and made visible the same way.
	o.strongReserve(ns, key)
	check("first write reserved, not committed", 0, false)
	v1 := put("v1")
	check("first write committed, not yet waiting", 0, true)
	o.makeVisible(ns, key, o.strongCommitted(v1).lsn)
	check("first write visible", v1.LSN, false)

	o.strongReserve(ns, key)
	check("second write reserved, not committed", v1.LSN, false)
	v2 := put("v2")
	check("second write committed, not yet waiting", v1.LSN, true)
	sw := o.strongCommitted(v2)
	check("second write waiting", v1.LSN, true)
	o.makeVisible(ns, key, sw.lsn)
	check("second write visible", v2.LSN, false)

	// Two writes reserved together: the first to commit pends behind the
	// version visible when the first reservation was made.
	o.strongReserve(ns, key)
	o.strongReserve(ns, key)
	v3 := put("v3")
	check("third write committed, fourth reserved", v2.LSN, true)
	o.strongAbort(ns, key)
	check("fourth write aborted, third not yet waiting", v2.LSN, true)
	o.makeVisible(ns, key, o.strongCommitted(v3).lsn)
	check("third write visible", v3.LSN, false)
	if n := len(o.strong); n != 0 {
		t.Errorf("%d keys left with strong-write state, want 0", n)
	}
}

// TestStrongFillsRefusedInRestartGrace: right after a start, the version a
// pending strong write's fills would answer was read from the catalog, and
// may be a write the previous run never made visible, while edges still
// serve the one before it under that run's leases. Until those leases have
// run out, a fill of a key with a strong write pending is refused like any
// strong fill; the real-process histories with the origin killed and
// restarted found reads going back in time without this.
func TestStrongFillsRefusedInRestartGrace(t *testing.T) {
	const ns, key = "default", "graced"
	strong := PutMeta{Consistency: wire.Strong, ModTime: time.Now()}
	dir := t.TempDir()
	// What the previous run left: a committed strong version, visible or
	// not, nobody knows.
	prev := startTestOrigin(t, func(c *Config) { c.DataDir = dir; c.LeaseTerm = time.Minute })
	if _, err := prev.Origin.publish(context.Background(), requestID{}, ns, key, strings.NewReader("left by the previous run"), 1<<20, strong); err != nil {
		t.Fatal(err)
	}
	prev.stop()

	to := startTestOrigin(t, func(c *Config) { c.DataDir = dir; c.LeaseTerm = time.Minute })
	o := to.Origin
	if !o.grantor.InGrace(o.clk.Now()) {
		t.Fatal("a restarted origin with a 1-minute lease is not in its restart grace")
	}
	// Leading again keeps the grace: the previous run led before.
	if lead, _, _ := o.awaitLeader(context.Background(), o.requestWait()); !lead || !o.grantor.InGrace(o.clk.Now()) {
		t.Fatalf("leading %v, in grace %v: want a leader in its grace", lead, o.grantor.InGrace(o.clk.Now()))
	}
	// A strong write of this run, pending.
	o.strongReserve(ns, key)
	ent, err := o.store.put(context.Background(), ns, key, strings.NewReader("this run"), 1<<20, strong)
	if err != nil {
		t.Fatal(err)
	}
	o.strongCommitted(ent)

	if resp, _ := rawFill(t, to, ns, key); resp.Status != wire.FillError {
		t.Fatalf("fill in the restart grace with a strong write pending: %+v, want a fill error", resp)
	}
}
