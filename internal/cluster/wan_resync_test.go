package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/geocdn/geocdn/origin"
)

// Anti-entropy over the simulated WAN, in simulated time: Sydney is cut
// off while objects are deleted and republished and the log is compacted
// past its watermark; back, it catches up by snapshot. Then blob files are
// deleted from its disk, and one resync restores them. An in-sync resync
// takes one round trip. Every body served is checked against its ETag.
func TestWANResyncAndSnapshot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := startHealthyWAN(t, WANConfig{
			LeaseTerm: 2 * time.Second, PublishTimeout: 10 * time.Second,
			Edges:        []WANEdge{{"lhr", "London"}, {"syd", "Sydney"}},
			LogRetention: origin.LogRetention{Entries: 20},
		})
		keys := map[string][]byte{}
		for i := range 30 {
			k := fmt.Sprintf("w/%02d", i)
			keys[k] = []byte(strings.Repeat(k, 100+i))
			wanPublish(t, w, k, keys[k], "w=all")
		}
		syd := w.Edge("syd")
		if err := w.Partition("syd"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "origin marks syd down", func() bool { return wanEdgeState(w, "syd") == origin.EdgeDown })
		for i := range 10 {
			k := fmt.Sprintf("w/%02d", i)
			deleteVia(t, w.Client, w.OriginURL(), w.Token, k)
			delete(keys, k)
		}
		for i := 10; i < 40; i++ {
			k := fmt.Sprintf("w/%02d", i)
			keys[k] = []byte("republished " + k)
			wanPublish(t, w, k, keys[k], "")
		}
		if _, err := w.Origin().CompactLog(); err != nil {
			t.Fatal(err)
		}
		if err := w.Heal("syd"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "syd caught up by snapshot, owed content fetched", func() bool {
			ed := syd.Edge()
			return wanEdgeState(w, "syd") == origin.EdgeUp && ed.Healthy() && ed.Watermark() == w.Origin().LastLSN() &&
				heldWrongly(syd, keys) == ""
		})
		// It reconnects after the snapshot to follow the log from there;
		// a resync that meets that reconnect fails and is run again.
		waitFor(t, "a resync after the catch-up", func() bool {
			_, err := syd.Edge().Resync(context.Background())
			return err == nil
		})
		wanCheckConverged(t, w, syd, keys)

		// Blob files deleted behind the edge's back.
		n := 0
		for _, b := range keys {
			d := digestOf(b)
			if err := os.Remove(filepath.Join(syd.Dir(), "blobs", d[:2], d)); err == nil {
				n++
			}
			if n == 10 {
				break
			}
		}
		rep, err := syd.Edge().Resync(context.Background())
		if err != nil {
			t.Fatalf("resync: %v (%+v)", err, rep)
		}
		if rep.Missing != uint64(n) || rep.Failed != 0 {
			t.Fatalf("resync report %+v, want %d missing and none failed", rep, n)
		}
		wanCheckConverged(t, w, syd, keys)

		rtt, _ := w.Net.Matrix().RTT("Washington DC", "Sydney")
		start := time.Now()
		rep, err = syd.Edge().Resync(context.Background())
		took := time.Since(start)
		if err != nil || rep.Entries != 0 || rep.Bytes >= 1024 {
			t.Fatalf("in-sync resync: %+v, %v", rep, err)
		}
		t.Logf("in-sync resync of syd: %v simulated (RTT %v), %d bytes", took, rtt, rep.Bytes)
		if took > 4*rtt {
			t.Errorf("in-sync resync took %v, more than a few round trips of %v", took, rtt)
		}
	})
}

// wanCheckConverged requires en's index to name exactly the keys of want,
// at the origin's versions, with every owed content on disk, and every
// body served to match its ETag and want.
func wanCheckConverged(t *testing.T, w *WAN, en *EdgeNode, want map[string][]byte) {
	t.Helper()
	if msg := heldWrongly(en, want); msg != "" {
		t.Fatal(msg)
	}
	for k, body := range want {
		g := wanGet(t, w, en.URL+"/"+k)
		if g.status != 200 || digestOf(g.body) != digestOf(body) || g.hdr.Get("ETag") != `"`+digestOf(body)+`"` {
			t.Fatalf("%s: GET %s: %d, ETag %s, body sha256 %s", en.Spec.ID, k, g.status, g.hdr.Get("ETag"), digestOf(g.body))
		}
	}
}

// heldWrongly describes the first way en's index differs from want, or
// is "" if it holds exactly want with every owed content on disk.
func heldWrongly(en *EdgeNode, want map[string][]byte) string {
	held := map[string]bool{}
	for _, h := range en.Edge().Holdings() {
		if h.Entry.Namespace != "default" {
			continue
		}
		if _, ok := want[h.Entry.Key]; !ok {
			return fmt.Sprintf("%s still holds %s, deleted at the origin", en.Spec.ID, h.Entry.Key)
		}
		if h.Entry.Digest.String() != digestOf(want[h.Entry.Key]) || (h.Owed && !h.Present) {
			return fmt.Sprintf("%s holds %s wrongly: %+v", en.Spec.ID, h.Entry.Key, h)
		}
		held[h.Entry.Key] = true
	}
	for k := range want {
		if !held[k] {
			return fmt.Sprintf("%s lacks %s", en.Spec.ID, k)
		}
	}
	return ""
}
