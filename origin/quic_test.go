package origin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"

	edgenode "github.com/geocdn/geocdn/edge"
	"github.com/geocdn/geocdn/internal/pki"
	"github.com/geocdn/geocdn/internal/wire"
)

// These tests drive a real origin over loopback QUIC: first with a
// hand-rolled client that says exactly the bytes a test wants (refused
// nodes, malformed frames), then with a real in-process edge (pushes whose
// bytes are corrupted on the way).

// quicTestLogger sends warnings and errors of the nodes to the test's log
// until the test's clean-ups have run; a goroutine of a node that logs
// later (a push or fill handler finishing) is not an error.
func quicTestLogger(t testing.TB) *slog.Logger {
	w := &quicLogWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.done = true
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type quicLogWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *quicLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// eventLog records the origin's replication events in the order they were
// emitted.
type eventLog struct {
	mu  sync.Mutex
	evs []Event
}

func (l *eventLog) add(ev Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, ev)
}

// find returns the events for which match is true, in order.
func (l *eventLog) find(match func(Event) bool) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Event
	for _, ev := range l.evs {
		if match(ev) {
			out = append(out, ev)
		}
	}
	return out
}

// eventually polls cond with a generous deadline: these tests assert
// outcomes and orders, never latencies.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testOrigin is a running origin with its CA and event log.
type testOrigin struct {
	*Origin
	ca     *pki.CA
	token  string
	events *eventLog
	// stop stops the origin and waits for Run to return; the test's end
	// does it otherwise.
	stop func()
}

// startTestOrigin starts an origin on loopback and stops it when the test
// ends. mod, if not nil, adjusts the config before New.
func startTestOrigin(t *testing.T, mod func(*Config)) *testOrigin {
	t.Helper()
	ca, err := pki.NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(pki.Identity{Role: pki.RoleOrigin, ID: "origin-1"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	to := &testOrigin{ca: ca, token: "test-token-0123456789abcdef", events: &eventLog{}}
	cfg := Config{
		DataDir:  t.TempDir(),
		HTTPAddr: "127.0.0.1:0",
		QUICAddr: "127.0.0.1:0",
		CA:       ca,
		Cert:     cert,
		Token:    to.token,
		Logger:   quicTestLogger(t),
		OnEvent:  to.events.add,
	}
	if mod != nil {
		mod(&cfg)
	}
	o, err := New(cfg)
	if err != nil {
		t.Fatalf("origin.New: %v", err)
	}
	to.Origin = o
	to.run(t)
	return to
}

// run runs to's origin until to.stop or the test's end.
func (to *testOrigin) run(t testing.TB) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- to.Origin.Run(ctx) }()
	to.stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: Run: %v", to.cfg.ID, err)
		}
	})
	t.Cleanup(to.stop)
}

// issue makes a certificate of to's CA.
func (to *testOrigin) issue(t *testing.T, role pki.Role, id string) tls.Certificate {
	t.Helper()
	c, err := to.ca.Issue(pki.Identity{Role: role, ID: id}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// listed reports whether the origin's edge list names id.
func (to *testOrigin) listed(id string) bool {
	for _, st := range to.Edges() {
		if st.ID == id {
			return true
		}
	}
	return false
}

// stateOf is the origin's view of edge id, or "" if it does not know it.
func (to *testOrigin) stateOf(id string) EdgeState {
	for _, st := range to.Edges() {
		if st.ID == id {
			return st.State
		}
	}
	return ""
}

// healthz asks the admin API whether the origin is serving.
func (to *testOrigin) healthz(t *testing.T) int {
	t.Helper()
	resp, err := http.Get("http://" + to.HTTPAddr().String() + "/healthz")
	if err != nil {
		t.Fatalf("origin /healthz: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// publish PUTs body under key with the given query and decodes the answer.
func (to *testOrigin) publish(t *testing.T, key string, body []byte, query string) (int, PublishResult) {
	t.Helper()
	u := "http://" + to.HTTPAddr().String() + objectsPrefix + key
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequest(http.MethodPut, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+to.token)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("publish %s: %v", key, err)
	}
	defer resp.Body.Close()
	var res PublishResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		t.Fatalf("publish %s: decode answer: %v", key, err)
	}
	return resp.StatusCode, res
}

// rawClient is a QUIC endpoint on a loopback socket that speaks to the
// origin byte by byte, without any of the edge's manners.
type rawClient struct {
	to *testOrigin
	tr *quic.Transport
}

func newRawClient(t *testing.T, to *testOrigin) *rawClient {
	t.Helper()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp}
	t.Cleanup(func() {
		tr.Close()
		udp.Close()
	})
	return &rawClient{to: to, tr: tr}
}

// dial connects presenting cert, verifying the origin against the
// cluster CA as an edge does.
func (c *rawClient) dial(cert tls.Certificate) (*quic.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return c.tr.Dial(ctx, c.to.QUICAddr(), pki.ClientTLS(c.to.ca, cert, pki.RoleOrigin, nil), &quic.Config{
		HandshakeIdleTimeout: 10 * time.Second,
		MaxIdleTimeout:       20 * time.Second,
	})
}

// mustDial is dial for a client whose handshake the origin must accept;
// the connection is closed when the test ends.
func (c *rawClient) mustDial(t *testing.T, cert tls.Certificate) *quic.Conn {
	t.Helper()
	conn, err := c.dial(cert)
	if err != nil {
		t.Fatalf("dial origin: %v", err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	return conn
}

// firstStream opens conn's first stream and writes raw on it, then a FIN
// if fin is set.
func firstStream(t *testing.T, conn *quic.Conn, raw []byte, fin bool) (*quic.Stream, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	if len(raw) > 0 {
		if _, err := st.Write(raw); err != nil {
			return nil, err
		}
	}
	if fin {
		st.Close()
	}
	return st, nil
}

// answer reads the origin's first frame on st.
func answer(st *quic.Stream) (wire.Frame, error) {
	st.SetReadDeadline(time.Now().Add(20 * time.Second))
	defer st.SetReadDeadline(time.Time{})
	return wire.ReadFrame(st)
}

// exchange sends raw as the first bytes of a new stream on conn and
// returns the stream and the origin's first frame in answer.
func exchange(t *testing.T, conn *quic.Conn, raw []byte, fin bool) (*quic.Stream, wire.Frame, error) {
	t.Helper()
	st, err := firstStream(t, conn, raw, fin)
	if err != nil {
		return nil, nil, err
	}
	f, err := answer(st)
	return st, f, err
}

func hello(kind wire.ConnKind, id string) wire.Hello {
	return wire.Hello{
		Version: wire.ProtocolVersion, Kind: kind, EdgeID: id, Region: "test",
		Lat: 51.5, Lon: -0.1, FaultDomain: "test", PublicURL: "http://127.0.0.1:1",
	}
}

// closeCause waits for conn to end and returns why.
func closeCause(t *testing.T, conn *quic.Conn) error {
	t.Helper()
	select {
	case <-conn.Context().Done():
		return context.Cause(conn.Context())
	case <-time.After(30 * time.Second):
		t.Fatalf("connection still open 30s after the origin refused it")
		return nil
	}
}

// closedAsRejected reports whether err is the origin closing the
// connection with its "rejected" application error code and a reason
// containing reason.
func closedAsRejected(err error, reason string) bool {
	var ae *quic.ApplicationError
	return errors.As(err, &ae) && ae.Remote && ae.ErrorCode == codeRejected && strings.Contains(ae.ErrorMessage, reason)
}

// Reasons the origin gives for refusing a hello.
const (
	reasonIdentity = "does not match certificate identity"
	reasonVersion  = "not supported"
	reasonBadHello = "first frame must be a hello"
)

// expectRefused checks the origin's answer to a first frame it must
// refuse: a Reject carrying code and naming reason, the end of the stream,
// and the connection closed as rejected. If waitClose is false the client
// closes the connection itself once it has read the Reject, as an edge
// does; otherwise it waits for the origin to close it.
func expectRefused(t *testing.T, conn *quic.Conn, st *quic.Stream, f wire.Frame, err error, code wire.RejectCode, reason string, waitClose bool) {
	t.Helper()
	if err != nil {
		t.Fatalf("no answer to the first frame (want a reject %d): %v; connection: %v", code, err, context.Cause(conn.Context()))
	}
	rej, ok := f.(wire.Reject)
	if !ok {
		t.Fatalf("origin answered %T %+v, want a reject with code %d", f, f, code)
	}
	if rej.Code != code || !strings.Contains(rej.Reason, reason) {
		t.Fatalf("reject code %d (%q), want %d naming %q", rej.Code, rej.Reason, code, reason)
	}
	if f, err := answer(st); err != io.EOF {
		t.Fatalf("after the reject the stream gave %T %v, want its end", f, err)
	}
	if !waitClose {
		conn.CloseWithError(0, "")
		return
	}
	if cause := closeCause(t, conn); !closedAsRejected(cause, reason) {
		t.Fatalf("after the reject the connection ended with %v, want the origin's rejected close (code %d)", cause, codeRejected)
	}
}

// expectHandshakeRefused checks that the origin ended the TLS handshake of
// a client presenting cert with an alert: either Dial fails, or (TLS 1.3
// lets the client finish first) the connection dies with a crypto error
// before any frame is answered.
func expectHandshakeRefused(t *testing.T, c *rawClient, cert tls.Certificate) {
	t.Helper()
	conn, err := c.dial(cert)
	if err == nil {
		defer conn.CloseWithError(0, "")
		_, f, ferr := exchange(t, conn, wire.AppendFrame(nil, hello(wire.ConnControl, "e1")), false)
		if ferr == nil {
			t.Fatalf("origin answered %T %+v to a client it must refuse", f, f)
		}
		err = closeCause(t, conn)
	}
	var te *quic.TransportError
	if !errors.As(err, &te) || !te.Remote || !te.ErrorCode.IsCryptoError() {
		t.Fatalf("handshake ended with %v, want the origin's TLS alert (a remote CRYPTO_ERROR)", err)
	}
	t.Logf("refused with %v", err)
}

// TestRefusedNodes dials the origin with clients it must turn away: the
// wrong CA, the wrong role, an identity that does not match the
// certificate, an unknown protocol version, garbage and oversized frames.
// None may be registered, and the origin must keep serving.
func TestRefusedNodes(t *testing.T) {
	to := startTestOrigin(t, nil)
	c := newRawClient(t, to)

	t.Run("certificate of another CA", func(t *testing.T) {
		other, err := pki.NewCA(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cert, err := other.Issue(pki.Identity{Role: pki.RoleEdge, ID: "e1"}, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		expectHandshakeRefused(t, c, cert)
	})

	t.Run("origin certificate", func(t *testing.T) {
		// Same CA and good for client authentication, but not an edge.
		expectHandshakeRefused(t, c, to.issue(t, pki.RoleOrigin, "e1"))
	})

	t.Run("announced id differs from certificate", func(t *testing.T) {
		cert := to.issue(t, pki.RoleEdge, "e1")
		for _, kind := range []wire.ConnKind{wire.ConnControl, wire.ConnData} {
			t.Run(kind.String(), func(t *testing.T) {
				conn := c.mustDial(t, cert)
				st, f, err := exchange(t, conn, wire.AppendFrame(nil, hello(kind, "e2")), false)
				expectRefused(t, conn, st, f, err, wire.RejectIdentity, reasonIdentity, true)
				if to.listed("e2") || to.listed("e1") {
					t.Fatalf("origin lists the refused edge: %+v", to.Edges())
				}
			})
		}
	})

	t.Run("unsupported protocol version", func(t *testing.T) {
		cert := to.issue(t, pki.RoleEdge, "e3")
		for _, v := range []uint8{0, wire.ProtocolVersion + 1, math.MaxUint8} {
			t.Run(fmt.Sprint("v", v), func(t *testing.T) {
				conn := c.mustDial(t, cert)
				h := hello(wire.ConnControl, "e3")
				h.Version = v
				st, f, err := exchange(t, conn, wire.AppendFrame(nil, h), false)
				expectRefused(t, conn, st, f, err, wire.RejectVersion, reasonVersion, false)
			})
		}
	})

	t.Run("garbage first frame", func(t *testing.T) {
		cert := to.issue(t, pki.RoleEdge, "e4")
		payload := hello(wire.ConnControl, "e4").Append(nil)
		badKind := slices.Clone(payload)
		badKind[1] = 9 // the kind byte
		nan := hello(wire.ConnControl, "e4")
		nan.Lat = math.NaN()
		noise := make([]byte, 4096)
		rand.NewChaCha8([32]byte{7}).Read(noise)
		noise[0] = 0xee // not a frame type
		cases := []struct {
			name string
			raw  []byte
			fin  bool
		}{
			{"unknown frame type", []byte{0xee, 0x02, 0xab, 0xcd}, false},
			{"heartbeat instead of hello", wire.AppendFrame(nil, wire.Heartbeat{Seq: 1}), false},
			{"fill request instead of hello", wire.AppendFrame(nil, wire.FillRequest{Namespace: "default", Key: "k"}), false},
			{"hello payload cut short", rawFrame(wire.FrameHello, payload[:5]), false},
			{"hello of unknown kind", rawFrame(wire.FrameHello, badKind), false},
			{"hello with NaN latitude", wire.AppendFrame(nil, nan), false},
			{"hello with a trailing byte", rawFrame(wire.FrameHello, append(slices.Clone(payload), 0)), false},
			{"truncated header then FIN", []byte{byte(wire.FrameHello), 0x40}, true},
			{"truncated payload then FIN", rawFrame(wire.FrameHello, payload)[:10], true},
			{"empty stream", nil, true},
			{"random bytes", noise, false},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				conn := c.mustDial(t, cert)
				st, f, err := exchange(t, conn, tc.raw, tc.fin)
				expectRefused(t, conn, st, f, err, wire.RejectBadHello, reasonBadHello, false)
			})
		}
	})

	t.Run("oversized frame length", func(t *testing.T) {
		cert := to.issue(t, pki.RoleEdge, "e5")
		t.Run("as the first frame", func(t *testing.T) {
			conn := c.mustDial(t, cert)
			huge := append([]byte{byte(wire.FrameHello)}, quicvarint.Append(nil, 1<<40)...)
			st, f, err := exchange(t, conn, huge, false)
			expectRefused(t, conn, st, f, err, wire.RejectBadHello, reasonBadHello, false)
		})
		t.Run("on the control stream after a welcome", func(t *testing.T) {
			conn := c.mustDial(t, cert)
			st, f, err := exchange(t, conn, wire.AppendFrame(nil, hello(wire.ConnControl, "e5")), false)
			if err != nil {
				t.Fatalf("valid hello: %v", err)
			}
			if _, ok := f.(wire.Welcome); !ok {
				t.Fatalf("valid hello answered with %T %+v", f, f)
			}
			// A heartbeat declaring 2^62-1 bytes of payload.
			if _, err := st.Write([]byte{byte(wire.FrameHeartbeat), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}); err != nil {
				t.Fatal(err)
			}
			cause := closeCause(t, conn)
			var ae *quic.ApplicationError
			if !errors.As(cause, &ae) || !ae.Remote {
				t.Fatalf("connection ended with %v, want the origin to close it", cause)
			}
			t.Logf("origin closed the connection: %v", cause)
			eventually(t, "e5 no longer up", func() bool { return to.stateOf("e5") != EdgeUp })
		})
		t.Run("a valid edge still connects", func(t *testing.T) {
			conn := c.mustDial(t, to.issue(t, pki.RoleEdge, "e6"))
			_, f, err := exchange(t, conn, wire.AppendFrame(nil, hello(wire.ConnControl, "e6")), false)
			if err != nil {
				t.Fatalf("valid edge after the oversized frames: %v", err)
			}
			w, isWelcome := f.(wire.Welcome)
			if !isWelcome || w.Version != wire.ProtocolVersion || w.OriginID != "origin-1" {
				t.Fatalf("valid edge answered with %T %+v, want a welcome", f, f)
			}
			eventually(t, "e6 listed", func() bool { return to.listed("e6") })
			if code := to.healthz(t); code != http.StatusOK {
				t.Fatalf("origin /healthz %d after the refusals, want 200", code)
			}
		})
	})

	// No refused client made it into the registry, in memory or on disk.
	for _, id := range []string{"e1", "e2", "e3", "e4"} {
		if to.listed(id) {
			t.Errorf("origin lists refused edge %s: %+v", id, to.Edges())
		}
	}
	if b, err := os.ReadFile(filepath.Join(to.cfg.DataDir, "edges.json")); err == nil {
		for _, id := range []string{`"e1"`, `"e2"`, `"e3"`, `"e4"`} {
			if bytes.Contains(b, []byte(id)) {
				t.Errorf("edges.json records refused edge %s: %s", id, b)
			}
		}
	}
}

// rawFrame frames payload as type t without looking at it.
func rawFrame(t wire.FrameType, payload []byte) []byte {
	b := append([]byte{byte(t)}, quicvarint.Append(nil, uint64(len(payload)))...)
	return append(b, payload...)
}

// startTestEdge runs a real edge with id against to until the test ends.
// Its metrics go to the returned registry; dir is its data directory.
func startTestEdge(t *testing.T, to *testOrigin, id string) (e *edgenode.Edge, reg *prometheus.Registry, dir string) {
	t.Helper()
	e, reg = startEdgeWith(t, to, id, func(c *edgenode.Config) { dir = c.DataDir })
	return e, reg, dir
}

// counter reads the value of a counter with one label from reg; 0 if it
// has not been touched.
func counter(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// corrupter is an Origin.pushBody hook that damages the bytes of the first pushes
// of chosen keys: the first attempt has one bit flipped, the second is a
// byte short, and so on alternately.
type corrupter struct {
	o *Origin
	// bad is how many attempts of each key to damage; -1 means all.
	bad map[string]int

	mu       sync.Mutex
	attempts map[uint64]int // by LSN
}

func (c *corrupter) install(t *testing.T) {
	c.attempts = make(map[uint64]int)
	hook := func(ent wire.LogEntry, blob io.Reader) io.Reader {
		bad, ok := c.bad[ent.Key]
		if !ok {
			return blob
		}
		c.mu.Lock()
		n := c.attempts[ent.LSN]
		c.attempts[ent.LSN]++
		c.mu.Unlock()
		if bad >= 0 && n >= bad {
			return blob
		}
		if n%2 == 1 && ent.Size > 0 {
			return io.LimitReader(blob, int64(ent.Size)-1)
		}
		return &flipReader{r: blob, at: int64(ent.Size / 2)}
	}
	if !c.o.pushBody.CompareAndSwap(nil, &hook) {
		t.Fatal("push body hook already installed")
	}
}

func (c *corrupter) count(lsn uint64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.attempts[lsn]
}

// flipReader passes r through with the lowest bit of the byte at offset at
// flipped.
type flipReader struct {
	r   io.Reader
	at  int64
	off int64
}

func (f *flipReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if i := f.at - f.off; i >= 0 && i < int64(n) {
		p[i] ^= 1
	}
	f.off += int64(n)
	return n, err
}

// getURL fetches url and returns status, body and headers.
func getURL(t *testing.T, url string) (int, []byte, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, b, resp.Header
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// checkBlobs verifies that every blob the edge keeps in dir is the content
// its name promises, and reports which digests it holds.
func checkBlobs(t *testing.T, dir string) map[string]bool {
	t.Helper()
	held := make(map[string]bool)
	files, err := filepath.Glob(filepath.Join(dir, "blobs", "[0-9a-f][0-9a-f]", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if got := sha256Hex(b); got != filepath.Base(f) {
			t.Errorf("edge blob %s holds content with digest %s", f, got)
		}
		held[filepath.Base(f)] = true
	}
	return held
}

func pushEvents(to *testOrigin, kind EventKind, edgeID string, lsn uint64) []Event {
	return to.events.find(func(ev Event) bool { return ev.Kind == kind && ev.Edge == edgeID && ev.LSN == lsn })
}

// TestPushBadDigestIsRefusedAndResent corrupts pushes on the wire to a real
// edge: the edge must refuse them (PushBadDigest), never keep or serve the
// damaged bytes, and end up with the right content, pushed again by the
// origin or, when every attempt is damaged, filled on a client's request.
func TestPushBadDigestIsRefusedAndResent(t *testing.T) {
	to := startTestOrigin(t, func(c *Config) { c.PublishTimeout = 2 * time.Second })
	e, reg, dir := startTestEdge(t, to, "e1")
	corr := &corrupter{o: to.Origin, bad: map[string]int{"retry.bin": 2, "always.bin": -1}}
	corr.install(t)
	const pushes = "geocdn_edge_pushes_total"

	rng := rand.New(rand.NewPCG(1, 2))
	body := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}

	t.Run("resent after bad digests", func(t *testing.T) {
		content := body(300 << 10) // larger than the hot tier's per-object limit
		status, res := to.publish(t, "retry.bin", content, "w=0")
		if status != http.StatusCreated || res.Digest != sha256Hex(content) {
			t.Fatalf("publish: status %d digest %s, want 201 %s", status, res.Digest, sha256Hex(content))
		}
		eventually(t, "the push to be stored or given up", func() bool {
			return len(pushEvents(to, EventPushStored, "e1", res.LSN))+len(pushEvents(to, EventPushFailed, "e1", res.LSN)) > 0
		})
		if failed := pushEvents(to, EventPushFailed, "e1", res.LSN); len(failed) > 0 {
			t.Fatalf("push failed after %d attempts: %v", corr.count(res.LSN), failed[0].Err)
		}
		// The origin tries again only after the edge answered
		// PushBadDigest, so a stored push after three attempts means two
		// bad-digest answers came first.
		if n := corr.count(res.LSN); n != 3 {
			t.Fatalf("%d push attempts, want 3 (two damaged, then a good one)", n)
		}
		if got := counter(t, reg, pushes, "result", "bad_digest"); got != 2 {
			t.Errorf("edge counted %v bad-digest pushes, want 2", got)
		}
		if got := counter(t, reg, pushes, "result", "stored"); got != 1 {
			t.Errorf("edge counted %v stored pushes, want 1", got)
		}
		if stored := pushEvents(to, EventPushStored, "e1", res.LSN); len(stored) != 1 || stored[0].Digest.String() != res.Digest {
			t.Fatalf("stored events %+v, want one for digest %s", stored, res.Digest)
		}
		status, got, hdr := getURL(t, e.PublicURL()+"/retry.bin")
		if status != http.StatusOK || sha256Hex(got) != res.Digest {
			t.Fatalf("edge GET: status %d, body digest %s, want 200 %s", status, sha256Hex(got), res.Digest)
		}
		if x := hdr.Get("X-Cache"); x != "HIT" {
			t.Errorf("edge GET: X-Cache %q, want HIT (the resent push stored it)", x)
		}
		if held := checkBlobs(t, dir); !held[res.Digest] {
			t.Errorf("edge blob store lacks %s", res.Digest)
		}
	})

	t.Run("every attempt damaged", func(t *testing.T) {
		badBefore := counter(t, reg, pushes, "result", "bad_digest")
		content := body(64<<10 + 3)
		// The push never succeeds, so w=1 cannot be met: the answer is
		// 504 with the write committed and nobody acked.
		status, res := to.publish(t, "always.bin", content, "w=1")
		if status != http.StatusGatewayTimeout || !res.Committed || len(res.Acked) != 0 {
			t.Fatalf("publish w=1: status %d committed %v acked %v, want 504, committed, no acks", status, res.Committed, res.Acked)
		}
		eventually(t, "the push to be given up", func() bool { return len(pushEvents(to, EventPushFailed, "e1", res.LSN)) > 0 })
		failed := pushEvents(to, EventPushFailed, "e1", res.LSN)
		if !errors.Is(failed[0].Err, errBadDigest) {
			t.Errorf("push failed with %v, want a bad digest", failed[0].Err)
		}
		if n := corr.count(res.LSN); n != pushAttempts {
			t.Errorf("%d push attempts, want %d", n, pushAttempts)
		}
		if stored := pushEvents(to, EventPushStored, "e1", res.LSN); len(stored) != 0 {
			t.Fatalf("a damaged push was reported stored: %+v", stored)
		}
		if got := counter(t, reg, pushes, "result", "bad_digest") - badBefore; got != pushAttempts {
			t.Errorf("edge counted %v more bad-digest pushes, want %d", got, pushAttempts)
		}
		if held := checkBlobs(t, dir); held[res.Digest] {
			t.Fatalf("edge holds %s although every push of it was damaged", res.Digest)
		}
		eventually(t, "the log entry at the edge", func() bool { return e.Watermark() >= res.LSN })
		// A client's GET fills the right bytes from the origin (unless the
		// edge's periodic repair got there first).
		repaired := len(to.events.find(func(ev Event) bool { return ev.Kind == EventFillServed && ev.Digest.String() == res.Digest })) > 0
		for i, want := range []string{"MISS", "HIT"} {
			status, got, hdr := getURL(t, e.PublicURL()+"/always.bin")
			if status != http.StatusOK || sha256Hex(got) != res.Digest {
				t.Fatalf("edge GET %d: status %d, body digest %s, want 200 %s", i+1, status, sha256Hex(got), res.Digest)
			}
			if x := hdr.Get("X-Cache"); x != want && !repaired {
				t.Errorf("edge GET %d: X-Cache %q, want %s", i+1, x, want)
			}
		}
		if held := checkBlobs(t, dir); !held[res.Digest] {
			t.Errorf("edge did not keep the filled content %s", res.Digest)
		}
	})
}
