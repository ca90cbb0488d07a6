package origin

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/geocdn/geocdn/internal/wire"
)

// Compaction drops the entries before the retention, and a reader asking
// for them gets errLogGap, never a log that silently starts later; the
// first LSN kept survives a reopen.
func TestCompactLogGap(t *testing.T) {
	ts := newTestStore(t)
	for i := range 50 {
		ts.put(t, fmt.Sprintf("/k%d", i%7), fmt.Sprint(i))
	}
	var c compactor
	n, err := ts.compact(c.keepFrom(LogRetention{Entries: 10}, ts.lastLSN(), time.Now()))
	if err != nil || n != 40 {
		t.Fatalf("compact: %d dropped, %v; want 40", n, err)
	}
	if ts.firstLSN() != 41 {
		t.Fatalf("first lsn %d, want 41", ts.firstLSN())
	}
	if err := ts.readLog(10, func(wire.LogEntry) error { t.Fatal("entry read past a gap"); return nil }); !errors.Is(err, errLogGap) {
		t.Fatalf("readLog after 10: %v, want errLogGap", err)
	}
	var got []uint64
	if err := ts.readLog(40, func(e wire.LogEntry) error { got = append(got, e.LSN); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 || got[0] != 41 || got[9] != 50 {
		t.Fatalf("readLog after 40: %v, want 41..50", got)
	}
	ts.reopen(t)
	if ts.firstLSN() != 41 {
		t.Fatalf("first lsn after reopen %d, want 41", ts.firstLSN())
	}
	// The catalog, the snapshot, still names every key.
	for i := range 7 {
		if _, err := ts.get("default", fmt.Sprintf("/k%d", i)); err != nil {
			t.Fatal(err)
		}
	}
}

// Age retention keeps what was committed within the age: an LSN is
// dropped only once a mark taken at least the age ago covers it.
func TestRetentionByAge(t *testing.T) {
	var c compactor
	t0 := time.Unix(1000, 0)
	r := LogRetention{Age: time.Hour}
	if k := c.keepFrom(r, 100, t0); k != 1 {
		t.Fatalf("first mark: keep from %d, want 1", k)
	}
	if k := c.keepFrom(r, 200, t0.Add(30*time.Minute)); k != 1 {
		t.Fatalf("half an hour on: keep from %d, want 1", k)
	}
	if k := c.keepFrom(r, 300, t0.Add(61*time.Minute)); k != 101 {
		t.Fatalf("an hour on: keep from %d, want 101", k)
	}
	if k := c.keepFrom(r, 300, t0.Add(92*time.Minute)); k != 201 {
		t.Fatalf("an hour and a half on: keep from %d, want 201", k)
	}
}

// A catalog of format 1 (keyed namespace NUL key) is refiled under the
// leaf-first keys on open, and its hash tree built from it.
func TestCatalogMigratesFromFormat1(t *testing.T) {
	ts := newTestStore(t)
	a := ts.put(t, "/a", "a")
	b := ts.put(t, "/b", "b")
	root := ts.tree.Root()
	if err := ts.store.close(); err != nil {
		t.Fatal(err)
	}
	ts.store = nil
	db, err := bolt.Open(filepath.Join(ts.dir, "catalog.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket([]byte(bucketCatalog)); err != nil {
			return err
		}
		cat, err := tx.CreateBucket([]byte(bucketCatalog))
		if err != nil {
			return err
		}
		for _, e := range []wire.LogEntry{a, b} {
			if err := cat.Put([]byte(e.Namespace+"\x00"+e.Key), e.Append(nil)); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte(bucketMeta)).Put([]byte(metaFormat), []byte{1})
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	ts.reopen(t)
	for _, e := range []wire.LogEntry{a, b} {
		got, err := ts.get(e.Namespace, e.Key)
		if err != nil || got.LSN != e.LSN {
			t.Fatalf("%s after migration: %+v, %v", e.Key, got, err)
		}
	}
	if ts.tree.Root() != root {
		t.Fatal("hash tree after migration differs from before")
	}
}
