package main

// Separate-process tests: the real geocdn binary, built once per test run,
// run as origin and edge processes on loopback and driven through its CLI
// and HTTP interfaces, the way an operator would.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/ready"
	"github.com/geocdn/geocdn/origin"
)

var (
	seedsFlag = flag.Int("geocdn.seeds", 3, "number of seeds TestOriginKill9KeepsEveryAcknowledgedPublish runs")
	seedFlag  = flag.Uint64("geocdn.seed", 0, "run TestOriginKill9KeepsEveryAcknowledgedPublish with this one seed only (0: seeds 1..geocdn.seeds)")
	raceBin   = flag.Bool("geocdn.racebin", raceEnabled, "build the geocdn binary with the race detector (default: when the tests are)")
)

// geocdnBin is the binary under test, built by TestMain.
var geocdnBin string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "geocdn-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "geocdn tests:", err)
		os.Exit(1)
	}
	geocdnBin = filepath.Join(dir, "geocdn")
	if err := buildBinary(geocdnBin, *raceBin); err != nil {
		fmt.Fprintln(os.Stderr, "geocdn tests: build the binary:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// goTool finds the go command: on PATH, else in the GOROOT the tests were
// built with.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no go command on PATH nor at %s", p)
	}
	return p, nil
}

func buildBinary(out string, race bool) error {
	goCmd, err := goTool()
	if err != nil {
		return err
	}
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	args = append(args, ".")
	cmd := exec.Command(goCmd, args...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, buf.String())
	}
	return nil
}

// childEnv is the test's environment without GEOCDN_* variables, so that a
// developer's shell cannot change what a flag-less run of the binary does.
// A race-enabled binary waits a second at exit for late reports unless
// told otherwise; every CLI call would pay it.
func childEnv() []string {
	var env []string
	gorace := "atexit_sleep_ms=0"
	for _, kv := range os.Environ() {
		switch {
		case strings.HasPrefix(kv, "GEOCDN_"):
		case strings.HasPrefix(kv, "GORACE="):
			if v := strings.TrimPrefix(kv, "GORACE="); strings.Contains(v, "atexit_sleep_ms") {
				gorace = v
			} else {
				gorace = v + " " + gorace
			}
		default:
			env = append(env, kv)
		}
	}
	return append(env, "GORACE="+gorace)
}

// syncBuffer collects a process's output; safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is one running geocdn process.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer // stdout and stderr, interleaved
	done chan struct{}
	// state is set before done is closed.
	state *os.ProcessState
}

// startProc starts the binary with args. The process is killed (if still
// running) when the test ends; its output goes to the test log if the test
// failed, and a race report in it fails the test.
func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(geocdnBin, args...)
	p.cmd.Env = childEnv()
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			p.cmd.Process.Kill()
			<-p.done
		}
		out := p.out.String()
		if strings.Contains(out, "WARNING: DATA RACE") {
			t.Errorf("%s (pid %d) reported a data race", p.name, p.cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("---- output of %s (pid %d, %s) ----\n%s", p.name, p.cmd.Process.Pid, strings.Join(args, " "), out)
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process by its pid.
func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && !p.exited() {
		t.Fatalf("signal %v to %s: %v", sig, p.name, err)
	}
}

// kill9 sends SIGKILL and waits until the process is gone.
func (p *proc) kill9(t *testing.T) {
	t.Helper()
	p.signal(t, syscall.SIGKILL)
	p.wait(t)
}

// wait waits for the process to exit; the deadline only guards a hang.
func (p *proc) wait(t *testing.T) *os.ProcessState {
	t.Helper()
	select {
	case <-p.done:
		return p.state
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not exit", p.name)
		return nil
	}
}

// runCLI runs one short-lived command of the binary and returns its stdout
// and stderr. A non-zero exit is returned as an *exec.ExitError.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // guards a hang only
	defer cancel()
	cmd := exec.CommandContext(ctx, geocdnBin, args...)
	cmd.Env = childEnv()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if strings.Contains(e.String(), "WARNING: DATA RACE") {
		t.Errorf("geocdn %s reported a data race:\n%s", strings.Join(args, " "), e.String())
	}
	return o.String(), e.String(), err
}

// mustCLI is runCLI for commands that must succeed.
func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := runCLI(t, args...)
	if err != nil {
		t.Fatalf("geocdn %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// waitFor polls cond with a generous deadline: these tests assert outcomes,
// never latencies. If one of the watched processes exits meanwhile, it
// fails at once.
func waitFor(t *testing.T, what string, cond func() bool, watch ...*proc) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		for _, p := range watch {
			if p.exited() {
				t.Fatalf("waiting for %s: %s exited (%v)", what, p.name, p.state)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// anyPort is what every listener of a node started by these tests binds
// first: the kernel picks the port and the node reports it in its ready
// file. A port picked beforehand (listen, close, hand it over) can be
// taken by anyone before the node binds it.
const anyPort = "127.0.0.1:0"

// startNode starts the binary with args and --ready-file readyPath and
// waits until the process reports what it bound. taken is true when it
// exited instead because an address was in use, which only a restart on
// the ports of an earlier run can meet: the caller may try again.
func startNode(t *testing.T, name, readyPath string, args ...string) (p *proc, f ready.File, taken bool) {
	t.Helper()
	// A file a killed run left behind names another pid, which Wait
	// skips; removing it keeps what is on disk truthful as well.
	if err := os.Remove(readyPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	p = startProc(t, name, append(args[:len(args):len(args)], "--ready-file", readyPath)...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // guards a hang only
	defer cancel()
	go func() {
		select {
		case <-p.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	f, err := ready.Wait(ctx, readyPath, p.cmd.Process.Pid)
	if err == nil {
		return p, f, false
	}
	if p.exited() {
		if strings.Contains(p.out.String(), "address already in use") {
			return p, ready.File{}, true
		}
		t.Fatalf("%s exited at start (%v):\n%s", name, p.state, p.out.String())
	}
	t.Fatalf("%s: %v", name, err)
	return nil, ready.File{}, false
}

// restartNode starts a node again on the addresses its first run bound.
// One of them may be briefly held by someone else (an outgoing
// connection's source port, say), so it tries again for a while.
func restartNode(t *testing.T, name, readyPath string, args ...string) (*proc, ready.File) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // guards a port held for good
	for {
		p, f, taken := startNode(t, name, readyPath, args...)
		if !taken {
			return p, f
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: its earlier addresses stayed in use:\n%s", name, p.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// ---- a cluster of processes ----

// testPKI is a CA directory made with `geocdn ca init`.
type testPKI struct {
	dir string
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	mustCLI(t, "ca", "init", "--dir", dir)
	return &testPKI{dir: dir}
}

// issue runs `geocdn ca issue` and returns the certificate and key paths.
func (k *testPKI) issue(t *testing.T, role, id string) (cert, key string) {
	t.Helper()
	mustCLI(t, "ca", "issue", "--dir", k.dir, "--role", role, "--id", id)
	cert = filepath.Join(k.dir, role+"-"+id+".crt")
	key = filepath.Join(k.dir, role+"-"+id+".key")
	for _, f := range []string{cert, key} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("ca issue --role %s --id %s: %v", role, id, err)
		}
	}
	return cert, key
}

type procCluster struct {
	t         *testing.T
	pki       *testPKI
	dir       string
	token     string
	tokenFile string
	http      *http.Client

	originArgs  []string
	origin      *proc
	originHTTP  string // host:port, as bound by its first run
	originQUIC  string // host:port, as bound by its first run
	originData  string
	originReady string // its --ready-file
	restarts    int

	edges []*edgeNode
	// originNodes are the origins of startOrigins, when it ran.
	originNodes []*originNode
}

type edgeNode struct {
	id, region string
	lat, lon   float64
	// httpAddr, adminAddr and quicAddr are what its latest run bound; a
	// restart binds the same HTTP and admin addresses again.
	httpAddr  string
	adminAddr string
	quicAddr  string
	httpsAddr string // its TLS listener, when it runs with --tls-cert
	readyFile string
	data      string
	certID    string // identity of the certificate it runs with
	extra     []string
	p         *proc
}

func (e *edgeNode) url() string { return "http://" + e.httpAddr }

// newCluster makes a CA, an origin certificate and a token file. Nodes are
// started with startOrigin and startEdge.
func newCluster(t *testing.T) *procCluster {
	t.Helper()
	c := &procCluster{t: t, dir: t.TempDir()}
	c.pki = newPKI(t)
	c.token = "tok-" + strings.Repeat("0123456789abcdef", 2)
	c.tokenFile = filepath.Join(c.dir, "token")
	if err := os.WriteFile(c.tokenFile, []byte(c.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.http = &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true},
		Timeout:   2 * time.Minute, // guards a hang only
	}
	t.Cleanup(c.http.CloseIdleConnections)
	c.originData = filepath.Join(c.dir, "origin")
	c.originReady = filepath.Join(c.dir, "origin.ready.json")
	return c
}

func (c *procCluster) originURL() string { return "http://" + c.originHTTP }

// startOrigin starts the origin, on ports the kernel picks the first time
// and on the same --data, --http and --quic after that (edges find a
// restarted origin at the address they know), and waits for its /healthz.
func (c *procCluster) startOrigin(extra ...string) {
	t := c.t
	t.Helper()
	if c.origin == nil {
		cert, key := c.pki.issue(t, "origin", "origin-1")
		c.originArgs = append([]string{"origin", "--data", c.originData, "--ca", c.pki.dir,
			"--cert", cert, "--key", key, "--token-file", c.tokenFile}, extra...)
	}
	name := fmt.Sprintf("origin#%d", c.restarts)
	var p *proc
	if c.originHTTP == "" {
		args := append(c.originArgs[:len(c.originArgs):len(c.originArgs)], "--http", anyPort, "--quic", anyPort)
		var f ready.File
		var taken bool
		p, f, taken = startNode(t, name, c.originReady, args...)
		if taken {
			t.Fatalf("origin could not bind port 0:\n%s", p.out.String())
		}
		c.originHTTP, c.originQUIC = f.HTTP, f.QUIC
	} else {
		args := append(c.originArgs[:len(c.originArgs):len(c.originArgs)], "--http", c.originHTTP, "--quic", c.originQUIC)
		p, _ = restartNode(t, name, c.originReady, args...)
	}
	waitFor(t, name+" /healthz 200", func() bool {
		resp, err := c.http.Get(c.originURL() + "/healthz")
		if err != nil {
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200
	}, p)
	c.origin = p
	c.restarts++
}

// addEdge declares an edge running with its own certificate; startEdge
// starts it.
func (c *procCluster) addEdge(id, region string, lat, lon float64, extra ...string) *edgeNode {
	e := &edgeNode{id: id, region: region, lat: lat, lon: lon, certID: id, extra: extra,
		data: filepath.Join(c.dir, "edge-"+id), readyFile: filepath.Join(c.dir, "edge-"+id+".ready.json")}
	c.edges = append(c.edges, e)
	return e
}

// startEdge starts e, on ports the kernel picks the first time and on the
// same HTTP and admin addresses after that (its public URL, which the
// origin lists, stays valid), and returns once it serves, without waiting
// for it to become healthy (see waitEdgeHealthy).
func (c *procCluster) startEdge(e *edgeNode) {
	t := c.t
	t.Helper()
	cert, key := filepath.Join(c.pki.dir, "edge-"+e.certID+".crt"), filepath.Join(c.pki.dir, "edge-"+e.certID+".key")
	if _, err := os.Stat(cert); err != nil {
		cert, key = c.pki.issue(t, "edge", e.certID)
	}
	httpAddr, adminAddr := e.httpAddr, e.adminAddr
	if httpAddr == "" {
		httpAddr, adminAddr = anyPort, anyPort
	}
	args := append([]string{"edge", "--id", e.id, "--region", e.region,
		"--lat", fmt.Sprint(e.lat), "--lon", fmt.Sprint(e.lon),
		"--origin", c.originQUIC, "--http", httpAddr, "--admin", adminAddr, "--data", e.data,
		"--ca", c.pki.dir, "--cert", cert, "--key", key}, e.extra...)
	var f ready.File
	if e.httpAddr == "" {
		var taken bool
		e.p, f, taken = startNode(t, "edge "+e.id, e.readyFile, args...)
		if taken {
			t.Fatalf("edge %s could not bind port 0:\n%s", e.id, e.p.out.String())
		}
	} else {
		e.p, f = restartNode(t, "edge "+e.id, e.readyFile, args...)
	}
	e.httpAddr, e.adminAddr, e.quicAddr, e.httpsAddr = f.HTTP, f.Admin, f.QUIC, f.HTTPS
}

// healthz returns the status of e's admin /healthz, or 0 if it does not
// answer.
func (c *procCluster) healthz(e *edgeNode) int {
	resp, err := c.http.Get("http://" + e.adminAddr + "/healthz")
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func (c *procCluster) waitEdgeHealthy(e *edgeNode) {
	c.t.Helper()
	waitFor(c.t, "edge "+e.id+" /healthz 200", func() bool { return c.healthz(e) == 200 }, e.p)
}

// start starts the origin and every declared edge, and waits until the
// origin lists each edge as up.
func (c *procCluster) start(originExtra ...string) {
	c.t.Helper()
	c.startOrigin(originExtra...)
	for _, e := range c.edges {
		c.startEdge(e)
	}
	c.waitAllUp()
}

// waitAllUp waits until every edge is healthy and the origin lists it up.
func (c *procCluster) waitAllUp() {
	c.t.Helper()
	for _, e := range c.edges {
		c.waitEdgeHealthy(e)
	}
	waitFor(c.t, "origin lists every edge up", func() bool {
		for _, e := range c.edges {
			if c.edgeState(e.id) != origin.EdgeUp {
				return false
			}
		}
		return true
	}, c.origin)
}

// edgesStatus is the origin's GET /v1/edges, or nil if it does not answer.
func (c *procCluster) edgesStatus() []origin.EdgeStatus {
	req, _ := http.NewRequest(http.MethodGet, c.originURL()+"/v1/edges", nil)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil
	}
	var out []origin.EdgeStatus
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil
	}
	return out
}

func (c *procCluster) edgeState(id string) origin.EdgeState {
	for _, st := range c.edgesStatus() {
		if st.ID == id {
			return st.State
		}
	}
	return ""
}

// publishAnswer is one PUT /v1/objects answer.
type publishAnswer struct {
	status int
	res    origin.PublishResult
}

// publish sends PUT /v1/objects/KEY; a transport error is returned as is.
func (c *procCluster) publish(key string, body []byte, query string) (publishAnswer, error) {
	return c.publishAt(c.originURL(), key, body, query)
}

// publishAt is publish to the origin whose admin API is at base.
func (c *procCluster) publishAt(base, key string, body []byte, query string) (publishAnswer, error) {
	return c.publishVia(c.http, base, key, body, query)
}

// publishVia is publishAt through client.
func (c *procCluster) publishVia(client *http.Client, base, key string, body []byte, query string) (publishAnswer, error) {
	u := base + "/v1/objects/" + key
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequest(http.MethodPut, u, bytes.NewReader(body))
	if err != nil {
		return publishAnswer{}, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := client.Do(req)
	if err != nil {
		return publishAnswer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return publishAnswer{}, err
	}
	a := publishAnswer{status: resp.StatusCode}
	if err := json.Unmarshal(raw, &a.res); err != nil {
		return a, fmt.Errorf("decode publish answer %q: %w", raw, err)
	}
	return a, nil
}

func (c *procCluster) mustPublish(key string, body []byte, query string) origin.PublishResult {
	c.t.Helper()
	a, err := c.publish(key, body, query)
	if err != nil {
		c.t.Fatalf("publish %s: %v", key, err)
	}
	if a.status != http.StatusCreated {
		c.t.Fatalf("publish %s: status %d (%+v), want 201", key, a.status, a.res)
	}
	return a.res
}

type got struct {
	status int
	body   []byte
	hdr    http.Header
}

// get fetches url; err is a transport error.
func (c *procCluster) get(url string, auth bool) (got, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return got{}, err
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return got{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return got{}, err
	}
	return got{resp.StatusCode, b, resp.Header}, nil
}

// originObject is GET /v1/objects/KEY at the origin: the digest of the
// body, or "" for 404.
func (c *procCluster) originObject(key string) (string, error) {
	g, err := c.get(c.originURL()+"/v1/objects/"+key, true)
	if err != nil {
		return "", err
	}
	switch g.status {
	case 404:
		return "", nil
	case 200:
		d := digestOf(g.body)
		if et := g.hdr.Get("ETag"); et != `"`+d+`"` {
			return "", fmt.Errorf("origin %s: ETag %s but body digest %s", key, et, d)
		}
		return d, nil
	}
	return "", fmt.Errorf("origin GET %s: status %d: %s", key, g.status, g.body)
}

// edgeServes reports whether e serves key with the given digest ("" means
// it must answer 404).
func (c *procCluster) edgeServes(e *edgeNode, key, digest string) bool {
	g, err := c.get(e.url()+"/"+key, false)
	if err != nil {
		return false
	}
	if digest == "" {
		return g.status == 404
	}
	return g.status == 200 && g.hdr.Get("ETag") == `"`+digest+`"` && digestOf(g.body) == digest
}
