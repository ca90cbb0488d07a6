package router

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/clock"
	"github.com/geocdn/geocdn/internal/geo"
	"github.com/geocdn/geocdn/origin"
	"github.com/geocdn/geocdn/placement"
)

const testToken = "router-test-token-0123456789"

// fakeEdge is an edge's client listener: /healthz answers 200 while
// healthy, anything else 200 "edge <id>".
type fakeEdge struct {
	spec    Edge
	srv     *httptest.Server
	healthy atomic.Bool
	probes  atomic.Int64
}

func newFakeEdge(t *testing.T, spec Edge) *fakeEdge {
	t.Helper()
	fe := &fakeEdge{spec: spec}
	fe.healthy.Store(true)
	fe.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			fe.probes.Add(1)
			if !fe.healthy.Load() {
				http.Error(w, "unhealthy", http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "ok\n")
			return
		}
		fmt.Fprintf(w, "edge %s %s\n", spec.ID, r.URL.RequestURI())
	}))
	t.Cleanup(fe.srv.Close)
	return fe
}

// fakeOrigin serves GET /v1/edges from a list the test edits.
type fakeOrigin struct {
	srv *httptest.Server

	mu      sync.Mutex
	edges   map[string]origin.EdgeStatus
	fail    bool
	plan    []byte // GET /v1/placement; nil: 404
	planLSN int
}

func newFakeOrigin(t *testing.T) *fakeOrigin {
	t.Helper()
	fo := &fakeOrigin{edges: map[string]origin.EdgeStatus{}}
	fo.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testToken {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		fo.mu.Lock()
		defer fo.mu.Unlock()
		if r.Method == http.MethodGet && r.URL.Path == "/v1/placement" && fo.plan != nil {
			w.Header().Set(origin.HeaderLSN, fmt.Sprint(fo.planLSN))
			w.Write(fo.plan)
			return
		}
		if r.Method != http.MethodGet || r.URL.Path != "/v1/edges" {
			http.NotFound(w, r)
			return
		}
		if fo.fail {
			http.Error(w, "down for the test", http.StatusInternalServerError)
			return
		}
		list := make([]origin.EdgeStatus, 0, len(fo.edges))
		for _, e := range fo.edges {
			list = append(list, e)
		}
		slices.SortFunc(list, func(a, b origin.EdgeStatus) int { return strings.Compare(a.ID, b.ID) })
		json.NewEncoder(w).Encode(list)
	}))
	t.Cleanup(fo.srv.Close)
	return fo
}

func (fo *fakeOrigin) set(fe *fakeEdge, state origin.EdgeState) {
	fo.mu.Lock()
	defer fo.mu.Unlock()
	fo.edges[fe.spec.ID] = origin.EdgeStatus{
		ID: fe.spec.ID, Region: fe.spec.Region, Lat: fe.spec.Lat, Lon: fe.spec.Lon,
		FaultDomain: fe.spec.Region, PublicURL: fe.srv.URL, State: state,
	}
}

// setPlan applies p (nil withdraws the plan).
func (fo *fakeOrigin) setPlan(t *testing.T, p *placement.Plan) {
	t.Helper()
	fo.mu.Lock()
	defer fo.mu.Unlock()
	fo.plan = nil
	if p != nil {
		b, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		fo.plan = b
	}
	fo.planLSN++
}

func (fo *fakeOrigin) remove(id string) {
	fo.mu.Lock()
	defer fo.mu.Unlock()
	delete(fo.edges, id)
}

func (fo *fakeOrigin) setFail(b bool) {
	fo.mu.Lock()
	defer fo.mu.Unlock()
	fo.fail = b
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// cluster is a fake origin, fake edges (the dev cluster's) and a router
// trusting loopback proxies, all on loopback.
type cluster struct {
	t      *testing.T
	origin *fakeOrigin
	edges  map[string]*fakeEdge
	router *Router
	url    string
	client *http.Client
}

func startCluster(t *testing.T, specs []Edge, mod func(*Config)) *cluster {
	t.Helper()
	c := &cluster{t: t, origin: newFakeOrigin(t), edges: map[string]*fakeEdge{}}
	for _, s := range specs {
		fe := newFakeEdge(t, s)
		c.edges[s.ID] = fe
		c.origin.set(fe, origin.EdgeUp)
	}
	def := geo.Point{Lat: 50.11, Lon: 8.68}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		HTTPListener: ln, OriginAdmin: c.origin.srv.URL, Token: testToken, GeoIPPath: testDB,
		DefaultLocation: &def, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		MembershipInterval: 50 * time.Millisecond, ProbeInterval: 25 * time.Millisecond, ProbeTimeout: 500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.router = r
	c.url = "http://" + r.HTTPAddr().String()
	c.client = &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return c
}

// eventually polls cond until it holds; the deadline is generous because
// the machine may be busy, and nothing here asserts how fast.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *cluster) waitRoutable(ids ...string) {
	c.t.Helper()
	slices.Sort(ids)
	eventually(c.t, fmt.Sprintf("routable = %v", ids), func() bool { return slices.Equal(c.router.Routable(), ids) })
}

// get sends GET path with optional X-Forwarded-For and returns the
// response (body read and closed).
func (c *cluster) get(path string, hdr ...string) (*http.Response, string) {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.url+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.client.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// edgeFor returns the id of the edge a redirect points at.
func (c *cluster) edgeFor(resp *http.Response) string {
	loc := resp.Header.Get("Location")
	for id, fe := range c.edges {
		if strings.HasPrefix(loc, fe.srv.URL+"/") {
			return id
		}
	}
	return ""
}

func allIDs(specs []Edge) []string {
	var ids []string
	for _, s := range specs {
		ids = append(ids, s.ID)
	}
	return ids
}

func TestRedirectToNearestEdge(t *testing.T) {
	specs := devEdges()
	c := startCluster(t, specs, nil)
	c.waitRoutable(allIDs(specs)...)
	for _, tc := range []struct {
		client string
		want   []string
	}{
		{ipParis, []string{"lhr", "fra"}},
		{ipTokyo, []string{"nrt"}},
		{ipSydney, []string{"syd"}},
		{ipSaoPaulo, []string{"gru"}},
		{ipNewYork, []string{"iad"}},
		{ip6Tokyo, []string{"nrt"}},
		{"::ffff:" + ipSydney, []string{"syd"}},
		{ipUnknown, []string{"fra"}}, // the default location
	} {
		t.Run(tc.client, func(t *testing.T) {
			resp, _ := c.get("/img/logo%20big.png?v=3&x=%2F", "X-Forwarded-For", tc.client)
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("status %s", resp.Status)
			}
			id := c.edgeFor(resp)
			if !slices.Contains(tc.want, id) {
				t.Fatalf("Location %q (edge %q), want one of %v", resp.Header.Get("Location"), id, tc.want)
			}
			if want := c.edges[id].srv.URL + "/img/logo%20big.png?v=3&x=%2F"; resp.Header.Get("Location") != want {
				t.Fatalf("Location %q, want %q", resp.Header.Get("Location"), want)
			}
			if resp.Header.Get("Geocdn-Edge") != id || resp.Header.Get("Cache-Control") != "no-store" {
				t.Fatalf("headers %v", resp.Header)
			}
		})
	}
	// Following the redirect reaches the edge.
	resp, err := http.Get(c.url + "/a/b.txt")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(b), "edge ") || !strings.Contains(string(b), "/a/b.txt") {
		t.Fatalf("followed: %s %q", resp.Status, b)
	}
	// HEAD redirects too; other methods do not.
	req, _ := http.NewRequest(http.MethodHead, c.url+"/k", nil)
	if resp, err := c.client.Do(req); err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("HEAD: %v %v", resp, err)
	}
	req, _ = http.NewRequest(http.MethodPost, c.url+"/k", nil)
	if resp, err := c.client.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %v %v", resp, err)
	}
}

// rawGet sends a request line byte for byte, so nothing cleans the path
// before the router sees it.
func rawGet(t *testing.T, addr, target string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: cdn.test\r\nConnection: close\r\n\r\n", target)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestBadKeyIs400NotRedirect(t *testing.T) {
	c := startCluster(t, devEdges()[:1], nil)
	c.waitRoutable("iad")
	for _, target := range []string{
		"/a/../b", "/a/./b", "/a//b", "/", "//", "/a/", "/%2e%2e/etc/passwd", "/a%2F..%2Fb",
		"/a%00b", "/a%zz", "/" + strings.Repeat("x", 1100), "*",
	} {
		t.Run(target[:min(len(target), 20)], func(t *testing.T) {
			resp := rawGet(t, c.router.HTTPAddr().String(), target)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("GET %s: %s (Location %q), want 400", target, resp.Status, resp.Header.Get("Location"))
			}
		})
	}
	if resp := rawGet(t, c.router.HTTPAddr().String(), "/ok/key"); resp.StatusCode != http.StatusFound {
		t.Fatalf("GET /ok/key: %s", resp.Status)
	}
}

func TestFailoverAndRecovery(t *testing.T) {
	specs := []Edge{
		{ID: "lhr", Region: "eu-west", Lat: 51.51, Lon: -0.13},
		{ID: "fra", Region: "eu-central", Lat: 50.11, Lon: 8.68},
		{ID: "nrt", Region: "ap-northeast", Lat: 35.68, Lon: 139.69},
	}
	c := startCluster(t, specs, nil)
	c.waitRoutable("fra", "lhr", "nrt")
	keys := make([]string, 40)
	for i := range keys {
		keys[i] = fmt.Sprintf("/obj/%d", i)
	}
	parisEdges := func() map[string]int {
		n := map[string]int{}
		for _, k := range keys {
			resp, _ := c.get(k, "X-Forwarded-For", ipParis)
			if resp.StatusCode != http.StatusFound {
				n[resp.Status]++
				continue
			}
			n[c.edgeFor(resp)]++
		}
		return n
	}
	if n := parisEdges(); n["fra"] == 0 || n["lhr"] == 0 || len(n) != 2 {
		t.Fatalf("Paris keys went to %v, want both European edges", n)
	}

	// fra's /healthz fails: no new client goes there.
	c.edges["fra"].healthy.Store(false)
	c.waitRoutable("lhr", "nrt")
	if n := parisEdges(); n["lhr"] != len(keys) {
		t.Fatalf("with fra failing, Paris keys went to %v", n)
	}
	// It recovers.
	c.edges["fra"].healthy.Store(true)
	c.waitRoutable("fra", "lhr", "nrt")
	if n := parisEdges(); n["fra"] == 0 {
		t.Fatalf("after recovery Paris keys went to %v", n)
	}

	// The origin marks lhr suspect, then down: not routable though its
	// probes succeed.
	c.origin.set(c.edges["lhr"], origin.EdgeSuspect)
	c.waitRoutable("fra", "nrt")
	c.origin.set(c.edges["lhr"], origin.EdgeUp)
	c.waitRoutable("fra", "lhr", "nrt")

	// A killed edge (connection refused).
	c.edges["lhr"].srv.Close()
	c.waitRoutable("fra", "nrt")

	// A new edge joins and becomes routable; one leaves the list.
	syd := newFakeEdge(t, Edge{ID: "syd", Region: "ap-southeast", Lat: -33.87, Lon: 151.21})
	c.edges["syd"] = syd
	c.origin.set(syd, origin.EdgeUp)
	c.waitRoutable("fra", "nrt", "syd")
	resp, _ := c.get("/x", "X-Forwarded-For", ipSydney)
	if got := c.edgeFor(resp); got != "syd" {
		t.Fatalf("Sydney went to %q", got)
	}
	c.origin.remove("nrt")
	c.waitRoutable("fra", "syd")

	// The origin fails: routing goes on with the last list and probes.
	c.origin.setFail(true)
	eventually(t, "an edge-list error is counted", func() bool {
		_, body := c.get("/metrics")
		return strings.Contains(body, "geocdn_router_edge_list_errors_total") && !strings.Contains(body, "geocdn_router_edge_list_errors_total 0")
	})
	if got := c.router.Routable(); !slices.Equal(got, []string{"fra", "syd"}) {
		t.Fatalf("routable %v while the origin fails", got)
	}
	c.edges["fra"].healthy.Store(false)
	c.waitRoutable("syd")
}

func TestAllEdgesDown503(t *testing.T) {
	specs := devEdges()[:3]
	c := startCluster(t, specs, nil)
	c.waitRoutable(allIDs(specs)...)
	if resp, _ := c.get("/healthz"); resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz %s", resp.Status)
	}
	for _, fe := range c.edges {
		fe.healthy.Store(false)
	}
	c.waitRoutable()
	resp, body := c.get("/index.html", "X-Forwarded-For", ipParis)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "no healthy edge") {
		t.Fatalf("GET with every edge down: %s %q", resp.Status, body)
	}
	if resp, _ := c.get("/healthz"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("healthz %s, want 503", resp.Status)
	}
	resp, body = c.get("/v1/route?ip=" + ipParis + "&key=index.html")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, `"error"`) {
		t.Fatalf("route: %s %q", resp.Status, body)
	}
}

// A router that has not yet heard from the origin knows no edge: 503.
func TestNoMembershipYet503(t *testing.T) {
	c := startCluster(t, nil, nil)
	resp, _ := c.get("/k", "X-Forwarded-For", ipParis)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %s", resp.Status)
	}
}

func TestRouteJSON(t *testing.T) {
	specs := devEdges()
	c := startCluster(t, specs, func(cfg *Config) {
		cfg.Holders = func(ns, key string) []string {
			if key == "held/by/lhr" {
				return []string{"lhr"}
			}
			return nil
		}
	})
	c.waitRoutable(allIDs(specs)...)
	resp, body := c.get("/v1/route?ip=" + ipParis + "&key=held/by/lhr")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%s %q", resp.Status, body)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"edge", "url", "region", "distance_km", "est_rtt_ms", "reason", "candidates"} {
		if _, ok := raw[f]; !ok {
			t.Errorf("no field %q in %s", f, body)
		}
	}
	var got routeJSON
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got.Edge != "lhr" || got.Region != "eu-west" || got.URL != c.edges["lhr"].srv.URL+"/held/by/lhr" {
		t.Fatalf("decision %+v", got)
	}
	if got.DistanceKm < 300 || got.DistanceKm > 400 || got.EstRTTms <= 0 || !strings.Contains(got.Reason, "city Paris") || !strings.Contains(got.Reason, "holding the object") {
		t.Fatalf("decision %+v", got)
	}
	if len(got.Candidates) != 2 || got.Candidates[0].Edge != "lhr" || got.Candidates[1].Edge != "fra" {
		t.Fatalf("candidates %+v", got.Candidates)
	}
	if got.Client.City != "Paris" || got.Client.Source != "city" || got.Client.Network != "192.0.2.0/28" {
		t.Fatalf("client %+v", got.Client)
	}

	// Without ip=, the request's own client (here via a trusted proxy).
	_, body = c.get("/v1/route?key=a", "X-Forwarded-For", ip6Tokyo)
	if err := json.Unmarshal([]byte(body), &got); err != nil || got.Edge != "nrt" || got.Client.IP != ip6Tokyo {
		t.Fatalf("%v %s", err, body)
	}
	// Fallback explained.
	_, body = c.get("/v1/route?ip=" + ipUSCentroid)
	if err := json.Unmarshal([]byte(body), &got); err != nil || got.Client.Source != "country" || !strings.Contains(got.Reason, "US centroid") {
		t.Fatalf("%v %s", err, body)
	}
	for _, q := range []string{"ip=not-an-ip", "ip=" + ipParis + "&key=a/../b", "key=%00"} {
		if resp, body := c.get("/v1/route?" + q); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `"error"`) {
			t.Errorf("route?%s: %s %q", q, resp.Status, body)
		}
	}
	_, body = c.get("/metrics")
	for _, m := range []string{"geocdn_router_decisions_total{location=\"city\"}", "geocdn_router_edges_routable 7", "geocdn_router_responses_total{code=\"200\"}"} {
		if !strings.Contains(body, m) {
			t.Errorf("metrics lack %s", m)
		}
	}
}

// The router must see the client the configured header names only when a
// trusted proxy sent it.
func TestClientAddress(t *testing.T) {
	specs := devEdges()
	c := startCluster(t, specs, nil)
	c.waitRoutable(allIDs(specs)...)
	for _, tc := range []struct {
		name string
		hdr  []string
		want []string
	}{
		{"no header: the loopback peer is unknown → default", nil, []string{"fra"}},
		{"trusted proxy names Tokyo", []string{"X-Forwarded-For", ipTokyo}, []string{"nrt"}},
		{"chain: spoofed left part ignored", []string{"X-Forwarded-For", ipSydney + ", " + ipTokyo + ", 127.0.0.2"}, []string{"nrt"}},
		{"two field lines form one list", []string{"X-Forwarded-For", ipSydney, "X-Forwarded-For", ipTokyo + ", 127.0.0.9"}, []string{"nrt"}},
		{"IPv4-mapped IPv6", []string{"X-Forwarded-For", "::ffff:" + ipTokyo}, []string{"nrt"}},
		{"with port", []string{"X-Forwarded-For", ipTokyo + ":5555"}, []string{"nrt"}},
		{"IPv6 with port", []string{"X-Forwarded-For", "[" + ip6Sydney + "]:443"}, []string{"syd"}},
		{"malformed: ignored", []string{"X-Forwarded-For", "not-an-ip"}, []string{"fra"}},
		{"malformed right-most: ignored", []string{"X-Forwarded-For", ipTokyo + ", garbage"}, []string{"fra"}},
		{"empty element: ignored", []string{"X-Forwarded-For", ipTokyo + ",,"}, []string{"fra"}},
		{"malformed left of the client: irrelevant", []string{"X-Forwarded-For", "garbage, " + ipTokyo}, []string{"nrt"}},
		{"Forwarded not read when X-Forwarded-For is configured", []string{"Forwarded", "for=" + ipTokyo}, []string{"fra"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, _ := c.get("/k", tc.hdr...)
			if got := c.edgeFor(resp); !slices.Contains(tc.want, got) {
				t.Fatalf("%s: went to %q, want %v", resp.Status, got, tc.want)
			}
		})
	}
}

// Unit tests of clientIP: peers that are not loopback cannot be made over
// a real loopback socket.
func TestClientIPTrust(t *testing.T) {
	newR := func(header string, trusted ...string) *Router {
		var ps []netip.Prefix
		for _, s := range trusted {
			ps = append(ps, netip.MustParsePrefix(s))
		}
		return &Router{cfg: Config{ClientIPHeader: header}, trusted: ps}
	}
	xff := newR(HeaderXForwardedFor, "10.0.0.0/8", "2001:db8:aaaa::/48")
	fwd := newR(HeaderForwarded, "10.0.0.0/8", "2001:db8:aaaa::/48")
	for _, tc := range []struct {
		name   string
		r      *Router
		remote string
		hdr    []string
		want   string
	}{
		{"untrusted peer, spoofed header ignored", xff, "198.51.100.65:1234", []string{"X-Forwarded-For", ipParis}, ipTokyo},
		{"untrusted mapped peer unmapped", xff, "[::ffff:198.51.100.65]:1234", nil, ipTokyo},
		{"trusted mapped peer", xff, "[::ffff:10.1.2.3]:1234", []string{"X-Forwarded-For", ipParis}, ipParis},
		{"trusted v6 peer", xff, "[2001:db8:aaaa::1]:443", []string{"X-Forwarded-For", ipParis}, ipParis},
		{"zone dropped", xff, "[fe80::1%eth0]:1", nil, "fe80::1"},
		{"right-most untrusted of a proxy chain", xff, "10.0.0.1:1", []string{"X-Forwarded-For", "1.1.1.1, " + ipParis + ", 10.9.9.9, 2001:db8:aaaa::5"}, ipParis},
		{"all trusted: the first", xff, "10.0.0.1:1", []string{"X-Forwarded-For", "10.1.1.1, 10.2.2.2"}, "10.1.1.1"},
		{"empty header", xff, "10.0.0.1:1", []string{"X-Forwarded-For", ""}, "10.0.0.1"},
		{"huge garbage", xff, "10.0.0.1:1", []string{"X-Forwarded-For", strings.Repeat("[:,", 5000)}, "10.0.0.1"},
		{"Forwarded", fwd, "10.0.0.1:1", []string{"Forwarded", "for=" + ipParis + ";proto=https;by=10.0.0.1"}, ipParis},
		{"Forwarded quoted v6 with port", fwd, "10.0.0.1:1", []string{"Forwarded", `for="[` + ip6Tokyo + `]:4711"`}, ip6Tokyo},
		{"Forwarded chain over lines", fwd, "10.0.0.1:1", []string{"Forwarded", "for=1.1.1.1, for=" + ipParis, "Forwarded", `For="10.3.3.3:80";proto=http`}, ipParis},
		{"Forwarded quoted comma", fwd, "10.0.0.1:1", []string{"Forwarded", `for=1.1.1.1;x="a,b", for=` + ipParis}, ipParis},
		{"Forwarded unknown", fwd, "10.0.0.1:1", []string{"Forwarded", "for=unknown"}, "10.0.0.1"},
		{"Forwarded obfuscated", fwd, "10.0.0.1:1", []string{"Forwarded", "for=_hidden"}, "10.0.0.1"},
		{"Forwarded unquoted port", fwd, "10.0.0.1:1", []string{"Forwarded", "for=" + ipParis + ":80"}, "10.0.0.1"},
		{"Forwarded unterminated quote", fwd, "10.0.0.1:1", []string{"Forwarded", `for="` + ipParis}, "10.0.0.1"},
		{"Forwarded duplicate for", fwd, "10.0.0.1:1", []string{"Forwarded", "for=" + ipParis + ";for=" + ipTokyo}, "10.0.0.1"},
		{"Forwarded element without for", fwd, "10.0.0.1:1", []string{"Forwarded", "proto=https"}, "10.0.0.1"},
		{"Forwarded mapped", fwd, "10.0.0.1:1", []string{"Forwarded", `for="[::ffff:` + ipParis + `]"`}, ipParis},
		{"X-Forwarded-For not read when Forwarded is configured", fwd, "10.0.0.1:1", []string{"X-Forwarded-For", ipParis}, "10.0.0.1"},
		{"bad RemoteAddr", xff, "nonsense", nil, "invalid IP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/k", nil)
			req.RemoteAddr = tc.remote
			for i := 0; i+1 < len(tc.hdr); i += 2 {
				req.Header.Add(tc.hdr[i], tc.hdr[i+1])
			}
			if got := tc.r.clientIP(req).String(); got != tc.want {
				t.Fatalf("clientIP = %s, want %s", got, tc.want)
			}
		})
	}
}

func FuzzForwardedHeaders(f *testing.F) {
	for _, s := range []string{
		"for=192.0.2.1", `for="[2001:db8::1]:80";proto=https, for=10.0.0.1`, "1.2.3.4, 5.6.7.8",
		`for="\"x`, "for=;;,,", "[::1]:80", "",
	} {
		f.Add(s)
	}
	trusted := func(a netip.Addr) bool { return a.IsPrivate() }
	f.Fuzz(func(t *testing.T, s string) {
		for _, fn := range []func([]string, func(netip.Addr) bool) (netip.Addr, bool){fromXForwardedFor, fromForwarded} {
			a, ok := fn([]string{s}, trusted)
			if ok && (!a.IsValid() || a.Is4In6() || a.Zone() != "") {
				t.Fatalf("%q: %v", s, a)
			}
		}
	})
}

// With a fake clock, probes run only when the clock says so.
func TestProbesFollowInjectedClock(t *testing.T) {
	fc := clock.NewFake(time.Unix(1_700_000_000, 0))
	specs := devEdges()[:2]
	c := startCluster(t, specs, func(cfg *Config) { cfg.Clock = fc })
	// The first fetch and probes happen at start, without a tick.
	c.waitRoutable(allIDs(specs)...)
	fe := c.edges[specs[0].ID]
	before := fe.probes.Load()
	fe.healthy.Store(false)
	time.Sleep(100 * time.Millisecond) // real time passes, fake time does not
	if got := fe.probes.Load(); got != before {
		t.Fatalf("%d probes without the clock moving", got-before)
	}
	if got := c.router.Routable(); len(got) != 2 {
		t.Fatalf("routable %v before any probe saw the failure", got)
	}
	eventually(t, specs[0].ID+" unroutable after the clock moves", func() bool {
		fc.Advance(25 * time.Millisecond)
		return slices.Equal(c.router.Routable(), []string{specs[1].ID})
	})
	views := c.router.Edges()
	if len(views) != 2 || views[0].Routable == views[1].Routable || views[0].ProbeError == "" && views[1].ProbeError == "" {
		t.Fatalf("views %+v", views)
	}
}

func TestConfigValidate(t *testing.T) {
	base := func() Config {
		return Config{OriginAdmin: "http://127.0.0.1:1", Token: "t", GeoIPPath: testDB}
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no origin", func(c *Config) { c.OriginAdmin = "" }, "origin admin"},
		{"origin not a URL", func(c *Config) { c.OriginAdmin = "127.0.0.1:8080" }, "origin admin"},
		{"no token", func(c *Config) { c.Token = "" }, "token"},
		{"no geoip", func(c *Config) { c.GeoIPPath = "" }, "geoip"},
		{"slow membership", func(c *Config) { c.MembershipInterval = 2 * time.Second }, "membership interval"},
		{"slow probes", func(c *Config) { c.ProbeInterval = time.Second }, "probe interval"},
		{"bad header", func(c *Config) { c.ClientIPHeader = "X-Real-IP" }, "client ip header"},
		{"bad default", func(c *Config) { c.DefaultLocation = &geo.Point{Lat: 100} }, "default location"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.mod(&cfg)
			err := cfg.withDefaults().Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error about %s", err, tc.want)
			}
		})
	}
	if err := base().withDefaults().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestParseFlags(t *testing.T) {
	ps, err := ParseTrustedProxies("127.0.0.0/8, ::1 ,10.1.2.3, ::ffff:192.168.0.0/112")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.0/8", "::1/128", "10.1.2.3/32", "192.168.0.0/16"}
	var got []string
	for _, p := range ps {
		got = append(got, p.String())
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"10.0.0.0/33", "nonsense", "::ffff:1.2.3.4/8"} {
		if _, err := ParseTrustedProxies(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	p, err := ParseLocation(" 48.85, 2.35")
	if err != nil || p != (geo.Point{Lat: 48.85, Lon: 2.35}) {
		t.Fatalf("%v %v", p, err)
	}
	for _, bad := range []string{"48.85", "91,0", "0,181", "a,b", "NaN,0", "1,2x"} {
		if _, err := ParseLocation(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// Clients in one /24 but different database networks are located apart,
// cache or not.
func TestLocationCacheKeysByDatabaseNetwork(t *testing.T) {
	c := startCluster(t, devEdges(), nil)
	c.waitRoutable(allIDs(devEdges())...)
	for range 2 {
		for _, tc := range []struct{ ip, city string }{
			{ipParis, "Paris"}, {ipLondon, "London"}, {"192.0.2.2", "Paris"},
			{"2001:db8:ff00:1::1", "Paris"}, {"2001:db8:ff00:2::1", "Tokyo"}, {"2001:db8:ff00:1::2", "Paris"},
			{"203.0.113.201", ""}, {"203.0.113.5", ""},
		} {
			d, err := c.router.Decide(netip.MustParseAddr(tc.ip), "default", "k")
			if err != nil {
				t.Fatal(err)
			}
			if d.Location.Record.City != tc.city {
				t.Fatalf("%s located in %q, want %q", tc.ip, d.Location.Record.City, tc.city)
			}
		}
	}
}

// The router follows the origin's plan: among equivalent edges, the ones
// the plan gives the object win; a withdrawn plan spreads keys again.
func TestFollowsOriginPlan(t *testing.T) {
	specs := devEdges()
	c := startCluster(t, specs, func(cfg *Config) { cfg.PlanInterval = 20 * time.Millisecond })
	c.waitRoutable(allIDs(specs)...)
	parisEdges := func(prefix string) map[string]int {
		n := map[string]int{}
		for i := range 30 {
			resp, _ := c.get(fmt.Sprintf("/%s/%d", prefix, i), "X-Forwarded-For", ipParis)
			n[c.edgeFor(resp)]++
		}
		return n
	}
	if n := parisEdges("img"); n["lhr"] == 0 || n["fra"] == 0 {
		t.Fatalf("without a plan Paris keys went to %v", n)
	}
	c.origin.setPlan(t, &placement.Plan{Version: placement.PlanVersion, Classes: []placement.PlanClass{
		{Name: "img", Prefixes: []string{"img/"}, Replicas: []string{"nrt", "fra"}},
		{Name: "js", Prefixes: []string{"js/"}, Replicas: []string{"lhr", "iad"}},
	}})
	eventually(t, "img/ keys follow the plan to fra", func() bool { return parisEdges("img")["fra"] == 30 })
	if n := parisEdges("js"); n["lhr"] != 30 {
		t.Fatalf("js/ keys went to %v, want lhr", n)
	}
	// Keys the plan does not cover still spread.
	if n := parisEdges("other"); n["lhr"] == 0 || n["fra"] == 0 {
		t.Fatalf("uncovered keys went to %v", n)
	}
	_, body := c.get("/v1/route?ip=" + ipParis + "&key=img/1")
	if !strings.Contains(body, `"holds": true`) || !strings.Contains(body, "1 holding the object under the plan") {
		t.Fatalf("route: %s", body)
	}
	c.origin.setPlan(t, nil)
	eventually(t, "img/ keys spread again", func() bool { n := parisEdges("img"); return n["lhr"] > 0 && n["fra"] > 0 })
}
