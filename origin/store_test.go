package origin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/geocdn/geocdn/internal/fsys"
	"github.com/geocdn/geocdn/internal/pattern"
	"github.com/geocdn/geocdn/internal/wire"
)

// testStore is a store on the real filesystem under one temp dir.
type testStore struct {
	*store
	dir string
}

func newTestStore(t testing.TB) *testStore {
	t.Helper()
	ts := &testStore{dir: t.TempDir()}
	ts.reopen(t)
	return ts
}

// reopen closes the store if open and opens it again on the same files.
func (ts *testStore) reopen(t testing.TB) {
	t.Helper()
	if ts.store != nil {
		if err := ts.store.close(); err != nil {
			t.Fatal(err)
		}
	}
	s, err := openStore(fsys.OS(), ts.blobDir(), filepath.Join(ts.dir, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	ts.store = s
	t.Cleanup(func() { s.close() })
}

func (ts *testStore) blobDir() string { return filepath.Join(ts.dir, "blobs") }

func (ts *testStore) put(t testing.TB, key, body string) wire.LogEntry {
	t.Helper()
	e, err := ts.store.put(context.Background(), "default", key, strings.NewReader(body), -1, PutMeta{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (ts *testStore) del(t testing.TB, key string) wire.LogEntry {
	t.Helper()
	e, err := ts.store.delete("default", key, time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// files returns the regular files under the blob dir, split into blobs
// and temp files.
func (ts *testStore) files(t testing.TB) (blobs, temps []string) {
	t.Helper()
	err := filepath.WalkDir(ts.blobDir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if filepath.Base(filepath.Dir(p)) == "tmp" {
			temps = append(temps, p)
		} else {
			blobs = append(blobs, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return blobs, temps
}

func (ts *testStore) wantFiles(t testing.TB, wantBlobs int) {
	t.Helper()
	blobs, temps := ts.files(t)
	if len(blobs) != wantBlobs || len(temps) != 0 {
		t.Fatalf("got blobs %v and temp files %v, want %d blobs and no temp files", blobs, temps, wantBlobs)
	}
}

// readBlob reads d's blob and checks it against its digest.
func readBlob(t testing.TB, s *store, d wire.Digest) []byte {
	t.Helper()
	f, err := s.openBlob(d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if got := sha256.Sum256(b); got != d {
		t.Fatalf("blob %s holds content with digest %x", d, got)
	}
	return b
}

func logEntries(t testing.TB, s *store, after uint64) []wire.LogEntry {
	t.Helper()
	var got []wire.LogEntry
	if err := s.readLog(after, func(e wire.LogEntry) error {
		got = append(got, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestStorePutGetDelete(t *testing.T) {
	ts := newTestStore(t)
	mod := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	meta := PutMeta{
		ContentType:   "text/plain",
		CacheControl:  "max-age=60",
		SurrogateKeys: []string{"a", "b"},
		Consistency:   wire.Bounded,
		Bound:         5 * time.Second,
		Replicas:      []string{"edge-1", "edge-2"},
		ModTime:       mod,
	}
	put, err := ts.store.put(context.Background(), "default", "/x.txt", strings.NewReader("hello"), 100, meta)
	if err != nil {
		t.Fatal(err)
	}
	want := wire.LogEntry{
		LSN: 1, Op: wire.OpPut, Namespace: "default", Key: "/x.txt",
		Digest: sha256.Sum256([]byte("hello")), Size: 5,
		ContentType: "text/plain", CacheControl: "max-age=60", SurrogateKeys: []string{"a", "b"},
		Consistency: wire.Bounded, Bound: 5 * time.Second, ModTime: mod, Replicas: []string{"edge-1", "edge-2"},
	}
	if !entriesEqual(put, want) {
		t.Fatalf("put: got %+v, want %+v", put, want)
	}
	got, err := ts.get("default", "/x.txt")
	if err != nil {
		t.Fatal(err)
	}
	if !entriesEqual(got, want) {
		t.Fatalf("get: got %+v, want %+v", got, want)
	}
	if b := readBlob(t, ts.store, got.Digest); string(b) != "hello" {
		t.Fatalf("blob: got %q, want %q", b, "hello")
	}
	if _, err := ts.get("other", "/x.txt"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get in another namespace: got %v, want ErrNotFound", err)
	}

	del := ts.del(t, "/x.txt")
	if del.LSN != 2 || del.Op != wire.OpDelete || !del.Digest.IsZero() || del.Size != 0 || del.Consistency != wire.Bounded {
		t.Fatalf("delete: got %+v", del)
	}
	if _, err := ts.get("default", "/x.txt"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: got %v, want ErrNotFound", err)
	}
	if _, err := ts.delete("default", "/x.txt", mod); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: got %v, want ErrNotFound", err)
	}
	if got := ts.lastLSN(); got != 2 {
		t.Fatalf("lastLSN after a refused delete: got %d, want 2", got)
	}
	ts.wantFiles(t, 0)
}

func entriesEqual(a, b wire.LogEntry) bool {
	return a.LSN == b.LSN && a.Op == b.Op && a.Namespace == b.Namespace && a.Key == b.Key &&
		a.Digest == b.Digest && a.Size == b.Size && a.ContentType == b.ContentType &&
		a.CacheControl == b.CacheControl && slices.Equal(a.SurrogateKeys, b.SurrogateKeys) &&
		a.Consistency == b.Consistency && a.Bound == b.Bound && a.ModTime.Equal(b.ModTime) &&
		slices.Equal(a.Replicas, b.Replicas)
}

func TestStoreReadLog(t *testing.T) {
	ts := newTestStore(t)
	// More entries than one read chunk holds.
	const n = readChunkEntries + 44
	var want []wire.LogEntry
	for i := range n {
		key := fmt.Sprintf("/k%d", i%7)
		if i%5 == 4 {
			if _, err := ts.get("default", key); err == nil {
				want = append(want, ts.del(t, key))
				continue
			}
		}
		want = append(want, ts.put(t, key, fmt.Sprint("v", i)))
	}
	for i, e := range want {
		if e.LSN != uint64(i+1) {
			t.Fatalf("op %d got LSN %d, want %d", i, e.LSN, i+1)
		}
	}
	for _, after := range []uint64{0, 1, 100, n - 1, n, n + 10} {
		got := logEntries(t, ts.store, after)
		w := want[min(after, n):]
		if len(got) != len(w) {
			t.Fatalf("readLog(%d): got %d entries, want %d", after, len(got), len(w))
		}
		for i := range got {
			if !entriesEqual(got[i], w[i]) {
				t.Fatalf("readLog(%d)[%d]: got %+v, want %+v", after, i, got[i], w[i])
			}
		}
	}

	stop := errors.New("stop")
	calls := 0
	err := ts.readLog(0, func(wire.LogEntry) error {
		if calls++; calls == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 3 {
		t.Fatalf("readLog with a failing fn: got %v after %d calls, want stop after 3", err, calls)
	}
}

func TestStoreLSNsSurviveReopen(t *testing.T) {
	ts := newTestStore(t)
	for i := range 5 {
		ts.put(t, "/a", fmt.Sprint(i))
	}
	ts.del(t, "/a")
	ts.reopen(t)
	if got := ts.lastLSN(); got != 6 {
		t.Fatalf("lastLSN after reopen: got %d, want 6", got)
	}
	if e := ts.put(t, "/a", "again"); e.LSN != 7 {
		t.Fatalf("first put after reopen: got LSN %d, want 7", e.LSN)
	}
	ts.reopen(t)
	for i, e := range logEntries(t, ts.store, 0) {
		if e.LSN != uint64(i+1) {
			t.Fatalf("log position %d has LSN %d", i, e.LSN)
		}
	}
	if got, err := ts.get("default", "/a"); err != nil || got.LSN != 7 {
		t.Fatalf("get after reopen: got %+v, %v; want LSN 7", got, err)
	}
}

// errReader fails after n bytes.
type errReader struct {
	n   int
	err error
}

func (r *errReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, r.err
	}
	p = p[:min(len(p), r.n)]
	clear(p)
	r.n -= len(p)
	return len(p), nil
}

func TestStoreRefusedPutLeavesNothing(t *testing.T) {
	ts := newTestStore(t)
	ts.put(t, "/kept", "kept")
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	boom := errors.New("connection reset")
	for _, tc := range []struct {
		name  string
		ctx   context.Context
		body  io.Reader
		limit int64
		meta  PutMeta
		want  error
	}{
		{"one byte over", context.Background(), strings.NewReader("12345678901"), 10, PutMeta{}, ErrTooLarge},
		{"far over", context.Background(), &errReader{n: 10 << 20, err: io.EOF}, 1 << 20, PutMeta{}, ErrTooLarge},
		{"zero limit", context.Background(), strings.NewReader("x"), 0, PutMeta{}, ErrTooLarge},
		{"body error", context.Background(), &errReader{n: 300 << 10, err: boom}, -1, PutMeta{}, boom},
		{"canceled", canceled, strings.NewReader("x"), -1, PutMeta{}, context.Canceled},
		{"bad bound", context.Background(), strings.NewReader("x"), -1, PutMeta{Consistency: wire.Bounded, Bound: 1500 * time.Microsecond}, wire.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ts.store.put(tc.ctx, "default", "/refused", tc.body, tc.limit, tc.meta)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			ts.wantFiles(t, 1)
			if got := ts.lastLSN(); got != 1 {
				t.Fatalf("lastLSN: got %d, want 1", got)
			}
			if _, err := ts.get("default", "/refused"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("get: got %v, want ErrNotFound", err)
			}
		})
	}
	// Exactly at the limit is accepted, as is an empty body with limit 0.
	if _, err := ts.store.put(context.Background(), "default", "/ten", strings.NewReader("1234567890"), 10, PutMeta{}); err != nil {
		t.Fatalf("body at the limit: %v", err)
	}
	if _, err := ts.store.put(context.Background(), "default", "/empty", strings.NewReader(""), 0, PutMeta{}); err != nil {
		t.Fatalf("empty body with limit 0: %v", err)
	}
}

func TestStoreDedupAndGC(t *testing.T) {
	ts := newTestStore(t)
	a := ts.put(t, "/a", "same")
	b := ts.put(t, "/b", "same")
	if a.Digest != b.Digest {
		t.Fatal("identical content got different digests")
	}
	ts.wantFiles(t, 1)
	ts.wantRefs(t, map[wire.Digest]uint64{a.Digest: 2})

	// A blob still referenced by another key survives a delete.
	ts.del(t, "/a")
	ts.wantFiles(t, 1)
	readBlob(t, ts.store, b.Digest)

	// Replacing content with itself keeps the blob.
	ts.put(t, "/b", "same")
	ts.wantFiles(t, 1)
	ts.wantRefs(t, map[wire.Digest]uint64{a.Digest: 1})

	// Replacing it with other content collects the old blob.
	c := ts.put(t, "/b", "other")
	ts.wantFiles(t, 1)
	if _, err := ts.openBlob(a.Digest); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("open of collected blob: got %v, want ErrNotExist", err)
	}
	readBlob(t, ts.store, c.Digest)

	ts.del(t, "/b")
	ts.wantFiles(t, 0)
	ts.wantRefs(t, map[wire.Digest]uint64{})

	// Content that was collected can be stored again.
	d := ts.put(t, "/c", "same")
	if got := readBlob(t, ts.store, d.Digest); string(got) != "same" {
		t.Fatalf("re-stored blob: got %q", got)
	}
}

// wantRefs checks the refs bucket, and that every blob recorded as
// unreferenced is gone from disk.
func (ts *testStore) wantRefs(t testing.TB, want map[wire.Digest]uint64) {
	t.Helper()
	got := map[wire.Digest]uint64{}
	var pending []wire.Digest
	err := ts.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket([]byte(bucketRefs)).ForEach(func(k, v []byte) error {
			n, _ := binary.Uvarint(v)
			got[wire.Digest(k)] = n
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket([]byte(bucketGC)).ForEach(func(k, _ []byte) error {
			pending = append(pending, wire.Digest(k))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("refs: got %v, want %v", got, want)
	}
	for d, n := range want {
		if got[d] != n {
			t.Fatalf("refs: got %v, want %v", got, want)
		}
	}
	for _, d := range pending {
		if _, err := os.Stat(ts.blobPath(d)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("unreferenced blob %s: stat got %v, want ErrNotExist", d, err)
		}
	}
}

// failRemoveFS is the real filesystem except that Remove of a blob fails,
// as on an I/O error.
type failRemoveFS struct{ fsys.FS }

func (f failRemoveFS) Remove(name string) error {
	if filepath.Base(filepath.Dir(name)) != "tmp" {
		return &fs.PathError{Op: "remove", Path: name, Err: errors.New("injected I/O error")}
	}
	return f.FS.Remove(name)
}

func TestStoreRetriesFailedCollectionOnOpen(t *testing.T) {
	ts := newTestStore(t)
	ts.close()
	s, err := openStore(failRemoveFS{fsys.OS()}, ts.blobDir(), filepath.Join(ts.dir, "catalog.db"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.put(context.Background(), "default", "/a", strings.NewReader("x"), -1, PutMeta{})
	if err != nil {
		t.Fatal(err)
	}
	// The delete commits even though its blob cannot be removed yet.
	if _, err := s.delete("default", "/a", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.openBlob(e.Digest); err != nil {
		t.Fatalf("blob whose removal failed: %v", err)
	}
	s.close()
	ts.store = nil
	ts.reopen(t)
	ts.wantFiles(t, 0)
	ts.wantRefs(t, map[wire.Digest]uint64{})
}

func TestStoreRemovesLeftoverTempFiles(t *testing.T) {
	ts := newTestStore(t)
	e := ts.put(t, "/a", "content")
	leftover := filepath.Join(ts.blobDir(), "tmp", "upload-from-a-killed-run")
	if err := os.WriteFile(leftover, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts.reopen(t)
	ts.wantFiles(t, 1)
	readBlob(t, ts.store, e.Digest)
}

func TestStoreForEachObject(t *testing.T) {
	ts := newTestStore(t)
	var want []string
	for i := range readChunkEntries + 10 {
		key := fmt.Sprintf("/k%04d", i)
		ts.put(t, key, key)
		if i%3 == 0 {
			ts.del(t, key)
		} else {
			want = append(want, key)
		}
	}
	if _, err := ts.store.put(context.Background(), "a-first", "/z", strings.NewReader("z"), -1, PutMeta{}); err != nil {
		t.Fatal(err)
	}
	want = append(want, "a-first/z")
	var got []string
	if err := ts.forEachObject(func(e wire.LogEntry) error {
		if e.Op != wire.OpPut {
			t.Errorf("catalog holds %v entry for %s", e.Op, e.Key)
		}
		if e.Namespace == "a-first" {
			got = append(got, e.Namespace+e.Key)
		} else {
			got = append(got, e.Key)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The catalog is in leaf order, which no caller relies on: compare
	// the sets.
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("forEachObject: got %d keys %v, want %d keys %v", len(got), got, len(want), want)
	}
}

func TestStoreConcurrentPuts(t *testing.T) {
	ts := newTestStore(t)
	const workers, perWorker = 8, 50
	var (
		mu      sync.Mutex
		entries []wire.LogEntry
		wg      sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range perWorker {
				// Every fourth body is shared by all workers, so uploads
				// of the same content race each other and the gc.
				body := fmt.Sprintf("w%d-i%d-%s", w, i, strings.Repeat("x", rng.IntN(64<<10)))
				if i%4 == 0 {
					body = fmt.Sprint("shared-", i%3)
				}
				key := fmt.Sprintf("/w%d/k%d", w, i%10)
				e, err := ts.store.put(context.Background(), "default", key, strings.NewReader(body), -1, PutMeta{})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				entries = append(entries, e)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	lsns := map[uint64]bool{}
	for _, e := range entries {
		if lsns[e.LSN] {
			t.Fatalf("LSN %d given twice", e.LSN)
		}
		lsns[e.LSN] = true
	}
	if n := uint64(workers * perWorker); ts.lastLSN() != n || len(lsns) != int(n) {
		t.Fatalf("got %d distinct LSNs, last %d; want 1..%d", len(lsns), ts.lastLSN(), n)
	}
	log := logEntries(t, ts.store, 0)
	for i, e := range log {
		if e.LSN != uint64(i+1) {
			t.Fatalf("log position %d has LSN %d", i, e.LSN)
		}
	}
	refs := map[wire.Digest]uint64{}
	if err := ts.forEachObject(func(e wire.LogEntry) error {
		refs[e.Digest]++
		if got := readBlob(t, ts.store, e.Digest); uint64(len(got)) != e.Size {
			t.Errorf("%s: blob has %d bytes, entry says %d", e.Key, len(got), e.Size)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ts.wantRefs(t, refs)
	ts.wantFiles(t, len(refs))
}

func TestStorePutStreamsLargeBody(t *testing.T) {
	size := int64(1 << 30)
	if testing.Short() {
		size = 64 << 20
	}
	h := sha256.New()
	if _, err := io.Copy(h, pattern.NewReader(size, 1)); err != nil {
		t.Fatal(err)
	}
	var want wire.Digest
	h.Sum(want[:0])

	ts := newTestStore(t)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	e, err := ts.store.put(context.Background(), "default", "/big", pattern.NewReader(size, 1), size, PutMeta{})
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if e.Digest != want || e.Size != uint64(size) {
		t.Fatalf("got digest %s size %d, want %s size %d", e.Digest, e.Size, want, size)
	}
	// Streaming allocates a copy buffer and bookkeeping, never the body.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Fatalf("put of %d bytes allocated %d bytes", size, alloc)
	}
	fi, err := os.Stat(ts.blobPath(e.Digest))
	if err != nil || fi.Size() != size {
		t.Fatalf("blob on disk: %v, %v", fi, err)
	}
}

func BenchmarkPut(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			ts := newTestStore(b)
			body := make([]byte, size)
			rand.NewChaCha8([32]byte{}).Read(body)
			b.SetBytes(int64(size))
			var i uint64
			for b.Loop() {
				// Distinct content each time, so dedup does not skip work.
				binary.BigEndian.PutUint64(body, i)
				i++
				if _, err := ts.store.put(context.Background(), "default", fmt.Sprintf("/k%d", i%64), bytes.NewReader(body), -1, PutMeta{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
