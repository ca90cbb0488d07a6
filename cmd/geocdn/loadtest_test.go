package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// loadtestReport is the part of report.json these tests read.
type loadtestReport struct {
	Schema      string `json:"schema"`
	Interrupted bool   `json:"interrupted"`
	Corrupt     int64  `json:"corrupt"`
	Stale       int64  `json:"stale"`
	Overall     struct {
		Requests int64 `json:"requests"`
	} `json:"overall"`
	Errors struct {
		ByClass map[string]int64 `json:"by_class"`
	} `json:"errors"`
	Events []struct {
		Description string `json:"description"`
		Error       string `json:"error"`
	} `json:"events"`
	Convergence *struct {
		OK        bool     `json:"ok"`
		Converged []string `json:"converged"`
	} `json:"convergence"`
}

func readLoadtestReport(t *testing.T, dir string) loadtestReport {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatalf("report.json: %v", err)
	}
	var rep loadtestReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "report.html")); err != nil {
		t.Fatalf("report.html: %v", err)
	}
	return rep
}

// TestLoadtestProcess runs the real binaries as separate processes: a
// `geocdn loadtest` through the router of a `geocdn dev --processes`,
// with strong publishes, one edge paused and resumed and another killed
// and restarted mid-run by the dev cluster's control API. Nothing corrupt or stale may be served, and
// after the run every edge, the restarted one included, must converge
// and read back every acknowledged publish.
func TestLoadtestProcess(t *testing.T) {
	d := startDevProcesses(t)
	dir := t.TempDir()
	scn := filepath.Join(dir, "kill.yaml")
	err := os.WriteFile(scn, []byte(`
name: kill
seed: 9
target: {kind: router, keep_edge: true, session_requests: 10}
clients:
  demand: `+repoFile("demand.csv")+`
  regions: {eu-west: 3, us-east: 1, jp-east: 1}
objects: {count: 100, sizes: 4KiB}
arrivals:
  phases:
    - {rate: 60, for: 8s}
mix: {get: 80, head: 5, conditional: 10, range: 5}
writes:
  - {op: publish, rate: 2, consistency: strong, w: all}
events:
  - {at: 1s, pause: {edge: fra, for: 2s}}
  - {at: 2s, kill: lhr}
  - {at: 5s, restart: lhr}
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	stdout, stderr, err := runCLI(t, "loadtest", "--cluster", d.readyPath, "--geoip", repoFile("geoip-test.mmdb"),
		"--out", out, "--converge", "30s", scn)
	if err != nil {
		t.Fatalf("geocdn loadtest: %v\n%s\n%s", err, stdout, stderr)
	}
	rep := readLoadtestReport(t, out)
	if rep.Schema != "geocdn-loadtest/1" || rep.Interrupted {
		t.Fatalf("report: schema %q, interrupted %v", rep.Schema, rep.Interrupted)
	}
	if rep.Corrupt != 0 || rep.Stale != 0 {
		t.Fatalf("corrupt %d, stale %d:\n%s", rep.Corrupt, rep.Stale, stdout)
	}
	if rep.Overall.Requests != 480 {
		t.Fatalf("%d reads, want 480 (60/s for 8 s)", rep.Overall.Requests)
	}
	seen := map[string]bool{}
	for _, e := range rep.Events {
		if e.Error != "" {
			t.Errorf("event %q failed: %s", e.Description, e.Error)
		}
		seen[e.Description] = true
	}
	for _, want := range []string{"pause fra for 2s", "resume fra", "kill lhr", "restart lhr"} {
		if !seen[want] {
			t.Fatalf("events %+v, want %q among them", rep.Events, want)
		}
	}
	if c := rep.Convergence; c == nil || !c.OK || len(c.Converged) != len(devEdges) {
		t.Fatalf("convergence %+v, want every one of %d edges converged:\n%s", c, len(devEdges), stdout)
	}
	if !strings.Contains(stdout, "report: ") {
		t.Errorf("stdout does not say where the report is:\n%s", stdout)
	}
}

// TestLoadtestInterrupt: SIGINT stops a run cleanly, and the report of
// what ran is still written, marked interrupted.
func TestLoadtestInterrupt(t *testing.T) {
	d := startDevProcesses(t)
	dir := t.TempDir()
	scn := filepath.Join(dir, "long.yaml")
	err := os.WriteFile(scn, []byte(`
name: long
target: edge:fra
clients: {demand: `+repoFile("demand.csv")+`}
objects: {count: 20, sizes: 1KiB}
arrivals:
  phases:
    - {rate: 50, for: 10m}
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	p := startProc(t, "loadtest", "loadtest", "--cluster", d.readyPath, "--geoip", repoFile("geoip-test.mmdb"), "--out", out, scn)
	// The progress line comes every 5 s when stderr is not a terminal.
	waitFor(t, "a progress line", func() bool { return strings.Contains(p.out.String(), "req/s") }, p)
	p.signal(t, syscall.SIGINT)
	st := p.wait(t)
	if st.ExitCode() != 0 {
		t.Fatalf("interrupted loadtest exited %d:\n%s", st.ExitCode(), p.out.String())
	}
	rep := readLoadtestReport(t, out)
	if !rep.Interrupted || rep.Overall.Requests == 0 || rep.Convergence != nil {
		t.Fatalf("report: interrupted %v, %d requests, convergence %+v: want an interrupted run's requests and no final check",
			rep.Interrupted, rep.Overall.Requests, rep.Convergence)
	}
	if rep.Corrupt != 0 || rep.Stale != 0 {
		t.Fatalf("corrupt %d, stale %d", rep.Corrupt, rep.Stale)
	}
}
