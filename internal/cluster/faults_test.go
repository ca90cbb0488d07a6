package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/pattern"
	"github.com/geocdn/geocdn/origin"
)

// Fault scenarios: bulk pushes next to control traffic, a full edge disk,
// an origin restart and an edge that was away. They assert outcomes and
// orders of events, never how long something took.

// events records the origin's replication events in emission order. The
// cluster hands the same callback to every origin it starts, so the log
// spans restarts.
type events struct {
	mu  sync.Mutex
	evs []origin.Event
}

func (l *events) add(ev origin.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, ev)
}

// mark is a position in the log, for "since" queries.
func (l *events) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.evs)
}

// index returns the position of the first event at or after from that is
// of kind, for edge and lsn, or -1.
func (l *events) index(from int, kind origin.EventKind, edge string, lsn uint64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := from; i < len(l.evs); i++ {
		if ev := l.evs[i]; ev.Kind == kind && ev.Edge == edge && ev.LSN == lsn {
			return i
		}
	}
	return -1
}

// all returns the events at or after from for which match is true.
func (l *events) all(from int, match func(origin.Event) bool) []origin.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []origin.Event
	for _, ev := range l.evs[from:] {
		if match(ev) {
			out = append(out, ev)
		}
	}
	return out
}

var twoEdges = []EdgeSpec{
	{ID: "fra", Region: "eu-central", Lat: 50.11, Lon: 8.68},
	{ID: "sin", Region: "ap-southeast", Lat: 1.35, Lon: 103.82},
}

// publishStream PUTs size bytes from body with a known length, so nothing
// is buffered on the way.
func publishStream(c *Cluster, key string, body io.Reader, size int64, query string) (publishAnswer, error) {
	u := c.OriginURL() + "/v1/objects/" + key
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequest(http.MethodPut, u, body)
	if err != nil {
		return publishAnswer{}, err
	}
	req.ContentLength = size
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return publishAnswer{}, err
	}
	defer resp.Body.Close()
	a := publishAnswer{status: resp.StatusCode, lsn: resp.Header.Get("GeoCDN-LSN")}
	if err := json.NewDecoder(resp.Body).Decode(&a.res); err != nil {
		return a, fmt.Errorf("status %d, decoding the answer: %w", a.status, err)
	}
	return a, nil
}

// getDigest GETs url streaming the body through sha256.
func getDigest(t *testing.T, url string) (status int, digest string, n int64, xCache string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err = io.Copy(h, resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, hex.EncodeToString(h.Sum(nil)), n, resp.Header.Get("X-Cache")
}

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// leaseWatch samples every edge's own lease (Healthy) and the origin's view
// of it (state) until stopped, and remembers every sample where either
// was lost.
type leaseWatch struct {
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	samples  int
	lapses   []string
}

func watchLeases(c *Cluster) *leaseWatch {
	w := &leaseWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			w.samples++
			states := make(map[string]origin.EdgeState)
			if o := c.Origin(); o != nil {
				for _, st := range o.Edges() {
					states[st.ID] = st.State
				}
			}
			for _, en := range c.Edges() {
				e := en.Edge()
				switch {
				case e == nil:
					w.lapses = append(w.lapses, en.Spec.ID+": not running")
				case !e.Healthy():
					w.lapses = append(w.lapses, fmt.Sprintf("%s: edge lost its lease (origin says %s)", en.Spec.ID, states[en.Spec.ID]))
				case states[en.Spec.ID] != origin.EdgeUp:
					w.lapses = append(w.lapses, fmt.Sprintf("%s: origin state %q", en.Spec.ID, states[en.Spec.ID]))
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return w
}

// finish stops sampling and returns what was seen. It may be called more
// than once.
func (w *leaseWatch) finish() (samples int, lapses []string) {
	w.stopOnce.Do(func() { close(w.stop) })
	<-w.done
	return w.samples, w.lapses
}

// bulkSize is the size of the bulk object: 256 MiB, or 64 MiB under the
// race detector or -short. The race detector makes QUIC several times
// slower (256 MiB to two edges took 20 to 40 s on two cores), and 64 MiB
// still keeps the push running for a few lease terms there.
// GEOCDN_BULK_MIB overrides both.
func bulkSize(t *testing.T) int64 {
	if v := os.Getenv("GEOCDN_BULK_MIB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("GEOCDN_BULK_MIB=%q: want a positive number of MiB", v)
		}
		return int64(n) << 20
	}
	size := int64(256 << 20)
	if testing.Short() || raceEnabled() {
		size = 64 << 20
	}
	t.Logf("bulk object: %d MiB", size>>20)
	return size
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// TestBulkPushDoesNotDelayControlTraffic publishes a 256 MiB object with
// w=all to two edges on a 1 s lease and, for as long as the push runs,
// checks that no edge loses its lease, neither in its own view nor in the
// origin's. Small objects published in the middle of the push must reach
// the edges (stored, then served as hits) before the big push completes.
func TestBulkPushDoesNotDelayControlTraffic(t *testing.T) {
	size := bulkSize(t)
	ev := &events{}
	c := startCluster(t, Config{
		Edges: twoEdges, LeaseTerm: time.Second, PublishTimeout: 3 * time.Minute,
		MaxObjectSize: size, OnEvent: ev.add,
	})
	before := c.Origin().LastLSN()
	watch := watchLeases(c)
	defer watch.finish()

	// The test hashes the body as it streams out, so the content is never
	// held in memory.
	sum := sha256.New()
	big := make(chan publishAnswer, 1)
	bigErr := make(chan error, 1)
	go func() {
		a, err := publishStream(c, "bulk/big.bin", io.TeeReader(pattern.NewReader(size, 1), sum), size, "w=all")
		if err != nil {
			bigErr <- err
			return
		}
		big <- a
	}()

	// Once the big object is committed its push starts; wait until both
	// edges are receiving it, then publish small objects beside it.
	waitFor(t, "the big object committed", func() bool {
		select {
		case err := <-bigErr:
			t.Fatalf("big publish: %v", err)
		default:
		}
		return c.Origin().LastLSN() > before
	})
	bigLSN := before + 1
	committed := time.Now()
	for _, en := range c.Edges() {
		waitFor(t, en.Spec.ID+" receiving the big object", func() bool {
			tmp, _ := filepath.Glob(filepath.Join(en.dir, "blobs", "tmp", "blob-*"))
			return len(tmp) > 0 || ev.index(0, origin.EventPushStored, en.Spec.ID, bigLSN) >= 0
		})
		if ev.index(0, origin.EventPushStored, en.Spec.ID, bigLSN) >= 0 {
			t.Fatalf("%s stored the whole big object before the small publishes could start", en.Spec.ID)
		}
	}
	type small struct {
		key  string
		body []byte
		res  origin.PublishResult
	}
	var smalls []small
	for i := range 5 {
		s := small{key: fmt.Sprintf("bulk/small-%d.txt", i), body: fmt.Appendf(nil, "small object %d published during the bulk push\n", i)}
		s.res = mustPublish(t, c, s.key, s.body, "w=all")
		if len(s.res.Acked) != 2 {
			t.Fatalf("small publish %s acked %v, want both edges", s.key, s.res.Acked)
		}
		smalls = append(smalls, s)
	}
	for _, en := range c.Edges() {
		for _, s := range smalls {
			g := get(t, en.URL+"/"+s.key, nil)
			if g.status != http.StatusOK || string(g.body) != string(s.body) || g.hdr.Get("X-Cache") != "HIT" {
				t.Fatalf("%s GET %s: status %d X-Cache %q body %q, want a 200 HIT with the published body", en.Spec.ID, s.key, g.status, g.hdr.Get("X-Cache"), g.body)
			}
		}
	}
	// Every small object was stored and served while the big push was
	// still running: its stored event has not been emitted yet.
	for _, en := range c.Edges() {
		if ev.index(0, origin.EventPushStored, en.Spec.ID, bigLSN) >= 0 {
			t.Errorf("%s: the big push completed before the small objects were served", en.Spec.ID)
		}
	}

	var a publishAnswer
	select {
	case a = <-big:
	case err := <-bigErr:
		t.Fatalf("big publish: %v", err)
	}
	samples, lapses := watch.finish()
	t.Logf("the push took %v after commit", time.Since(committed).Round(time.Millisecond))
	if a.status != http.StatusCreated || a.res.LSN != bigLSN || len(a.res.Acked) != 2 {
		t.Fatalf("big publish: status %d lsn %d acked %v (%s), want 201 at lsn %d acked by both edges", a.status, a.res.LSN, a.res.Acked, a.res.Error, bigLSN)
	}
	want := hexSum(sum)
	if a.res.Digest != want || a.res.Size != uint64(size) {
		t.Fatalf("big publish: digest %s size %d, want %s %d", a.res.Digest, a.res.Size, want, size)
	}
	t.Logf("lease sampled %d times during the push", samples)
	if len(lapses) > 0 {
		t.Errorf("control traffic was held up during the bulk push: %d of %d samples lost a lease, first: %s", len(lapses), samples, lapses[0])
	}
	for _, en := range c.Edges() {
		// The publish returns once the acks are counted, which may be just
		// before the events are emitted.
		if got := waitPush(t, ev, 0, en.Spec.ID, bigLSN); got.Kind != origin.EventPushStored {
			t.Fatalf("%s: big push: %v %v", en.Spec.ID, got.Kind, got.Err)
		}
		bigAt := ev.index(0, origin.EventPushStored, en.Spec.ID, bigLSN)
		for _, s := range smalls {
			if got := waitPush(t, ev, 0, en.Spec.ID, s.res.LSN); got.Kind != origin.EventPushStored {
				t.Fatalf("%s: push of %s: %v %v", en.Spec.ID, s.key, got.Kind, got.Err)
			}
			if at := ev.index(0, origin.EventPushStored, en.Spec.ID, s.res.LSN); at > bigAt {
				t.Errorf("%s: %s stored at event %d, after the big object at %d; want the small one first", en.Spec.ID, s.key, at, bigAt)
			}
		}
		status, digest, n, xc := getDigest(t, en.URL+"/bulk/big.bin")
		if status != http.StatusOK || digest != want || n != size || xc != "HIT" {
			t.Errorf("%s GET big: status %d, %d bytes, digest %s, X-Cache %q; want a 200 HIT of %d bytes, digest %s", en.Spec.ID, status, n, digest, xc, size, want)
		}
	}
}

// waitPush waits until the origin has reported a push of lsn to edge as
// stored or failed, at or after event from, and returns that event.
func waitPush(t *testing.T, ev *events, from int, edge string, lsn uint64) origin.Event {
	t.Helper()
	var got origin.Event
	waitFor(t, fmt.Sprintf("the push of lsn %d to %s to end", lsn, edge), func() bool {
		evs := ev.all(from, func(e origin.Event) bool {
			return e.Edge == edge && e.LSN == lsn && (e.Kind == origin.EventPushStored || e.Kind == origin.EventPushFailed)
		})
		if len(evs) == 0 {
			return false
		}
		got = evs[0]
		return true
	})
	return got
}

// TestDiskFullRefusesPushAndWNeverCountsIt gives every edge 64 KiB of disk
// and publishes 128 KiB with w=1: each edge must refuse the push, so the
// publish times out with 504, committed, and no edge counted. Objects that
// fit keep working.
func TestDiskFullRefusesPushAndWNeverCountsIt(t *testing.T) {
	ev := &events{}
	c := startCluster(t, Config{Edges: twoEdges, DiskBytes: 64 << 10, PublishTimeout: 2 * time.Second, OnEvent: ev.add})
	from := ev.mark()
	big := make([]byte, 128<<10)
	io.ReadFull(pattern.NewReader(int64(len(big)), 2), big)
	a := publish(t, c, "full/big.bin", big, "w=1", nil)
	if a.status != http.StatusGatewayTimeout || !a.res.Committed || a.res.Acked == nil || len(a.res.Acked) != 0 {
		t.Fatalf("publish 128 KiB w=1 onto 64 KiB edges: status %d committed %v acked %v (%s), want 504, committed, acked []", a.status, a.res.Committed, a.res.Acked, a.res.Error)
	}
	if len(a.res.Replicas) != 2 {
		t.Errorf("replicas %v, want both edges", a.res.Replicas)
	}
	for _, en := range c.Edges() {
		got := waitPush(t, ev, from, en.Spec.ID, a.res.LSN)
		if got.Kind != origin.EventPushFailed {
			t.Fatalf("%s: push of a 128 KiB object onto 64 KiB of disk reported %v", en.Spec.ID, got.Kind)
		}
		t.Logf("%s refused the push: %v", en.Spec.ID, got.Err)
		waitFor(t, en.Spec.ID+" applying the log entry", func() bool { return en.Edge().Watermark() >= a.res.LSN })
		// The edge cannot hold the object; whatever it answers, it is
		// never a hit, and never wrong bytes.
		g := get(t, en.URL+"/full/big.bin", nil)
		if g.hdr.Get("X-Cache") == "HIT" || (g.status == http.StatusOK && digestOf(g.body) != a.res.Digest) {
			t.Fatalf("%s GET of the refused object: status %d X-Cache %q body digest %s", en.Spec.ID, g.status, g.hdr.Get("X-Cache"), digestOf(g.body))
		}
		t.Logf("%s GET of the refused object: %d %s", en.Spec.ID, g.status, strings.TrimSpace(string(g.body)))
	}
	if evs := ev.all(from, func(e origin.Event) bool { return e.Kind == origin.EventPushStored && e.LSN == a.res.LSN }); len(evs) > 0 {
		t.Fatalf("an edge reported storing the object its disk cannot hold: %+v", evs)
	}

	// Objects that fit are still pushed, stored and served.
	for i := range 2 {
		key := fmt.Sprintf("full/small-%d.bin", i)
		body := make([]byte, 16<<10)
		io.ReadFull(pattern.NewReader(int64(len(body)), uint64(10+i)), body)
		mark := ev.mark()
		res := mustPublish(t, c, key, body, "w=0")
		for _, en := range c.Edges() {
			if got := waitPush(t, ev, mark, en.Spec.ID, res.LSN); got.Kind != origin.EventPushStored {
				t.Fatalf("%s: push of 16 KiB %s: %v %v", en.Spec.ID, key, got.Kind, got.Err)
			}
			g := get(t, en.URL+"/"+key, nil)
			if g.status != http.StatusOK || g.hdr.Get("X-Cache") != "HIT" || digestOf(g.body) != res.Digest {
				t.Fatalf("%s GET %s: status %d X-Cache %q, want a 200 HIT of the published bytes", en.Spec.ID, key, g.status, g.hdr.Get("X-Cache"))
			}
		}
	}
}

// TestEdgesCatchUpAfterOriginRestart stops the origin, checks that nothing
// can be published and that the edges notice, restarts it, and checks that
// the edges reconnect and hold, as hits, what was published before the stop,
// right after the restart (while they were still away) and once they were
// back.
func TestEdgesCatchUpAfterOriginRestart(t *testing.T) {
	ev := &events{}
	c := startCluster(t, Config{Edges: twoEdges, LeaseTerm: time.Second, OnEvent: ev.add})
	objects := map[string][]byte{
		"restart/before.txt": []byte("published before the origin stopped\n"),
		"restart/away.txt":   []byte("published while the edges were still away\n"),
		"restart/after.txt":  []byte("published once the edges were back\n"),
	}
	before := mustPublish(t, c, "restart/before.txt", objects["restart/before.txt"], "w=all")
	if len(before.Acked) != 2 {
		t.Fatalf("w=all acked %v, want both edges", before.Acked)
	}

	originURL := c.OriginURL()
	if err := c.StopOrigin(); err != nil {
		t.Fatalf("stop origin: %v", err)
	}
	req, err := http.NewRequest(http.MethodPut, originURL+"/v1/objects/restart/impossible.txt", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("publish with the origin stopped: status %d, want no answer", resp.StatusCode)
	}
	waitFor(t, "every edge to lose its lease", func() bool {
		for _, en := range c.Edges() {
			if en.Edge().Healthy() {
				return false
			}
		}
		return true
	})
	// An eventual object is still served while the edges are cut off.
	for _, en := range c.Edges() {
		if g := get(t, en.URL+"/restart/before.txt", nil); g.status != http.StatusOK || string(g.body) != string(objects["restart/before.txt"]) {
			t.Errorf("%s GET while cut off: status %d body %q", en.Spec.ID, g.status, g.body)
		}
	}

	restarted := time.Now()
	if err := c.StartOrigin(); err != nil {
		t.Fatalf("restart origin: %v", err)
	}
	away := mustPublish(t, c, "restart/away.txt", objects["restart/away.txt"], "w=0")
	waitFor(t, "every edge leased again and up at the origin", func() bool {
		for _, en := range c.Edges() {
			if !en.Edge().Healthy() || edgeState(t, c, en.Spec.ID) != origin.EdgeUp {
				return false
			}
		}
		return true
	})
	t.Logf("edges reconnected %v after the origin restarted", time.Since(restarted).Round(time.Millisecond))
	after := mustPublish(t, c, "restart/after.txt", objects["restart/after.txt"], "w=all")
	if len(after.Acked) != 2 {
		t.Fatalf("w=all after the restart acked %v, want both edges", after.Acked)
	}
	for _, en := range c.Edges() {
		if got := waitPush(t, ev, 0, en.Spec.ID, away.LSN); got.Kind != origin.EventPushStored {
			t.Fatalf("%s: push of %s after the restart: %v %v", en.Spec.ID, away.Key, got.Kind, got.Err)
		}
		if wm := en.Edge().Watermark(); wm < after.LSN {
			t.Errorf("%s: watermark %d, want at least %d", en.Spec.ID, wm, after.LSN)
		}
		for key, body := range objects {
			g := get(t, en.URL+"/"+key, nil)
			if g.status != http.StatusOK || string(g.body) != string(body) || g.hdr.Get("X-Cache") != "HIT" {
				t.Errorf("%s GET %s: status %d X-Cache %q body %q, want a 200 HIT", en.Spec.ID, key, g.status, g.hdr.Get("X-Cache"), g.body)
			}
		}
	}
}

// TestKilledEdgeCatchesUpFromItsWatermark kills an edge, publishes 20
// objects while it is down, starts it again and checks that the origin
// pushes every one of them from the edge's watermark (hinted handoff), so
// that each is a hit on its first request.
func TestKilledEdgeCatchesUpFromItsWatermark(t *testing.T) {
	ev := &events{}
	c := startCluster(t, Config{Edges: twoEdges, LeaseTerm: time.Second, OnEvent: ev.add})
	const victim = 1
	down := c.Edges()[victim]
	early := mustPublish(t, c, "handoff/early.txt", []byte("held before the edge went down"), "w=all")
	if err := c.KillEdge(victim); err != nil {
		t.Fatalf("kill %s: %v", down.Spec.ID, err)
	}
	waitFor(t, "origin marks "+down.Spec.ID+" down", func() bool { return edgeState(t, c, down.Spec.ID) == origin.EdgeDown })

	type object struct {
		key  string
		body []byte
		lsn  uint64
	}
	var objs []object
	for i := range 20 {
		o := object{key: fmt.Sprintf("handoff/%02d.txt", i), body: fmt.Appendf(nil, "object %d, published while %s was down\n", i, down.Spec.ID)}
		res := mustPublish(t, c, o.key, o.body, "w=all")
		if len(res.Acked) != 1 || res.Acked[0] == down.Spec.ID {
			t.Fatalf("w=all with %s down acked %v, want only the live edge", down.Spec.ID, res.Acked)
		}
		o.lsn = res.LSN
		objs = append(objs, o)
	}

	mark := ev.mark()
	if err := c.StartEdge(victim); err != nil {
		t.Fatalf("start %s: %v", down.Spec.ID, err)
	}
	for _, o := range objs {
		if got := waitPush(t, ev, mark, down.Spec.ID, o.lsn); got.Kind != origin.EventPushStored {
			t.Fatalf("%s: handoff of %s: %v %v", down.Spec.ID, o.key, got.Kind, got.Err)
		}
	}
	waitFor(t, down.Spec.ID+" applying the log", func() bool { return down.Edge().Watermark() >= objs[len(objs)-1].lsn })
	objs = append(objs, object{key: "handoff/early.txt", body: []byte("held before the edge went down"), lsn: early.LSN})
	for _, o := range objs {
		g := get(t, down.URL+"/"+o.key, nil)
		if g.status != http.StatusOK || string(g.body) != string(o.body) || g.hdr.Get("X-Cache") != "HIT" {
			t.Errorf("%s first GET %s: status %d X-Cache %q body %q, want a 200 HIT", down.Spec.ID, o.key, g.status, g.hdr.Get("X-Cache"), g.body)
		}
	}
}
