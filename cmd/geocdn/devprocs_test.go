package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/devctl"
	"github.com/geocdn/geocdn/internal/ready"
	"github.com/geocdn/geocdn/origin"
)

// procStat is a process's state letter and parent pid from
// /proc/PID/stat; ok is false once it is gone.
func procStat(pid int) (state byte, ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// "pid (comm) S ppid ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	return f[0][0], ppid, true
}

// alive reports whether pid is a process that has not ended. A zombie has
// ended: one whose parent died waits for a reaper that a container's
// init may never be.
func alive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != 'Z'
}

// devPIDs remembers every node pid a test learns of. When the test ends,
// after the dev process itself was killed, any of them still alive and
// still running the binary under test is killed: a safety net for a
// broken Pdeathsig, which the tests then report.
type devPIDs struct {
	mu   sync.Mutex
	pids []int
}

func newDevPIDs(t *testing.T) *devPIDs {
	d := &devPIDs{}
	t.Cleanup(func() {
		// The kernel's SIGKILL (Pdeathsig) reaches a node as its dev
		// process dies, and the node may take a moment to be gone (in
		// the middle of an fsync, say): that is not outliving it.
		deadline := time.Now().Add(5 * time.Second)
		for _, pid := range d.all() {
			for alive(pid) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if !alive(pid) {
				continue
			}
			if cmd, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); err == nil && strings.HasPrefix(string(cmd), geocdnBin+"\x00") {
				syscall.Kill(pid, syscall.SIGKILL)
				t.Errorf("node pid %d outlived its dev process", pid)
			}
		}
	})
	return d
}

func (d *devPIDs) add(pids ...int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pids = append(d.pids, pids...)
}

func (d *devPIDs) all() []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.pids)
}

// nodePIDs are the pids of every node a dev ready file names.
func nodePIDs(f ready.File) []int {
	pids := []int{f.Origin.PID, f.Router.PID}
	for _, e := range f.Edges {
		pids = append(pids, e.PID)
	}
	return pids
}

type devUnderTest struct {
	p         *proc
	f         ready.File
	readyPath string
	data      string
	token     string
	pids      *devPIDs
}

// startDevProcesses runs `geocdn dev --processes` on ports the kernel
// picks, with a 1s lease so a killed edge is soon down at the origin.
func startDevProcesses(t *testing.T) *devUnderTest {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("reads process states from /proc and relies on Pdeathsig: Linux only")
	}
	dir := t.TempDir()
	d := &devUnderTest{readyPath: filepath.Join(dir, "dev.ready.json"), data: filepath.Join(dir, "data")}
	// Registered before the dev process, so its cleanup runs after dev
	// was killed.
	d.pids = newDevPIDs(t)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(d.data, "logs", "*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			if len(b) > 4<<10 {
				b = b[len(b)-4<<10:]
			}
			t.Logf("---- end of %s ----\n%s", l, b)
		}
	})
	var taken bool
	d.p, d.f, taken = startNode(t, "dev --processes", d.readyPath, "dev", "--processes", "--base-port", "0",
		"--data", d.data, "--content", repoFile("sample"), "--geoip", repoFile("geoip-test.mmdb"), "--lease", "1s")
	if taken {
		t.Fatalf("dev could not bind port 0:\n%s", d.p.out.String())
	}
	if d.f.Origin == nil || d.f.Router == nil || len(d.f.Edges) != len(devEdges) {
		t.Fatalf("dev ready file: %+v, want an origin, a router and %d edges", d.f, len(devEdges))
	}
	d.pids.add(nodePIDs(d.f)...)
	tok, err := os.ReadFile(d.f.TokenFile)
	if err != nil {
		t.Fatalf("token file: %v", err)
	}
	d.token = strings.TrimSpace(string(tok))
	return d
}

func (d *devUnderTest) edge(t *testing.T, f ready.File, id string) ready.File {
	t.Helper()
	for _, e := range f.Edges {
		if e.ID == id {
			return e
		}
	}
	t.Fatalf("ready file names no edge %s", id)
	return ready.File{}
}

// fetch GETs url and returns the status and body; 0 when it does not
// answer.
func fetch(c *http.Client, url string) (int, []byte) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil
	}
	return resp.StatusCode, b
}

// originEdgeState is edge id's state in the origin's GET /v1/edges, ""
// when it does not answer or does not list it.
func (d *devUnderTest) originEdgeState(c *http.Client, id string) origin.EdgeState {
	req, _ := http.NewRequest(http.MethodGet, "http://"+d.f.Origin.HTTP+"/v1/edges", nil)
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := c.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var sts []origin.EdgeStatus
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&sts) != nil {
		return ""
	}
	for _, st := range sts {
		if st.ID == id {
			return st.State
		}
	}
	return ""
}

// TestDevProcesses runs `geocdn dev --processes` and drives an edge
// through the control API: pause, resume, kill, restart, as the load
// tester's faults do; then stops dev and checks no node survives it.
func TestDevProcesses(t *testing.T) {
	d := startDevProcesses(t)
	f := d.f
	devPID := d.p.cmd.Process.Pid
	hc := &http.Client{Timeout: 30 * time.Second} // guards a hang only
	defer hc.CloseIdleConnections()
	ctx := context.Background()

	// Every node is a live child process of dev, each its own.
	pids := nodePIDs(f)
	seen := map[int]bool{devPID: true}
	for _, pid := range pids {
		if seen[pid] {
			t.Fatalf("pid %d twice among dev %d and its nodes %v", pid, devPID, pids)
		}
		seen[pid] = true
		if state, ppid, ok := procStat(pid); !ok || state == 'Z' || ppid != devPID {
			t.Errorf("node pid %d: alive %v, state %c, parent %d, want a live child of dev %d", pid, ok, state, ppid, devPID)
		}
	}
	if f.Role != "dev" || f.PID != devPID {
		t.Errorf("dev ready file: role %q pid %d, want dev and %d", f.Role, f.PID, devPID)
	}
	checkBound(t, "control", f.Control)
	out := d.p.out.String()
	for _, want := range []string{"http://" + f.Control, filepath.Join(d.data, "logs")} {
		if !strings.Contains(out, want) {
			t.Errorf("banner does not show %s:\n%s", want, out)
		}
	}
	sample, err := os.ReadFile(repoFile(filepath.Join("sample", "hello.txt")))
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range f.Edges {
		if e.ID != devEdges[i].ID || e.Data != filepath.Join(d.data, "edge-"+e.ID) {
			t.Errorf("edge %d: %+v, want %s with data in %s", i, e, devEdges[i].ID, filepath.Join(d.data, "edge-"+devEdges[i].ID))
		}
		if _, err := os.Stat(e.Log); err != nil {
			t.Errorf("edge %s log: %v", e.ID, err)
		}
		checkBound(t, e.ID+" http", e.HTTP)
		// Published with w=all before the ready file was written.
		if st, body := fetch(hc, "http://"+e.HTTP+"/hello.txt"); st != 200 || !bytes.Equal(body, sample) {
			t.Errorf("%s GET /hello.txt: %d %q, want 200 %q", e.ID, st, body, sample)
		}
		// Pulled from the sample site through the origin processes.
		if st, body := fetch(hc, "http://"+e.HTTP+"/site/hello"); st != 200 || string(body) != "Hello\n" {
			t.Errorf("%s GET /site/hello (pulled): %d %q", e.ID, st, body)
		}
	}
	waitFor(t, "router /healthz 200", func() bool { return status(hc, "http://"+f.Router.HTTP+"/healthz") == 200 }, d.p)

	ctl := &devctl.Client{URL: "http://" + f.Control, Token: d.token, HTTP: hc}
	edges, err := ctl.Edges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range edges {
		if e.ID != f.Edges[i].ID || e.PID != f.Edges[i].PID || e.State != devctl.StateRunning || e.HTTP != f.Edges[i].HTTP {
			t.Errorf("control lists %+v, want %s running as pid %d at %s", e, f.Edges[i].ID, f.Edges[i].PID, f.Edges[i].HTTP)
		}
	}
	edgeState := func(id string) devctl.EdgeStatus {
		t.Helper()
		e, err := ctl.Edge(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}

	const id = "lhr"
	lhr := d.edge(t, f, id)
	lhrURL := "http://" + lhr.HTTP + "/hello.txt"

	// Pause: the process is stopped when the call returns, and serves
	// nothing until resumed.
	if err := ctl.Pause(ctx, id); err != nil {
		t.Fatal(err)
	}
	if state, _, _ := procStat(lhr.PID); state != 'T' {
		t.Errorf("paused %s (pid %d): state %c, want T", id, lhr.PID, state)
	}
	if e := edgeState(id); e.State != devctl.StatePaused || e.PID != lhr.PID {
		t.Errorf("control lists %+v, want %s paused at pid %d", e, id, lhr.PID)
	}
	quick := &http.Client{Timeout: 300 * time.Millisecond}
	if st, _ := fetch(quick, lhrURL); st != 0 {
		t.Errorf("paused %s answered %d, want no answer", id, st)
	}
	quick.CloseIdleConnections()
	if err := ctl.Pause(ctx, id); !errors.Is(err, devctl.ErrWrongState) {
		t.Errorf("pause a paused edge: got %v, want %v", err, devctl.ErrWrongState)
	}
	if err := ctl.Resume(ctx, id); err != nil {
		t.Fatal(err)
	}
	if state, _, _ := procStat(lhr.PID); state == 'T' || state == 'Z' {
		t.Errorf("resumed %s (pid %d): state %c, want it running", id, lhr.PID, state)
	}
	waitFor(t, "resumed "+id+" serves /hello.txt", func() bool { st, _ := fetch(hc, lhrURL); return st == 200 }, d.p)

	// Kill: gone when the call returns, down at the origin once its
	// lease ran out, and it stays down.
	if err := ctl.Kill(ctx, id); err != nil {
		t.Fatal(err)
	}
	if alive(lhr.PID) {
		t.Errorf("killed %s: pid %d alive", id, lhr.PID)
	}
	if e := edgeState(id); e.State != devctl.StateKilled || e.Exit != "signal: killed" {
		t.Errorf("control lists %+v, want %s killed by signal: killed", e, id)
	}
	for name, err := range map[string]error{
		"kill a killed edge":   ctl.Kill(ctx, id),
		"pause a killed edge":  ctl.Pause(ctx, id),
		"resume a killed edge": ctl.Resume(ctx, id),
	} {
		if !errors.Is(err, devctl.ErrWrongState) {
			t.Errorf("%s: got %v, want %v", name, err, devctl.ErrWrongState)
		}
	}
	if err := ctl.Kill(ctx, "nowhere"); !errors.Is(err, devctl.ErrUnknownEdge) {
		t.Errorf("kill an unknown edge: got %v, want %v", err, devctl.ErrUnknownEdge)
	}
	intruder := &devctl.Client{URL: f.Control, Token: "not-the-token", HTTP: hc}
	if err := intruder.Kill(ctx, "nrt"); !errors.Is(err, devctl.ErrUnauthorized) {
		t.Errorf("kill with a wrong token: got %v, want %v", err, devctl.ErrUnauthorized)
	}
	waitFor(t, "origin lists "+id+" down", func() bool { return d.originEdgeState(hc, id) == origin.EdgeDown }, d.p)
	if e := edgeState(id); e.State != devctl.StateKilled {
		t.Errorf("killed %s after its lease ran out: %s, want still killed (no restart unasked)", id, e.State)
	}

	// Restart: a new process on the same data directory and addresses,
	// named in the answer and in the rewritten ready file.
	st, err := ctl.Do(ctx, id, devctl.ActionRestart)
	if err != nil {
		t.Fatal(err)
	}
	d.pids.add(st.PID)
	if st.State != devctl.StateRunning || st.Restarts != 1 || st.PID == lhr.PID {
		t.Errorf("restart answered %+v, want running, 1 restart, a pid other than %d", st, lhr.PID)
	}
	if state, ppid, ok := procStat(st.PID); !ok || state == 'Z' || ppid != devPID {
		t.Errorf("restarted %s pid %d: alive %v, parent %d, want a live child of dev %d", id, st.PID, ok, ppid, devPID)
	}
	nf, err := ready.Read(d.readyPath)
	if err != nil {
		t.Fatal(err)
	}
	nlhr := d.edge(t, nf, id)
	if nlhr.PID != st.PID || nlhr.HTTP != st.HTTP || nf.Origin.PID != f.Origin.PID {
		t.Errorf("ready file after the restart names %s %+v, want pid %d at %s and the rest unchanged", id, nlhr, st.PID, st.HTTP)
	}
	if nlhr.HTTP != lhr.HTTP || nlhr.Admin != lhr.Admin || nlhr.Data != lhr.Data {
		t.Errorf("restarted %s at %s/%s data %s, want its first addresses %s/%s and data %s",
			id, nlhr.HTTP, nlhr.Admin, nlhr.Data, lhr.HTTP, lhr.Admin, lhr.Data)
	}
	waitFor(t, "restarted "+id+" serves /hello.txt", func() bool {
		code, body := fetch(hc, "http://"+nlhr.HTTP+"/hello.txt")
		return code == 200 && bytes.Equal(body, sample)
	}, d.p)
	waitFor(t, "origin lists "+id+" up again", func() bool { return d.originEdgeState(hc, id) == origin.EdgeUp }, d.p)

	// Restart of a paused edge: its SIGTERM needs a SIGCONT to act.
	fra := d.edge(t, f, "fra")
	if err := ctl.Pause(ctx, "fra"); err != nil {
		t.Fatal(err)
	}
	st, err = ctl.Do(ctx, "fra", devctl.ActionRestart)
	if err != nil {
		t.Fatal(err)
	}
	d.pids.add(st.PID)
	if alive(fra.PID) || st.PID == fra.PID || st.State != devctl.StateRunning || st.Exit != "exit status 0" {
		t.Errorf("restart of paused fra: old pid %d alive %v, answer %+v, want it gone by a clean exit and a new one running", fra.PID, alive(fra.PID), st)
	}

	// A clean stop ends every node, then dev.
	d.p.signal(t, syscall.SIGTERM)
	if ps := d.p.wait(t); ps.ExitCode() != 0 {
		t.Fatalf("dev exited with %v after SIGTERM, want status 0", ps)
	}
	for _, pid := range d.pids.all() {
		if alive(pid) {
			t.Errorf("node pid %d survived dev's clean stop", pid)
		}
	}
	if _, err := os.Stat(d.readyPath); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("dev ready file after a clean exit: %v, want it removed", err)
	}
	if strings.Contains(d.p.out.String(), "ended unasked") {
		t.Errorf("dev reported a node ending unasked, but every end was asked for")
	}
}

// TestDevProcessesKill9LeavesNoOrphans: when dev is killed outright, the
// kernel kills its nodes (Pdeathsig).
func TestDevProcessesKill9LeavesNoOrphans(t *testing.T) {
	d := startDevProcesses(t)
	pids := nodePIDs(d.f)
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("node pid %d not alive before the kill", pid)
		}
	}
	d.p.kill9(t)
	waitFor(t, "every node gone after dev's SIGKILL", func() bool {
		for _, pid := range pids {
			if alive(pid) {
				return false
			}
		}
		return true
	})
}
