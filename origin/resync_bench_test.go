package origin_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/geocdn/geocdn/internal/aetree"
	"github.com/geocdn/geocdn/internal/cluster"
	"github.com/geocdn/geocdn/internal/wire"
	"github.com/geocdn/geocdn/origin"
)

var resyncObjects = flag.Int("geocdn.resyncobjects", 1_000_000, "objects on the origin and the edge in BenchmarkResync1M")

// BenchmarkResync1M measures anti-entropy, snapshot catch-up and restarts
// of one edge holding as many objects as its origin, a million by default
// (-geocdn.resyncobjects), over loopback QUIC with an in-process cluster.
// Run it with -benchtime 1x: the set-up takes about a minute, and each
// sub-benchmark reports its own figures (b.ReportMetric).
//
// Set-up: one object is published with w=all, so the edge stores its
// blob; the edge is stopped; then a million more keys naming that same
// content are committed to the origin's catalog (BulkLoadCatalog: the
// commit path's own steps, batched, as a million publishes of one body
// would have left it) and the log is compacted past the edge's watermark.
// Every key is owed by the edge (Replicas: every edge), and its content is
// on its disk, so no step fetches content and what is measured is the
// index, the hash tree and the exchange.
//
//   - snapshot: the edge, an index of one key and a watermark far behind
//     the compacted log, starts and catches up by snapshot. entries/s is
//     the catalog's size over the time from the start to caught up and
//     serving; report-ms is the edge's own duration of the exchange.
//   - restart: the edge is stopped and started again on its data
//     directory. open-ms is edge.New (the index loaded), serve-ms the
//     time until it answers a GET with 200, lease-ms until it is healthy
//     (connected, lease held); B/object is the heap in use (after two
//     runtime.GC) with the edge running, less the heap in use with it
//     stopped, divided by the number of objects.
//   - resync/diffs=D: D differences are made in the edge's index while
//     it is stopped (half the entries deleted, a quarter set back to an
//     older LSN, a quarter of keys the origin never had added); it is
//     started and caught up, then Edge.Resync runs once, timed (ns/op,
//     and edge-ms, the edge's own measure, which leaves out the report's
//     round trip). bytes is what the exchange moved both ways (the
//     report's count, content aside); listing-% compares it with a full
//     listing of the catalog's tuples (namespace, key, LSN, digest in
//     LeafTuples frames: what comparing without a tree would send).
//     round-trips counts the requests of the exchange, worked out from
//     the leaves the differences fall in with the protocol's limits
//     (MaxNodesPerRequest, wire.MaxLeaves, wire.MaxEntryRequest); every
//     request waits for the answer to the one before. The report, sent
//     after, takes one more on a stream of its own (in ns/op, not in
//     edge-ms).
func BenchmarkResync1M(b *testing.B) {
	n := *resyncObjects
	rb := startResyncBench(b, n)
	b.Run("snapshot", rb.benchSnapshot)
	b.Run("restart", rb.benchRestart)
	for _, d := range []int{0, 100, 10_000} {
		if d > n/2 {
			continue
		}
		b.Run(fmt.Sprintf("resync/diffs=%d", d), func(b *testing.B) { rb.benchResync(b, d) })
	}
}

const (
	benchNS  = "default"
	seedKey  = "seed/object"
	seedSize = 1024
)

// benchKey is the key of bulk object i: a path of a typical length.
func benchKey(i int) string { return fmt.Sprintf("assets/%03d/%07d.css", i%1000, i) }

type resyncBench struct {
	c       *cluster.Cluster
	n       int
	seed    wire.LogEntry // the published object every bulk key copies
	client  *http.Client
	listing int // bytes of a full tuple listing of the catalog
	// victims is the next bulk key index the damage of a resync run starts
	// from, so that runs damage different keys.
	victims int
	// caughtUp is set once the edge holds the whole catalog.
	caughtUp bool
}

// ensureCaughtUp starts the edge, if it is not caught up with the catalog
// yet (a sub-benchmark run alone), and waits until it is.
func (rb *resyncBench) ensureCaughtUp(b *testing.B) {
	if rb.caughtUp {
		return
	}
	b.StopTimer()
	defer b.StartTimer()
	c, en := rb.c, rb.c.Edges()[0]
	if en.Edge() == nil {
		if err := c.StartEdge(0); err != nil {
			b.Fatal(err)
		}
	}
	waitUntil(b, "snapshot catch-up", 10*time.Minute, func() bool {
		ed := en.Edge()
		return ed.Healthy() && ed.Watermark() == c.Origin().LastLSN() && len(ed.Holdings()) == rb.n+1
	})
	// A push the origin offered while the edge was catching up waits up
	// to 5 s (edge pushLogWait) for the log, and stopping the edge waits
	// for it: let such waits end before anything stops the edge.
	time.Sleep(6 * time.Second)
	rb.caughtUp = true
}

func startResyncBench(b *testing.B, n int) *resyncBench {
	dir := b.TempDir()
	c, err := cluster.Start(cluster.Config{
		Dir:   dir,
		Edges: []cluster.EdgeSpec{{ID: "e1", Region: "local"}},
		// Keep only the last entry: the edge, back, is far behind.
		LogRetention:   origin.LogRetention{Entries: 1},
		ResyncInterval: 24 * time.Hour,
		Logger:         slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	rb := &resyncBench{c: c, n: n, client: &http.Client{Timeout: 5 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true}}}
	en := c.Edges()[0]
	waitUntil(b, "edge healthy", time.Minute, func() bool { return en.Edge().Healthy() })
	rb.publish(b, seedKey, strings.Repeat("s", seedSize))
	err = c.Origin().Objects(func(e wire.LogEntry) error {
		if e.Key == seedKey {
			rb.seed = e
		}
		return nil
	})
	if err != nil || rb.seed.LSN == 0 {
		b.Fatalf("seed object not in the catalog: %v", err)
	}
	waitUntil(b, "seed object on the edge", time.Minute, func() bool { return rb.status(b, seedKey) == http.StatusOK })

	if err := c.KillEdge(0); err != nil {
		b.Fatal(err)
	}
	if err := c.StopOrigin(); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	// Committed in the catalog's key order (leaf first), so that bbolt
	// appends rather than splits pages at random: the same catalog, built
	// faster.
	keys := make([]string, n)
	for i := range keys {
		keys[i] = string(aetree.Key(benchNS, benchKey(i)))
	}
	slices.Sort(keys)
	_, last, err := origin.BulkLoadCatalog(filepath.Join(dir, "origin"), n, 50_000, func(i int) wire.LogEntry {
		e := rb.seed
		e.LSN = 0
		_, e.Key, _ = aetree.SplitKey([]byte(keys[i]))
		return e
	})
	if err != nil {
		b.Fatal(err)
	}
	keys = nil
	b.Logf("bulk load: %d objects committed in %v (last lsn %d)", n, time.Since(start).Round(time.Millisecond), last)
	start = time.Now()
	if err := c.StartOrigin(); err != nil {
		b.Fatal(err)
	}
	b.Logf("origin open with %d objects (catalog read, hash tree built): %v", n+1, time.Since(start).Round(time.Millisecond))
	if _, err := c.Origin().CompactLog(); err != nil {
		b.Fatal(err)
	}
	if c.Origin().FirstLSN() <= rb.seed.LSN+1 {
		b.Fatalf("log starts at %d, not past the edge's watermark %d", c.Origin().FirstLSN(), rb.seed.LSN)
	}
	rb.listing = fullListingBytes(b, c.Origin())
	b.Logf("full listing of %d tuples: %d bytes (%.1f MiB)", n+1, rb.listing, float64(rb.listing)/(1<<20))
	return rb
}

func (rb *resyncBench) publish(b *testing.B, key, body string) {
	req, _ := http.NewRequest(http.MethodPut, rb.c.OriginURL()+"/v1/objects/"+key+"?w=all", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+rb.c.Token)
	req.Header.Set("Content-Type", "text/css")
	req.Header.Set("Cache-Control", "public, max-age=86400")
	resp, err := rb.client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b.Fatalf("publish %s: %d", key, resp.StatusCode)
	}
}

// status GETs key from the edge and returns the status, 0 if it failed.
func (rb *resyncBench) status(b *testing.B, key string) int {
	resp, err := rb.client.Get(rb.c.Edges()[0].URL + "/" + key)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// fullListingBytes is the size of the LeafTuples frames that list every
// tuple of the catalog, cut as the origin cuts them (at wire.MaxTuples or
// 64 KiB of payload), with one ResyncEnd.
func fullListingBytes(b *testing.B, o *origin.Origin) int {
	const maxTupleFrame = 64 << 10
	total := 0
	var batch []wire.Tuple
	size := 0
	flush := func() {
		if len(batch) > 0 {
			total += len(wire.AppendFrame(nil, wire.LeafTuples{Tuples: batch}))
		}
		batch, size = batch[:0], 0
	}
	err := o.Objects(func(e wire.LogEntry) error {
		t := wire.Tuple{Namespace: e.Namespace, Key: e.Key, LSN: e.LSN, Digest: e.Digest}
		k := wire.TupleLen(t)
		if len(batch) == wire.MaxTuples || (len(batch) > 0 && size+k > maxTupleFrame) {
			flush()
		}
		batch = append(batch, t)
		size += k
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	flush()
	return total + len(wire.AppendFrame(nil, wire.ResyncEnd{LSN: o.LastLSN()}))
}

// benchSnapshot times snapshot catch-ups of the whole catalog.
func (rb *resyncBench) benchSnapshot(b *testing.B) {
	c, en := rb.c, rb.c.Edges()[0]
	var total, report time.Duration
	var bytes, entries uint64
	for range b.N {
		b.StopTimer()
		if err := c.KillEdge(0); err != nil {
			b.Fatal(err)
		}
		rb.resetEdgeIndex(b, en.Dir())
		b.StartTimer()
		start := time.Now()
		if err := c.StartEdge(0); err != nil {
			b.Fatal(err)
		}
		var rep *origin.ResyncStatus
		waitUntil(b, "snapshot catch-up", 10*time.Minute, func() bool {
			ed := en.Edge()
			if ed.Watermark() < c.Origin().LastLSN() || !ed.Healthy() {
				return false
			}
			rep = lastResync(c.Origin(), en.Spec.ID)
			return rep != nil && rep.Snapshot && rep.At.After(start)
		})
		took := time.Since(start)
		b.StopTimer()
		if rep.Error != "" || rep.Failed != 0 {
			b.Fatalf("snapshot catch-up failed: %+v", rep)
		}
		if got := len(en.Edge().Holdings()); got != rb.n+1 {
			b.Fatalf("edge holds %d keys after the catch-up, want %d", got, rb.n+1)
		}
		d, _ := time.ParseDuration(rep.Duration)
		total += took
		report += d
		bytes += rep.Bytes
		entries += rep.Entries
	}
	// Caught up, but with a push the origin offered meanwhile perhaps
	// still waiting: ensureCaughtUp waits for it.
	rb.caughtUp = false
	nn := float64(b.N)
	b.ReportMetric(float64(rb.n+1)/(total.Seconds()/nn), "entries/s")
	b.ReportMetric(float64(total.Milliseconds())/nn, "catchup-ms")
	b.ReportMetric(float64(report.Milliseconds())/nn, "report-ms")
	b.ReportMetric(float64(entries)/nn, "entries")
	b.ReportMetric(float64(bytes)/nn/1e6, "wire-MB")
}

// resetEdgeIndex makes the stopped edge's index what it was before the
// bulk load: the seed object alone, its blob recorded, the watermark at
// the seed's LSN, so that it is far behind the compacted log.
func (rb *resyncBench) resetEdgeIndex(b *testing.B, dir string) {
	db, err := bbolt.Open(filepath.Join(dir, "index.db"), 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		if err := tx.DeleteBucket([]byte("objects")); err != nil {
			return err
		}
		objs, err := tx.CreateBucket([]byte("objects"))
		if err != nil {
			return err
		}
		if err := objs.Put(aetree.Key(benchNS, seedKey), rb.seed.Append(nil)); err != nil {
			return err
		}
		meta := tx.Bucket([]byte("meta"))
		if err := meta.Delete([]byte("snapshot")); err != nil {
			return err
		}
		return meta.Put([]byte("watermark"), be64(rb.seed.LSN))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		b.Fatalf("reset the edge's index: %v", err)
	}
}

func be64(v uint64) []byte {
	return []byte{byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

func lastResync(o *origin.Origin, id string) *origin.ResyncStatus {
	for _, e := range o.Edges() {
		if e.ID == id {
			return e.LastResync
		}
	}
	return nil
}

// heapInUse is the heap in use after two collections.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// benchRestart stops and starts the edge on its data directory.
func (rb *resyncBench) benchRestart(b *testing.B) {
	c, en := rb.c, rb.c.Edges()[0]
	rb.ensureCaughtUp(b)
	var closing, open, serve, lease time.Duration
	var perObject, heap float64
	for range b.N {
		b.StopTimer()
		start := time.Now()
		if err := c.KillEdge(0); err != nil {
			b.Fatal(err)
		}
		closing += time.Since(start)
		base := heapInUse()
		b.StartTimer()
		start = time.Now()
		if err := c.StartEdge(0); err != nil {
			b.Fatal(err)
		}
		open += time.Since(start)
		waitUntil(b, "edge serves", time.Minute, func() bool { return rb.status(b, seedKey) == http.StatusOK })
		serve += time.Since(start)
		waitUntil(b, "edge healthy", time.Minute, func() bool { return en.Edge().Healthy() })
		lease += time.Since(start)
		b.StopTimer()
		if got := len(en.Edge().Holdings()); got != rb.n+1 {
			b.Fatalf("edge holds %d keys after the restart, want %d", got, rb.n+1)
		}
		used := heapInUse()
		heap += float64(used) / (1 << 20)
		perObject += (float64(used) - float64(base)) / float64(rb.n+1)
	}
	nn := float64(b.N)
	b.ReportMetric(float64(open.Milliseconds())/nn, "open-ms")
	b.ReportMetric(float64(serve.Milliseconds())/nn, "serve-ms")
	b.ReportMetric(float64(lease.Milliseconds())/nn, "lease-ms")
	b.ReportMetric(float64(closing.Milliseconds())/nn, "close-ms")
	b.ReportMetric(perObject/nn, "B/object")
	b.ReportMetric(heap/nn, "heap-MiB")
}

// benchResync runs resyncs that find d differences.
func (rb *resyncBench) benchResync(b *testing.B, d int) {
	c, en := rb.c, rb.c.Edges()[0]
	rb.ensureCaughtUp(b)
	var bytes, entries, edgeMS uint64
	var trips int
	for range b.N {
		b.StopTimer()
		want := 0
		if d > 0 {
			trips += rb.damage(b, d)
			want = d
		} else {
			trips += resyncRoundTrips(nil, nil) // the root
		}
		waitUntil(b, "edge caught up", time.Minute, func() bool {
			ed := en.Edge()
			return ed != nil && ed.Healthy() && ed.Watermark() == c.Origin().LastLSN()
		})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		b.StartTimer()
		rep, err := en.Edge().Resync(ctx)
		b.StopTimer()
		cancel()
		if err != nil {
			b.Fatalf("resync: %v (%+v)", err, rep)
		}
		diffs := rep.Missing + rep.Stale + rep.Extra + rep.Metadata + rep.Corrupt
		if diffs != uint64(want) || rep.Repaired != uint64(want) || rep.Failed != 0 {
			b.Fatalf("resync found %d differences and repaired %d, want %d: %+v", diffs, rep.Repaired, want, rep)
		}
		bytes += rep.Bytes
		entries += rep.Entries
		edgeMS += rep.DurationMillis
	}
	nn := float64(b.N)
	b.ReportMetric(float64(d), "diffs")
	b.ReportMetric(float64(bytes)/nn, "bytes")
	b.ReportMetric(100*float64(bytes)/nn/float64(rb.listing), "listing-%")
	b.ReportMetric(float64(rb.listing), "listing-bytes")
	b.ReportMetric(float64(trips)/nn, "round-trips")
	b.ReportMetric(float64(entries)/nn, "entries")
	b.ReportMetric(float64(edgeMS)/nn, "edge-ms")
}

// damage stops the edge, makes d differences in its index (half the keys
// deleted, a quarter set back to an older LSN, a quarter added that the
// origin never had), starts it again, and returns the round trips the
// resync that repairs them takes.
func (rb *resyncBench) damage(b *testing.B, d int) int {
	en := rb.c.Edges()[0]
	if err := rb.c.KillEdge(0); err != nil {
		b.Fatal(err)
	}
	stride := rb.n / d
	first := rb.victims
	rb.victims++
	fetch := map[uint32]int{} // leaf → entries the edge asks for
	diffLeaves := map[uint32]bool{}
	db, err := bbolt.Open(filepath.Join(en.Dir(), "index.db"), 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		objs := tx.Bucket([]byte("objects"))
		for j := range d {
			key := benchKey((first + j*stride) % rb.n)
			k := aetree.Key(benchNS, key)
			leaf := aetree.Leaf(benchNS, key)
			switch j % 4 {
			case 0, 1: // an index entry lost
				if err := objs.Delete(k); err != nil {
					return err
				}
				fetch[leaf]++
				diffLeaves[leaf] = true
			case 2: // an older version
				e, err := wire.ParseLogEntry(objs.Get(k))
				if err != nil {
					return fmt.Errorf("%s: %w", key, err)
				}
				e.LSN--
				if err := objs.Put(k, e.Append(nil)); err != nil {
					return err
				}
				fetch[leaf]++
				diffLeaves[leaf] = true
			case 3: // a key the origin does not have
				e := rb.seed
				e.Key = "extra/" + key
				if err := objs.Put(aetree.Key(benchNS, e.Key), e.Append(nil)); err != nil {
					return err
				}
				diffLeaves[aetree.Leaf(benchNS, e.Key)] = true
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		b.Fatalf("damage the edge's index: %v", err)
	}
	if err := rb.c.StartEdge(0); err != nil {
		b.Fatal(err)
	}
	return resyncRoundTrips(diffLeaves, fetch)
}

// resyncRoundTrips counts the requests of a resync whose trees differ in
// the leaves diff, fetch[l] keys of leaf l needing their entries, as
// edge.compare makes them: aetree.Descend asks for the root, then for the
// children of every node that differs, level by level, at most
// aetree.MaxNodesPerRequest nodes a request; then the differing leaves'
// tuples, wire.MaxLeaves leaves a request, and for each such batch the
// entries to fetch, wire.MaxEntryRequest keys a request. Each request
// waits for the answer to the one before, so each is a round trip. (The
// report then takes one more, on a stream of its own, after the edge has
// timed the exchange.)
func resyncRoundTrips(diff map[uint32]bool, fetch map[uint32]int) int {
	leaves := make([]uint32, 0, len(diff))
	for l := range diff {
		leaves = append(leaves, l)
	}
	slices.Sort(leaves)
	perReq := func(n, limit int) int { return (n + limit - 1) / limit }
	trips := 0
	frontier := 1
	for level := 0; level <= aetree.Depth && frontier > 0; level++ {
		trips += perReq(frontier, aetree.MaxNodesPerRequest)
		if len(leaves) == 0 {
			break
		}
		// Nodes of this level that differ: those with a differing leaf
		// below them.
		differ := map[uint32]bool{}
		for _, l := range leaves {
			differ[l>>(4*uint(aetree.Depth-level))] = true
		}
		frontier = aetree.Fanout * len(differ)
	}
	for start := 0; start < len(leaves); start += wire.MaxLeaves {
		trips++
		n := 0
		for _, l := range leaves[start:min(start+wire.MaxLeaves, len(leaves))] {
			n += fetch[l]
		}
		trips += perReq(n, wire.MaxEntryRequest)
	}
	return trips
}

func waitUntil(b *testing.B, what string, timeout time.Duration, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out after %v waiting for: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
