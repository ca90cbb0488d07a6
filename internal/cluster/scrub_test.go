package cluster

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Fault 2: blob files rot on an edge's disk (same size, one bit flipped).
// The edge's scrubber finds them and quarantines them, so they are never
// served; the next resync reports them and fetches them again.
func TestScrubQuarantinesRottenBlobFiles(t *testing.T) {
	c := startCluster(t, Config{})
	bodies := resyncObjects(t, c, 40)
	en := c.Edges()[0]
	keys := make([]string, 0, len(bodies))
	for k := range bodies {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	rotten := keys[:5]
	for _, key := range rotten {
		d := digestOf(bodies[key])
		flipBit(t, filepath.Join(en.Dir(), "blobs", d[:2], d))
	}

	e := en.Edge()
	before := e.ScrubStatus()
	e.ScrubNow()
	// A pass running now may have checked some blobs before the flips;
	// the one after it has not.
	waitFor(t, "a scrub pass after the flips", func() bool { return e.ScrubStatus().LastFullPass > before.Pass })
	if st := e.ScrubStatus(); st.CorruptTotal-before.CorruptTotal != 5 {
		t.Fatalf("scrub found %d corrupt blobs, want 5: %+v", st.CorruptTotal-before.CorruptTotal, st)
	}
	for _, key := range rotten {
		d := digestOf(bodies[key])
		if _, err := os.Stat(filepath.Join(en.Dir(), "quarantine", d)); err != nil {
			t.Errorf("%s: quarantined file: %v", key, err)
		}
	}

	rep := resync(t, en)
	if rep.Corrupt != 5 || rep.Missing != 5 || rep.Failed != 0 {
		t.Fatalf("report %+v, want 5 corrupt, fetched again (5 missing)", rep)
	}
	checkConverged(t, c, en)
	if rep := resync(t, en); rep.Corrupt != 0 || rep.Missing != 0 {
		t.Fatalf("second resync: %+v, want nothing corrupt or missing", rep)
	}
}

// flipBit flips one bit of the middle byte of a file in place.
func flipBit(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(path, b, 0); err != nil {
		t.Fatal(err)
	}
}
