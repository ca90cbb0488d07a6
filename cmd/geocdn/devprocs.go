package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/geocdn/geocdn/internal/devctl"
	"github.com/geocdn/geocdn/internal/pki"
	"github.com/geocdn/geocdn/internal/ready"
	"github.com/geocdn/geocdn/origin"
)

// devProcs is the cluster of `geocdn dev --processes`: the origin, the
// dev edges and the router, each a child process of this binary run
// with the node commands' own flags, so that one edge can be killed,
// paused or restarted alone. It is the control API's devctl.Controller.
//
// Layout under the data directory: ca/ (a dev CA whose key the nodes
// issue their certificates with), token, origin/ and edge-ID/ (as the
// in-process cluster), logs/NODE.log and run/NODE.ready.json.
type devProcs struct {
	dir, caDir, tokenFile, token string
	logDir, runDir               string
	exe, logLevel                string
	env                          []string
	lease                        time.Duration
	addr                         func(off int) string
	geoip                        string
	// site is the sample website's URL, every origin's --upstream.
	site string
	// webCert and webKey are the edges' development certificate, from
	// the dev CA, whose certificate caFile clients trust.
	webCert, webKey, caFile string

	origin, router *devctl.Proc
	// moreOrigins are the origins after the first, which join it.
	moreOrigins []*devctl.Proc
	edges       []*devctl.Proc // devEdges' order
	byID        map[string]*devctl.Proc

	// readyPath is dev's --ready-file ("" for none) and control the
	// control API's address. mu serialises writes of the file and
	// closed ends them once dev is stopping.
	readyPath, control string
	mu                 sync.Mutex
	closed             bool
}

var _ devctl.Controller = (*devProcs)(nil)

// runDevProcesses is the Action of `geocdn dev --processes`: the same
// cluster as the in-process one, in child processes, plus the control
// API.
func runDevProcesses(c *cli.Context, dir string, addr func(int) string, site string) error {
	ctx, stop := signalContext()
	defer stop()
	d, err := newDevProcs(c, dir, addr, site)
	if err != nil {
		return err
	}
	// Stops every child on every way out; the children die with this
	// process anyway (Pdeathsig), but a stop lets them exit cleanly.
	defer d.stop()
	if err := d.start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while starting
		}
		return err
	}
	keys, err := publishDir(ctx, d.originURL(), d.token, c.String("content"))
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	ln, err := net.Listen("tcp", addr(200))
	if err != nil {
		return fmt.Errorf("control API: %w", err)
	}
	d.control = ln.Addr().String()
	srv := &http.Server{Handler: devctl.Handler(d, d.token), ReadHeaderTimeout: 10 * time.Second}
	srvDone := make(chan struct{})
	go func() {
		defer close(srvDone)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("control API", "err", err)
		}
	}()
	defer func() {
		// An action in progress finishes: Proc.Stop waits for it.
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shut)
		srv.Close()
		<-srvDone
	}()

	printDev(d.banner(keys))
	// Written last: the sample content is on every edge by now.
	if err := d.writeReady(); err != nil {
		return err
	}
	defer d.removeReady()
	<-ctx.Done()
	fmt.Println("\nstopping…")
	return nil
}

// newDevProcs prepares the data directory (CA, token, logs) and the
// supervisors; nothing runs yet.
func newDevProcs(c *cli.Context, dir string, addr func(int) string, site string) (*devProcs, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("--processes: finding this binary to run the nodes: %w", err)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	geoip, err := filepath.Abs(c.String("geoip"))
	if err != nil {
		return nil, err
	}
	d := &devProcs{
		dir: dir, caDir: filepath.Join(dir, "ca"), tokenFile: filepath.Join(dir, "token"),
		logDir: filepath.Join(dir, "logs"), runDir: filepath.Join(dir, "run"),
		exe: exe, logLevel: c.String("log-level"), env: nodeEnv(), lease: c.Duration("lease"),
		addr: addr, geoip: geoip, byID: map[string]*devctl.Proc{}, readyPath: c.String("ready-file"),
		site: site,
	}
	for _, sub := range []string{d.logDir, d.runDir} {
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return nil, err
		}
	}
	if err := devCA(d.caDir); err != nil {
		return nil, err
	}
	ca, err := pki.LoadCA(d.caDir)
	if err != nil {
		return nil, err
	}
	if d.webCert, d.webKey, err = pki.IssueWebFiles(ca, "dev", pki.LoopbackHosts, d.caDir, time.Now(), 30*24*time.Hour); err != nil {
		return nil, fmt.Errorf("development certificate: %w", err)
	}
	d.caFile = filepath.Join(d.caDir, pki.CACertFile)
	// A fresh token every run, as the in-process cluster makes one.
	b := make([]byte, 16)
	rand.Read(b)
	d.token = hex.EncodeToString(b)
	if err := os.WriteFile(d.tokenFile, []byte(d.token+"\n"), 0o600); err != nil {
		return nil, err
	}

	origins := c.Int("origins")
	// raftArgs puts an origin of a cluster of several on a cluster port:
	// the kernel picks it the first time, and a restart binds the same.
	raftArgs := func(prev ready.File) []string {
		if origins == 1 {
			return nil
		}
		return []string{"--raft", cmp.Or(prev.Raft, "127.0.0.1:0")}
	}
	if d.origin, err = d.proc("origin", func(prev ready.File) []string {
		args := []string{"origin", "--data", filepath.Join(dir, "origin"), "--http", addr(0), "--quic", addr(0),
			"--ca", d.caDir, "--token-file", d.tokenFile, "--lease", d.lease.String(), "--upstream", "default=" + d.site}
		if origins > 1 {
			args = append(args, "--id", "o1")
		}
		return append(args, raftArgs(prev)...)
	}); err != nil {
		return nil, err
	}
	for i := 2; i <= origins; i++ {
		id := fmt.Sprintf("o%d", i)
		p, err := d.proc("origin-"+id, func(prev ready.File) []string {
			httpAddr, quicAddr := cmp.Or(prev.HTTP, "127.0.0.1:0"), cmp.Or(prev.QUIC, "127.0.0.1:0")
			return append([]string{"origin", "--id", id, "--data", filepath.Join(dir, "origin-"+id), "--http", httpAddr, "--quic", quicAddr,
				"--ca", d.caDir, "--token-file", d.tokenFile, "--lease", d.lease.String(), "--join", d.originURL(),
				"--upstream", "default=" + d.site}, raftArgs(prev)...)
		})
		if err != nil {
			return nil, err
		}
		d.moreOrigins = append(d.moreOrigins, p)
	}
	for i, s := range devEdges {
		p, err := d.proc(s.ID, func(prev ready.File) []string {
			// A restart binds the addresses the first run was given, as
			// the in-process cluster's does: the edge's public URL, which
			// the origin lists and clients were sent to, stays valid.
			httpAddr, adminAddr, httpsAddr := addr(1+i), addr(1001+i), addr(devHTTPSOffset+i)
			if prev.HTTP != "" {
				httpAddr, adminAddr, httpsAddr = prev.HTTP, prev.Admin, cmp.Or(prev.HTTPS, httpsAddr)
			}
			return []string{"edge", "--id", s.ID, "--region", s.Region,
				"--lat=" + strconv.FormatFloat(s.Lat, 'f', -1, 64), "--lon=" + strconv.FormatFloat(s.Lon, 'f', -1, 64),
				"--origin", d.originQUICs(), "--http", httpAddr, "--admin", adminAddr,
				"--data", filepath.Join(dir, "edge-"+s.ID), "--ca", d.caDir,
				// HTTPS and HTTP/3 beside HTTP; the router keeps sending
				// clients to HTTP, as the in-process cluster's does.
				"--https", httpsAddr, "--tls-cert", d.webCert, "--tls-key", d.webKey,
				"--public-scheme", "http",
				// The in-process edges have no drain delay either.
				"--drain-delay", "0s"}
		})
		if err != nil {
			return nil, err
		}
		d.edges = append(d.edges, p)
		d.byID[s.ID] = p
	}
	if d.router, err = d.proc("router", func(ready.File) []string {
		// As the in-process router: loopback is a trusted proxy, so
		// X-Forwarded-For can play a client anywhere in the test GeoIP
		// database, and clients it places nowhere are in Frankfurt.
		return []string{"router", "--http", addr(100), "--origin-admin", d.originURL(), "--token-file", d.tokenFile,
			"--geoip", d.geoip, "--default-location", "50.11,8.68", "--trusted-proxies", "127.0.0.0/8,::1/128"}
	}); err != nil {
		return nil, err
	}
	return d, nil
}

// devCA makes the dev CA in dir, or keeps the one a run on the same data
// directory made. The nodes get only --ca: with the CA key there, each
// issues its own certificate in memory (loadNodeCert), so no node key is
// ever written.
func devCA(dir string) error {
	ca, err := pki.LoadCA(dir)
	switch {
	case err == nil && ca.Key == nil:
		return fmt.Errorf("--data: %s has a CA without its key, which the dev nodes need to issue their certificates", dir)
	case err == nil:
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("--data: %w", err)
	}
	return pki.InitCA(dir, time.Now())
}

// nodeEnv is this process's environment without GEOCDN_* variables: the
// dev cluster's nodes take every setting from their flags, so a variable
// meant for dev (GEOCDN_READY_FILE, say) cannot change a node.
func nodeEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GEOCDN_") {
			env = append(env, kv)
		}
	}
	return env
}

// proc makes the supervisor of node name; args are its command's.
func (d *devProcs) proc(name string, args func(prev ready.File) []string) (*devctl.Proc, error) {
	return devctl.NewProc(devctl.ProcConfig{
		Name: name, Path: d.exe, Env: d.env,
		Args: func(prev ready.File) []string {
			return append([]string{"--log-level", d.logLevel}, args(prev)...)
		},
		ReadyFile: filepath.Join(d.runDir, name+".ready.json"),
		LogFile:   filepath.Join(d.logDir, name+".log"),
		Logger:    slog.Default(),
	})
}

func (d *devProcs) originURL() string  { return "http://" + d.origin.Status().Ready.HTTP }
func (d *devProcs) originQUIC() string { return d.origin.Status().Ready.QUIC }

// originQUICs is every origin's QUIC address, comma-separated, for edges.
func (d *devProcs) originQUICs() string {
	addrs := []string{d.originQUIC()}
	for _, p := range d.moreOrigins {
		addrs = append(addrs, p.Status().Ready.QUIC)
	}
	return strings.Join(addrs, ",")
}

// start starts the origin, then the edges (together) and the router, and
// waits until the origin lists every edge up, so that the w=all publish
// of the sample content reaches them all.
func (d *devProcs) start(ctx context.Context) error {
	if _, err := d.origin.Start(ctx); err != nil {
		return err
	}
	for _, p := range d.moreOrigins {
		if _, err := p.Start(ctx); err != nil {
			return err
		}
	}
	errs := make([]error, len(d.edges)+1)
	var wg sync.WaitGroup
	for i, p := range append(d.edges[:len(d.edges):len(d.edges)], d.router) {
		wg.Go(func() {
			_, errs[i] = p.Start(ctx)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return d.waitEdgesUp(ctx)
}

// waitEdgesUp polls the origin's /v1/edges until every dev edge is up.
func (d *devProcs) waitEdgesUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	var last string
	for {
		up, err := d.edgesUp(ctx, hc)
		if err == nil && up == len(devEdges) {
			return nil
		}
		last = fmt.Sprintf("%d of %d edges up (%v)", up, len(devEdges), err)
		if st := d.origin.Status(); st.State != devctl.StateRunning {
			return fmt.Errorf("origin %s (%s); see %s", st.State, st.Exit, st.Log)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the edges to reach the origin: %s: %w", last, ctx.Err())
		case <-t.C:
		}
	}
}

func (d *devProcs) edgesUp(ctx context.Context, hc *http.Client) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.originURL()+"/v1/edges", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /v1/edges: %s", resp.Status)
	}
	var sts []origin.EdgeStatus
	if err := json.NewDecoder(resp.Body).Decode(&sts); err != nil {
		return 0, err
	}
	up := 0
	for _, st := range sts {
		if st.State == origin.EdgeUp && d.byID[st.ID] != nil {
			up++
		}
	}
	return up, nil
}

// stop stops the router, then the edges together, then the origin, so
// no node sees the one it depends on go first.
func (d *devProcs) stop() {
	ctx := context.Background()
	d.router.Stop(ctx)
	var wg sync.WaitGroup
	for _, p := range d.edges {
		wg.Go(func() { p.Stop(ctx) })
	}
	wg.Wait()
	for _, p := range d.moreOrigins {
		wg.Go(func() { p.Stop(ctx) })
	}
	wg.Wait()
	d.origin.Stop(ctx)
}

// Edges lists the edges for the control API.
func (d *devProcs) Edges(context.Context) ([]devctl.EdgeStatus, error) {
	out := make([]devctl.EdgeStatus, len(d.edges))
	for i, p := range d.edges {
		out[i] = edgeStatus(devEdges[i].ID, p.Status())
	}
	return out, nil
}

// Act applies a control API action to edge id. After a restart the dev
// ready file names the new process.
func (d *devProcs) Act(ctx context.Context, id string, a devctl.Action) (devctl.EdgeStatus, error) {
	p := d.byID[id]
	if p == nil {
		return devctl.EdgeStatus{}, fmt.Errorf("%w %q", devctl.ErrUnknownEdge, id)
	}
	var err error
	switch a {
	case devctl.ActionKill:
		err = p.Kill(ctx)
	case devctl.ActionPause:
		err = p.Pause(ctx)
	case devctl.ActionResume:
		err = p.Resume(ctx)
	case devctl.ActionRestart:
		if _, err = p.Restart(ctx); err == nil {
			err = d.writeReady()
		}
	default:
		err = fmt.Errorf("%w %q", devctl.ErrUnknownAction, a)
	}
	if err != nil {
		return devctl.EdgeStatus{}, err
	}
	return edgeStatus(id, p.Status()), nil
}

func edgeStatus(id string, st devctl.ProcStatus) devctl.EdgeStatus {
	return devctl.EdgeStatus{ID: id, PID: st.PID, State: st.State, Restarts: st.Restarts,
		HTTP: st.Ready.HTTP, Admin: st.Ready.Admin, Exit: st.Exit, Log: st.Log}
}

// nodeFile is a node's entry in the dev ready file: what it reported,
// with where its data and log are.
func (d *devProcs) nodeFile(p *devctl.Proc, data string) ready.File {
	st := p.Status()
	f := st.Ready
	f.PID, f.Log = st.PID, st.Log
	if data != "" {
		f.Data = filepath.Join(d.dir, data)
	}
	return f
}

func (d *devProcs) readyFile() ready.File {
	o, r := d.nodeFile(d.origin, "origin"), d.nodeFile(d.router, "")
	f := ready.File{Role: "dev", PID: os.Getpid(), TokenFile: d.tokenFile, Control: d.control, Origin: &o, Router: &r}
	for i, p := range d.edges {
		f.Edges = append(f.Edges, d.nodeFile(p, "edge-"+devEdges[i].ID))
	}
	return f
}

// writeReady writes dev's ready file, unless there is none or dev is
// stopping (a restart finishing then must not bring back the file
// removeReady removed).
func (d *devProcs) writeReady() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.readyPath == "" || d.closed {
		return nil
	}
	return ready.Write(d.readyPath, d.readyFile())
}

func (d *devProcs) removeReady() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.readyPath != "" {
		ready.Remove(d.readyPath, os.Getpid())
	}
}

func (d *devProcs) banner(keys []string) devBanner {
	b := devBanner{dir: d.dir, originURL: d.originURL(), token: d.token, routerURL: "http://" + d.router.Status().Ready.HTTP,
		keys: keys, control: "http://" + d.control, logs: d.logDir, site: d.site, caFile: d.caFile}
	for _, p := range d.moreOrigins {
		b.moreOrigins = append(b.moreOrigins, "http://"+p.Status().Ready.HTTP)
	}
	for i, p := range d.edges {
		st := p.Status()
		be := bannerEdge{id: devEdges[i].ID, region: devEdges[i].Region,
			url: "http://" + st.Ready.HTTP, admin: st.Ready.Admin, pid: st.PID}
		if st.Ready.HTTPS != "" {
			be.https = "https://" + st.Ready.HTTPS
		}
		b.edges = append(b.edges, be)
	}
	return b
}
