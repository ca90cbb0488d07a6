package edge

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/wire"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// openTestStore opens a store in a fresh directory (or cfg.Dir) and closes
// it at the end of the test.
func openTestStore(t testing.TB, cfg storeConfig) *store {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.Annotate == nil {
		cfg.Annotate = annotateHeaders // as Edge.New does
	}
	s, err := openStore(cfg)
	if err != nil {
		t.Fatalf("openStore: %v", err)
	}
	t.Cleanup(func() { s.close() })
	return s
}

func digestOf(b []byte) wire.Digest { return sha256.Sum256(b) }

func putEntry(lsn uint64, key string, body []byte) wire.LogEntry {
	return wire.LogEntry{
		LSN:          lsn,
		Op:           wire.OpPut,
		Namespace:    "default",
		Key:          key,
		Digest:       digestOf(body),
		Size:         uint64(len(body)),
		ContentType:  "text/plain",
		CacheControl: "max-age=60",
		ModTime:      time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
	}
}

func deleteEntry(lsn uint64, key string) wire.LogEntry {
	return wire.LogEntry{LSN: lsn, Op: wire.OpDelete, Namespace: "default", Key: key}
}

func mustApply(t testing.TB, s *store, entries ...wire.LogEntry) {
	t.Helper()
	if err := s.apply(entries); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

func mustWrite(t testing.TB, s *store, body []byte, required bool) {
	t.Helper()
	if err := s.writeBlob(digestOf(body), int64(len(body)), bytes.NewReader(body), required); err != nil {
		t.Fatalf("writeBlob(%d bytes): %v", len(body), err)
	}
}

// readAll reads an opened content and closes it.
func readAll(t testing.TB, c content) []byte {
	t.Helper()
	defer c.close()
	if c.file == nil {
		return c.hot
	}
	b, err := io.ReadAll(c.file)
	if err != nil {
		t.Fatalf("read content: %v", err)
	}
	return b
}

func blobFileExists(s *store, body []byte) bool {
	_, err := os.Stat(s.blobPath(digestOf(body)))
	return err == nil
}

func checkObject(t *testing.T, s *store, key string, wantLSN uint64, wantPresent bool) {
	t.Helper()
	o, ok := s.lookup("default", key)
	if !ok {
		t.Fatalf("lookup(%q): not found, want lsn %d", key, wantLSN)
	}
	if o.Entry.LSN != wantLSN || o.Present != wantPresent {
		t.Fatalf("lookup(%q) = lsn %d present %v, want lsn %d present %v", key, o.Entry.LSN, o.Present, wantLSN, wantPresent)
	}
}

func TestStoreApplyPutUpdateDelete(t *testing.T) {
	s := openTestStore(t, storeConfig{})
	v1, v2 := []byte("version one"), []byte("version two")

	mustApply(t, s, putEntry(1, "a", v1))
	checkObject(t, s, "a", 1, false)
	mustWrite(t, s, v1, true)
	checkObject(t, s, "a", 1, true)

	// The push of v2 arrives before its log entry, as it may: the stream
	// carrying pushes is not the one carrying the log.
	mustWrite(t, s, v2, true)
	checkObject(t, s, "a", 1, true)
	mustApply(t, s, putEntry(2, "a", v2))
	checkObject(t, s, "a", 2, true)
	if s.hasBlob(digestOf(v1)) || blobFileExists(s, v1) {
		t.Errorf("superseded blob v1 still stored")
	}

	mustApply(t, s, deleteEntry(3, "a"))
	if _, ok := s.lookup("default", "a"); ok {
		t.Errorf("lookup after delete: found")
	}
	if s.hasBlob(digestOf(v2)) || blobFileExists(s, v2) {
		t.Errorf("blob of deleted key still stored")
	}
	if got := s.watermark(); got != 3 {
		t.Errorf("watermark = %d, want 3", got)
	}
	if req, fills := s.usage(); req != 0 || fills != 0 {
		t.Errorf("usage = %d, %d; want 0, 0", req, fills)
	}
}

func TestStoreSharedDigest(t *testing.T) {
	s := openTestStore(t, storeConfig{})
	shared, other := []byte("shared content"), []byte("other content")
	mustWrite(t, s, shared, true)
	mustApply(t, s, putEntry(1, "a", shared), putEntry(2, "b", shared))
	checkObject(t, s, "a", 1, true)
	checkObject(t, s, "b", 2, true)

	mustWrite(t, s, other, true)
	mustApply(t, s, putEntry(3, "a", other))
	if !s.hasBlob(digestOf(shared)) {
		t.Fatalf("blob still referenced by b was deleted")
	}
	checkObject(t, s, "b", 2, true)

	mustApply(t, s, deleteEntry(4, "b"))
	if s.hasBlob(digestOf(shared)) || blobFileExists(s, shared) {
		t.Errorf("blob no key references is still stored")
	}
	checkObject(t, s, "a", 3, true)
}

func TestStoreSupersededWithinBatch(t *testing.T) {
	s := openTestStore(t, storeConfig{})
	v1, v2 := []byte("first"), []byte("second")
	mustWrite(t, s, v1, true)
	mustApply(t, s, putEntry(1, "a", v1), putEntry(2, "a", v2))
	if s.hasBlob(digestOf(v1)) {
		t.Errorf("blob of a version superseded in the same batch kept")
	}
	checkObject(t, s, "a", 2, false)
}

func TestStoreReplayIsIdempotent(t *testing.T) {
	s := openTestStore(t, storeConfig{})
	v1, v2 := []byte("v1"), []byte("v2")
	batch := []wire.LogEntry{putEntry(1, "a", v1), putEntry(2, "b", v1), deleteEntry(3, "a"), putEntry(4, "b", v2)}
	mustApply(t, s, batch...)
	mustWrite(t, s, v2, true)
	// Replays after a reconnect: the whole batch, and a suffix of it.
	mustApply(t, s, batch...)
	mustApply(t, s, batch[2:]...)
	if _, ok := s.lookup("default", "a"); ok {
		t.Errorf("replayed put resurrected deleted key a")
	}
	checkObject(t, s, "b", 4, true)
	if got := s.watermark(); got != 4 {
		t.Errorf("watermark = %d, want 4", got)
	}
}

func TestStoreApplyUnknownOpAppliesNothing(t *testing.T) {
	s := openTestStore(t, storeConfig{})
	bad := wire.LogEntry{LSN: 2, Op: 99, Namespace: "default", Key: "x"}
	if err := s.apply([]wire.LogEntry{putEntry(1, "a", []byte("a")), bad}); err == nil {
		t.Fatalf("apply with unknown op: no error")
	}
	if _, ok := s.lookup("default", "a"); ok || s.watermark() != 0 {
		t.Errorf("failed batch partly applied: found a=%v watermark=%d", ok, s.watermark())
	}
}

func TestStoreReopen(t *testing.T) {
	dir := t.TempDir()
	kept, fill, pushed, orphan := []byte("kept"), []byte("a fill"), []byte("pushed early"), []byte("orphan")

	s, err := openStore(storeConfig{Dir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, putEntry(5, "k", kept), putEntry(6, "gone", kept), deleteEntry(7, "gone"), putEntry(8, "missing", []byte("never arrived")))
	mustWrite(t, s, kept, false)
	mustWrite(t, s, fill, false)  // no key references it yet
	mustWrite(t, s, pushed, true) // its log entry is still on the way
	orphanPath := s.blobPath(digestOf(orphan))
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	// Leftovers of a crash: a temporary file, and a blob renamed into
	// place whose record never committed.
	if err := os.WriteFile(filepath.Join(dir, "blobs", "tmp", "blob-123"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(orphanPath, orphan, 0o644); err != nil {
		t.Fatal(err)
	}

	s = openTestStore(t, storeConfig{Dir: dir})
	if got := s.watermark(); got != 8 {
		t.Errorf("watermark after reopen = %d, want 8", got)
	}
	checkObject(t, s, "k", 5, true)
	checkObject(t, s, "missing", 8, false)
	if _, ok := s.lookup("default", "gone"); ok {
		t.Errorf("deleted key back after reopen")
	}
	o, _ := s.lookup("default", "k")
	if want := putEntry(5, "k", kept); o.Entry.ContentType != want.ContentType || !o.Entry.ModTime.Equal(want.ModTime) {
		t.Errorf("entry after reopen = %+v, want %+v", o.Entry, want)
	}
	for name, body := range map[string][]byte{"kept": kept, "fill": fill, "pushed": pushed} {
		if !s.hasBlob(digestOf(body)) {
			t.Errorf("blob %s lost across reopen", name)
		}
	}
	if s.hasBlob(digestOf(orphan)) {
		t.Errorf("unrecorded, unreferenced blob kept")
	}
	if _, err := os.Stat(orphanPath); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("orphan blob file not removed: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "blobs", "tmp")); len(ents) != 0 {
		t.Errorf("tmp not emptied: %d entries", len(ents))
	}
	req, fills := s.usage()
	if wantReq, wantFills := int64(len(pushed)), int64(len(kept)+len(fill)); req != wantReq || fills != wantFills {
		t.Errorf("usage = %d, %d; want %d, %d", req, fills, wantReq, wantFills)
	}
	c, err := s.openContent(digestOf(kept))
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, c); !bytes.Equal(got, kept) {
		t.Errorf("content after reopen = %q, want %q", got, kept)
	}
}

func TestStoreDigestMismatchKeepsNothing(t *testing.T) {
	s := openTestStore(t, storeConfig{})
	body := []byte("the real content")
	d := digestOf(body)
	tests := []struct {
		name string
		data []byte
		size int64
	}{
		{"wrong bytes", []byte("the fake content"), int64(len(body))},
		{"short", body[:5], int64(len(body))},
		{"wrong size", body, int64(len(body)) - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.writeBlob(d, tt.size, bytes.NewReader(tt.data), true)
			if !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("writeBlob = %v, want ErrDigestMismatch", err)
			}
			if s.hasBlob(d) || blobFileExists(s, body) {
				t.Errorf("mismatched content kept")
			}
			if ents, _ := os.ReadDir(s.tmpDir); len(ents) != 0 {
				t.Errorf("temporary file left behind")
			}
			if req, fills := s.usage(); req != 0 || fills != 0 {
				t.Errorf("usage = %d, %d after a refused write", req, fills)
			}
		})
	}
}

// blobOf returns a distinct body of n bytes.
func blobOf(tag string, n int) []byte {
	return []byte(fmt.Sprintf("%-*s", n, tag))
}

func TestStoreEvictsFillsLRUForRequired(t *testing.T) {
	s := openTestStore(t, storeConfig{DiskBytes: 300})
	a, b, c, d := blobOf("a", 100), blobOf("b", 100), blobOf("c", 100), blobOf("d", 100)
	mustWrite(t, s, a, false)
	mustWrite(t, s, b, false)
	mustWrite(t, s, c, false)
	// Reading a makes b the least recently used fill.
	ca, err := s.openContent(digestOf(a))
	if err != nil {
		t.Fatal(err)
	}
	ca.close()

	mustWrite(t, s, d, true)
	for _, tt := range []struct {
		name string
		body []byte
		want bool
	}{{"a", a, true}, {"b", b, false}, {"c", c, true}, {"d", d, true}} {
		if got := s.hasBlob(digestOf(tt.body)); got != tt.want {
			t.Errorf("hasBlob(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
	if req, fills := s.usage(); req != 100 || fills != 200 {
		t.Errorf("usage = %d, %d; want 100, 200", req, fills)
	}
}

func TestStoreDiskFull(t *testing.T) {
	s := openTestStore(t, storeConfig{DiskBytes: 250})
	a, b, c := blobOf("a", 100), blobOf("b", 100), blobOf("c", 100)
	mustWrite(t, s, a, true)
	mustWrite(t, s, b, false)
	// A push of content held as a fill pins it.
	mustWrite(t, s, b, true)

	for _, required := range []bool{true, false} {
		err := s.writeBlob(digestOf(c), int64(len(c)), bytes.NewReader(c), required)
		if !errors.Is(err, ErrDiskFull) {
			t.Errorf("writeBlob(required=%v) with only required blobs = %v, want ErrDiskFull", required, err)
		}
	}
	if !s.hasBlob(digestOf(a)) || !s.hasBlob(digestOf(b)) || s.hasBlob(digestOf(c)) {
		t.Errorf("a refused write changed what is stored")
	}
	if req, fills := s.usage(); req != 200 || fills != 0 {
		t.Errorf("usage = %d, %d; want 200, 0", req, fills)
	}
	if err := s.setRequired(digestOf(c), true); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("setRequired of an absent blob = %v, want fs.ErrNotExist", err)
	}
	// Unpinned, b is a fill again and makes room.
	if err := s.setRequired(digestOf(b), false); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s, c, true)
	if s.hasBlob(digestOf(b)) {
		t.Errorf("unpinned b not evicted")
	}
}

func TestStoreEvictedFillIsNotPresent(t *testing.T) {
	s := openTestStore(t, storeConfig{DiskBytes: 100})
	a, b := blobOf("a", 100), blobOf("b", 100)
	mustApply(t, s, putEntry(1, "a", a))
	mustWrite(t, s, a, false)
	checkObject(t, s, "a", 1, true)
	mustWrite(t, s, b, false)
	checkObject(t, s, "a", 1, false)
	if _, err := s.openContent(digestOf(a)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("openContent of evicted blob = %v, want fs.ErrNotExist", err)
	}
	// Filling it again makes the index entry Present again.
	mustWrite(t, s, a, false)
	checkObject(t, s, "a", 1, true)
}

func TestStoreHotTier(t *testing.T) {
	small := []byte("small and hot")
	large := bytes.Repeat([]byte("L"), 4096)
	tests := []struct {
		name    string
		cfg     storeConfig
		body    []byte
		wantHot bool // held by the hot tier after the first read
	}{
		{"small", storeConfig{}, small, true},
		{"refused", storeConfig{HotBytes: 1}, small, false},
		{"too large", storeConfig{HotMaxObject: 1024}, large, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTestStore(t, tt.cfg)
			mustWrite(t, s, tt.body, true)
			d := digestOf(tt.body)
			for i := range 3 {
				c, err := s.openContent(d)
				if err != nil {
					t.Fatalf("read %d: %v", i, err)
				}
				if got := readAll(t, c); !bytes.Equal(got, tt.body) {
					t.Fatalf("read %d = %d bytes, want %d", i, len(got), len(tt.body))
				}
				s.hot.Wait()
			}
			hb, ok := s.hot.Get(hotKey(d))
			if ok != tt.wantHot {
				t.Fatalf("hot tier holds it = %v, want %v", ok, tt.wantHot)
			}
			if ok && !bytes.Equal(hb.data, tt.body) {
				t.Errorf("hot bytes = %q, want %q", hb.data, tt.body)
			}
			if len(tt.body) > 1024 && tt.cfg.HotMaxObject == 1024 {
				c, err := s.openContent(d)
				if err != nil {
					t.Fatal(err)
				}
				if c.file == nil {
					t.Errorf("large object not served from a file")
				}
				c.close()
			}
		})
	}
}

func TestStoreHotTierChecksFullDigest(t *testing.T) {
	s := openTestStore(t, storeConfig{})
	body := []byte("genuine")
	mustWrite(t, s, body, true)
	d := digestOf(body)
	// Another digest with the same first 8 bytes, as a publisher could
	// search out, sits in the hot tier under the same key.
	forged := d
	forged[31] ^= 1
	s.hot.Set(hotKey(d), &hotBlob{digest: forged, data: []byte("forged!")}, 7)
	s.hot.Wait()
	c, err := s.openContent(d)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, c); !bytes.Equal(got, body) {
		t.Errorf("openContent = %q, want %q", got, body)
	}
}

func TestStoreEmptyObject(t *testing.T) {
	s := openTestStore(t, storeConfig{})
	mustApply(t, s, putEntry(1, "empty", nil))
	mustWrite(t, s, nil, true)
	checkObject(t, s, "empty", 1, true)
	c, err := s.openContent(digestOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, c); len(got) != 0 {
		t.Errorf("empty object read %d bytes", len(got))
	}
}

// TestStoreConcurrent runs applies, pushes, fills and reads at once, for
// the race detector and the usage accounting.
func TestStoreConcurrent(t *testing.T) {
	s := openTestStore(t, storeConfig{DiskBytes: 20 << 10, HotBytes: 8 << 10})
	const keys = 32
	bodies := make([][]byte, keys)
	for i := range bodies {
		bodies[i] = blobOf(fmt.Sprintf("body-%d", i), 1000+i)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range keys {
			mustApply(t, s, putEntry(uint64(i+1), fmt.Sprintf("k%d", i), bodies[i]))
		}
	})
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < keys; i += 2 {
				if err := s.writeBlob(digestOf(bodies[i]), int64(len(bodies[i])), bytes.NewReader(bodies[i]), i%3 == 0); err != nil {
					t.Errorf("writeBlob %d: %v", i, err)
				}
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for i := range 4 * keys {
				o, ok := s.lookup("default", fmt.Sprintf("k%d", i%keys))
				if !ok || !o.Present {
					continue
				}
				c, err := s.openContent(o.Entry.Digest)
				if err != nil {
					continue // evicted meanwhile
				}
				if got := readAll(t, c); !bytes.Equal(got, bodies[i%keys]) {
					t.Errorf("k%d: read %q", i%keys, strings.TrimSpace(string(got)))
				}
			}
		})
	}
	wg.Wait()
	var want int64
	for _, b := range bodies {
		if s.hasBlob(digestOf(b)) {
			want += int64(len(b))
		}
	}
	if req, fills := s.usage(); req+fills != want {
		t.Errorf("usage = %d+%d, want %d (sum of stored blobs)", req, fills, want)
	}
}

func TestStoreMissing(t *testing.T) {
	s := openTestStore(t, storeConfig{})
	here, owed, notOwed := []byte("here"), []byte("owed"), []byte("not owed")
	mine := putEntry(2, "owed", owed)
	mine.Replicas = []string{"me"}
	theirs := putEntry(3, "not-owed", notOwed)
	theirs.Replicas = []string{"other"}
	mustApply(t, s, putEntry(1, "here", here), mine, theirs)
	mustWrite(t, s, here, true)

	got := s.missing(func(e wire.LogEntry) bool {
		return len(e.Replicas) == 0 || e.Replicas[0] == "me"
	})
	if len(got) != 1 || got[0].Key != "owed" {
		t.Fatalf("missing = %v, want just owed", got)
	}
	mustWrite(t, s, owed, true)
	if got := s.missing(func(wire.LogEntry) bool { return true }); len(got) != 1 || got[0].Key != "not-owed" {
		t.Errorf("missing after the push = %v, want just not-owed", got)
	}
}

// TestStoreVersionsShareBlobRecords applies random puts, deletes, writes,
// drops and reopens, and checks after each that every current version
// points to the filed record of its digest, that the records count their
// versions, and that no record is left that neither a version nor a file
// needs.
func TestStoreVersionsShareBlobRecords(t *testing.T) {
	dir := t.TempDir()
	cfg := storeConfig{Dir: dir}
	s := openTestStore(t, cfg)
	rng := rand.New(rand.NewPCG(5, 6))
	bodies := make([][]byte, 8)
	for i := range bodies {
		bodies[i] = []byte(fmt.Sprintf("content %d", i))
	}
	check := func(step int) {
		t.Helper()
		s.mu.RLock()
		defer s.mu.RUnlock()
		refs := make(map[*blob]int32)
		for v := range s.index.all() {
			if got := s.blobs.get(v.blob.digest); got != v.blob {
				t.Fatalf("step %d: %s points to a record of %s that is not the filed one (%p)", step, v.key, shortHex(v.blob.digest), got)
			}
			refs[v.blob]++
		}
		for b := range s.blobs.all() {
			if b.refs != refs[b] {
				t.Fatalf("step %d: record of %s counts %d versions, want %d", step, shortHex(b.digest), b.refs, refs[b])
			}
			if b.refs == 0 && !b.onDisk {
				t.Fatalf("step %d: record of %s kept with no version and no file", step, shortHex(b.digest))
			}
		}
	}
	lsn := uint64(0)
	for step := range 400 {
		body := bodies[rng.IntN(len(bodies))]
		key := fmt.Sprint(rng.IntN(6))
		switch r := rng.IntN(20); {
		case r < 8:
			var batch []wire.LogEntry
			for range 1 + rng.IntN(3) {
				lsn++
				batch = append(batch, putEntry(lsn, fmt.Sprint(rng.IntN(6)), bodies[rng.IntN(len(bodies))]))
			}
			mustApply(t, s, batch...)
		case r < 11:
			lsn++
			mustApply(t, s, deleteEntry(lsn, key))
		case r < 16:
			mustWrite(t, s, body, rng.IntN(2) == 0)
		case r < 19:
			if err := s.drop([]wire.Digest{digestOf(body)}); err != nil {
				t.Fatalf("step %d: drop: %v", step, err)
			}
		default:
			if err := s.close(); err != nil {
				t.Fatalf("step %d: close: %v", step, err)
			}
			s = openTestStore(t, cfg)
		}
		check(step)
	}
}
