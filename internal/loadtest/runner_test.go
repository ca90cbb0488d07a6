package loadtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// memNet serves handlers by host over in-memory connections (net.Pipe):
// with synctest, a run against it takes simulated time only, so what it
// measures is exact, yet every request is real HTTP/1.1 on a connection.
type memNet struct {
	mu      sync.Mutex
	servers map[string]*memServer
}

type memServer struct {
	srv   *http.Server
	conns chan net.Conn
	done  chan struct{}
}

func newMemNet(handlers map[string]http.Handler) *memNet {
	m := &memNet{servers: map[string]*memServer{}}
	for host, h := range handlers {
		ms := &memServer{srv: &http.Server{Handler: h}, conns: make(chan net.Conn), done: make(chan struct{})}
		m.servers[host] = ms
		go ms.srv.Serve(ms)
	}
	return m
}

// Accept, Close and Addr make a memServer the net.Listener of its server.
func (s *memServer) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

func (s *memServer) Close() error {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	return nil
}

func (s *memServer) Addr() net.Addr { return memAddr{} }

type memAddr struct{}

func (memAddr) Network() string { return "mem" }
func (memAddr) String() string  { return "mem" }

// Dial connects to the server of address's host.
func (m *memNet) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	m.mu.Lock()
	s := m.servers[address]
	m.mu.Unlock()
	if s == nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	}
	client, server := net.Pipe()
	select {
	case s.conns <- server:
		return client, nil
	case <-s.done:
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// close stops every server and its connections, so a synctest bubble
// can end.
func (m *memNet) close() {
	for _, s := range m.servers {
		s.srv.Close()
	}
}

// options are Run's options against m.
func (m *memNet) options(scn *Scenario) Options {
	return Options{
		Scenario: scn, GeoIP: "../../testdata/geoip-test.mmdb",
		Transport: &http.Transport{DialContext: m.Dial},
		Dial:      m.Dial,
		Cluster:   Cluster{Origin: "http://origin.test:80", Token: "t"},
		Converge:  5 * time.Second,
	}
}

// fakeCluster is an origin and one edge in memory. The edge serves the
// origin's versions, and can be told to misbehave.
type fakeCluster struct {
	mu       sync.Mutex
	versions map[string][][]byte // key → every body published, in order
	// corrupt flips a byte of every body served; stale serves a key's
	// first version whatever was published since; stall holds every
	// request that arrives before stallUntil (simulated time) until then.
	corrupt, stale bool
	stallUntil     time.Time
}

func (f *fakeCluster) net(t *testing.T) *memNet {
	m := newMemNet(map[string]http.Handler{"origin.test:80": http.HandlerFunc(f.origin), "edge.test:80": http.HandlerFunc(f.edge)})
	t.Cleanup(m.close)
	return m
}

func (f *fakeCluster) origin(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/edges":
		json.NewEncoder(w).Encode([]edgeStatus{{ID: "e1", Region: "eu-west", Lat: 51.5, Lon: -0.1,
			PublicURL: "http://edge.test:80", State: "up"}})
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/objects/"):
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		k := strings.TrimPrefix(r.URL.Path, "/v1/objects/")
		f.versions[k] = append(f.versions[k], b)
		f.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/purge":
		io.WriteString(w, "{}")
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeCluster) edge(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	until := f.stallUntil
	f.mu.Unlock()
	if d := time.Until(until); d > 0 {
		time.Sleep(d)
	}
	if r.URL.Path == "/healthz" {
		return
	}
	f.mu.Lock()
	vs := f.versions[strings.TrimPrefix(r.URL.Path, "/")]
	var body []byte
	if len(vs) > 0 {
		body = vs[len(vs)-1]
		if f.stale {
			body = vs[0]
		}
	}
	corrupt := f.corrupt
	f.mu.Unlock()
	if body == nil {
		http.NotFound(w, r)
		return
	}
	sum := sha256.Sum256(body)
	w.Header().Set("Etag", `"`+hex.EncodeToString(sum[:])+`"`)
	w.Header().Set("Cache-Status", "geocdn; hit")
	if corrupt {
		body = append([]byte(nil), body...)
		body[len(body)/2] ^= 1
	}
	http.ServeContent(w, r, "", time.Time{}, strings.NewReader(string(body)))
}

// fakeScenario reads straight from the fake edge at rate per second for
// dur, with strong publishes of the objects beside.
func fakeScenario(t *testing.T, rate int, dur time.Duration, publishes bool) *Scenario {
	t.Helper()
	y := fmt.Sprintf(`
name: fake
seed: 7
target: edge:e1
clients: {demand: ../../testdata/demand.csv}
objects: {count: 20, zipf: 0.9, sizes: 2KiB}
arrivals:
  phases:
    - {rate: %d, for: %s}
mix: {get: 80, head: 5, conditional: 10, range: 5}
`, rate, dur)
	if publishes {
		y += "writes:\n  - {op: publish, rate: 5, consistency: strong, w: all}\n"
	}
	scn, err := ParseScenario("fake.yaml", strings.NewReader(y))
	if err != nil {
		t.Fatal(err)
	}
	return scn
}

func runFake(t *testing.T, f *fakeCluster, scn *Scenario) *Report {
	t.Helper()
	m := f.net(t)
	defer m.close()
	rep, err := Run(t.Context(), m.options(scn))
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func newFake() *fakeCluster { return &fakeCluster{versions: map[string][][]byte{}} }

// TestVerifyHonest: a correct server gives no corrupt and no stale
// answer, every read is counted, and the final check finds every
// acknowledged publish.
func TestVerifyHonest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		rep := runFake(t, f, fakeScenario(t, 50, 4*time.Second, true))
		if rep.Corrupt != 0 || rep.Stale != 0 {
			t.Fatalf("corrupt %d, stale %d against a correct server: %+v %+v", rep.Corrupt, rep.Stale, rep.CorruptSamples, rep.StaleSamples)
		}
		if f := rep.Failure(); f != "" {
			t.Fatalf("Failure() = %q", f)
		}
		reads := int64(0)
		for _, op := range rep.Ops {
			if op.Name != string(OpPublishReq) && op.Name != string(OpPurgeReq) {
				reads += op.Requests
			}
		}
		if reads != 200 {
			t.Fatalf("%d reads recorded, want 200 (50/s for 4 s)", reads)
		}
		if rep.Errors.Total != 0 {
			t.Fatalf("errors: %+v", rep.Errors)
		}
		if c := rep.Convergence; c == nil || !c.OK || c.Checked != 20 {
			t.Fatalf("convergence %+v, want OK with 20 objects checked on 1 edge", c)
		}
	})
}

// TestVerifyCorrupt: bodies that do not hash to their ETag are counted
// as corrupt and listed.
func TestVerifyCorrupt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.corrupt = true
		rep := runFake(t, f, fakeScenario(t, 50, 2*time.Second, false))
		if rep.Corrupt == 0 || len(rep.CorruptSamples) == 0 {
			t.Fatalf("no corrupt answer found against a server flipping a byte of every body")
		}
		if !strings.Contains(rep.CorruptSamples[0].Detail, "hashes to") && !strings.Contains(rep.CorruptSamples[0].Detail, "differ") {
			t.Fatalf("corrupt detail %q does not say what differed", rep.CorruptSamples[0].Detail)
		}
		if rep.Stale != 0 {
			t.Fatalf("stale %d: corruption must not be counted as staleness", rep.Stale)
		}
		if !strings.Contains(rep.Failure(), "corrupt") {
			t.Fatalf("Failure() = %q, want it to name the corrupt answers", rep.Failure())
		}
	})
}

// TestVerifyStale: a server that keeps answering a key's first version
// after a strong publish of a newer one was acknowledged is caught.
func TestVerifyStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.stale = true
		rep := runFake(t, f, fakeScenario(t, 50, 4*time.Second, true))
		if rep.Stale == 0 || len(rep.StaleSamples) == 0 {
			t.Fatalf("no stale answer found against a server that never serves a new version")
		}
		if !strings.Contains(rep.StaleSamples[0].Detail, "acknowledged") {
			t.Fatalf("stale detail %q", rep.StaleSamples[0].Detail)
		}
		if c := rep.Convergence; c == nil || c.MissingCount == 0 {
			t.Fatalf("convergence %+v: the final check must find the acknowledged versions missing", c)
		}
	})
}

// TestCoordinatedOmission: against a server that stalls for 1 s, the
// open loop keeps sending on schedule and counts each request's latency
// from when it was meant to start. Requests meant for the stalled second
// are answered when it ends, so their latencies spread evenly over
// (0, 1 s]: half of them take 0.5 s or more. A tester that timed from
// when it got round to sending (or, closed-loop, sent nothing while
// waiting) would record a handful of slow requests, not a hundred.
func TestCoordinatedOmission(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		scn := fakeScenario(t, 100, 3*time.Second, false)
		scn.Mix = Mix{Get: 1}
		// The stall starts after the preload, 1 s into the run.
		go func() {
			time.Sleep(time.Second)
			f.mu.Lock()
			f.stallUntil = time.Now().Add(time.Second)
			f.mu.Unlock()
		}()
		rep := runFake(t, f, scn)
		_ = rep
		var slow int64
		for _, w := range rep.Timeline {
			if w.T >= 1 && w.T < 2 {
				slow += w.Requests
			}
		}
		if rep.Overall.Requests != 300 {
			t.Fatalf("%d requests recorded, want 300: the open loop must not stop sending while the server stalls", rep.Overall.Requests)
		}
		if slow != 100 {
			t.Fatalf("%d requests meant for the stalled second, want 100", slow)
		}
		// Uniform over (0, 1 s] for a third of the requests: the 90th
		// percentile of all is about 0.7 s, the 99th about 0.97 s.
		if p := rep.Overall.P90; p < 600 || p > 800 {
			t.Errorf("p90 %.1f ms, want about 700 ms", p)
		}
		if p := rep.Overall.P99; p < 900 || p > 1010 {
			t.Errorf("p99 %.1f ms, want about 970 ms", p)
		}
	})
}

// TestUnreachableTarget fails fast, naming what did not answer.
func TestUnreachableTarget(t *testing.T) {
	scn := fakeScenario(t, 10, time.Second, false)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	m := newMemNet(nil)
	_, err := Run(ctx, m.options(scn))
	if err == nil || !strings.Contains(err.Error(), "origin unreachable") {
		t.Fatalf("err = %v, want origin unreachable", err)
	}
}

// TestInterrupted: a run whose context is cancelled (Ctrl-C) stops at
// once and still reports what ran, marked interrupted, without the final
// check.
func TestInterrupted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		scn := fakeScenario(t, 50, time.Hour, false)
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			// After the preload (simulated time stands still while it
			// runs), 10 s into the run.
			time.Sleep(10 * time.Second)
			cancel()
		}()
		m := f.net(t)
		defer m.close()
		rep, err := Run(ctx, m.options(scn))
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Interrupted || rep.Convergence != nil {
			t.Fatalf("interrupted %v, convergence %+v: want an interrupted run without the final check", rep.Interrupted, rep.Convergence)
		}
		if n := rep.Overall.Requests; n < 450 || n > 500 {
			t.Fatalf("%d requests in the 10 s before the interrupt at 50/s, want about 500", n)
		}
	})
}
