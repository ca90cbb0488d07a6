package cluster

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/anishathalye/porcupine"
)

// The default keeps `make test` fast; soak runs raise it.
var linSeeds = flag.Int("geocdn.linseeds", 5, "seeds of TestWANStrongLinearizable to run")

// linInput is one operation on a single key's register.
type linInput struct {
	key   string
	write bool
	value string // written value; unused for reads
}

// linAbsent is what a read of a key that was never published observes
// (a 404), and the register's initial state.
const linAbsent = ""

// linModel is a register per key: strong reads must be linearizable with
// strong writes. Partitioning by key lets porcupine check each key alone.
// A function, not a variable, so the package holds no shared state.
func linModel() porcupine.Model {
	return porcupine.Model{
		Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
			by := map[string][]porcupine.Operation{}
			var keys []string
			for _, op := range h {
				k := op.Input.(linInput).key
				if _, ok := by[k]; !ok {
					keys = append(keys, k)
				}
				by[k] = append(by[k], op)
			}
			sort.Strings(keys)
			out := make([][]porcupine.Operation, 0, len(keys))
			for _, k := range keys {
				out = append(out, by[k])
			}
			return out
		},
		Init: func() any { return linAbsent },
		Step: func(state, input, output any) (bool, any) {
			in := input.(linInput)
			if in.write {
				return true, in.value
			}
			return output.(string) == state.(string), state
		},
		DescribeOperation: func(input, output any) string {
			in := input.(linInput)
			if in.write {
				return fmt.Sprintf("put(%s, %q)", in.key, in.value)
			}
			out := output.(string)
			if out == linAbsent {
				return fmt.Sprintf("get(%s) -> 404", in.key)
			}
			return fmt.Sprintf("get(%s) -> %q", in.key, out)
		},
		DescribeState: func(state any) string {
			if s := state.(string); s != linAbsent {
				return fmt.Sprintf("%q", s)
			}
			return "absent"
		},
		DescribeOperationMetadata: func(info any) string {
			if info == nil {
				return ""
			}
			return info.(string)
		},
	}
}

// linRecorder collects operations from many goroutines. Timestamps are
// simulated nanoseconds since the workload began: inside the bubble time
// only moves when every goroutine is blocked, so call and return times
// order operations exactly as the cluster could observe them.
type linRecorder struct {
	start time.Time

	mu  sync.Mutex
	ops []porcupine.Operation
	// pending are the indexes of writes whose outcome is unknown.
	pending []int
	stats   linStats
}

type linStats struct {
	writesOK, writesUnknown      int
	readsOK, readsAbsent, reads5 int
	readsDropped                 int // transport errors: edge down
	faults                       int
	purges                       int
}

func (r *linRecorder) now() int64 { return time.Since(r.start).Nanoseconds() }

func (r *linRecorder) add(op porcupine.Operation, unknown bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if unknown {
		r.pending = append(r.pending, len(r.ops))
	}
	r.ops = append(r.ops, op)
}

// history returns the operations, with every write of unknown outcome
// given a return after every other operation: it may take effect at any
// moment after its call, or never (a write nobody reads is harmless to
// the check).
func (r *linRecorder) history() []porcupine.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	var last int64
	for _, op := range r.ops {
		if op.Return != math.MaxInt64 {
			last = max(last, op.Return)
		}
	}
	ops := append([]porcupine.Operation(nil), r.ops...)
	for _, i := range r.pending {
		ops[i].Return = last + 1
	}
	return ops
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
	op := porcupine.Operation{ClientId: client, Input: linInput{key: key, write: true, value: value}, Output: ""}
	// Taken before the request leaves: the write may apply as soon as
	// the origin has it.
	op.Call = rec.now()
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
	op.Return = rec.now()
	switch {
	case err == nil && status == http.StatusCreated:
		op.Metadata = "201"
		rec.add(op, false)
		rec.mu.Lock()
		rec.stats.writesOK++
		rec.mu.Unlock()
	case err != nil || status == http.StatusGatewayTimeout:
		op.Metadata = fmt.Sprintf("unknown outcome: status %d err %v", status, err)
		op.Return = math.MaxInt64
		rec.add(op, true)
		rec.mu.Lock()
		rec.stats.writesUnknown++
		rec.mu.Unlock()
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
	rec.mu.Lock()
	rec.stats.purges++
	rec.mu.Unlock()
}

// linRead reads key at edge e and records what it saw. A 5xx observed
// nothing and is dropped; a 404 observed the key absent.
func linRead(t *testing.T, w *WAN, rec *linRecorder, client int, e *EdgeNode, key string) {
	op := porcupine.Operation{ClientId: client, Input: linInput{key: key}}
	op.Call = rec.now()
	resp, err := w.Client.Get(e.URL + "/" + key)
	if err != nil {
		rec.mu.Lock()
		rec.stats.readsDropped++
		rec.mu.Unlock()
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	op.Return = rec.now()
	if err != nil {
		rec.mu.Lock()
		rec.stats.readsDropped++
		rec.mu.Unlock()
		return
	}
	op.Metadata = fmt.Sprintf("%s %d %s", e.Spec.ID, resp.StatusCode, resp.Header.Get("Cache-Status"))
	switch {
	case resp.StatusCode == http.StatusOK:
		op.Output = string(body)
		rec.add(op, false)
		rec.mu.Lock()
		rec.stats.readsOK++
		rec.mu.Unlock()
	case resp.StatusCode == http.StatusNotFound:
		op.Output = linAbsent
		rec.add(op, false)
		rec.mu.Lock()
		rec.stats.readsAbsent++
		rec.mu.Unlock()
	case resp.StatusCode >= 500:
		rec.mu.Lock()
		rec.stats.reads5++
		rec.mu.Unlock()
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

	rec := &linRecorder{start: time.Now()}
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
		rec.mu.Lock()
		rec.stats.faults = n
		rec.mu.Unlock()
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
	return rec.history(), rec.stats
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
			res, info := porcupine.CheckOperationsVerbose(linModel(), h, 30*time.Second)
			switch res {
			case porcupine.Ok:
			case porcupine.Unknown:
				t.Logf("seed %d: linearizability check timed out", seed)
			default:
				path := linVisualization(t, seed)
				if err := porcupine.VisualizePath(linModel(), info, path); err != nil {
					t.Errorf("write visualization: %v", err)
				}
				txt := strings.TrimSuffix(path, ".html") + ".txt"
				if err := os.WriteFile(txt, linDump(h), 0o644); err != nil {
					t.Errorf("write history: %v", err)
				}
				t.Fatalf("seed %d: history of %d operations is not linearizable; see %s and %s", seed, len(h), path, txt)
			}
		})
	}
	t.Logf("%d seeds, %d operations checked in all", *linSeeds, total)
}

// linVisualization names the file a failing history is drawn into: under
// GEOCDN_HISTORY_DIR when set, so CI can keep it, else the test's
// artifact directory (kept with go test -artifacts).
func linVisualization(t *testing.T, seed uint64) string {
	name := fmt.Sprintf("linearizability-seed%d.html", seed)
	if dir := os.Getenv("GEOCDN_HISTORY_DIR"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err == nil {
			return filepath.Join(dir, name)
		}
	}
	return filepath.Join(t.ArtifactDir(), name)
}

// linDump lists the history one operation a line, by key and call time,
// for reading a failure without a browser.
func linDump(h []porcupine.Operation) []byte {
	ops := append([]porcupine.Operation(nil), h...)
	sort.SliceStable(ops, func(i, j int) bool {
		ki, kj := ops[i].Input.(linInput).key, ops[j].Input.(linInput).key
		if ki != kj {
			return ki < kj
		}
		return ops[i].Call < ops[j].Call
	})
	var b bytes.Buffer
	m := linModel()
	for _, op := range ops {
		fmt.Fprintf(&b, "%12.3fms %12.3fms client %d %-40s %v\n", float64(op.Call)/1e6, float64(op.Return)/1e6,
			op.ClientId, m.DescribeOperation(op.Input, op.Output), op.Metadata)
	}
	return b.Bytes()
}
