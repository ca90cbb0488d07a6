package edge

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/geocdn/geocdn/internal/scrub"
	"github.com/geocdn/geocdn/internal/wire"
)

// blobFile is where a store in dir keeps the blob d.
func blobFile(dir string, d wire.Digest) string {
	h := d.String()
	return filepath.Join(dir, "blobs", h[:2], h)
}

// flipByte flips one bit of the middle byte of a file in place, as bit rot
// would: same file, same size, other content.
func flipByte(t testing.TB, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	off := fi.Size() / 2
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// checkQuarantined requires the blob d to be out of the store and its
// file, as found, in quarantine/.
func checkQuarantined(t *testing.T, e *testEdge, dir, key string, d wire.Digest) {
	t.Helper()
	if _, err := os.Stat(blobFile(dir, d)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("blob file of %s after quarantine: %v, want it gone", key, err)
	}
	q, err := os.ReadFile(filepath.Join(dir, "quarantine", d.String()))
	if err != nil {
		t.Errorf("quarantined file of %s: %v", key, err)
	} else if digestOf(q) == d {
		t.Errorf("quarantined file of %s matches its digest, want the corrupt bytes", key)
	}
	if obj, ok := e.st.lookup("default", key); !ok || obj.Present {
		t.Errorf("lookup(%s) after quarantine: known %v, present %v; want known, absent", key, ok, obj.Present)
	}
}

// waitPass waits until the scrubber has finished pass n. In a synctest
// bubble the sleeps cost nothing, and they let the fake clock pay the
// scrubber's rate limit.
func waitPass(sc *scrub.Scrubber, n int) {
	for sc.Status().LastFullPass < n {
		time.Sleep(10 * time.Millisecond)
	}
}

// A blob whose file rots is found by the next scrub pass, quarantined and
// counted; the next GET fills it from the origin and serves it whole.
func TestScrubQuarantinesCorruptBlob(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		e := newTestEdge(t, storeConfig{Dir: dir}, 0)
		big := bytes.Repeat([]byte("scrub me "), 10<<10) // above the hot tier's limit
		small := []byte("a small object")
		ent := e.publish(t, 1, "scrub/big", big, true)
		e.publish(t, 2, "scrub/small", small, true)

		sc, err := e.st.newScrubber(0, time.Hour, nil, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		registerScrubMetrics(e.reg, sc)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc.Run(ctx)
		}()
		defer func() {
			cancel()
			<-done
		}()
		waitPass(sc, 1)
		if st := sc.Status(); st.LastFullPass != 1 || st.PassBlobs != 2 || st.CorruptTotal != 0 {
			t.Fatalf("first pass: %+v, want 2 blobs checked, none corrupt", st)
		}

		flipByte(t, blobFile(dir, ent.Digest))
		sc.Trigger()
		waitPass(sc, 2)
		if st := sc.Status(); st.LastFullPass != 2 || st.PassCorrupt != 1 || st.CorruptTotal != 1 {
			t.Fatalf("pass after the flip: %+v, want pass 2 with 1 corrupt", st)
		}
		checkQuarantined(t, e, dir, "scrub/big", ent.Digest)
		for _, m := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"geocdn_edge_scrub_corrupt_blobs_total", []string{"by", "scrub"}, 1},
			{"geocdn_edge_scrub_corrupt_blobs_total", []string{"by", "read"}, 0},
			{"geocdn_edge_scrub_bytes_total", nil, float64(2 * (len(big) + len(small)))},
			{"geocdn_edge_scrub_pass_progress", nil, 1},
		} {
			if got := e.metric(t, m.name, m.labels...); got != m.want {
				t.Errorf("%s%v = %v, want %v", m.name, m.labels, got, m.want)
			}
		}

		rec := e.do("GET", "/scrub/big")
		checkResponse(t, rec, http.StatusOK, string(big))
		checkHeaders(t, rec, map[string]string{"X-Cache": "MISS", "ETag": `"` + ent.Digest.String() + `"`})
		if got := e.origin.calls.Load(); got != 1 {
			t.Errorf("fills = %d, want 1", got)
		}
		if b, err := os.ReadFile(blobFile(dir, ent.Digest)); err != nil || !bytes.Equal(b, big) {
			t.Errorf("blob file after the fill: %d bytes, %v; want the content", len(b), err)
		}

		sc.Trigger()
		waitPass(sc, 3)
		if st := sc.Status(); st.LastFullPass != 3 || st.PassCorrupt != 0 || st.CorruptTotal != 1 {
			t.Fatalf("pass after the fill: %+v, want pass 3 with none corrupt", st)
		}
	})
}

// A small blob read from disk into the hot tier is checked first: one that
// rotted is never served or cached, but quarantined and filled again, on
// the fast path as on ServeHTTP, and so is one cut short.
func TestHotTierReadRefusesCorruptBlob(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fast   bool
		damage func(t testing.TB, path string)
	}{
		{"flipped", false, flipByte},
		{"flipped-fast", true, flipByte},
		{"truncated-fast", true, func(t testing.TB, path string) {
			if err := os.Truncate(path, 10); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			e := newTestEdge(t, storeConfig{Dir: dir}, 0)
			body := bytes.Repeat([]byte("small hot object "), 40)
			ent := e.publish(t, 1, "hot/rot", body, true)
			tc.damage(t, blobFile(dir, ent.Digest))

			url, _ := serveH1(t, e, tc.fast)
			c := &http.Client{}
			for i := range 3 {
				x := fetch(t, c, "GET", url+"/hot/rot")
				if x.status != http.StatusOK || !bytes.Equal(x.body, body) {
					t.Fatalf("GET %d: %d with %d bytes, want 200 with the %d published", i, x.status, len(x.body), len(body))
				}
				if etag, want := x.header.Get("ETag"), `"`+digestOf(x.body).String()+`"`; etag != want {
					t.Fatalf("GET %d: ETag %s, body's sha256 %s", i, etag, want)
				}
				e.st.hot.Wait()
			}
			if got := e.origin.calls.Load(); got != 1 {
				t.Errorf("fills = %d, want 1", got)
			}
			if got := e.metric(t, "geocdn_edge_scrub_corrupt_blobs_total", "by", "read"); got != 1 {
				t.Errorf("corrupt blobs found by a read = %v, want 1", got)
			}
			if _, err := os.Stat(filepath.Join(dir, "quarantine", ent.Digest.String())); err != nil {
				t.Errorf("quarantined file: %v", err)
			}
		})
	}
}

// Only the newest maxQuarantined files are kept in quarantine/.
func TestQuarantineKeepsTheNewest(t *testing.T) {
	e := newTestEdge(t, storeConfig{}, 0)
	var ents []wire.LogEntry
	for i := range maxQuarantined + 3 {
		body := bytes.Repeat([]byte{byte(i)}, 100)
		ents = append(ents, e.publish(t, uint64(i+1), "q/"+string(rune('a'+i%26))+string(rune('a'+i/26)), body, true))
	}
	qdir := e.st.quarantineDir()
	for i, ent := range ents {
		flipByte(t, e.st.blobPath(ent.Digest))
		e.st.recheck(ent.Digest, int64(ent.Size), "scrub")
		// Ordered by time of quarantine, which the clock may not tell apart.
		old := time.Date(2000, 1, 1, 0, 0, i, 0, time.UTC)
		if err := os.Chtimes(filepath.Join(qdir, ent.Digest.String()), old, old); err != nil {
			t.Fatal(err)
		}
	}
	names, err := os.ReadDir(qdir)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != maxQuarantined {
		t.Fatalf("%d files in quarantine, want %d", len(names), maxQuarantined)
	}
	for i, ent := range ents {
		_, err := os.Stat(filepath.Join(qdir, ent.Digest.String()))
		if kept := err == nil; kept != (i >= 3) {
			t.Errorf("quarantined blob %d kept = %v, want %v", i, kept, i >= 3)
		}
	}
	if got := e.metric(t, "geocdn_edge_scrub_corrupt_blobs_total", "by", "scrub"); got != float64(len(ents)) {
		t.Errorf("corrupt blobs = %v, want %d", got, len(ents))
	}
}
