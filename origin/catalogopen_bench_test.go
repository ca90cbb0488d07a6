package origin

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/geocdn/geocdn/internal/wire"
)

// BenchmarkCatalogOpen measures what NoFreelistSync costs: the catalog
// (and raft's log) open with bbolt's freelist rebuilt by scanning every
// page, in exchange for commits that never write it. It opens a catalog
// of n objects with the origin's options and with the freelist synced, and
// reports the file size beside the open times.
//
//	go test -run XXX -bench CatalogOpen -benchtime 5x ./origin/
func BenchmarkCatalogOpen(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		dir := b.TempDir()
		seed := &testStore{dir: dir}
		seed.reopen(b)
		e := seed.put(b, "seed", "seed content")
		if err := seed.store.close(); err != nil {
			b.Fatal(err)
		}
		if _, _, err := BulkLoadCatalog(dir, n, 50_000, func(i int) wire.LogEntry {
			c := e
			c.LSN, c.Key = 0, fmt.Sprintf("objects/%08d/index.html", i)
			return c
		}); err != nil {
			b.Fatal(err)
		}
		path := filepath.Join(dir, "catalog.db")
		for _, c := range []struct {
			name string
			opts *bolt.Options
		}{
			{"freelist-rebuilt", boltOptions()},
			{"freelist-synced", &bolt.Options{Timeout: 2 * time.Second}},
		} {
			b.Run(fmt.Sprintf("objects=%d/%s", n, c.name), func(b *testing.B) {
				var size int64
				for b.Loop() {
					db, err := bolt.Open(path, 0o600, c.opts)
					if err != nil {
						b.Fatal(err)
					}
					db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
					db.Close()
				}
				b.ReportMetric(float64(size)/(1<<20), "MiB")
			})
		}
	}
}
