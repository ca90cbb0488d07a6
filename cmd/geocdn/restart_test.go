package main

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/geocdn/geocdn/origin"
)

// keyHistory is what the publishers know about one key. Every key is
// written by one goroutine only, so its publishes are ordered: some
// acknowledged, then at most one whose answer the kill swallowed.
type keyHistory struct {
	acked   string // digest of the last publish answered 201; "" if none
	unknown string // digest of a later publish with no answer; "" if none
	hasUnk  bool
}

// TestOriginKill9KeepsEveryAcknowledgedPublish SIGKILLs the origin process
// in the middle of a stream of publishes, restarts it on the same data
// directory and addresses, and checks that every acknowledged publish is
// there, intact, and that both edges converge to serve exactly what the
// origin holds.
func TestOriginKill9KeepsEveryAcknowledgedPublish(t *testing.T) {
	seeds := make([]uint64, 0, *seedsFlag)
	switch {
	case *seedFlag != 0:
		seeds = append(seeds, *seedFlag)
	case testing.Short():
		seeds = append(seeds, 1)
	default:
		for s := 1; s <= *seedsFlag; s++ {
			seeds = append(seeds, uint64(s))
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { kill9Run(t, seed) })
	}
}

func kill9Run(t *testing.T, seed uint64) {
	const (
		publishers   = 4
		maxPublishes = 400
		maxSize      = 64 << 10
	)
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	killAfter := 50 + rng.IntN(200) // acknowledged publishes before the kill

	c := newCluster(t)
	edges := []*edgeNode{
		c.addEdge("iad", "us-east", 38.90, -77.04),
		c.addEdge("nrt", "ap-northeast", 35.68, 139.69),
	}
	c.start()
	t.Logf("seed %d: SIGKILL after %d acknowledged publishes", seed, killAfter)

	var (
		attempts, acks atomic.Int64
		killed         atomic.Bool
		killOnce       sync.Once
		killNow        = make(chan struct{})
		mu             sync.Mutex
		hist           = map[string]*keyHistory{}
		wg             sync.WaitGroup
	)
	for g := range publishers {
		grng := rand.New(rand.NewPCG(seed, uint64(g)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []string
			for attempts.Add(1) <= maxPublishes {
				key := fmt.Sprintf("s%d/g%d/%03d.bin", seed, g, len(mine))
				if len(mine) > 0 && grng.IntN(4) == 0 {
					key = mine[grng.IntN(len(mine))] // an update of a key of ours
				} else {
					mine = append(mine, key)
				}
				body := randomBytes(grng, grng.IntN(maxSize+1))
				d := digestOf(body)
				query := ""
				if grng.IntN(4) == 0 {
					query = "w=1"
				}
				mu.Lock()
				h := hist[key]
				if h == nil {
					h = &keyHistory{}
					hist[key] = h
				}
				h.unknown, h.hasUnk = d, true
				mu.Unlock()

				a, err := c.publish(key, body, query)
				if err != nil || a.status != 201 {
					if !killed.Load() {
						t.Errorf("publish %s before the kill: status %d, %v", key, a.status, err)
					}
					return // the origin is gone: this one's outcome is unknown
				}
				if a.res.Digest != d {
					t.Errorf("publish %s: answered digest %s, want %s", key, a.res.Digest, d)
				}
				mu.Lock()
				h.acked, h.unknown, h.hasUnk = d, "", false
				mu.Unlock()
				if acks.Add(1) == int64(killAfter) {
					killOnce.Do(func() { close(killNow) })
				}
			}
		}()
	}
	var killedAt int64
	select {
	case <-killNow:
		killed.Store(true) // before the signal, so every failure it causes sees it
		c.origin.signal(t, syscall.SIGKILL)
		killedAt = acks.Load()
	case <-waitGroupDone(&wg):
		t.Fatalf("every publish finished before %d were acknowledged", killAfter)
	}
	wg.Wait()
	c.origin.wait(t)
	if t.Failed() {
		return
	}
	unknown := 0
	for _, h := range hist {
		if h.hasUnk {
			unknown++
		}
	}
	t.Logf("seed %d: %d keys, %d publishes acknowledged (%d when the signal went), %d unanswered",
		seed, len(hist), acks.Load(), killedAt, unknown)
	c.http.CloseIdleConnections()

	c.startOrigin()

	// Every acknowledged publish survived, byte for byte. A publish in
	// flight at the kill may or may not have committed.
	keys := make([]string, 0, len(hist))
	for k := range hist {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	expect := map[string]string{}
	landed := 0
	for _, k := range keys {
		h := hist[k]
		d, err := c.originObject(k)
		if err != nil {
			t.Fatalf("origin after restart: %v", err)
		}
		ok := d == h.acked || (h.hasUnk && d == h.unknown)
		if !ok {
			t.Errorf("origin after restart serves %s with digest %q; acknowledged %q, unacknowledged in flight %q",
				k, d, h.acked, h.unknown)
		}
		if h.hasUnk && d == h.unknown && d != h.acked {
			landed++
		}
		expect[k] = d
	}
	if t.Failed() {
		return
	}
	t.Logf("seed %d: %d of the unanswered publishes had committed", seed, landed)

	// Both edges reconnect and converge to the origin's state.
	for _, e := range edges {
		next := 0 // keys before it are served as expected
		waitFor(t, e.id+" serving every key as the origin does", func() bool {
			for ; next < len(keys); next++ {
				if !c.edgeServes(e, keys[next], expect[keys[next]]) {
					return false
				}
			}
			return true
		}, e.p, c.origin)
	}
	c.waitAllUp()
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n+7)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	return b[:n]
}

func waitGroupDone(wg *sync.WaitGroup) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		wg.Wait()
		close(ch)
	}()
	return ch
}

// TestEdgesReconnectAfterOriginRestart: after a kill -9 and a restart of
// the origin on the same addresses, both edge processes come back on their
// own and a w=all publish reaches them.
func TestEdgesReconnectAfterOriginRestart(t *testing.T) {
	c := newCluster(t)
	c.addEdge("iad", "us-east", 38.90, -77.04)
	c.addEdge("fra", "eu-central", 50.11, 8.68)
	c.start()
	before := c.mustPublish("before.txt", []byte("published before the crash"), "w=all")

	c.origin.kill9(t)
	c.http.CloseIdleConnections()
	// The edges lose their lease once the origin stops answering.
	for _, e := range c.edges {
		waitFor(t, e.id+" unhealthy without its origin", func() bool { return c.healthz(e) == 503 }, e.p)
	}
	restarted := time.Now()
	c.startOrigin()
	for _, e := range c.edges {
		c.waitEdgeHealthy(e)
		t.Logf("%s healthy %v after the origin restarted", e.id, time.Since(restarted).Round(time.Millisecond))
	}
	c.waitAllUp()
	t.Logf("origin lists both edges up %v after it restarted", time.Since(restarted).Round(time.Millisecond))

	body := []byte("published after the restart")
	res := c.mustPublish("after.txt", body, "w=all")
	acked := slices.Sorted(slices.Values(res.Acked))
	if !slices.Equal(acked, []string{"fra", "iad"}) {
		t.Fatalf("w=all after restart acked %v, want [fra iad]", res.Acked)
	}
	if res.LSN <= before.LSN {
		t.Fatalf("LSN after restart %d, want more than %d", res.LSN, before.LSN)
	}
	for _, e := range c.edges {
		g, err := c.get(e.url()+"/after.txt", false)
		if err != nil {
			t.Fatal(err)
		}
		if g.status != 200 || string(g.body) != string(body) || g.hdr.Get("X-Cache") != "HIT" || g.hdr.Get("ETag") != `"`+res.Digest+`"` {
			t.Errorf("%s: status %d X-Cache %q ETag %q body %q, want 200 HIT %q", e.id, g.status, g.hdr.Get("X-Cache"), g.hdr.Get("ETag"), g.body, body)
		}
		if !c.edgeServes(e, "before.txt", before.Digest) {
			t.Errorf("%s no longer serves before.txt", e.id)
		}
	}
	for _, st := range c.edgesStatus() {
		if st.State != origin.EdgeUp || st.Watermark > res.LSN {
			t.Errorf("after the restart: %+v", st)
		}
	}
}
