package origin

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/geocdn/geocdn/internal/wire"
)

// catalogEntries lists every current version the origin's catalog holds.
func catalogEntries(t *testing.T, o *Origin) map[string]wire.LogEntry {
	t.Helper()
	out := map[string]wire.LogEntry{}
	if err := o.Objects(func(e wire.LogEntry) error {
		out[e.Namespace+"/"+e.Key] = e
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// publishMany publishes n objects, inline and staged, from 16 clients.
func publishMany(t *testing.T, to *testOrigin, prefix string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			body := []byte(fmt.Sprintf("%s-%d", prefix, i))
			if i%10 == 0 {
				body = bytes.Repeat(body, 70<<10/len(body)) // over the inline limit
			}
			if code, res, err := to.tryPublish(fmt.Sprintf("%s/%d", prefix, i), body, ""); err != nil || code != http.StatusCreated {
				errs <- fmt.Errorf("publish %d: %d %+v %v", i, code, res, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestCatalogUnsyncedMarker: with group commit the catalog commits without
// fsync, and says so in its marker for as long as the origin runs; a clean
// stop syncs it and removes the marker, and the catalog is kept as it is.
// A stop without the machine stopping (the marker's boot ID is this
// boot's) keeps it too.
func TestCatalogUnsyncedMarker(t *testing.T) {
	if len(bootID()) == 0 {
		t.Skip("this system does not tell its boot ID; every unclean stop rebuilds the catalog")
	}
	dir := t.TempDir()
	to := startTestOrigin(t, func(c *Config) { c.DataDir = dir })
	if !to.store.unsynced || !to.store.db.NoSync {
		t.Fatal("the catalog of an origin with group commit syncs every transaction")
	}
	marker := markerPath(filepath.Join(dir, "catalog.db"))
	if b, err := os.ReadFile(marker); err != nil || !bytes.Equal(bytes.TrimSpace(b), bootID()) {
		t.Fatalf("marker while running: %q, %v; want this boot's ID", b, err)
	}
	publishMany(t, to, "m", 40)
	want := catalogEntries(t, to.Origin)
	to.stop()
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("marker after a clean stop: %v; want none", err)
	}

	// A process that died: the marker stays, with this boot's ID.
	if err := os.WriteFile(marker, append(bootID(), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	to = startTestOrigin(t, func(c *Config) { c.DataDir = dir })
	if _, err := os.Stat(filepath.Join(dir, "catalog.db.untrusted")); !os.IsNotExist(err) {
		t.Fatalf("a catalog left by a process of this boot was set aside (%v)", err)
	}
	assertSameCatalog(t, want, catalogEntries(t, to.Origin))
}

// TestCatalogRebuiltAfterMachineStop: a marker from another boot means the
// machine stopped while the catalog had unsynced writes. The catalog is
// set aside, even when it is unreadable, and rebuilt from raft's snapshot
// and log, with the same versions under the same LSNs and content that
// still opens.
func TestCatalogRebuiltAfterMachineStop(t *testing.T) {
	dir := t.TempDir()
	to := startTestOrigin(t, func(c *Config) { c.DataDir = dir })
	publishMany(t, to, "before", 60)
	// Half the history goes into a raft snapshot, half stays in the log.
	if err := to.raft.r.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	publishMany(t, to, "after", 60)
	code, _ := to.publish(t, "after/0", nil, "")
	if code != http.StatusCreated {
		t.Fatalf("overwrite: %d", code)
	}
	want := catalogEntries(t, to.Origin)
	to.stop()

	catalog := filepath.Join(dir, "catalog.db")
	if err := os.WriteFile(markerPath(catalog), []byte("another-boot\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Torn beyond use: bbolt would refuse it.
	if err := os.WriteFile(catalog, bytes.Repeat([]byte{0xAB}, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	to = startTestOrigin(t, func(c *Config) { c.DataDir = dir })
	if _, err := os.Stat(catalog + ".untrusted"); err != nil {
		t.Fatalf("the torn catalog was not set aside: %v", err)
	}
	eventually(t, "catalog rebuilt from raft", func() bool { return len(catalogEntries(t, to.Origin)) == len(want) })
	got := catalogEntries(t, to.Origin)
	assertSameCatalog(t, want, got)
	for name, e := range got {
		rc, err := to.store.openBlob(e.Digest)
		if err != nil {
			t.Fatalf("%s: content of the rebuilt catalog: %v", name, err)
		}
		rc.Close()
	}
	// And it takes writes again, after the LSNs it rebuilt.
	if code, res := to.publish(t, "later", []byte("x"), ""); code != http.StatusCreated || res.LSN <= maxLSN(want) {
		t.Fatalf("publish after the rebuild: %d LSN %d, want after %d", code, res.LSN, maxLSN(want))
	}
}

// TestTakenOverCatalogStaysSynced: a catalog from before the cluster holds
// what the raft log does not, so it keeps syncing every transaction until
// raft has a snapshot of it.
func TestTakenOverCatalogStaysSynced(t *testing.T) {
	dir := t.TempDir()
	old := &testStore{dir: dir}
	old.reopen(t)
	for i := range 10 {
		old.put(t, fmt.Sprintf("old/%d", i), fmt.Sprint(i))
	}
	if err := old.store.close(); err != nil {
		t.Fatal(err)
	}
	to := startTestOrigin(t, func(c *Config) { c.DataDir = dir })
	if to.store.unsynced || to.store.db.NoSync {
		t.Fatal("a catalog from before the cluster stopped syncing with no raft snapshot of it")
	}
	if _, err := os.Stat(markerPath(filepath.Join(dir, "catalog.db"))); !os.IsNotExist(err) {
		t.Fatalf("marker for a synced catalog: %v", err)
	}
	publishMany(t, to, "new", 5)
	if err := to.raft.r.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	to.stop()
	to = startTestOrigin(t, func(c *Config) { c.DataDir = dir })
	if !to.store.unsynced {
		t.Fatal("the catalog still syncs every transaction once raft has a snapshot of it")
	}
	if n := len(catalogEntries(t, to.Origin)); n != 15 {
		t.Fatalf("catalog holds %d objects, want 15", n)
	}
}

func assertSameCatalog(t *testing.T, want, got map[string]wire.LogEntry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("catalog holds %d objects, want %d", len(got), len(want))
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok || g.LSN != w.LSN || g.Digest != w.Digest || g.Size != w.Size {
			t.Fatalf("%s: got %+v, want %+v", name, g, w)
		}
	}
}

func maxLSN(m map[string]wire.LogEntry) uint64 {
	var n uint64
	for _, e := range m {
		n = max(n, e.LSN)
	}
	return n
}
