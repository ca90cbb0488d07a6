package edge_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/geocdn/geocdn/edge"
	"github.com/geocdn/geocdn/internal/memnet"
	"github.com/geocdn/geocdn/internal/pki"
	"github.com/geocdn/geocdn/internal/simwan"
	"github.com/geocdn/geocdn/internal/wire"
	"github.com/geocdn/geocdn/origin"
)

// The origins of these tests are real ones (origin.New) and fake raft
// followers, which refuse every Hello with RejectNotLeader; all of them
// and the edge talk QUIC over a simulated network inside a synctest
// bubble, so dial timeouts and heartbeats cost no real time. What each
// origin saw is written, in order, to one log: "<host> hello <kind>" for a
// follower's Hello, "<host> welcome" for a real origin's accepted edge.

const leaderPort = 4433

// leaderNet is the simulated network, its hosts and the shared log.
type leaderNet struct {
	t   *testing.T
	wan *simwan.Network
	mem *memnet.Network
	ca  *pki.CA

	mu  sync.Mutex
	log []string
	// fills are the fill-connection hellos followers saw ("<host> hello
	// fill"), kept out of log: the edge asks for them once a session
	// runs, alongside the session's own dialling.
	fills []string
}

// newLeaderNet makes hosts "edge" and every name in hosts, all in one
// region a few milliseconds apart. Call it inside the bubble.
func newLeaderNet(t *testing.T, hosts ...string) *leaderNet {
	t.Helper()
	wan, err := simwan.New(simwan.Config{IntraRegion: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wan.Close() })
	for _, h := range append([]string{"edge"}, hosts...) {
		if _, err := wan.AddHost(h, "London"); err != nil {
			t.Fatal(err)
		}
	}
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &leaderNet{t: t, wan: wan, mem: &memnet.Network{}, ca: ca}
}

func (n *leaderNet) addr(host string) *net.UDPAddr {
	n.t.Helper()
	a, err := n.wan.Addr(host, leaderPort)
	if err != nil {
		n.t.Fatal(err)
	}
	return a
}

func (n *leaderNet) addrs(hosts ...string) []net.Addr {
	var as []net.Addr
	for _, h := range hosts {
		as = append(as, n.addr(h))
	}
	return as
}

func (n *leaderNet) record(format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.log = append(n.log, fmt.Sprintf(format, args...))
}

// mark is the log's length, for since.
func (n *leaderNet) mark() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.log)
}

// since is the log from mark on.
func (n *leaderNet) since(mark int) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.log[mark:])
}

// follower is a fake raft follower: it reads the Hello of every
// connection, answers with a Reject (RejectNotLeader and its hint), and
// closes as the origin does, once the edge has closed or after a second.
// With news, it welcomes fill connections instead and names the leader
// on them.
type follower struct {
	host string
	tr   *quic.Transport
	ln   *quic.Listener
	wg   sync.WaitGroup
	// news, when set, makes the follower take fill connections and name
	// on them the leader news.announce sets.
	news *leaderNews
}

// startFollower starts a follower on host that names hint as the leader
// ("" for none).
func (n *leaderNet) startFollower(host, hint string) *follower {
	n.t.Helper()
	return n.startRefuser(host, wire.Reject{Code: wire.RejectNotLeader, Reason: hint})
}

// startRefuser starts a fake origin on host that answers every Hello
// with reject.
func (n *leaderNet) startRefuser(host string, reject wire.Reject) *follower {
	n.t.Helper()
	return n.startFake(host, reject, nil)
}

// startFake starts a fake origin on host that answers every Hello with
// reject, except a fill connection's when news is set.
func (n *leaderNet) startFake(host string, reject wire.Reject, news *leaderNews) *follower {
	t := n.t
	t.Helper()
	cert, err := n.ca.Issue(pki.Identity{Role: pki.RoleOrigin, ID: host}, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := n.wan.Listen(host, leaderPort)
	if err != nil {
		t.Fatal(err)
	}
	f := &follower{host: host, tr: &quic.Transport{Conn: pc}, news: news}
	f.ln, err = f.tr.Listen(pki.ServerTLS(n.ca, cert, pki.RoleEdge, time.Now), &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	f.wg.Go(func() {
		for {
			conn, err := f.ln.Accept(context.Background())
			if err != nil {
				return
			}
			f.wg.Go(func() { n.refuse(f, conn, reject) })
		}
	})
	t.Cleanup(f.stop)
	return f
}

func (n *leaderNet) refuse(f *follower, conn *quic.Conn, reject wire.Reject) {
	defer conn.CloseWithError(0, "")
	st, err := conn.AcceptStream(context.Background())
	if err != nil {
		return
	}
	fr, err := wire.ReadFrame(st)
	if err != nil {
		n.record("%s bad hello: %v", f.host, err)
		return
	}
	hello, ok := fr.(wire.Hello)
	if !ok {
		n.record("%s bad hello: %T", f.host, fr)
		return
	}
	if hello.Kind == wire.ConnFill && f.news != nil {
		f.news.serve(f.host, conn, st)
		return
	}
	if hello.Kind == wire.ConnFill {
		n.mu.Lock()
		n.fills = append(n.fills, fmt.Sprintf("%s hello %s", f.host, hello.Kind))
		n.mu.Unlock()
	} else {
		n.record("%s hello %s", f.host, hello.Kind)
	}
	wire.WriteFrame(st, reject)
	st.Close()
	select {
	case <-conn.Context().Done():
	case <-time.After(time.Second):
	}
}

// stop closes the follower; it may be called more than once.
func (f *follower) stop() {
	f.ln.Close()
	f.tr.Close()
	f.tr.Conn.Close()
	f.wg.Wait()
}

// realOrigin is an origin.Origin running on a host of the network.
type realOrigin struct {
	host   string
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// startOrigin runs an origin on host with its data in dir.
func (n *leaderNet) startOrigin(host, dir string) *realOrigin {
	t := n.t
	t.Helper()
	cert, err := n.ca.Issue(pki.Identity{Role: pki.RoleOrigin, ID: host}, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := n.wan.Listen(host, leaderPort)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := n.mem.Listen(host + ":80")
	if err != nil {
		t.Fatal(err)
	}
	o, err := origin.New(origin.Config{
		ID: host, DataDir: dir, PacketConn: pc, HTTPListener: ln, CA: n.ca, Cert: cert,
		Token: strings.Repeat("t", 32), LeaseTerm: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})).With("host", host),
		OnEvent: func(ev origin.Event) {
			if ev.Kind == origin.EventEdgeConnected {
				n.record("%s welcome", host)
			}
		},
	})
	if err != nil {
		pc.Close()
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &realOrigin{host: host, cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := o.Run(ctx)
		// The origin does not own a conn it is given.
		pc.Close()
		ln.Close()
		r.done <- err
	}()
	t.Cleanup(r.stop)
	return r
}

// stop shuts the origin down gracefully and waits for it; it may be
// called more than once.
func (r *realOrigin) stop() {
	r.once.Do(func() {
		r.cancel()
		<-r.done
	})
}

// edgeRun is an edge running on host "edge".
type edgeRun struct {
	*edge.Edge
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// wait waits until the edge's Run returns, and returns what it did.
func (r *edgeRun) wait() error {
	r.once.Do(func() { r.err = <-r.done })
	return r.err
}

// startEdge runs an edge on host "edge" that knows origins, in this
// order. It must end without an error.
func (n *leaderNet) startEdge(origins ...net.Addr) *edge.Edge {
	r := n.runEdge(origins...)
	n.t.Cleanup(func() {
		r.cancel()
		if err := r.wait(); err != nil {
			n.t.Errorf("edge run: %v", err)
		}
	})
	return r.Edge
}

// runEdge runs an edge on host "edge" that knows origins, in this order,
// until the test ends.
func (n *leaderNet) runEdge(origins ...net.Addr) *edgeRun {
	t := n.t
	t.Helper()
	cert, err := n.ca.Issue(pki.Identity{Role: pki.RoleEdge, ID: "e1"}, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := n.wan.Listen("edge", leaderPort)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := n.mem.Listen("edge:80")
	if err != nil {
		t.Fatal(err)
	}
	e, err := edge.New(edge.Config{
		ID: "e1", Region: "London", Lat: 51.51, Lon: -0.13, Origins: origins,
		PacketConn: pc, HTTPListener: ln, DataDir: t.TempDir(), CA: n.ca, Cert: cert,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &edgeRun{Edge: e, cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := e.Run(ctx)
		pc.Close()
		r.done <- err
	}()
	t.Cleanup(func() {
		cancel()
		r.wait()
	})
	return r
}

// waitConnected waits until the edge holds a lease from the origin at
// want.
func waitConnected(t *testing.T, e *edge.Edge, want net.Addr) {
	t.Helper()
	waitUntil(t, "the edge is connected to "+want.String(), func() bool {
		a := e.OriginAddr()
		return a != nil && a.String() == want.String() && e.Healthy()
	})
}

func checkLog(t *testing.T, n *leaderNet, mark int, want ...string) {
	t.Helper()
	if got := n.since(mark); !slices.Equal(got, want) {
		t.Errorf("what the origins saw, in order:\n got %q\nwant %q", got, want)
	}
}

// waitFills waits until the fill-connection hellos followers saw are, once
// each, want (in any order).
func waitFills(t *testing.T, n *leaderNet, want ...string) {
	t.Helper()
	slices.Sort(want)
	var got []string
	for range 100 {
		n.mu.Lock()
		got = slices.Compact(slices.Sorted(slices.Values(n.fills)))
		n.mu.Unlock()
		if slices.Equal(got, want) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("fill connections the followers were asked for:\n got %q\nwant %q", got, want)
}

// An edge given followers ahead of the leader ends connected to the
// leader. A follower's hint is dialled next, even when the list names
// other origins first or does not name the leader at all; an empty hint
// moves the edge to the next origin; followers naming each other (an
// election in progress) are each dialled once. No follower ever sees a
// data connection: both of a session's connections go to the origin that
// welcomed the control connection.
func TestEdgeFindsTheLeader(t *testing.T) {
	for _, tc := range []struct {
		name    string
		hints   map[string]string // follower host → host it names ("" none)
		origins []string
		want    []string
	}{
		{
			name:    "hint followed",
			hints:   map[string]string{"f1": "leader", "f2": ""},
			origins: []string{"f1", "f2", "leader"},
			want:    []string{"f1 hello control", "leader welcome"},
		},
		{
			name:    "empty hints rotate",
			hints:   map[string]string{"f1": "", "f2": ""},
			origins: []string{"f1", "f2", "leader"},
			want:    []string{"f1 hello control", "f2 hello control", "leader welcome"},
		},
		{
			name:    "hint to an unlisted origin",
			hints:   map[string]string{"f1": "leader"},
			origins: []string{"f1"},
			want:    []string{"f1 hello control", "leader welcome"},
		},
		{
			name:    "followers naming each other",
			hints:   map[string]string{"f1": "f2", "f2": "f1"},
			origins: []string{"f1", "f2", "leader"},
			want:    []string{"f1 hello control", "f2 hello control", "leader welcome"},
		},
		{
			name:    "stale hint, then the list",
			hints:   map[string]string{"f1": "f2", "f2": ""},
			origins: []string{"f2", "f1", "leader"},
			want:    []string{"f2 hello control", "f1 hello control", "leader welcome"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := newLeaderNet(t, "f1", "f2", "leader")
				for host, hint := range tc.hints {
					h := ""
					if hint != "" {
						h = n.addr(hint).String()
					}
					n.startFollower(host, h)
				}
				n.startOrigin("leader", t.TempDir())
				e := n.startEdge(n.addrs(tc.origins...)...)
				waitConnected(t, e, n.addr("leader"))
				checkLog(t, n, 0, tc.want...)
				// With the session running, the edge asks every other
				// origin listed for a fill connection; these refuse.
				var fills []string
				for _, o := range tc.origins {
					if o != "leader" {
						fills = append(fills, o+" hello fill")
					}
				}
				waitFills(t, n, fills...)
				if got := e.FillOrigin(); got != "" {
					t.Errorf("filling from %q, which refused", got)
				}
			})
		})
	}
}

// When the leader steps down, the edge's session ends and the next round
// starts with the origin of that session, which now names the new
// leader; the edge follows it. The old leader is modelled by stopping the
// origin and starting a follower on its address.
func TestEdgeFollowsALeaderChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newLeaderNet(t, "a", "b", "c")
		n.startFollower("b", "")
		a := n.startOrigin("a", t.TempDir())
		e := n.startEdge(n.addrs("b", "a", "c")...)
		waitConnected(t, e, n.addr("a"))
		checkLog(t, n, 0, "b hello control", "a welcome")

		mark := n.mark()
		a.stop()
		n.startFollower("a", n.addr("c").String())
		n.startOrigin("c", t.TempDir())
		waitConnected(t, e, n.addr("c"))
		checkLog(t, n, mark, "a hello control", "c welcome")
	})
}

// An origin that stops, and another that starts, on other hosts with its
// own data: the edge, which dials the stopped one first and finds it
// silent, reconnects to whichever welcomes it, and back again when the
// first returns with its data.
func TestEdgeReconnectsToWhicheverOriginWelcomes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newLeaderNet(t, "a", "b")
		dirA := t.TempDir()
		a := n.startOrigin("a", dirA)
		e := n.startEdge(n.addrs("a", "b")...)
		waitConnected(t, e, n.addr("a"))

		a.stop()
		b := n.startOrigin("b", filepath.Join(t.TempDir(), "b"))
		waitConnected(t, e, n.addr("b"))

		b.stop()
		n.startOrigin("a", dirA)
		waitConnected(t, e, n.addr("a"))
		checkLog(t, n, 0, "a welcome", "b welcome", "a welcome")
	})
}

// A refusal no retry can cure stops the edge, even with other origins
// left to try; one that a retry may cure (a shutting-down origin) moves
// it to the next origin.
func TestEdgeRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reject  wire.Reject
		wantErr string // "": the edge connects to the leader
	}{
		{"identity", wire.Reject{Code: wire.RejectIdentity, Reason: "announced id does not match"}, "identity"},
		{"version", wire.Reject{Code: wire.RejectVersion, Reason: "protocol version 9 not supported"}, "version"},
		{"shutdown", wire.Reject{Code: wire.RejectShutdown, Reason: "origin shutting down"}, ""},
		{"bad hello", wire.Reject{Code: wire.RejectBadHello, Reason: "first frame must be a hello"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := newLeaderNet(t, "f1", "leader")
				n.startRefuser("f1", tc.reject)
				n.startOrigin("leader", t.TempDir())
				if tc.wantErr == "" {
					e := n.startEdge(n.addrs("f1", "leader")...)
					waitConnected(t, e, n.addr("leader"))
					checkLog(t, n, 0, "f1 hello control", "leader welcome")
					return
				}
				r := n.runEdge(n.addrs("f1", "leader")...)
				err := r.wait()
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), tc.reject.Reason) {
					t.Fatalf("edge run: %v, want an error naming %q and %q", err, tc.wantErr, tc.reject.Reason)
				}
				checkLog(t, n, 0, "f1 hello control")
			})
		})
	}
}

// leaderNews is what a news-taking fake follower names on its fill
// connections (wire.LeaderChanged): the leader set by announce, at once
// and whenever it changes.
type leaderNews struct {
	mu      sync.Mutex
	leader  string // host:port announced; "" none yet
	changed chan struct{}
}

// startNewsFollower starts a fake follower that refuses sessions naming
// hint as the leader, and welcomes fill connections to bring leader news.
func (n *leaderNet) startNewsFollower(host, hint string) *follower {
	n.t.Helper()
	return n.startFake(host, wire.Reject{Code: wire.RejectNotLeader, Reason: hint}, &leaderNews{changed: make(chan struct{})})
}

// announce makes leader (a host:port) the leader the news names from now
// on.
func (l *leaderNews) announce(leader string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.leader = leader
	close(l.changed)
	l.changed = make(chan struct{})
}

// serve welcomes the fill connection conn, whose hello came on st, and
// names the leader on it until it closes.
func (l *leaderNews) serve(host string, conn *quic.Conn, st *quic.Stream) {
	wire.WriteFrame(st, wire.Welcome{Version: wire.ProtocolVersion, OriginID: host, LeaseMillis: 2000, HeartbeatInterval: 250})
	st.Close()
	sent := ""
	for {
		l.mu.Lock()
		leader, changed := l.leader, l.changed
		l.mu.Unlock()
		if leader != "" && leader != sent {
			us, err := conn.OpenUniStreamSync(conn.Context())
			if err != nil {
				return
			}
			wire.WriteFrame(us, wire.LeaderChanged{OriginID: "new-leader", QUIC: leader})
			us.Close()
			sent = leader
		}
		select {
		case <-changed:
		case <-conn.Context().Done():
			return
		}
	}
}

// TestEdgeMovesOnLeaderNews: the edge's session is with a leader that
// then falls silent (isolated); the follower the edge fills from names a
// new leader, which neither the edge's list nor any refusal's hint names,
// and the edge ends its session and connects to it, without waiting to
// miss the old leader's heartbeats.
func TestEdgeMovesOnLeaderNews(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newLeaderNet(t, "f1", "leader", "leader2")
		n.startOrigin("leader", t.TempDir())
		n.startOrigin("leader2", t.TempDir())
		f1 := n.startNewsFollower("f1", n.addr("leader").String())
		e := n.startEdge(n.addrs("leader", "f1")...)
		waitConnected(t, e, n.addr("leader"))
		waitUntil(t, "filling from f1", func() bool { return e.FillOrigin() == "f1" })
		// Naming the session's own origin changes nothing.
		f1.news.announce(n.addr("leader").String())
		time.Sleep(time.Second)
		if a := e.OriginAddr(); a == nil || a.String() != n.addr("leader").String() {
			t.Fatalf("the edge left %v after news naming it", n.addr("leader"))
		}
		if err := n.wan.Isolate("leader"); err != nil {
			t.Fatal(err)
		}
		f1.news.announce(n.addr("leader2").String())
		waitConnected(t, e, n.addr("leader2"))
	})
}
