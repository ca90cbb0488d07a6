package edge

import (
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/geocdn/geocdn/internal/aetree"
	"github.com/geocdn/geocdn/internal/wire"
)

// An index of format 1 (keyed namespace NUL key, no format record) is
// refiled leaf first on open; lookups, the leaf scan and the hash tree
// see the same versions as before.
func TestIndexMigratesFromFormat1(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, storeConfig{Dir: dir})
	ents := []wire.LogEntry{putEntry(1, "/a", []byte("a")), putEntry(2, "/b", []byte("b"))}
	if err := s.apply(ents); err != nil {
		t.Fatal(err)
	}
	root := s.tree.Root()
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(filepath.Join(dir, "index.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		if err := tx.DeleteBucket(bucketObjects); err != nil {
			return err
		}
		objs, err := tx.CreateBucket(bucketObjects)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := objs.Put([]byte(e.Namespace+"\x00"+e.Key), e.Append(nil)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Delete(keyFormat)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, storeConfig{Dir: dir})
	for _, e := range ents {
		if o, ok := s.lookup(e.Namespace, e.Key); !ok || o.Entry.LSN != e.LSN {
			t.Fatalf("%s after migration: %+v %v", e.Key, o, ok)
		}
	}
	if s.tree.Root() != root {
		t.Fatal("hash tree after migration differs from before")
	}
	leaf := aetree.Leaf(ents[0].Namespace, ents[0].Key)
	got, wm, err := s.leafEntries([]uint32{leaf})
	if err != nil || wm != 2 || got[objKey{ents[0].Namespace, ents[0].Key}].LSN != 1 {
		t.Fatalf("leaf %d after migration: %v at %d, %v", leaf, got, wm, err)
	}
}

// A repair applies only if its key is still as it was compared: one the
// log moved meanwhile is skipped, never rolled back.
func TestReconcileSkipsKeysThatMoved(t *testing.T) {
	s := openTestStore(t, storeConfig{})
	if err := s.apply([]wire.LogEntry{putEntry(1, "/a", []byte("a1")), putEntry(2, "/b", []byte("b"))}); err != nil {
		t.Fatal(err)
	}
	stale := putEntry(1, "/a", []byte("a1"))
	// The log moves /a to lsn 3 after the comparison saw it at 1.
	if err := s.apply([]wire.LogEntry{putEntry(3, "/a", []byte("a3"))}); err != nil {
		t.Fatal(err)
	}
	n, err := s.reconcile([]repair{
		{k: objKey{"default", "/a"}, expect: 1, entry: &stale},
		{k: objKey{"default", "/b"}, expect: 2},
	})
	if err != nil || n != 1 {
		t.Fatalf("reconcile: %d applied, %v; want 1", n, err)
	}
	if o, _ := s.lookup("default", "/a"); o.Entry.LSN != 3 {
		t.Fatalf("/a rolled back to lsn %d", o.Entry.LSN)
	}
	if _, ok := s.lookup("default", "/b"); ok {
		t.Fatal("/b not removed")
	}
	if s.watermark() != 3 {
		t.Fatalf("watermark %d: a repair moved it", s.watermark())
	}
}
