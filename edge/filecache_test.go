package edge

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/geocdn/geocdn/internal/wire"
)

// isOpen reports whether f is still open.
func isOpen(f *os.File) bool {
	_, err := f.Stat()
	return err == nil
}

func tempBlobs(t *testing.T, n int) ([]wire.Digest, []string) {
	t.Helper()
	dir := t.TempDir()
	var ds []wire.Digest
	var paths []string
	for i := range n {
		body := []byte(fmt.Sprintf("blob %d", i))
		p := filepath.Join(dir, fmt.Sprint(i))
		if err := os.WriteFile(p, body, 0o644); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, digestOf(body))
		paths = append(paths, p)
	}
	return ds, paths
}

func pathOf(ds []wire.Digest, paths []string) func(wire.Digest) string {
	return func(d wire.Digest) string {
		for i := range ds {
			if ds[i] == d {
				return paths[i]
			}
		}
		return "/nonexistent"
	}
}

func TestFileCacheSharesEvictsAndCloses(t *testing.T) {
	ds, paths := tempBlobs(t, 3)
	c := &fileCache{max: 2, path: pathOf(ds, paths), files: map[wire.Digest]*sharedFile{}}
	a1, err := c.acquire(ds[0])
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := c.acquire(ds[0])
	if a1 != a2 {
		t.Fatal("two acquires of one blob opened it twice")
	}
	a1.release()
	a2.release()
	if !isOpen(a1.f) {
		t.Fatal("released file closed while cached")
	}
	// a is the least recently used once b and c come in: evicted, and
	// closed since nobody holds it.
	held, _ := c.acquire(ds[1])
	cf, _ := c.acquire(ds[2])
	cf.release()
	if isOpen(a1.f) {
		t.Error("evicted file left open")
	}
	// b is held while it is evicted: it stays open until released.
	a3, _ := c.acquire(ds[0])
	a3.release()
	if c.files[ds[1]] != nil {
		t.Fatal("b still cached; want it evicted")
	}
	if !isOpen(held.f) {
		t.Fatal("evicted file closed under its reader")
	}
	held.release()
	if isOpen(held.f) {
		t.Error("evicted file left open after its last reader")
	}
	// forget: a removed blob's file closes, and the next acquire opens
	// it again.
	c.forget(ds[0])
	if isOpen(a3.f) || c.files[ds[0]] != nil {
		t.Error("forgotten file still open or cached")
	}
	a4, err := c.acquire(ds[0])
	if err != nil || a4 == a3 || !isOpen(a4.f) {
		t.Fatalf("acquire after forget: %v", err)
	}
	a4.release()
	c.closeAll()
	if isOpen(a4.f) || len(c.files) != 0 || c.lru.Len() != 0 {
		t.Error("closeAll left files open or cached")
	}
}

// TestFileCacheConcurrent acquires, reads, releases and forgets from many
// goroutines: a reader's file is never closed under it, and when all is
// done every file is closed once the cache is.
func TestFileCacheConcurrent(t *testing.T) {
	ds, paths := tempBlobs(t, 8)
	c := &fileCache{max: 3, path: pathOf(ds, paths), files: map[wire.Digest]*sharedFile{}}
	var mu sync.Mutex
	all := map[*os.File]bool{}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range 2000 {
				i := rng.IntN(len(ds))
				if rng.IntN(10) == 0 {
					c.forget(ds[i])
					continue
				}
				sf, err := c.acquire(ds[i])
				if err != nil {
					t.Error(err)
					return
				}
				buf := make([]byte, 16)
				n, err := sf.f.ReadAt(buf, 0)
				if want := fmt.Sprintf("blob %d", i); string(buf[:n]) != want {
					t.Errorf("read %q (%v) from a held file, want %q", buf[:n], err, want)
				}
				mu.Lock()
				all[sf.f] = true
				mu.Unlock()
				sf.release()
			}
		}()
	}
	wg.Wait()
	c.closeAll()
	for f := range all {
		if isOpen(f) {
			t.Errorf("%s left open", f.Name())
		}
	}
}

// TestSharedFileOutlivesItsBlob: a fast-path reader keeps sending a blob
// that a newer version removes; the store then holds no file of it.
func TestSharedFileOutlivesItsBlob(t *testing.T) {
	st := openTestStore(t, storeConfig{HotMaxObject: 16})
	old := bytes.Repeat([]byte("old "), 1000)
	mustApply(t, st, putEntry(1, "k", old))
	mustWrite(t, st, old, true)
	c, err := st.openShared(digestOf(old))
	if err != nil || c.shared == nil {
		t.Fatalf("openShared: %v (shared %v)", err, c.shared != nil)
	}
	again, _ := st.openShared(digestOf(old))
	if again.file != c.file {
		t.Error("a second reader did not share the open file")
	}
	again.close()
	newer := []byte("new")
	mustApply(t, st, putEntry(2, "k", newer))
	if st.hasBlob(digestOf(old)) {
		t.Fatal("superseded blob still on disk; the test needs it removed")
	}
	got := make([]byte, len(old))
	if _, err := c.file.ReadAt(got, 0); err != nil || !bytes.Equal(got, old) {
		t.Fatalf("held file after its blob was removed: %v", err)
	}
	c.close()
	if isOpen(c.file) {
		t.Error("file of a removed blob open after its last reader")
	}
	if n := len(st.files.files); n != 0 {
		t.Errorf("file cache holds %d files after the blob went", n)
	}
}
