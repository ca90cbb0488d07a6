package cluster

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/geocdn/geocdn/edge"
)

// The weaker consistency levels (session, consistent prefix, eventual),
// checked over randomized histories on the simulated WAN with partitions
// (both ways and one way) and edge restarts, then healed. Each test runs
// a few seeds by default; soak runs raise the flag.
var levelSeeds = flag.Int("geocdn.levelseeds", 3, "seeds of each TestWANSession*, TestWANConsistentPrefix* and TestWANEventual* test to run")

// lvEdges are the edges of every weak-level history.
var lvEdges = []WANEdge{{"lhr", "London"}, {"nrt", "Tokyo"}, {"syd", "Sydney"}, {"gru", "Sao Paulo"}}

// lvStartWAN starts a WAN cluster for one seed and waits until every edge
// holds a lease. Call it inside the bubble; the cluster is closed when the
// test ends.
func lvStartWAN(t *testing.T, seed uint64) *WAN {
	w, err := StartWAN(WANConfig{
		Dir: t.TempDir(), LeaseTerm: 2 * time.Second, PublishTimeout: 6 * time.Second, Seed: seed,
		Logger: testLogger(t), Edges: lvEdges,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	waitFor(t, "every edge healthy", func() bool { return lvHealthy(w) })
	return w
}

func lvHealthy(w *WAN) bool {
	for _, e := range w.Edges() {
		if ed := e.Edge(); ed == nil || !ed.Healthy() {
			return false
		}
	}
	return true
}

// lvPublish puts value under key at the given consistency level ("" is
// the default, eventual) and returns the status and the LSN the answer
// carries in GeoCDN-LSN (cross-checked with the JSON lsn field).
func lvPublish(w *WAN, key, value, level string) (status int, lsn uint64, err error) {
	u := w.OriginURL() + "/v1/objects/" + key
	if level != "" {
		u += "?consistency=" + level
	}
	req, err := http.NewRequest(http.MethodPut, u, bytes.NewReader([]byte(value)))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+w.Token)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := w.Client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return resp.StatusCode, 0, err
	}
	if resp.StatusCode != http.StatusCreated {
		return resp.StatusCode, 0, fmt.Errorf("publish %s=%q: status %d %s", key, value, resp.StatusCode, raw)
	}
	lsn, err = strconv.ParseUint(resp.Header.Get("GeoCDN-LSN"), 10, 64)
	if err != nil {
		return resp.StatusCode, 0, fmt.Errorf("publish %s=%q: GeoCDN-LSN %q: %v", key, value, resp.Header.Get("GeoCDN-LSN"), err)
	}
	var res struct {
		LSN uint64 `json:"lsn"`
	}
	if json.Unmarshal(raw, &res) == nil && res.LSN != lsn {
		return resp.StatusCode, 0, fmt.Errorf("publish %s=%q: GeoCDN-LSN %d but lsn field %d", key, value, lsn, res.LSN)
	}
	return resp.StatusCode, lsn, nil
}

// lvReadAnswer is what one edge read observed.
type lvReadAnswer struct {
	status int
	body   string
	lsn    uint64 // the answer's GeoCDN-LSN; 0 when absent
	hasLSN bool
	cache  string // Cache-Status, for reports
}

// lvRead reads key at edge e, sending minLSN as GeoCDN-Min-LSN when it is
// not zero. A transport error (the edge is down) returns err.
func lvRead(w *WAN, e *EdgeNode, key string, minLSN uint64) (lvReadAnswer, error) {
	req, err := http.NewRequest(http.MethodGet, e.URL+"/"+key, nil)
	if err != nil {
		return lvReadAnswer{}, err
	}
	if minLSN != 0 {
		req.Header.Set(edge.HeaderMinLSN, strconv.FormatUint(minLSN, 10))
	}
	resp, err := w.Client.Do(req)
	if err != nil {
		return lvReadAnswer{}, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return lvReadAnswer{}, err
	}
	a := lvReadAnswer{status: resp.StatusCode, body: string(body), cache: resp.Header.Get("Cache-Status")}
	if v := resp.Header.Get("GeoCDN-LSN"); v != "" {
		if a.lsn, err = strconv.ParseUint(v, 10, 64); err != nil {
			return a, fmt.Errorf("GET %s/%s: GeoCDN-LSN %q: %v", e.Spec.ID, key, v, err)
		}
		a.hasLSN = true
	}
	return a, nil
}

// lvGens counts each edge's kills and starts, so readers can tell that
// an edge restarted under them: an odd count is an edge down (or coming
// up).
type lvGens struct {
	mu  sync.Mutex
	gen map[string]int
}

func (g *lvGens) get(id string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.gen[id]
}

func (g *lvGens) bump(id string) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gen[id]++
}

// lvKinds counts read answers by how the edge produced them.
type lvKinds struct{ hit, unleased, forwarded, notFound int }

func (k *lvKinds) add(a lvReadAnswer) {
	switch {
	case a.status == http.StatusNotFound:
		k.notFound++
	case strings.Contains(a.cache, "detail=unleased"):
		k.unleased++
	case strings.Contains(a.cache, "fwd="):
		k.forwarded++
	default:
		k.hit++
	}
}

func (k lvKinds) String() string {
	return fmt.Sprintf("%d leased hits, %d unleased hits, %d forwarded, %d not found", k.hit, k.unleased, k.forwarded, k.notFound)
}

// wanFaults injects partitions (both ways, one way each direction), heals,
// edge kills, restarts and starts until end, then heals everything and
// starts every killed edge. It returns the number of faults injected.
// gens, when set, counts each edge's restarts.
func wanFaults(t *testing.T, w *WAN, seed uint64, end time.Time, gens *lvGens) int {
	rng := rand.New(rand.NewPCG(seed, 0))
	edges := w.Edges()
	killed := map[string]bool{}
	faults := 0
	for time.Now().Before(end) {
		time.Sleep(500*time.Millisecond + time.Duration(rng.IntN(2500))*time.Millisecond)
		id := edges[rng.IntN(len(edges))].Spec.ID
		var err error
		switch rng.IntN(8) {
		case 0:
			err = w.Partition(id)
		case 1:
			err = w.PartitionOneWay(id, ToEdge)
		case 2:
			err = w.PartitionOneWay(id, FromEdge)
		case 3:
			err = w.Heal(id)
		case 4:
			w.HealAll()
		case 5:
			if !killed[id] {
				killed[id] = true
				gens.bump(id)
				err = w.KillEdge(id)
			}
		case 6:
			for id := range killed {
				delete(killed, id)
				err = w.StartEdge(id)
				gens.bump(id)
				break
			}
		case 7:
			if !killed[id] {
				gens.bump(id)
				err = w.RestartEdge(id)
				gens.bump(id)
			}
		}
		if err != nil {
			t.Errorf("fault on %s: %v", id, err)
		}
		faults++
	}
	w.HealAll()
	for id := range killed {
		if err := w.StartEdge(id); err != nil {
			t.Errorf("start %s: %v", id, err)
		}
		gens.bump(id)
	}
	return faults
}

// lvSeeds runs body once per seed in its own bubble and logs the
// totals it returns.
func lvSeeds(t *testing.T, name string, body func(t *testing.T, seed uint64) string) {
	for seed := range uint64(*levelSeeds) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			var summary string
			start := time.Now()
			synctest.Test(t, func(t *testing.T) { summary = body(t, seed) })
			t.Logf("%s seed %d: %s (%v real time)", name, seed, summary, time.Since(start).Round(time.Millisecond))
		})
	}
}

// sessOp is one operation of a session client, in the client's order.
type sessOp struct {
	write bool
	key   string
	value string
	edge  string
	// lsn is the write's LSN, or the read answer's GeoCDN-LSN.
	lsn    uint64
	minLSN uint64 // the GeoCDN-Min-LSN the read sent
	status int
	cache  string
	at     time.Duration // return, since the workload began
}

// TestWANSessionGuarantees checks session consistency on randomized
// histories: every client session sends the highest LSN it has seen (its
// publishes' and its reads' GeoCDN-LSN) as GeoCDN-Min-LSN on each read at
// a random edge, and must get read-your-writes (after its publish of a
// key at LSN L returned, its successful reads of that key return a
// version of LSN ≥ L) and monotonic reads (per key, the LSNs of the
// versions it reads never decrease). 5xx and transport errors observed
// nothing and are dropped.
func TestWANSessionGuarantees(t *testing.T) {
	lvSeeds(t, "session", sessHistory)
}

func sessHistory(t *testing.T, seed uint64) string {
	const (
		clients  = 4
		workload = 20 * time.Second // simulated
		maxOps   = 60               // per client
	)
	w := lvStartWAN(t, seed)
	edges := w.Edges()
	// s0 starts absent; s1 and s2 start with a version.
	keys := []string{"s0", "s1", "s2"}

	var mu sync.Mutex
	valueLSN := map[string]uint64{} // value → LSN of the version, from publish answers
	history := make([][]sessOp, clients)
	publishes, dropped := 0, 0
	var kinds lvKinds
	begin := time.Now()
	for _, k := range keys[1:] {
		v := fmt.Sprintf("s%d-init-%s", seed, k)
		_, lsn, err := lvPublish(w, k, v, "session")
		if err != nil {
			t.Fatal(err)
		}
		valueLSN[v] = lsn
		publishes++
	}

	end := time.Now().Add(workload)
	gens := &lvGens{gen: map[string]int{}}
	faults := 0
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(c)+1))
			var seen uint64 // the session's highest LSN
			for n := 0; n < maxOps && time.Now().Before(end); n++ {
				time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
				key := keys[rng.IntN(len(keys))]
				if rng.IntN(10) < 3 {
					v := fmt.Sprintf("s%d-c%d-%d", seed, c, n)
					_, lsn, err := lvPublish(w, key, v, "session")
					if err != nil {
						// The origin is never faulted: a session publish
						// returns once committed there.
						t.Errorf("client %d: %v", c, err)
						continue
					}
					seen = max(seen, lsn)
					mu.Lock()
					valueLSN[v] = lsn
					publishes++
					mu.Unlock()
					history[c] = append(history[c], sessOp{write: true, key: key, value: v, lsn: lsn, at: time.Since(begin)})
					continue
				}
				e := edges[rng.IntN(len(edges))]
				a, err := lvRead(w, e, key, seen)
				if err != nil || a.status >= 500 {
					mu.Lock()
					dropped++
					mu.Unlock()
					continue
				}
				if a.status != http.StatusOK && a.status != http.StatusNotFound {
					t.Errorf("client %d: GET %s/%s: status %d %q", c, e.Spec.ID, key, a.status, a.body)
					continue
				}
				if !a.hasLSN {
					t.Errorf("client %d: GET %s/%s: status %d without GeoCDN-LSN", c, e.Spec.ID, key, a.status)
				}
				op := sessOp{key: key, edge: e.Spec.ID, lsn: a.lsn, minLSN: seen, status: a.status, cache: a.cache, at: time.Since(begin)}
				seen = max(seen, a.lsn)
				if a.status == http.StatusOK {
					op.value = a.body
				}
				mu.Lock()
				kinds.add(a)
				mu.Unlock()
				history[c] = append(history[c], op)
			}
		})
	}
	wg.Go(func() { faults = wanFaults(t, w, seed, end, gens) })
	wg.Wait()

	// Checked once every publish has answered: a read may return a
	// version whose publish (by another client) had not answered yet.
	reads := 0
	for c, ops := range history {
		wrote := map[string]uint64{}  // key → LSN of the client's last publish
		read := map[string]uint64{}   // key → LSN of the newest version read
		readOp := map[string]sessOp{} // the read that saw it
		for _, op := range ops {
			if op.write {
				wrote[op.key] = op.lsn
				continue
			}
			reads++
			var v uint64 // absent
			if op.status == http.StatusOK {
				var ok bool
				if v, ok = valueLSN[op.value]; !ok {
					t.Errorf("seed %d client %d at %v: GET %s/%s returned %q, never published (Cache-Status %q)",
						seed, c, op.at, op.edge, op.key, op.value, op.cache)
					continue
				}
			}
			if v < wrote[op.key] {
				t.Errorf("seed %d client %d at %v: read-your-writes violated: GET %s/%s (Min-LSN %d) returned version LSN %d (%q, status %d, GeoCDN-LSN %d, Cache-Status %q) after the client's publish at LSN %d",
					seed, c, op.at, op.edge, op.key, op.minLSN, v, op.value, op.status, op.lsn, op.cache, wrote[op.key])
			}
			if prev, ok := readOp[op.key]; ok && v < read[op.key] {
				t.Errorf("seed %d client %d at %v: monotonic reads violated: GET %s/%s (Min-LSN %d) returned version LSN %d (%q, status %d, GeoCDN-LSN %d, Cache-Status %q) after reading version LSN %d (%q) at %s at %v (GeoCDN-LSN %d, Cache-Status %q)",
					seed, c, op.at, op.edge, op.key, op.minLSN, v, op.value, op.status, op.lsn, op.cache,
					read[op.key], prev.value, prev.edge, prev.at, prev.lsn, prev.cache)
			}
			if v >= read[op.key] {
				read[op.key] = v
				readOp[op.key] = op
			}
		}
	}
	return fmt.Sprintf("%d publishes, %d reads checked (%v), %d reads dropped (5xx or edge down), %d faults", publishes, reads, kinds, dropped, faults)
}

// TestWANConsistentPrefix checks consistent prefix on randomized
// histories: one writer publishes versions of a few keys in order, each
// after the previous answered 201, so the log holds them in that order.
// Readers read random edges and must see, per edge while it is not
// restarted, a prefix of the log that only grows: a key's version never
// goes back, no key is older than the prefix an earlier read of another
// key showed, and nothing that was not published is served.
func TestWANConsistentPrefix(t *testing.T) {
	lvSeeds(t, "consistent-prefix", prefixHistory)
}

// prefixVersion is one published version: its place in the writer's
// order (1-based) and key.
type prefixVersion struct {
	seq int
	key string
}

func prefixHistory(t *testing.T, seed uint64) string {
	const (
		readers  = 4
		workload = 20 * time.Second
		maxOps   = 80 // per reader
	)
	w := lvStartWAN(t, seed)
	edges := w.Edges()
	keys := []string{"p0", "p1", "p2"}

	var mu sync.Mutex
	issued := map[string]prefixVersion{} // value → version, from when its PUT was sent
	byKey := map[string][]int{}          // key → seqs of its versions, ascending
	seq := 0
	publish := func(key string) bool {
		mu.Lock()
		seq++
		v := fmt.Sprintf("p%d-%s-%d", seed, key, seq)
		issued[v] = prefixVersion{seq: seq, key: key}
		byKey[key] = append(byKey[key], seq)
		mu.Unlock()
		if _, _, err := lvPublish(w, key, v, "consistent-prefix"); err != nil {
			t.Errorf("writer: %v", err)
			return false
		}
		return true
	}
	// Every key has a version before the readers start.
	for _, k := range keys {
		if !publish(k) {
			t.FailNow()
		}
	}
	// latest is the newest version of key at or before seq s; 0 if none.
	latest := func(key string, s int) int {
		l := 0
		for _, q := range byKey[key] {
			if q <= s {
				l = q
			}
		}
		return l
	}

	begin := time.Now()
	end := begin.Add(workload)
	gens := &lvGens{gen: map[string]int{}}
	faults, reads, dropped, restarts, resets := 0, 0, 0, 0, 0
	var kinds lvKinds
	var wg sync.WaitGroup
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(seed, 1000))
		for time.Now().Before(end) {
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
			publish(keys[rng.IntN(len(keys))])
		}
	})
	for r := range readers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(r)+1))
			// What this reader has seen at each edge since its last
			// restart: the longest prefix, and each key's version.
			type edgeView struct {
				gen    int
				prefix int
				key    map[string]int
				from   map[string]string // key → the read that saw it, for reports
			}
			views := map[string]*edgeView{}
			for n := 0; n < maxOps && time.Now().Before(end); n++ {
				time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
				e := edges[rng.IntN(len(edges))]
				id := e.Spec.ID
				key := keys[rng.IntN(len(keys))]
				g0 := gens.get(id)
				a, err := lvRead(w, e, key, 0)
				g1 := gens.get(id)
				at := time.Since(begin)
				if err != nil || a.status >= 500 {
					mu.Lock()
					dropped++
					mu.Unlock()
					continue
				}
				var s int // 0: absent
				switch a.status {
				case http.StatusOK:
					mu.Lock()
					pv, ok := issued[a.body]
					mu.Unlock()
					if !ok || pv.key != key {
						t.Errorf("seed %d reader %d at %v: GET %s/%s returned %q, never published for this key (Cache-Status %q)",
							seed, r, at, id, key, a.body, a.cache)
						continue
					}
					s = pv.seq
				case http.StatusNotFound:
				default:
					t.Errorf("seed %d reader %d: GET %s/%s: status %d %q", seed, r, id, key, a.status, a.body)
					continue
				}
				mu.Lock()
				reads++
				kinds.add(a)
				mu.Unlock()
				if g0 != g1 || g0%2 != 0 {
					// The edge restarted during the read: its view starts
					// over.
					delete(views, id)
					mu.Lock()
					restarts++
					mu.Unlock()
					continue
				}
				v := views[id]
				if v != nil && v.gen != g0 {
					mu.Lock()
					resets++
					mu.Unlock()
				}
				if v == nil || v.gen != g0 {
					v = &edgeView{gen: g0, key: map[string]int{}, from: map[string]string{}}
					views[id] = v
				}
				desc := fmt.Sprintf("seq %d at %v (Cache-Status %q)", s, at, a.cache)
				if s < v.key[key] {
					t.Errorf("seed %d reader %d: %s/%s went back: %s after %s", seed, r, id, key, desc, v.from[key])
				}
				mu.Lock()
				floor := latest(key, v.prefix)
				mu.Unlock()
				if s < floor {
					t.Errorf("seed %d reader %d: %s/%s is not a prefix of the log: %s, but %s had shown the log up to seq %d, where %s is at seq %d",
						seed, r, id, key, desc, id, v.prefix, key, floor)
				}
				if s > v.key[key] {
					v.key[key] = s
					v.from[key] = desc
				}
				v.prefix = max(v.prefix, s)
			}
		})
	}
	wg.Go(func() { faults = wanFaults(t, w, seed, end, gens) })
	wg.Wait()
	return fmt.Sprintf("%d publishes, %d reads checked (%v), %d reads dropped (5xx or edge down), %d reads across an edge restart (not checked for order), %d reader views reset by a restart, %d faults",
		seq, reads, kinds, dropped, restarts, resets, faults)
}

// TestWANEventualConvergence checks the eventual level: writers publish
// (default consistency) while partitions and edge restarts come and go;
// once every fault is healed, every edge serves each key's last published
// version within lvConverge of simulated time.
func TestWANEventualConvergence(t *testing.T) {
	lvSeeds(t, "eventual", eventualHistory)
}

// lvConverge bounds how long, after the last fault healed, the edges
// may take to serve every key's last version.
const lvConverge = 10 * time.Second

func eventualHistory(t *testing.T, seed uint64) string {
	const (
		writers  = 3
		workload = 20 * time.Second
		maxOps   = 60
	)
	w := lvStartWAN(t, seed)
	edges := w.Edges()
	keys := []string{"e0", "e1", "e2", "e3"}

	var mu sync.Mutex
	type last struct {
		lsn   uint64
		value string
	}
	lastOf := map[string]last{} // key → the version of the highest LSN a publish answered
	publishes, reads, dropped := 0, 0, 0
	end := time.Now().Add(workload)
	gens := &lvGens{gen: map[string]int{}}
	faults := 0
	var wg sync.WaitGroup
	for c := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(c)+1))
			for n := 0; n < maxOps && time.Now().Before(end); n++ {
				time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
				key := keys[rng.IntN(len(keys))]
				if rng.IntN(10) < 4 {
					v := fmt.Sprintf("e%d-c%d-%d", seed, c, n)
					_, lsn, err := lvPublish(w, key, v, "")
					if err != nil {
						t.Errorf("writer %d: %v", c, err)
						continue
					}
					mu.Lock()
					publishes++
					if lsn > lastOf[key].lsn {
						lastOf[key] = last{lsn, v}
					}
					mu.Unlock()
					continue
				}
				// Reads fill edges and keep versions cached, so that
				// convergence is also a matter of replacing copies.
				a, err := lvRead(w, edges[rng.IntN(len(edges))], key, 0)
				mu.Lock()
				if err != nil || a.status >= 500 {
					dropped++
				} else {
					reads++
				}
				mu.Unlock()
			}
		})
	}
	wg.Go(func() { faults = wanFaults(t, w, seed, end, gens) })
	wg.Wait()

	// Every fault is healed and every edge started: poll in simulated
	// time until each edge serves each key's last version.
	healed := time.Now()
	polls := 0
	var slowest time.Duration
	for _, e := range edges {
		for _, k := range keys {
			want, ok := lastOf[k]
			for {
				var a lvReadAnswer
				var err error
				a, err = lvRead(w, e, k, 0)
				polls++
				if ok && err == nil && a.status == http.StatusOK && a.body == want.value {
					break
				}
				if !ok && err == nil && a.status == http.StatusNotFound {
					break
				}
				if time.Since(healed) > lvConverge {
					t.Errorf("seed %d: %s/%s did not converge within %v of the heal: status %d body %q GeoCDN-LSN %d Cache-Status %q err %v; want %q (LSN %d)",
						seed, e.Spec.ID, k, lvConverge, a.status, a.body, a.lsn, a.cache, err, want.value, want.lsn)
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			slowest = max(slowest, time.Since(healed))
		}
	}
	return fmt.Sprintf("%d publishes, %d reads, %d reads dropped, %d faults, %d convergence polls, all %d edges × %d keys converged within %v of the heal",
		publishes, reads, dropped, faults, polls, len(edges), len(keys), slowest)
}
