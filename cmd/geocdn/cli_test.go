package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/geocdn/geocdn/invalidation"
	"github.com/geocdn/geocdn/origin"
)

// TestCLISetUpPublishServeStatusDelete walks the README's "running nodes
// by hand" path with the real binary: CA and certificates from the CLI, an
// origin and an edge as processes, then publish, serve, status and delete.
func TestCLISetUpPublishServeStatusDelete(t *testing.T) {
	c := newCluster(t)

	// `ca issue` says where it wrote the certificate, and keeps the key
	// private.
	out := mustCLI(t, "ca", "issue", "--dir", c.pki.dir, "--role", "edge", "--id", "e1")
	cert, key := filepath.Join(c.pki.dir, "edge-e1.crt"), filepath.Join(c.pki.dir, "edge-e1.key")
	if !strings.Contains(out, cert) || !strings.Contains(out, key) {
		t.Errorf("ca issue printed %q, want the paths %s and %s", out, cert, key)
	}
	if fi, err := os.Stat(key); err != nil {
		t.Fatal(err)
	} else if fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("node key %s has mode %v, want no access for group and others", key, fi.Mode().Perm())
	}
	if _, _, err := runCLI(t, "ca", "issue", "--dir", c.pki.dir, "--role", "router", "--id", "x"); err == nil {
		t.Errorf("ca issue --role router succeeded, want an error")
	}

	e1 := c.addEdge("e1", "eu-west", 51.51, -0.13)
	c.start()

	body := []byte("<!doctype html><h1>hello from a separate process</h1>\n")
	file := filepath.Join(t.TempDir(), "index.html")
	if err := os.WriteFile(file, body, 0o644); err != nil {
		t.Fatal(err)
	}
	cli := []string{"--origin", c.originURL(), "--token-file", c.tokenFile}
	out = mustCLI(t, append(append([]string{"publish"}, cli...),
		"--w", "all", "--cache-control", "public, max-age=60", "/site/index.html", file)...)
	var res origin.PublishResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("publish printed %q: %v", out, err)
	}
	if res.LSN == 0 || res.Digest != digestOf(body) || res.Size != uint64(len(body)) || !res.Committed {
		t.Fatalf("publish answered %+v, want an LSN, digest %s, size %d, committed", res, digestOf(body), len(body))
	}
	if !slices.Equal(res.Acked, []string{"e1"}) {
		t.Fatalf("publish --w all acked %v, want [e1]", res.Acked)
	}

	// w=all: the edge stored it before the publish returned, so the first
	// GET is a hit.
	g, err := c.get(e1.url()+"/site/index.html", false)
	if err != nil {
		t.Fatal(err)
	}
	if g.status != 200 || !bytes.Equal(g.body, body) {
		t.Fatalf("edge GET: status %d body %q, want 200 and the published file", g.status, g.body)
	}
	for h, want := range map[string]string{
		"X-Cache":       "HIT",
		"ETag":          `"` + res.Digest + `"`,
		"Cache-Control": "public, max-age=60",
		"Content-Type":  "text/html; charset=utf-8",
	} {
		if got := g.hdr.Get(h); got != want {
			t.Errorf("edge GET: %s %q, want %q", h, got, want)
		}
	}

	// status: the origin's section (LSN, scrubbing), then a table with
	// the edge up; and the same as JSON.
	out = mustCLI(t, append([]string{"status"}, cli...)...)
	var row []string
	header := -1
	lines := strings.Split(out, "\n")
	for i, line := range lines {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "e1" {
			row = f
		}
		if strings.HasPrefix(line, "EDGE") && header < 0 {
			header = i
		}
	}
	if len(row) < 7 || row[1] != "eu-west" || row[2] != "up" || row[len(row)-1] != e1.url() {
		t.Fatalf("status printed\n%s\nwant a row: e1 eu-west up ... %s", out, e1.url())
	}
	if header < 0 || !strings.HasPrefix(out, "ORIGIN") ||
		!strings.Contains(strings.Join(lines[:header], "\n"), "SCRUB") || strings.Contains(out, "CORRUPT") {
		t.Errorf("status printed\n%s\nwant an origin section with a SCRUB line and no corrupt blobs, then the EDGE table", out)
	}
	if !strings.Contains(out, fmt.Sprintf("LAST LSN  %d", res.LSN)) {
		t.Errorf("status printed\n%s\nwant LAST LSN %d", out, res.LSN)
	}
	out = mustCLI(t, append([]string{"status", "--json"}, cli...)...)
	var st origin.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json printed %q: %v", out, err)
	}
	edges := st.Edges
	if len(edges) != 1 || edges[0].ID != "e1" || edges[0].State != origin.EdgeUp || edges[0].PublicURL != e1.url() {
		t.Fatalf("status --json: %+v, want e1 up at %s", edges, e1.url())
	}
	if st.LastLSN != res.LSN || st.Scrub.Rate != 20<<20 || st.Scrub.Interval != "24h0m0s" || st.Scrub.CorruptBlobs == nil {
		t.Fatalf("status --json: lsn %d, scrub %+v; want lsn %d and the default scrub rate and interval", st.LastLSN, st.Scrub, res.LSN)
	}

	// placement plan | apply: the plan from a topology naming e1 is put in
	// force at the origin, which then serves it back.
	topo := filepath.Join(c.dir, "topology.yaml")
	demand := filepath.Join(c.dir, "demand.csv")
	planFile := filepath.Join(c.dir, "plan.json")
	if err := os.WriteFile(topo, []byte("version: 1\nedges:\n  - {id: e1, region: eu-west, lat: 51.51, lon: -0.13, fault_domain: uk, capacity: 1GB}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(demand, []byte("id,lat,lon,region,weight,country\nlondon,51.51,-0.13,eu-west,9.3,GB\nparis,48.86,2.35,eu-west,11.0,FR\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	plan := mustCLI(t, "placement", "plan", "--topology", topo, "--demand", demand, "--replicas", "1", "--json")
	if err := os.WriteFile(planFile, []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}
	out = mustCLI(t, append(append([]string{"placement", "apply"}, cli...), planFile)...)
	var applied origin.PlanResult
	if err := json.Unmarshal([]byte(out), &applied); err != nil || applied.LSN <= res.LSN || len(applied.Edges) != 1 || applied.Edges[0] != "e1" {
		t.Fatalf("placement apply printed %q (%v), want a committed LSN after %d naming e1", out, err, res.LSN)
	}
	if g, err := c.get(c.originURL()+"/v1/placement", true); err != nil || g.status != 200 || !bytes.Contains(g.body, []byte(`"e1"`)) {
		t.Fatalf("GET /v1/placement after apply: %+v %v, want the plan naming e1", g, err)
	}
	if err := os.WriteFile(planFile, []byte("{not a plan"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := runCLI(t, append(append([]string{"placement", "apply"}, cli...), planFile)...); err == nil || !strings.Contains(errOut, "plan.json") {
		t.Errorf("apply of a broken plan file: err %v, stderr %q; want a failure naming the file", err, errOut)
	}

	// A wrong token is refused with the origin's message.
	_, errOut, err := runCLI(t, "publish", "--origin", c.originURL(), "--token", "not-the-token-0123456789", "x.txt", file)
	if err == nil || !strings.Contains(errOut, "401") {
		t.Errorf("publish with a wrong token: err %v, stderr %q; want a failure naming 401", err, errOut)
	}

	// delete, then the edge answers 404 and so does the origin.
	out = mustCLI(t, append(append([]string{"delete"}, cli...), "site/index.html")...)
	var del struct {
		LSN       uint64 `json:"lsn"`
		Committed bool   `json:"committed"`
	}
	if err := json.Unmarshal([]byte(out), &del); err != nil {
		t.Fatalf("delete printed %q: %v", out, err)
	}
	if del.LSN <= res.LSN || !del.Committed {
		t.Fatalf("delete answered %s, want a committed LSN after %d", out, res.LSN)
	}
	waitFor(t, "edge answering 404 after delete", func() bool { return c.edgeServes(e1, "site/index.html", "") }, e1.p, c.origin)
	if d, err := c.originObject("site/index.html"); err != nil || d != "" {
		t.Fatalf("origin GET after delete: digest %q err %v, want 404", d, err)
	}
	_, errOut, err = runCLI(t, append(append([]string{"delete"}, cli...), "site/index.html")...)
	if err == nil || !strings.Contains(errOut, "404") {
		t.Errorf("second delete: err %v, stderr %q; want a failure naming 404", err, errOut)
	}
}

// TestCLIUsageErrors: wrong invocations fail with a message, not a panic
// or a silent success.
func TestCLIUsageErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"publish", "--token", "0123456789abcdef", "only-a-key"}, "publish needs KEY and FILE"},
		{[]string{"delete", "--token", "0123456789abcdef"}, "delete needs KEY"},
		{[]string{"status"}, "admin token is required"},
		{[]string{"status", "--token-file", empty}, "is empty"},
		{[]string{"status", "--token", "0123456789abcdef", "--origin", "127.0.0.1:1"}, "want a URL"},
		{[]string{"origin", "--data", dir, "--ca", dir}, "admin token is required"},
		{[]string{"origin", "--data", dir, "--ca", dir, "--token", "0123456789abcdef", "--scrub-rate", "fast"}, "--scrub-rate"},
		{[]string{"--log-level", "loud", "status"}, "--log-level"},
		{[]string{"dev", "--base-port", "65000"}, "--base-port 65000"},
	} {
		_, errOut, err := runCLI(t, tc.args...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("geocdn %s: %v, want exit status 1", strings.Join(tc.args, " "), err)
		}
		if !strings.Contains(errOut, tc.want) {
			t.Errorf("geocdn %s: stderr %q, want it to mention %q", strings.Join(tc.args, " "), errOut, tc.want)
		}
	}
}

func TestCAInitRefusesToOverwrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	mustCLI(t, "ca", "init", "--dir", dir)
	read := func() (crt, key []byte) {
		t.Helper()
		crt, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		key, err = os.ReadFile(filepath.Join(dir, "ca.key"))
		if err != nil {
			t.Fatal(err)
		}
		return crt, key
	}
	crt, key := read()
	_, errOut, err := runCLI(t, "ca", "init", "--dir", dir)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("second ca init: %v, want a non-zero exit", err)
	}
	if !strings.Contains(errOut, "already exists") {
		t.Errorf("second ca init: stderr %q, want it to say the CA already exists", errOut)
	}
	crt2, key2 := read()
	if !bytes.Equal(crt, crt2) || !bytes.Equal(key, key2) {
		t.Fatalf("second ca init changed the CA files")
	}
	// Only the key present (a half-restored backup) is refused as well.
	if err := os.Remove(filepath.Join(dir, "ca.crt")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCLI(t, "ca", "init", "--dir", dir); err == nil {
		t.Fatalf("ca init over a lone ca.key succeeded, want a refusal")
	}
	if key3, err := os.ReadFile(filepath.Join(dir, "ca.key")); err != nil || !bytes.Equal(key, key3) {
		t.Fatalf("ca init over a lone ca.key changed it (%v)", err)
	}
}

// TestEdgeWithAnotherEdgesCertificateIsRefused: an edge that announces an
// id other than its certificate's never joins. The valid edge keeps
// heartbeating meanwhile, which is what bounds the observation: no sleeps.
func TestEdgeWithAnotherEdgesCertificateIsRefused(t *testing.T) {
	c := newCluster(t)
	good := c.addEdge("lhr", "eu-west", 51.51, -0.13)
	c.start()

	// The impostor holds e2's certificate and says it is e1. No retry can
	// cure that, so the edge stops with the origin's reason.
	cert, key := c.pki.issue(t, "edge", "e2")
	impostor := startProc(t, "edge impostor", "edge", "--id", "e1", "--region", "us-east",
		"--lat", "38.9", "--lon", "-77.04", "--origin", c.originQUIC,
		"--http", anyPort, "--admin", anyPort, "--data", filepath.Join(c.dir, "edge-impostor"),
		"--ca", c.pki.dir, "--cert", cert, "--key", key)
	waitFor(t, "the impostor to stop", impostor.exited, c.origin, good.p)
	if st := impostor.wait(t); st.Success() {
		t.Fatalf("impostor exited with success; want a failure")
	}
	if want := `announced id "e1" does not match certificate identity geocdn://edge/e2`; !strings.Contains(impostor.out.String(), want) {
		t.Errorf("impostor output does not give the reason %q:\n%s", want, impostor.out.String())
	}
	if want := `announced id \"e1\" does not match certificate identity`; !strings.Contains(c.origin.out.String(), want) {
		t.Errorf("origin log does not give the reason %q", want)
	}
	for _, st := range c.edgesStatus() {
		if st.ID == "e1" || st.ID == "e2" {
			t.Errorf("origin lists the impostor as %+v; it never passed the hello", st)
		}
	}
	if h := c.healthz(good); h != 200 {
		t.Errorf("lhr /healthz %d, want 200", h)
	}
}

func TestOriginHelpDocumentsLeaseMarginAndDriftBound(t *testing.T) {
	out := mustCLI(t, "origin", "--help")
	for _, want := range []string{
		"--lease",
		"drift bound",
		fmt.Sprintf("ρ = %g", invalidation.DriftBound),
		"ρ·term + " + invalidation.MarginBase.String(),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("geocdn origin --help does not mention %q:\n%s", want, out)
		}
	}
	// A back-quoted word in a flag's usage becomes its placeholder; the
	// certificate flag must read as a file, not as a command.
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "--cert" && f[1] != "value" {
			t.Errorf("--cert is shown as %q", strings.TrimSpace(line))
		}
	}
}
