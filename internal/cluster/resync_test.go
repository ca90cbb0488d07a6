package cluster

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/geocdn/geocdn/edge"
	"github.com/geocdn/geocdn/internal/aetree"
	"github.com/geocdn/geocdn/internal/wire"
	"github.com/geocdn/geocdn/origin"
)

// Fault scenarios of anti-entropy: each damages an edge, runs one resync
// (or one reconnect, for a snapshot catch-up), and then requires the
// edge's index to equal the origin's catalog, every owed replica to be on
// its disk, and every body it serves to match its ETag.

// resyncObjects publishes n small objects and returns their bodies.
func resyncObjects(t *testing.T, c *Cluster, n int) map[string][]byte {
	t.Helper()
	bodies := make(map[string][]byte, n)
	for i := range n {
		key := fmt.Sprintf("ae/%03d.txt", i)
		body := []byte(strings.Repeat(fmt.Sprintf("object %d ", i), 50+i))
		mustPublish(t, c, key, body, "w=all")
		bodies[key] = body
	}
	return bodies
}

// checkConverged requires the edge's index to equal the origin's catalog,
// every owed version's content to be on disk, and every object to be
// served with a body that matches its ETag.
func checkConverged(t *testing.T, c *Cluster, en *EdgeNode) {
	t.Helper()
	want := map[string]wire.LogEntry{}
	if err := c.Origin().Objects(func(e wire.LogEntry) error {
		if e.Namespace == "default" {
			want[e.Key] = e
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got := map[string]edge.Holding{}
	for _, h := range en.Edge().Holdings() {
		if h.Entry.Namespace == "default" {
			got[h.Entry.Key] = h
		}
	}
	var diffs []string
	for k, w := range want {
		h, ok := got[k]
		switch {
		case !ok:
			diffs = append(diffs, "missing "+k)
		case h.Entry.LSN != w.LSN || h.Entry.Digest != w.Digest:
			diffs = append(diffs, fmt.Sprintf("%s at lsn %d, origin has %d", k, h.Entry.LSN, w.LSN))
		case h.Owed && !h.Present:
			diffs = append(diffs, "content of "+k+" owed and absent")
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, "extra "+k)
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Fatalf("%s has not converged: %d differences: %v", en.Spec.ID, len(diffs), diffs[:min(len(diffs), 20)])
	}
	for k, w := range want {
		g := get(t, en.URL+"/"+k, nil)
		if g.status != http.StatusOK {
			t.Fatalf("%s: GET %s: %d", en.Spec.ID, k, g.status)
		}
		if et := `"` + w.Digest.String() + `"`; g.hdr.Get("ETag") != et || `"`+digestOf(g.body)+`"` != et {
			t.Fatalf("%s: GET %s: ETag %s, body sha256 %s, origin %s", en.Spec.ID, k, g.hdr.Get("ETag"), digestOf(g.body), et)
		}
	}
}

func resync(t *testing.T, en *EdgeNode) wire.ResyncReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := en.Edge().Resync(ctx)
	if err != nil {
		t.Fatalf("%s: resync: %v (%+v)", en.Spec.ID, err, rep)
	}
	return rep
}

// A resync of an edge in sync costs one round trip of the root.
func TestResyncInSyncIsOneRoundTrip(t *testing.T) {
	c := startCluster(t, Config{})
	resyncObjects(t, c, 30)
	en := c.Edges()[0]
	rep := resync(t, en)
	if d := rep.Missing + rep.Stale + rep.Extra + rep.Metadata + rep.Corrupt; d != 0 {
		t.Fatalf("in-sync edge: %d differences: %+v", d, rep)
	}
	if rep.Bytes >= 1024 || rep.Entries != 0 {
		t.Fatalf("in-sync resync exchanged %d bytes and %d entries, want < 1 KiB and none", rep.Bytes, rep.Entries)
	}
	checkConverged(t, c, en)
}

// Fault 1: blob files deleted from an edge's disk.
func TestResyncRestoresDeletedBlobFiles(t *testing.T) {
	c := startCluster(t, Config{})
	bodies := resyncObjects(t, c, 40)
	en := c.Edges()[0]
	n := 0
	for key := range bodies {
		if n == 20 {
			break
		}
		d := digestOf(bodies[key])
		if err := os.Remove(filepath.Join(en.Dir(), "blobs", d[:2], d)); err != nil {
			t.Fatal(err)
		}
		n++
	}
	rep := resync(t, en)
	if rep.Missing != 20 || rep.Repaired < 20 || rep.Failed != 0 {
		t.Fatalf("report %+v, want 20 missing, repaired", rep)
	}
	checkConverged(t, c, en)
}

// Fault 3: index entries lost.
func TestResyncRestoresLostIndexEntries(t *testing.T) {
	c := startCluster(t, Config{})
	bodies := resyncObjects(t, c, 40)
	en := c.Edges()[1]
	if err := c.KillEdge(1); err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(filepath.Join(en.Dir(), "index.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	lost := 0
	err = db.Update(func(tx *bbolt.Tx) error {
		for key := range bodies {
			if lost == 10 {
				break
			}
			if err := tx.Bucket([]byte("objects")).Delete(aetree.Key("default", key)); err != nil {
				return err
			}
			lost++
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StartEdge(1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "edge back", func() bool { return en.Edge() != nil && en.Edge().Healthy() })
	if n := len(en.Edge().Holdings()); n >= 40 {
		t.Fatalf("edge holds %d entries after losing 10 of 40", n)
	}
	rep := resync(t, en)
	if rep.Metadata != 10 {
		t.Fatalf("report %+v, want 10 metadata differences", rep)
	}
	checkConverged(t, c, en)
}

// Fault 5: an edge restored from an old copy of its data directory holds
// objects deleted since and lacks ones published since.
func TestResyncHealsEdgeRestoredFromOldCopy(t *testing.T) {
	c := startCluster(t, Config{})
	bodies := resyncObjects(t, c, 20)
	en := c.Edges()[2]
	if err := c.KillEdge(2); err != nil {
		t.Fatal(err)
	}
	old := t.TempDir()
	if err := os.CopyFS(old, os.DirFS(en.Dir())); err != nil {
		t.Fatal(err)
	}
	if err := c.StartEdge(2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "edge back", func() bool { return en.Edge() != nil && en.Edge().Healthy() })
	// Changes the old copy does not know of.
	i := 0
	for key := range bodies {
		switch {
		case i < 5:
			deleteObject(t, c, key)
		case i < 10:
			mustPublish(t, c, key, []byte("republished "+key), "w=all")
		}
		i++
	}
	resyncObjectsFrom(t, c, 100, 5)
	if err := c.KillEdge(2); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(en.Dir()); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(en.Dir(), os.DirFS(old)); err != nil {
		t.Fatal(err)
	}
	if err := c.StartEdge(2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "edge back and caught up", func() bool {
		return en.Edge() != nil && en.Edge().Healthy() && en.Edge().Watermark() == c.Origin().LastLSN()
	})
	resync(t, en)
	checkConverged(t, c, en)
}

func resyncObjectsFrom(t *testing.T, c *Cluster, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		mustPublish(t, c, fmt.Sprintf("ae/%03d.txt", i), []byte(fmt.Sprintf("late object %d", i)), "w=all")
	}
}

func deleteObject(t *testing.T, c *Cluster, key string) {
	t.Helper()
	deleteVia(t, http.DefaultClient, c.OriginURL(), c.Token, key)
}

// deleteVia deletes key at the origin whose admin API is at originURL.
func deleteVia(t *testing.T, client *http.Client, originURL, token, key string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, originURL+"/v1/objects/"+key, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("delete %s: %d", key, resp.StatusCode)
	}
}

// churn is write n of a stream of publishes and purges over 500 keys;
// it may run on any goroutine.
func churn(c *Cluster, n int) error {
	key := fmt.Sprintf("churn/%04d", n%500)
	req, _ := http.NewRequest(http.MethodPut, c.OriginURL()+"/v1/objects/"+key, strings.NewReader(fmt.Sprintf("churn %d", n)))
	req.Header.Set("Content-Type", "text/plain")
	want := http.StatusCreated
	if n%4 == 3 {
		req, _ = http.NewRequest(http.MethodPost, c.OriginURL()+"/v1/purge", bytes.NewReader([]byte(`{"keys":["`+key+`"]}`)))
		req.Header.Set("Content-Type", "application/json")
		want = http.StatusOK
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != want && !(want == http.StatusOK && resp.StatusCode == http.StatusAccepted) {
		return fmt.Errorf("%s %s: %d", req.Method, key, resp.StatusCode)
	}
	return nil
}

// Fault 4: an edge away while the log moved far past the retention
// catches up by snapshot when it returns; objects deleted meanwhile are
// gone from it.
func TestSnapshotCatchUpPastCompactedLog(t *testing.T) {
	entries := 10_000
	if testing.Short() {
		entries = 2_000
	}
	retention := uint64(entries / 10)
	c := startCluster(t, Config{LogRetention: origin.LogRetention{Entries: retention}})
	bodies := resyncObjects(t, c, 30)
	en := c.Edges()[0]
	if err := c.KillEdge(0); err != nil {
		t.Fatal(err)
	}
	// Publishes, deletes and purges while the edge is away.
	start := c.Origin().LastLSN()
	var deleted []string
	i := 0
	for key := range bodies {
		if i%3 == 0 {
			deleteObject(t, c, key)
			deleted = append(deleted, key)
		}
		i++
	}
	// Eight writers: the origin commits one at a time, but their fsyncs
	// overlap with the next request's work.
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := w; c.Origin().LastLSN() < start+uint64(entries) && !t.Failed(); n += 8 {
				if err := churn(c, n); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if _, err := c.Origin().CompactLog(); err != nil {
		t.Fatal(err)
	}
	if first := c.Origin().FirstLSN(); first <= start+1 {
		t.Fatalf("log compacted to lsn %d, not past the edge's watermark %d", first, start)
	}
	if err := c.StartEdge(0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "edge caught up", func() bool {
		return en.Edge() != nil && en.Edge().Healthy() && en.Edge().Watermark() == c.Origin().LastLSN()
	})
	for _, key := range deleted {
		if g := get(t, en.URL+"/"+key, nil); g.status != http.StatusNotFound {
			t.Fatalf("deleted %s served with %d after snapshot catch-up", key, g.status)
		}
	}
	// The edge reconnects after the snapshot to follow the log from its
	// LSN; a resync that meets that reconnect fails and is run again.
	waitFor(t, "a resync after the catch-up", func() bool {
		_, err := en.Edge().Resync(context.Background())
		return err == nil
	})
	checkConverged(t, c, en)
}
