package cluster

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/geocdn/geocdn/internal/lincheck"
)

// The default keeps `make test` fast; soak runs raise it.
var linSeeds = flag.Int("geocdn.linseeds", 5, "seeds of TestWANStrongLinearizable to run")

// linRecorder is a history with counts of what the clients saw.
type linRecorder struct {
	*lincheck.Recorder

	mu    sync.Mutex
	stats linStats
}

type linStats struct {
	writesOK, writesUnknown      int
	readsOK, readsAbsent, reads5 int
	readsDropped                 int // transport errors: edge down
	faults                       int
	purges                       int
}

func (r *linRecorder) count(f func(*linStats)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.stats)
}

// linWrite publishes value for key with consistency=strong and records
// it. A 201 returned after the write became visible everywhere; a 504 or
// a transport error leaves the write committed or not, visible later or
// not: its outcome is unknown.
func linWrite(t *testing.T, w *WAN, rec *linRecorder, client int, key, value string) {
	req, err := http.NewRequest(http.MethodPut, w.OriginURL()+"/v1/objects/"+key+"?consistency=strong", bytes.NewReader([]byte(value)))
	if err != nil {
		t.Error(err)
		return
	}
	req.Header.Set("Authorization", "Bearer "+w.Token)
	req.Header.Set("Content-Type", "text/plain")
	// Taken before the request leaves: the write may apply as soon as
	// the origin has it.
	call := rec.Now()
	resp, err := w.Client.Do(req)
	status := 0
	var raw []byte
	if err == nil {
		raw, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		status = resp.StatusCode
	}
	// Taken after the whole answer is in: the write may not be visible
	// before that.
	ret := rec.Now()
	switch {
	case err == nil && status == http.StatusCreated:
		rec.Write(client, key, value, call, ret, true, "201")
		rec.count(func(s *linStats) { s.writesOK++ })
	case err != nil || status == http.StatusGatewayTimeout:
		rec.Write(client, key, value, call, ret, false, fmt.Sprintf("unknown outcome: status %d err %v", status, err))
		rec.count(func(s *linStats) { s.writesUnknown++ })
	default:
		t.Errorf("strong publish %s=%q: status %d %s", key, value, status, raw)
	}
}

// linPurge purges key at every edge (soft: marks it stale), waiting or not
// for the edges; it records no operation, since a purge changes no value.
func linPurge(t *testing.T, w *WAN, key string, soft bool, rec *linRecorder) {
	u := w.OriginURL() + "/v1/purge?wait=true"
	if soft {
		u += "&soft=true"
	}
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(`{"keys":["`+key+`"]}`))
	if err != nil {
		t.Error(err)
		return
	}
	req.Header.Set("Authorization", "Bearer "+w.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.Client.Do(req)
	if err != nil {
		return // the origin was unreachable: nothing was purged, or it was
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("purge %s: status %d", key, resp.StatusCode)
	}
	rec.count(func(s *linStats) { s.purges++ })
}

// linRead reads key at edge e and records what it saw. A 5xx observed
// nothing and is dropped; a 404 observed the key absent.
func linRead(t *testing.T, w *WAN, rec *linRecorder, client int, e *EdgeNode, key string) {
	call := rec.Now()
	resp, err := w.Client.Get(e.URL + "/" + key)
	if err != nil {
		rec.count(func(s *linStats) { s.readsDropped++ })
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	ret := rec.Now()
	if err != nil {
		rec.count(func(s *linStats) { s.readsDropped++ })
		return
	}
	meta := fmt.Sprintf("%s %d %s", e.Spec.ID, resp.StatusCode, resp.Header.Get("Cache-Status"))
	switch {
	case resp.StatusCode == http.StatusOK:
		rec.Read(client, key, string(body), call, ret, meta)
		rec.count(func(s *linStats) { s.readsOK++ })
	case resp.StatusCode == http.StatusNotFound:
		rec.Read(client, key, lincheck.Absent, call, ret, meta)
		rec.count(func(s *linStats) { s.readsAbsent++ })
	case resp.StatusCode >= 500:
		rec.count(func(s *linStats) { s.reads5++ })
	default:
		t.Errorf("GET %s/%s: status %d %q", e.Spec.ID, key, resp.StatusCode, body)
	}
}

// linHistory runs one seed's workload on a fresh WAN cluster and returns
// the history it recorded.
func linHistory(t *testing.T, seed uint64) ([]porcupine.Operation, linStats) {
	const (
		lease    = 2 * time.Second
		clients  = 4
		workload = 20 * time.Second // simulated
		maxOps   = 60               // per client
	)
	w, err := StartWAN(WANConfig{
		Dir: t.TempDir(), LeaseTerm: lease, PublishTimeout: 6 * time.Second, Seed: seed, Logger: testLogger(t),
		Edges: []WANEdge{{"lhr", "London"}, {"nrt", "Tokyo"}, {"syd", "Sydney"}, {"gru", "Sao Paulo"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := w.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}()
	healthy := func() bool {
		for _, e := range w.Edges() {
			if ed := e.Edge(); ed == nil || !ed.Healthy() {
				return false
			}
		}
		return true
	}
	waitFor(t, "every edge healthy", healthy)

	rec := &linRecorder{Recorder: lincheck.NewRecorder()}
	// k0 starts absent, so reads also check the pending-new-key path;
	// k1 and k2 start with a strong version, recorded like any write.
	keys := []string{"k0", "k1", "k2"}
	for _, k := range keys[1:] {
		linWrite(t, w, rec, 0, k, fmt.Sprintf("s%d-init-%s", seed, k))
	}

	edges := w.Edges()
	end := time.Now().Add(workload)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			// One generator per goroutine: *rand.Rand is not safe for
			// concurrent use.
			rng := rand.New(rand.NewPCG(seed, uint64(c)+1))
			for n := 0; n < maxOps && time.Now().Before(end); n++ {
				time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
				key := keys[rng.IntN(len(keys))]
				switch r := rng.IntN(10); {
				case r < 3:
					linWrite(t, w, rec, c, key, fmt.Sprintf("s%d-c%d-%d", seed, c, n))
				case r == 3:
					// Purges evict edge copies without changing any value:
					// the register model must hold across them.
					linPurge(t, w, key, rng.IntN(2) == 0, rec)
				default:
					linRead(t, w, rec, c, edges[rng.IntN(len(edges))], key)
				}
			}
		})
	}
	wg.Go(func() {
		n := wanFaults(t, w, seed, end, nil)
		rec.count(func(s *linStats) { s.faults = n })
	})
	wg.Wait()

	// Once healed, every edge must serve each key's last visible version:
	// these reads pin down the end of the history.
	waitFor(t, "every edge healthy after the faults", healthy)
	for _, e := range edges {
		for _, k := range keys {
			linRead(t, w, rec, clients, e, k)
		}
	}
	return rec.History(), rec.stats
}

// TestWANStrongLinearizable records randomized histories of strong
// publishes and edge reads on a WAN cluster with partitions and edge
// restarts, and checks each for linearizability per key: the strong
// level's promise is that every read, at any edge, behaves as if it and
// every write happened at one instant between call and return.
func TestWANStrongLinearizable(t *testing.T) {
	total := 0
	for seed := range uint64(*linSeeds) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			var h []porcupine.Operation
			var st linStats
			synctest.Test(t, func(t *testing.T) { h, st = linHistory(t, seed) })
			if len(h) == 0 {
				return // the cluster failed before recording anything
			}
			total += len(h)
			t.Logf("seed %d: %d operations (%+v)", seed, len(h), st)
			// Checked outside the bubble, so the checker's timeout runs
			// on real time.
			res, err := lincheck.Check(h, 30*time.Second, lincheck.HistoryDir(t.ArtifactDir()), fmt.Sprintf("linearizability-seed%d", seed))
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			if res == porcupine.Unknown {
				t.Logf("seed %d: linearizability check timed out", seed)
			}
		})
	}
	t.Logf("%d seeds, %d operations checked in all", *linSeeds, total)
}
