package origin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/geocdn/geocdn/internal/fsys"
	"github.com/geocdn/geocdn/internal/wire"
)

// TestStoreDurableAcrossCrash runs concurrent puts and deletes with the
// blobs on a CrashFS, cuts the power at a random point, and checks on the
// rebooted filesystem that nothing acknowledged was lost and that the
// catalog names no blob that is missing or damaged.
//
// Only the blob filesystem is crashed. The catalog stays on the real disk:
// bbolt's own durability (fsync at Commit) is not what is under test, so
// every commit, including those made by operations still finishing after
// the crash point, survives. That is sound because such an operation can
// only commit after all of its blob I/O succeeded, which (the old Boot
// view being fenced) happened before the crash.
func TestStoreDurableAcrossCrash(t *testing.T) {
	seeds := 20
	if testing.Short() {
		seeds = 5
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { crashRun(t, seed) })
	}
}

const crashBlobDir = "/data/blobs"

func crashRun(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0xc0ffee))
	disk := fsys.NewCrashFS()
	catalog := filepath.Join(t.TempDir(), "catalog.db")
	s, err := openStore(disk.Boot(), crashBlobDir, catalog)
	if err != nil {
		t.Fatal(err)
	}
	// Commits need not reach the platter here (see above); skipping the
	// fsync keeps twenty runs fast.
	s.db.NoSync = true

	const workers = 4
	var (
		crashAfter = 10 + rng.Int64N(150) // acknowledged operations before the crash
		acked      atomic.Int64
		failed     atomic.Int64 // operations the crash cut short
		crashed    atomic.Bool
		crashNow   = make(chan struct{})
		crashOnce  sync.Once
		mu         sync.Mutex
		acks       []wire.LogEntry // every operation that returned success
		wg         sync.WaitGroup
	)
	// A small pool of bodies makes identical content, and so dedup and
	// shared blobs, common.
	pool := make([][]byte, 6)
	for i := range pool {
		pool[i] = randomBody(rng)
	}
	wg.Go(func() {
		<-crashNow
		disk.Crash()
		crashed.Store(true)
	})
	for w := range workers {
		wrng := rand.New(rand.NewPCG(seed, uint64(w)))
		wg.Go(func() {
			for i := 0; !crashed.Load() && i < 1000; i++ {
				key := fmt.Sprintf("/k%d", wrng.IntN(12))
				var (
					e   wire.LogEntry
					err error
				)
				switch r := wrng.IntN(10); {
				case r < 2:
					e, err = s.delete("default", key, time.Unix(int64(i), 0))
					if errors.Is(err, ErrNotFound) {
						continue
					}
				case r < 4:
					body := pool[wrng.IntN(len(pool))]
					e, err = s.put(context.Background(), "default", key, bytes.NewReader(body), 1<<20, PutMeta{})
				default:
					e, err = s.put(context.Background(), "default", key, bytes.NewReader(randomBody(wrng)), 1<<20, PutMeta{})
				}
				if err != nil {
					// Only the crash may fail an operation.
					if !errors.Is(err, fsys.ErrCrashed) {
						t.Errorf("op %d of worker %d: %v", i, w, err)
					}
					failed.Add(1)
					continue
				}
				mu.Lock()
				acks = append(acks, e)
				mu.Unlock()
				if acked.Add(1) == crashAfter {
					crashOnce.Do(func() { close(crashNow) })
				}
			}
			// Should the workers finish first, crash with nothing in flight.
			crashOnce.Do(func() { close(crashNow) })
		})
	}
	wg.Wait()
	t.Logf("crash after %d acknowledged operations; %d acknowledged in all, %d cut short", crashAfter, acked.Load(), failed.Load())
	if err := s.close(); err != nil {
		t.Fatal(err)
	}

	// An upload left in tmp by a killed process (CrashFS never keeps one,
	// as tmp is never synced): the reopened store must neither keep nor
	// serve it.
	plantLeftover(t, disk)

	s, err = openStore(disk.Boot(), crashBlobDir, catalog)
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer s.close()
	checkAfterCrash(t, s, acks)
}

func randomBody(rng *rand.Rand) []byte {
	b := make([]byte, rng.IntN(256<<10+1))
	for i := 0; i < len(b); i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], rng.Uint64())
		copy(b[i:], w[:])
	}
	return b
}

func plantLeftover(t *testing.T, disk *fsys.CrashFS) {
	t.Helper()
	tmp := crashBlobDir + "/tmp"
	if err := disk.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := disk.OpenFile(tmp+"/leftover", os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("partial upload")); err != nil {
		t.Fatal(err)
	}
}

func checkAfterCrash(t *testing.T, s *store, acks []wire.LogEntry) {
	t.Helper()
	log := map[uint64]wire.LogEntry{}
	if err := s.readLog(0, func(e wire.LogEntry) error {
		if want := uint64(len(log) + 1); e.LSN != want {
			return fmt.Errorf("log has LSN %d where %d belongs", e.LSN, want)
		}
		log[e.LSN] = e
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// Every catalog entry names a blob that is there, whole and intact.
	current := map[string]wire.LogEntry{}
	refs := map[wire.Digest]uint64{}
	if err := s.forEachObject(func(e wire.LogEntry) error {
		current[e.Key] = e
		refs[e.Digest]++
		if l, ok := log[e.LSN]; !ok || l.Key != e.Key || l.Digest != e.Digest {
			t.Errorf("%s: catalog entry LSN %d does not match the log", e.Key, e.LSN)
		}
		f, err := s.openBlob(e.Digest)
		if err != nil {
			t.Errorf("%s (LSN %d): %v", e.Key, e.LSN, err)
			return nil
		}
		defer f.Close()
		h := sha256.New()
		n, err := io.Copy(h, f)
		if err != nil {
			t.Errorf("%s (LSN %d): read blob: %v", e.Key, e.LSN, err)
			return nil
		}
		if got := wire.Digest(h.Sum(nil)); got != e.Digest || uint64(n) != e.Size {
			t.Errorf("%s (LSN %d): blob has %d bytes with digest %s, entry says %d bytes with %s", e.Key, e.LSN, n, got, e.Size, e.Digest)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// The catalog is exactly what replaying the log gives.
	replayed := map[string]wire.LogEntry{}
	for lsn := uint64(1); lsn <= uint64(len(log)); lsn++ {
		if e := log[lsn]; e.Op == wire.OpPut {
			replayed[e.Key] = e
		} else {
			delete(replayed, e.Key)
		}
	}
	if len(replayed) != len(current) {
		t.Errorf("catalog has %d objects, replaying the log gives %d", len(current), len(replayed))
	}
	for key, r := range replayed {
		if cur, ok := current[key]; !ok || cur.LSN != r.LSN {
			t.Errorf("%s: catalog has LSN %d (present %v), log says %d", key, cur.LSN, ok, r.LSN)
		}
	}

	// Every acknowledged operation is in the log, so (with the above) its
	// effect holds unless a later operation on its key replaced it.
	for _, a := range acks {
		if l, ok := log[a.LSN]; !ok || l.Op != a.Op || l.Key != a.Key || l.Digest != a.Digest {
			t.Errorf("acknowledged %v of %s at LSN %d missing from the log", a.Op, a.Key, a.LSN)
		}
	}

	// Reference counts match the catalog, and nothing waits for collection.
	err := s.db.View(func(tx *bolt.Tx) error {
		got := map[wire.Digest]uint64{}
		tx.Bucket([]byte(bucketRefs)).ForEach(func(k, v []byte) error {
			got[wire.Digest(k)], _ = binary.Uvarint(v)
			return nil
		})
		if len(got) != len(refs) {
			t.Errorf("refs bucket has %d digests, catalog names %d", len(got), len(refs))
		}
		for d, n := range refs {
			if got[d] != n {
				t.Errorf("refs of %s: got %d, catalog names it %d times", d, got[d], n)
			}
		}
		if n := tx.Bucket([]byte(bucketGC)).Stats().KeyN; n != 0 {
			t.Errorf("%d blobs still pending collection after open", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	if ents, err := s.fs.ReadDir(crashBlobDir + "/tmp"); err != nil || len(ents) != 0 {
		t.Errorf("tmp after reopen: %d entries, %v; want empty", len(ents), err)
	}

	// The recovered store carries on from where the log ends.
	last := s.lastLSN()
	e, err := s.put(context.Background(), "default", "/after", bytes.NewReader([]byte("after")), -1, PutMeta{})
	if err != nil || e.LSN != last+1 {
		t.Errorf("put after recovery: LSN %d, %v; want LSN %d", e.LSN, err, last+1)
	}
}

// TestStoreReusedBlobIsMadeDurable covers content found already in place:
// a run that died between renaming a blob into place and syncing its
// directory leaves a name that is visible but not durable. A later run
// that reuses it must make it durable before committing a reference.
func TestStoreReusedBlobIsMadeDurable(t *testing.T) {
	disk := fsys.NewCrashFS()
	body := []byte("content left behind by a run that died")
	d := wire.Digest(sha256.Sum256(body))

	// What the dead run did: the file synced, its directories durable,
	// renamed into place, and no SyncDir of the fan-out directory.
	dead := &store{fs: disk, blobDir: crashBlobDir}
	dst := dead.blobPath(d)
	if err := disk.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	for dir := filepath.Dir(filepath.Dir(dst)); ; dir = filepath.Dir(dir) {
		if err := disk.SyncDir(dir); err != nil {
			t.Fatal(err)
		}
		if dir == "/" {
			break
		}
	}
	f, err := disk.OpenFile(crashBlobDir+"/upload", os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := disk.Rename(crashBlobDir+"/upload", dst); err != nil {
		t.Fatal(err)
	}

	catalog := filepath.Join(t.TempDir(), "catalog.db")
	s, err := openStore(disk.Boot(), crashBlobDir, catalog)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.put(context.Background(), "default", "/k", bytes.NewReader(body), -1, PutMeta{}); err != nil {
		t.Fatal(err)
	}
	disk.Crash()
	s.close()

	s, err = openStore(disk.Boot(), crashBlobDir, catalog)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	checkAfterCrash(t, s, nil)
}
