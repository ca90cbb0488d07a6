package edge

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geocdn/geocdn/internal/wire"
)

// logEdge is an Edge with a store and nothing else: what consumeLog uses.
func logEdge(t *testing.T) *Edge {
	t.Helper()
	return &Edge{
		store:   openTestStore(t, storeConfig{}),
		metrics: newMetrics(prometheus.NewRegistry()),
		log:     testLogger(t),
	}
}

// logStream is the log stream of puts of key/<lsn> for the given LSNs.
func logStream(lsns ...uint64) *bytes.Reader {
	var b []byte
	for _, lsn := range lsns {
		b = wire.AppendFrame(b, putEntry(lsn, fmt.Sprintf("key/%d", lsn), []byte(fmt.Sprint(lsn))))
	}
	return bytes.NewReader(b)
}

// checkUnbroken fails unless every put up to the watermark is in the index:
// the watermark promises them all.
func checkUnbroken(t *testing.T, e *Edge) uint64 {
	t.Helper()
	wm := e.store.watermark()
	for lsn := uint64(1); lsn <= wm; lsn++ {
		if _, ok := e.store.lookup("default", fmt.Sprintf("key/%d", lsn)); !ok {
			t.Fatalf("watermark %d, but the entry at lsn %d was never applied", wm, lsn)
		}
	}
	return wm
}

// TestConsumeLogStopsAtSessionEnd: when the session ends with entries
// still buffered, what is applied is an unbroken run from the watermark.
// The reader once dropped the entry it held at the session's end and went
// on with the buffered frames, picking at random between the channel and
// the ended context for each: the main loop applied the survivors, the
// watermark passed the dropped ones, and the next session asked for the
// log after it. An edge then served an acknowledged strong write's
// previous version for good.
func TestConsumeLogStopsAtSessionEnd(t *testing.T) {
	const n = 3000 // more than the reader's channel holds
	lsns := make([]uint64, n)
	for i := range lsns {
		lsns[i] = uint64(i + 1)
	}
	for round := range 20 {
		e := logEdge(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // the session has ended: every send races ctx.Done
		acks := 0
		err := e.consumeLog(ctx, logStream(lsns...), func() {}, func(uint64) error { acks++; return nil })
		if err != nil {
			t.Fatalf("round %d: consumeLog after the session ended: %v", round, err)
		}
		checkUnbroken(t, e)
	}
}

// TestConsumeLogRefusesAGap: an entry past the next LSN ends the stream
// with an error and leaves the watermark before the hole, so the next
// session asks for the log from there.
func TestConsumeLogRefusesAGap(t *testing.T) {
	e := logEdge(t)
	var acked []uint64
	err := e.consumeLog(context.Background(), logStream(1, 2, 3, 5, 6), func() {}, func(wm uint64) error {
		acked = append(acked, wm)
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "skipped from lsn 4 to 5") {
		t.Fatalf("consumeLog over a hole: %v, want the hole named", err)
	}
	if wm := checkUnbroken(t, e); wm != 3 {
		t.Fatalf("watermark %d, want 3: the entries before the hole at 4 applied, none after", wm)
	}
	if _, ok := e.store.lookup("default", "key/5"); ok {
		t.Error("the entry after the hole was applied")
	}
	// Replayed entries at or below the watermark are skipped, not holes.
	err = e.consumeLog(context.Background(), logStream(2, 3, 4, 5, 6), func() {}, func(uint64) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "EOF") {
		t.Fatalf("consumeLog of a replay: %v, want the stream's end", err)
	}
	if wm := checkUnbroken(t, e); wm != 6 {
		t.Fatalf("watermark %d after the replay, want 6", wm)
	}
}
