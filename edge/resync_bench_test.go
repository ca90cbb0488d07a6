package edge

import (
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/geocdn/geocdn/internal/aetree"
	"github.com/geocdn/geocdn/internal/wire"
)

var (
	storeObjects     = flag.Int("geocdn.storeobjects", 1_000_000, "objects in the index BenchmarkStoreOpen1M opens")
	storeHeapProfile = flag.String("geocdn.storeheapprofile", "", "write a heap profile to this file while BenchmarkStoreOpen1M holds its store open (distinct digests, with headers)")
)

// BenchmarkStoreOpen1M opens an edge store whose index holds a million
// objects (-geocdn.storeobjects) and reports what the in-memory index
// costs: B/object is the heap in use (after two runtime.GC) with the store
// open, less the heap in use before, divided by the number of objects;
// open-ms is openStore (the index read from bbolt into memory, the hash
// tree built, the blob directories scanned). Run it with -benchtime 1x.
//
// The index is written to index.db directly, in key order, as the store
// lays it out (bucketObjects under indexKey, the watermark, indexFormat):
// what a million applied log entries leave, written in seconds. Each
// object is 1 KiB of text/css with a Cache-Control header and a
// modification time, under a key like assets/123/0000123.css. Variants:
//
//   - distinct: every object its own content, so its own blob record (as
//     in production); the content itself is not on disk (a stored blob
//     adds only its file, which the open lists, to this figure).
//   - distinct-noheaders: the same index opened without Annotate, so
//     without the response headers the edge precomputes per version: the
//     difference is their share.
//   - shared: every object naming one content, so one blob record, as in
//     BenchmarkResync1M (origin/resync_bench_test.go).
//   - empty: an empty index, for the fixed cost (hot tier, tree).
func BenchmarkStoreOpen1M(b *testing.B) {
	n := *storeObjects
	dir := b.TempDir()
	distinct := filepath.Join(dir, "distinct")
	shared := filepath.Join(dir, "shared")
	empty := filepath.Join(dir, "empty")
	start := time.Now()
	writeBenchIndex(b, distinct, n, false)
	writeBenchIndex(b, shared, n, true)
	writeBenchIndex(b, empty, 0, true)
	b.Logf("two indexes of %d objects written in %v", n, time.Since(start).Round(time.Millisecond))
	for _, v := range []struct {
		name     string
		dir      string
		annotate func(*wire.LogEntry) any
		objects  int
	}{
		{"distinct", distinct, annotateHeaders, n},
		{"distinct-noheaders", distinct, nil, n},
		{"shared", shared, annotateHeaders, n},
		{"empty", empty, annotateHeaders, 0},
	} {
		b.Run(v.name, func(b *testing.B) {
			var open time.Duration
			var perObject, heap float64
			for range b.N {
				b.StopTimer()
				base := heapInUse()
				b.StartTimer()
				t0 := time.Now()
				s, err := openStore(storeConfig{Dir: v.dir, Logger: slog.New(slog.DiscardHandler), Annotate: v.annotate})
				if err != nil {
					b.Fatal(err)
				}
				open += time.Since(t0)
				b.StopTimer()
				if got := s.index.len(); got != v.objects {
					b.Fatalf("store holds %d objects, want %d", got, v.objects)
				}
				used := heapInUse()
				heap += float64(used-base) / (1 << 20)
				if v.objects > 0 {
					perObject += (float64(used) - float64(base)) / float64(v.objects)
				}
				if *storeHeapProfile != "" && v.name == "distinct" {
					writeHeapProfile(b, *storeHeapProfile)
				}
				runtime.KeepAlive(s)
				if err := s.close(); err != nil {
					b.Fatal(err)
				}
			}
			nn := float64(b.N)
			b.ReportMetric(float64(open.Milliseconds())/nn, "open-ms")
			b.ReportMetric(heap/nn, "heap-MiB")
			if v.objects > 0 {
				b.ReportMetric(perObject/nn, "B/object")
			}
		})
	}
}

// heapInUse is the heap in use after two collections.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

// writeBenchIndex writes an index of n objects, the watermark at the last
// LSN, in dir's index.db, as the store lays it out.
func writeBenchIndex(b *testing.B, dir string, n int, sharedDigest bool) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	type kv struct{ k, v []byte }
	all := make([]kv, n)
	mod := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for i := range all {
		e := wire.LogEntry{
			LSN: uint64(i + 1), Op: wire.OpPut, Namespace: "default",
			Key:  fmt.Sprintf("assets/%03d/%07d.css", i%1000, i),
			Size: 1024, ContentType: "text/css", CacheControl: "public, max-age=86400", ModTime: mod,
		}
		if sharedDigest {
			e.Digest = sha256.Sum256([]byte("shared"))
		} else {
			e.Digest = sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i)))
		}
		all[i] = kv{indexKey(objKey{e.Namespace, e.Key}), e.Append(nil)}
	}
	slices.SortFunc(all, func(a, b kv) int { return slices.Compare(a.k, b.k) })
	db, err := bbolt.Open(filepath.Join(dir, "index.db"), 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	const batch = 100_000
	for start := 0; start == 0 || start < n; start += batch {
		err := db.Update(func(tx *bbolt.Tx) error {
			objs, err := tx.CreateBucketIfNotExists(bucketObjects)
			if err != nil {
				return err
			}
			for _, e := range all[start:min(start+batch, n)] {
				if err := objs.Put(e.k, e.v); err != nil {
					return err
				}
			}
			if _, err := tx.CreateBucketIfNotExists(bucketBlobs); err != nil {
				return err
			}
			meta, err := tx.CreateBucketIfNotExists(bucketMeta)
			if err != nil {
				return err
			}
			if err := meta.Put(keyFormat, []byte{indexFormat}); err != nil {
				return err
			}
			return meta.Put(keyWatermark, binary.BigEndian.AppendUint64(nil, uint64(n)))
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if n > 0 {
		// Spot-check the layout against the store's own reader.
		if err := db.View(func(tx *bbolt.Tx) error {
			return aetree.ScanLeaves(tx.Bucket(bucketObjects), 0, 1, func(k, v []byte) error {
				_, err := wire.ParseLogEntry(v)
				return err
			})
		}); err != nil {
			b.Fatal(err)
		}
	}
}
