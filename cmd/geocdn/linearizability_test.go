package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/geocdn/geocdn/internal/lincheck"
)

var (
	procLinSeeds = flag.Int("geocdn.procseeds", 1, "seeds of each TestProcessStrongLinearizable scenario")
	procLinTime  = flag.Duration("geocdn.proctime", 10*time.Second, "length of each TestProcessStrongLinearizable workload")
)

// TestProcessStrongLinearizable records histories of strong objects on the
// real binary, as separate processes on the real clock, and checks them
// with porcupine: one writer per key publishing 1, 2, 3, … with
// consistency=strong, and readers GETting random keys at random edges
// concurrently. The simulated-time histories of internal/cluster cannot
// see what only real scheduling and real fsyncs expose: the window between
// a strong write's catalog commit and its registration as pending, in
// which a fill was answered the new version as visible, has no length in
// simulated time.
//
// Scenarios: no fault; an edge killed (SIGKILL) and restarted mid-run; the
// origin killed and restarted mid-run; with three origins, the leader
// killed mid-run and restarted a second later. -geocdn.procseeds and
// -geocdn.proctime run more and longer.
func TestProcessStrongLinearizable(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 4 processes per scenario and runs each for seconds; not in -short")
	}
	scenarios := []struct {
		name    string
		origins int
		fault   func(t *testing.T, c *procCluster, rng *rand.Rand)
	}{
		{"no-fault", 1, nil},
		{"edge-killed", 1, func(t *testing.T, c *procCluster, rng *rand.Rand) {
			e := c.edges[rng.IntN(len(c.edges))]
			e.p.kill9(t)
			c.startEdge(e)
		}},
		{"origin-killed", 1, func(t *testing.T, c *procCluster, rng *rand.Rand) {
			c.origin.kill9(t)
			c.startOrigin()
		}},
		// Three origins: the leader is killed (SIGKILL) mid-run, another
		// takes over, and the killed one comes back as a follower.
		{"leader-killed", 3, func(t *testing.T, c *procCluster, rng *rand.Rand) {
			var leader *originNode
			for _, n := range c.originNodes {
				if leader = leaderOf(c, c.originNodes, n); leader != nil {
					break
				}
			}
			if leader == nil {
				t.Error("leader-killed: no leader to kill")
				return
			}
			leader.p.kill9(t)
			leader.p.wait(t)
			time.Sleep(time.Second)
			c.startOriginNode(leader)
		}},
	}
	total := 0
	for i, sc := range scenarios {
		for n := range *procLinSeeds {
			seed := uint64(n*len(scenarios) + i)
			t.Run(fmt.Sprintf("%s/seed=%d", sc.name, seed), func(t *testing.T) {
				h, st := procLinHistory(t, seed, sc.origins, sc.fault)
				total += len(h)
				t.Logf("seed %d: %d operations (%+v)", seed, len(h), st)
				res, err := lincheck.Check(h, time.Minute, lincheck.HistoryDir(t.ArtifactDir()), fmt.Sprintf("process-linearizability-%s-seed%d", sc.name, seed))
				if err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				if res == porcupine.Unknown {
					t.Logf("seed %d: linearizability check timed out", seed)
				}
			})
		}
	}
	t.Logf("%d histories, %d operations checked in all", len(scenarios)**procLinSeeds, total)
}

// edgeAddr is an edge as the readers see it.
type edgeAddr struct{ id, url string }

// procLinStats counts what the clients of one history saw.
type procLinStats struct {
	WritesOK, WritesUnknown, WritesRefused  atomic.Int64
	ReadsOK, ReadsAbsent, Reads5xx, Dropped atomic.Int64
}

func (s *procLinStats) String() string {
	return fmt.Sprintf("writes %d ok %d unknown %d not sent; reads %d ok %d 404 %d 5xx %d dropped",
		s.WritesOK.Load(), s.WritesUnknown.Load(), s.WritesRefused.Load(), s.ReadsOK.Load(), s.ReadsAbsent.Load(), s.Reads5xx.Load(), s.Dropped.Load())
}

// procLinHistory runs one workload on a fresh cluster of processes and
// returns its history. fault, if not nil, runs once, a third of the way
// in, while the clients keep going.
func procLinHistory(t *testing.T, seed uint64, origins int, fault func(*testing.T, *procCluster, *rand.Rand)) ([]porcupine.Operation, *procLinStats) {
	const (
		writers = 3 // one per key
		readers = 6
		// Bounds on each client besides the workload's length.
		maxWrites = 5000
		maxReads  = 20000
	)
	c := newCluster(t)
	c.addEdge("e1", "eu-west", 51.51, -0.13)
	c.addEdge("e2", "us-east", 40.71, -74.01)
	c.addEdge("e3", "ap-northeast", 35.68, 139.69)
	// Writers publish through any origin: one, or each of a cluster's in
	// turn (followers forward to the leader).
	var originURLs []string
	if origins == 1 {
		c.start("--lease", "2s")
		originURLs = []string{c.originURL()}
	} else {
		nodes := c.startOrigins(origins, "--lease", "2s")
		c.origin = nodes[0].p
		for _, e := range c.edges {
			c.startEdge(e)
		}
		c.waitAllUp()
		for _, n := range nodes {
			originURLs = append(originURLs, n.url())
		}
	}

	client := &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 2 * (writers + readers), DisableCompression: true},
		Timeout:   time.Minute, // guards a hang only
	}
	defer client.CloseIdleConnections()
	rec := lincheck.NewRecorder()
	st := &procLinStats{}
	keys := make([]string, writers)
	for i := range keys {
		keys[i] = fmt.Sprintf("lin/k%d", i)
	}
	// Read once, like the edges' addresses: a restarted origin binds the
	// same ports.
	write := func(w int, n int, key, value string) {
		call := rec.Now()
		a, err := publishStrong(client, originURLs[(w+n)%len(originURLs)], c.token, key, value)
		ret := rec.Now()
		var op *net.OpError
		switch {
		case err == nil && a.status == http.StatusCreated:
			rec.Write(w, key, value, call, ret, true, "201")
			st.WritesOK.Add(1)
		case errors.As(err, &op) && op.Op == "dial", err == nil && a.status == http.StatusServiceUnavailable && !a.res.Committed:
			// Never sent (the origin is down), or refused before commit:
			// the write did not happen. Recording it as unknown would be
			// true too, but thousands of them make the check explode.
			st.WritesRefused.Add(1)
			time.Sleep(50 * time.Millisecond)
		case err != nil || a.status == http.StatusGatewayTimeout || a.status == http.StatusBadGateway || a.status == http.StatusInternalServerError:
			// Lost with the origin, or committed but not visible within
			// the publish timeout, or leadership changed while it was
			// being committed (500), or a forward to the leader broke
			// (502): it may take effect later, or never.
			rec.Write(w, key, value, call, ret, false, fmt.Sprintf("unknown: status %d err %v", a.status, err))
			st.WritesUnknown.Add(1)
		default:
			t.Errorf("strong publish %s=%s: status %d %+v", key, value, a.status, a.res)
		}
	}
	read := func(r int, e edgeAddr, key string) {
		call := rec.Now()
		resp, err := client.Get(e.url + "/" + key)
		if err != nil {
			st.Dropped.Add(1) // the edge is down: nothing observed
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		ret := rec.Now()
		if err != nil {
			st.Dropped.Add(1)
			return
		}
		meta := fmt.Sprintf("%s %d %s", e.id, resp.StatusCode, resp.Header.Get("Cache-Status"))
		switch {
		case resp.StatusCode == http.StatusOK:
			rec.Read(r, key, string(body), call, ret, meta)
			st.ReadsOK.Add(1)
		case resp.StatusCode == http.StatusNotFound:
			rec.Read(r, key, lincheck.Absent, call, ret, meta)
			st.ReadsAbsent.Add(1)
		case resp.StatusCode >= 500:
			st.Reads5xx.Add(1) // cut off or restarting: nothing observed
		default:
			t.Errorf("GET %s/%s: status %d %q", e.id, key, resp.StatusCode, body)
		}
	}

	start := time.Now()
	end := start.Add(*procLinTime)
	var wg sync.WaitGroup
	for w, key := range keys {
		wg.Go(func() {
			for n := 1; n <= maxWrites && time.Now().Before(end); n++ {
				write(w, n, key, fmt.Sprintf("s%d-%d", seed, n))
			}
		})
	}
	// The edges a reader may pick are read once, before a fault may
	// restart one: a restart changes the process, not the address.
	var edges []edgeAddr
	for _, e := range c.edges {
		edges = append(edges, edgeAddr{e.id, e.url()})
	}
	for r := range readers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(r)+1))
			for n := 0; n < maxReads && time.Now().Before(end); n++ {
				read(writers+r, edges[rng.IntN(len(edges))], keys[rng.IntN(len(keys))])
			}
		})
	}
	if fault != nil {
		wg.Go(func() {
			time.Sleep(*procLinTime / 3)
			fault(t, c, rand.New(rand.NewPCG(seed, 0)))
		})
	}
	wg.Wait()

	// Once every node is back, each edge must serve each key's last
	// visible version: these reads pin down the end of the history.
	c.waitAllUp()
	for _, e := range edges {
		for _, k := range keys {
			read(writers+readers, e, k)
		}
	}
	if st.WritesOK.Load() == 0 || st.ReadsOK.Load() == 0 {
		t.Fatalf("no acknowledged write or successful read (%v): the history checks nothing", st)
	}
	return rec.History(), st
}

// publishStrong publishes value under key with consistency=strong.
func publishStrong(client *http.Client, originURL, token, key, value string) (publishAnswer, error) {
	req, err := http.NewRequest(http.MethodPut, originURL+"/v1/objects/"+key+"?consistency=strong", strings.NewReader(value))
	if err != nil {
		return publishAnswer{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := client.Do(req)
	if err != nil {
		return publishAnswer{}, err
	}
	defer resp.Body.Close()
	a := publishAnswer{status: resp.StatusCode}
	if err := json.NewDecoder(resp.Body).Decode(&a.res); err != nil {
		return a, fmt.Errorf("decode publish answer: %w", err)
	}
	return a, nil
}
