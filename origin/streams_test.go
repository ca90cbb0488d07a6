package origin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"

	edgenode "github.com/geocdn/geocdn/edge"
	"github.com/geocdn/geocdn/internal/pki"
	"github.com/geocdn/geocdn/internal/wire"
)

// Both ends of a QUIC stream must finish both of its directions (a FIN or
// a reset one way; reading to the end, or STOP_SENDING, the other) before
// it stops counting against the opener's stream limit (1,024 streams in
// quicConfig). A side that forgets one direction on some path leaks a
// stream on every use of that path, and after about a thousand uses the
// peer cannot open another: pushes (or fills) stop for good. These tests
// use each path far more than a thousand times.

// startEdgeWith runs a real edge with id against to until the test ends,
// once it is connected and leased, with mod (if not nil) adjusting its
// config. Its metrics go to the returned registry.
func startEdgeWith(t *testing.T, to *testOrigin, id string, mod func(*edgenode.Config)) (*edgenode.Edge, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := edgenode.Config{
		ID: id, Region: "test", Origin: to.QUICAddr(), HTTPAddr: "127.0.0.1:0",
		DataDir: t.TempDir(), CA: to.ca, Cert: to.issue(t, pki.RoleEdge, id),
		Registry: reg, Logger: quicTestLogger(t),
	}
	if mod != nil {
		mod(&cfg)
	}
	e, err := edgenode.New(cfg)
	if err != nil {
		t.Fatalf("edge.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("edge.Run: %v", err)
		}
	})
	eventually(t, id+" connected and leased", func() bool { return e.Healthy() && to.stateOf(id) == EdgeUp })
	return e, reg
}

// tryPublish is publish for goroutines other than the test's: it returns
// what went wrong instead of failing the test.
func (to *testOrigin) tryPublish(key string, body []byte, query string) (int, PublishResult, error) {
	u := "http://" + to.HTTPAddr().String() + objectsPrefix + key + "?" + query
	req, err := http.NewRequest(http.MethodPut, u, bytes.NewReader(body))
	if err != nil {
		return 0, PublishResult{}, err
	}
	req.Header.Set("Authorization", "Bearer "+to.token)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, PublishResult{}, fmt.Errorf("publish %s: %w", key, err)
	}
	defer resp.Body.Close()
	var res PublishResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return resp.StatusCode, res, fmt.Errorf("publish %s: decode answer: %w", key, err)
	}
	return resp.StatusCode, res, nil
}

// publishAcked publishes bodyOf(i) under keyOf(i) for i in [0, n) with
// w=all, a few at a time, and reports the first publish the edge did not
// acknowledge. Publishing concurrently keeps several pushes in flight, as
// a busy publisher would.
func (to *testOrigin) publishAcked(n int, keyOf func(int) string, bodyOf func(int) []byte, edgeID string) error {
	const workers = 8
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				status, res, err := to.tryPublish(keyOf(i), bodyOf(i), "w=all")
				if err == nil && (status != http.StatusCreated || len(res.Acked) != 1 || res.Acked[0] != edgeID) {
					err = fmt.Errorf("publish %d of %d (%s): status %d committed %v acked %v (%s), want 201 acked by %s",
						i+1, n, keyOf(i), status, res.Committed, res.Acked, res.Error, edgeID)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var err error
feed:
	for i := range n {
		select {
		case next <- i:
		case err = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

// TestManyPushesAnsweredHave is the regression test for identical content
// wedging the push pipeline: an edge answered "have" (and "refuse")
// without ever finishing the origin's direction of the push stream, so
// from the 1,025th such push on the origin could open no stream to it and
// every w=all publish timed out, unique content included.
func TestManyPushesAnsweredHave(t *testing.T) {
	// Short runs still go well past the edge's limit of 1,024 streams.
	haves := 5000
	if testing.Short() {
		haves = 1200
	}
	const (
		refuses = 40
		uniques = 40
		// diskCap admits the small bodies and refuses the large ones.
		diskCap   = 256 << 10
		refuseLen = diskCap + 1
	)
	// A wedged pipeline shows as a 504 after PublishTimeout; the default
	// 30s would only make the failure slower to report.
	to := startTestOrigin(t, func(c *Config) { c.PublishTimeout = 15 * time.Second })
	_, reg := startEdgeWith(t, to, "e1", func(c *edgenode.Config) { c.DiskBytes = diskCap })
	const pushes = "geocdn_edge_pushes_total"
	start := time.Now()

	// Refused: bodies the edge's disk cap cannot admit. w=0, since a
	// refused push is never acknowledged; the origin reports each refusal.
	big := func(i int) []byte {
		return bytes.Repeat([]byte{byte(i), byte(i >> 8), 0xbb}, refuseLen/3+1)[:refuseLen]
	}
	var refusedLSNs []uint64
	for i := range refuses {
		status, res := to.publish(t, fmt.Sprintf("refused/%d", i), big(i), "w=0")
		if status != http.StatusCreated {
			t.Fatalf("publish refused/%d: status %d (%s), want 201", i, status, res.Error)
		}
		refusedLSNs = append(refusedLSNs, res.LSN)
	}
	for _, lsn := range refusedLSNs {
		eventually(t, fmt.Sprintf("the push of lsn %d refused", lsn), func() bool { return len(pushEvents(to, EventPushFailed, "e1", lsn)) > 0 })
		if ev := pushEvents(to, EventPushFailed, "e1", lsn)[0]; !errors.Is(ev.Err, errPushRefused) {
			t.Fatalf("push of lsn %d failed with %v, want the edge's refusal", lsn, ev.Err)
		}
	}
	if got := counter(t, reg, pushes, "result", "disk_full"); got < refuses {
		t.Errorf("edge counted %v refused (disk_full) pushes, want at least %d", got, refuses)
	}

	// Have: one body under many keys. The first push stores it; every
	// later offer is answered "have".
	same := bytes.Repeat([]byte("identical content, 1 KiB\n"), 41)[:1024]
	if status, res := to.publish(t, "same/first", same, "w=all"); status != http.StatusCreated {
		t.Fatalf("publish same/first: status %d (%s), want 201", status, res.Error)
	}
	if err := to.publishAcked(haves, func(i int) string { return fmt.Sprintf("same/%d", i) },
		func(int) []byte { return same }, "e1"); err != nil {
		t.Fatal(err)
	}
	if got := counter(t, reg, pushes, "result", "have"); got < float64(haves) {
		t.Errorf("edge answered %v offers with have, want at least %d", got, haves)
	}

	// Unique content still flows, and every publish is acknowledged.
	if err := to.publishAcked(uniques, func(i int) string { return fmt.Sprintf("unique/%d", i) },
		func(i int) []byte { return fmt.Appendf(nil, "unique body %d", i) }, "e1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "no push stream open to e1", func() bool { return to.PushStreamsOpen("e1") == 0 })
	t.Logf("%d refused, %d have and %d unique pushes in %v", refuses, haves, uniques, time.Since(start).Round(time.Millisecond))
}

// TestManyFillsWithLateFIN fills from the origin far more often than its
// stream limit, over a data connection whose client ends its request
// direction only after it has read the whole answer — late, but as QUIC
// allows. The origin must finish its side of every fill stream so the
// client can keep opening new ones.
func TestManyFillsWithLateFIN(t *testing.T) {
	const fills = 2500
	to := startTestOrigin(t, nil)
	body := []byte("filled over and over")
	if status, res := to.publish(t, "fill/me", body, "w=0"); status != http.StatusCreated {
		t.Fatalf("publish: status %d (%s), want 201", status, res.Error)
	}
	c := newRawClient(t, to)
	conn := c.mustDial(t, to.issue(t, pki.RoleEdge, "raw"))
	if _, f, err := exchange(t, conn, wire.AppendFrame(nil, hello(wire.ConnData, "raw")), false); err != nil {
		t.Fatalf("hello: %v", err)
	} else if _, ok := f.(wire.Welcome); !ok {
		t.Fatalf("hello answered with %T %+v, want a welcome", f, f)
	}
	start := time.Now()
	for i := range fills {
		if err := lateFINFill(conn, body); err != nil {
			t.Fatalf("fill %d of %d: %v", i+1, fills, err)
		}
	}
	t.Logf("%d fills in %v", fills, time.Since(start).Round(time.Millisecond))
}

// lateFINFill asks for fill/me and checks the answer, closing its side of
// the stream only once the origin's answer has ended.
func lateFINFill(conn *quic.Conn, want []byte) error {
	// The bound is only there so a wedged origin fails the test instead
	// of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return fmt.Errorf("open stream (the origin grants no more): %w", err)
	}
	defer st.CancelRead(0)
	defer st.Close()
	st.SetDeadline(time.Now().Add(20 * time.Second))
	if err := wire.WriteFrame(st, wire.FillRequest{Namespace: "default", Key: "fill/me"}); err != nil {
		return err
	}
	f, err := wire.ReadFrame(st)
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	resp, ok := f.(wire.FillResponse)
	if !ok || resp.Status != wire.FillOK {
		return fmt.Errorf("answer %T %+v, want fill-ok", f, f)
	}
	got, err := io.ReadAll(st)
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("body %q, want %q", got, want)
	}
	return nil
}

// TestPushStreamEndsOnEveryAnswer plays the edge with a raw client and
// checks that the origin ends both directions of a push stream whatever
// the answer (a FIN on its own, STOP_SENDING on the client's, which the
// client has deliberately left open), and that the open-streams gauge
// counts the stream while it is open and comes back to 0, also when the
// connection drops mid-push.
func TestPushStreamEndsOnEveryAnswer(t *testing.T) {
	to := startTestOrigin(t, nil)
	c := newRawClient(t, to)
	cert := to.issue(t, pki.RoleEdge, "raw")
	for _, kind := range []wire.ConnKind{wire.ConnControl, wire.ConnData} {
		conn := c.mustDial(t, cert)
		_, f, err := exchange(t, conn, wire.AppendFrame(nil, hello(kind, "raw")), false)
		if _, ok := f.(wire.Welcome); err != nil || !ok {
			t.Fatalf("%s hello answered with %T %v, want a welcome", kind, f, err)
		}
		if kind == wire.ConnData {
			t.Cleanup(func() { conn.CloseWithError(0, "") })
			testPushAnswers(t, to, conn)
		}
	}
}

func testPushAnswers(t *testing.T, to *testOrigin, data *quic.Conn) {
	// offered publishes key and returns the push stream the origin opens
	// for it, with the offer read.
	offered := func(t *testing.T, key string) (*quic.Stream, uint64) {
		t.Helper()
		status, res := to.publish(t, key, []byte("content of "+key), "w=0")
		if status != http.StatusCreated {
			t.Fatalf("publish %s: status %d (%s)", key, status, res.Error)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		st, err := data.AcceptStream(ctx)
		if err != nil {
			t.Fatalf("no push stream for %s: %v", key, err)
		}
		st.SetDeadline(time.Now().Add(20 * time.Second))
		f, err := wire.ReadFrame(st)
		if offer, ok := f.(wire.PushOffer); err != nil || !ok || offer.LSN != res.LSN {
			t.Fatalf("push stream began with %T %+v (%v), want the offer of lsn %d", f, f, err, res.LSN)
		}
		if got := to.PushStreamsOpen("raw"); got != 1 {
			t.Errorf("open push streams while offered: got %d, want 1", got)
		}
		return st, res.LSN
	}
	for _, tc := range []struct {
		name  string
		reply wire.PushReply
		event EventKind
	}{
		{"have", wire.PushReply{Status: wire.PushHave}, EventPushStored},
		{"refuse", wire.PushReply{Status: wire.PushRefuse, Reason: "test refuses"}, EventPushFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, lsn := offered(t, "answer/"+tc.name)
			// The client answers and never closes its direction: the
			// origin must stop it.
			if err := wire.WriteFrame(st, tc.reply); err != nil {
				t.Fatal(err)
			}
			if rest, err := io.ReadAll(st); err != nil || len(rest) > 0 {
				t.Errorf("after the offer the origin sent %q and %v, want its FIN", rest, err)
			}
			select {
			case <-st.Context().Done():
			case <-time.After(20 * time.Second):
				t.Fatal("the origin never stopped the client's direction of the stream")
			}
			var se *quic.StreamError
			if cause := context.Cause(st.Context()); !errors.As(cause, &se) || !se.Remote {
				t.Errorf("client's direction ended by %v, want the origin's STOP_SENDING", cause)
			}
			st.Close()
			eventually(t, tc.event.String()+" event", func() bool { return len(pushEvents(to, tc.event, "raw", lsn)) > 0 })
			eventually(t, "no push stream open", func() bool { return to.PushStreamsOpen("raw") == 0 })
		})
	}
	t.Run("connection dropped", func(t *testing.T) {
		_, lsn := offered(t, "answer/dropped")
		data.CloseWithError(0, "edge gone")
		eventually(t, "push-failed event", func() bool { return len(pushEvents(to, EventPushFailed, "raw", lsn)) > 0 })
		eventually(t, "no push stream open", func() bool { return to.PushStreamsOpen("raw") == 0 })
		if got := to.metrics.pushStreamsWaiting.value("raw"); got != 0 {
			t.Errorf("pushes waiting for a stream: got %d, want 0", got)
		}
	})
}
