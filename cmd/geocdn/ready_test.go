package main

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/geocdn/geocdn/internal/ready"
	"github.com/geocdn/geocdn/origin"
)

// repoFile is a file of the repository's testdata; tests run in
// cmd/geocdn.
func repoFile(name string) string { return filepath.Join("..", "..", "testdata", name) }

// checkBound fails unless addr is a loopback host:port with a real port,
// as a ready file must name it.
func checkBound(t *testing.T, what, addr string) {
	t.Helper()
	ap, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil || ap.Port == 0 || !ap.IP.IsLoopback() {
		t.Errorf("%s: %q (%v), want a loopback host:port with the port bound", what, addr, err)
	}
}

// checkUDPInUse fails unless someone holds the UDP address: binding it
// again must fail. (Probing, not picking: the socket is closed at once if
// the bind unexpectedly works.)
func checkUDPInUse(t *testing.T, what, addr string) {
	t.Helper()
	checkBound(t, what, addr)
	pc, err := net.ListenPacket("udp", addr)
	if err == nil {
		pc.Close()
		t.Errorf("%s %s: nothing holds this UDP address", what, addr)
	}
}

// status is GET url's status code, 0 when it does not answer.
func status(c *http.Client, url string) int {
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestReadyFilesNameAddressesThatAnswer starts an origin, an edge and a
// router with every listener on port 0 and checks that each one's ready
// file names it and addresses that answer.
func TestReadyFilesNameAddressesThatAnswer(t *testing.T) {
	c := newCluster(t)
	e := c.addEdge("lhr", "eu-west", 51.51, -0.13)
	c.start()

	of, err := ready.Read(c.originReady)
	if err != nil {
		t.Fatal(err)
	}
	if of.Role != "origin" || of.ID != "origin-1" || of.PID != c.origin.cmd.Process.Pid {
		t.Errorf("origin ready file: %+v, want role origin, id origin-1, pid %d", of, c.origin.cmd.Process.Pid)
	}
	checkBound(t, "origin http", of.HTTP)
	if got := status(c.http, "http://"+of.HTTP+"/healthz"); got != 200 {
		t.Errorf("origin /healthz at %s: %d, want 200", of.HTTP, got)
	}
	// The edge was given this address as --origin and holds a lease: the
	// origin answers QUIC there.
	checkUDPInUse(t, "origin quic", of.QUIC)

	ef, err := ready.Read(e.readyFile)
	if err != nil {
		t.Fatal(err)
	}
	if ef.Role != "edge" || ef.ID != "lhr" || ef.PID != e.p.cmd.Process.Pid {
		t.Errorf("edge ready file: %+v, want role edge, id lhr, pid %d", ef, e.p.cmd.Process.Pid)
	}
	checkBound(t, "edge http", ef.HTTP)
	checkBound(t, "edge admin", ef.Admin)
	for _, u := range []string{"http://" + ef.HTTP + "/healthz", "http://" + ef.Admin + "/healthz"} {
		if got := status(c.http, u); got != 200 {
			t.Errorf("edge %s: %d, want 200", u, got)
		}
	}
	checkUDPInUse(t, "edge quic", ef.QUIC)
	// The origin sends clients to the address the edge bound.
	if st := c.edgesStatus(); len(st) != 1 || st[0].PublicURL != "http://"+ef.HTTP || st[0].State != origin.EdgeUp {
		t.Errorf("origin lists %+v, want lhr up at http://%s", st, ef.HTTP)
	}

	routerReady := filepath.Join(c.dir, "router.ready.json")
	rp, rf, taken := startNode(t, "router", routerReady, "router", "--http", anyPort,
		"--origin-admin", c.originURL(), "--token-file", c.tokenFile, "--geoip", repoFile("geoip-test.mmdb"),
		"--membership-interval", "100ms", "--probe-interval", "100ms")
	if taken {
		t.Fatalf("router could not bind port 0:\n%s", rp.out.String())
	}
	if rf.Role != "router" || rf.PID != rp.cmd.Process.Pid || rf.ID != "" || rf.QUIC != "" || rf.Admin != "" {
		t.Errorf("router ready file: %+v, want role router, pid %d and only an http address", rf, rp.cmd.Process.Pid)
	}
	checkBound(t, "router http", rf.HTTP)
	// Its /healthz turns 200 once it has found the edge through the
	// origin and probed it.
	waitFor(t, "router /healthz 200", func() bool { return status(c.http, "http://"+rf.HTTP+"/healthz") == 200 }, rp, e.p, c.origin)

	// A clean exit removes the file.
	rp.signal(t, syscall.SIGTERM)
	if st := rp.wait(t); st.ExitCode() != 0 {
		t.Fatalf("router exited with %v after SIGTERM, want status 0", st)
	}
	if _, err := os.Stat(routerReady); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("router ready file after a clean exit: %v, want it removed", err)
	}
}

// TestDevBasePortZero runs `geocdn dev --base-port 0`: every listener on
// a port the kernel picks, all of them named in the ready file and the
// banner, each answering.
func TestDevBasePortZero(t *testing.T) {
	dir := t.TempDir()
	readyPath := filepath.Join(dir, "dev.ready.json")
	p, f, taken := startNode(t, "dev", readyPath, "dev", "--base-port", "0", "--data", filepath.Join(dir, "data"),
		"--content", repoFile("sample"), "--geoip", repoFile("geoip-test.mmdb"))
	if taken {
		t.Fatalf("dev could not bind port 0:\n%s", p.out.String())
	}
	if f.Role != "dev" || f.PID != p.cmd.Process.Pid || f.Origin == nil || f.Router == nil || len(f.Edges) != len(devEdges) {
		t.Fatalf("dev ready file: %+v, want role dev, pid %d, an origin, a router and %d edges", f, p.cmd.Process.Pid, len(devEdges))
	}
	client := &http.Client{}
	defer client.CloseIdleConnections()

	checkBound(t, "origin http", f.Origin.HTTP)
	checkUDPInUse(t, "origin quic", f.Origin.QUIC)
	tok, err := os.ReadFile(f.TokenFile)
	if err != nil {
		t.Fatalf("token file: %v", err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+f.Origin.HTTP+"/v1/edges", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var listed []origin.EdgeStatus
	err = json.NewDecoder(resp.Body).Decode(&listed)
	resp.Body.Close()
	if resp.StatusCode != 200 || err != nil || len(listed) != len(devEdges) {
		t.Fatalf("GET /v1/edges with the token file's token: status %d, %d edges (%v), want 200 and %d", resp.StatusCode, len(listed), err, len(devEdges))
	}

	out := p.out.String()
	for i, ef := range f.Edges {
		if ef.Role != "edge" || ef.ID != devEdges[i].ID {
			t.Errorf("edge %d: %+v, want edge %s", i, ef, devEdges[i].ID)
		}
		checkBound(t, ef.ID+" http", ef.HTTP)
		checkBound(t, ef.ID+" admin", ef.Admin)
		checkUDPInUse(t, ef.ID+" quic", ef.QUIC)
		// The sample content was published with w=all before the file
		// was written: each edge serves it.
		if got := status(client, "http://"+ef.HTTP+"/hello.txt"); got != 200 {
			t.Errorf("%s GET /hello.txt: %d, want 200", ef.ID, got)
		}
		// What is not published is pulled from the sample site.
		if got := status(client, "http://"+ef.HTTP+"/site/static/app.css"); got != 200 {
			t.Errorf("%s GET /site/static/app.css (pulled): %d, want 200", ef.ID, got)
		}
		if got := status(client, "http://"+ef.Admin+"/metrics"); got != 200 {
			t.Errorf("%s admin /metrics: %d, want 200", ef.ID, got)
		}
		for _, a := range []string{"http://" + ef.HTTP, "http://" + ef.Admin + "/metrics"} {
			if !strings.Contains(out, a) {
				t.Errorf("banner does not show %s", a)
			}
		}
	}
	checkBound(t, "router http", f.Router.HTTP)
	if !strings.Contains(out, "http://"+f.Router.HTTP) {
		t.Errorf("banner does not show the router at http://%s", f.Router.HTTP)
	}
	waitFor(t, "dev router /healthz 200", func() bool { return status(client, "http://"+f.Router.HTTP+"/healthz") == 200 }, p)

	p.signal(t, syscall.SIGTERM)
	if st := p.wait(t); st.ExitCode() != 0 {
		t.Fatalf("dev exited with %v after SIGTERM, want status 0", st)
	}
	if _, err := os.Stat(readyPath); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("dev ready file after a clean exit: %v, want it removed", err)
	}
}
