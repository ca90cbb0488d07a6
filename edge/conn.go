package edge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/geocdn/geocdn/internal/broadcast"
	"github.com/geocdn/geocdn/internal/pki"
	"github.com/geocdn/geocdn/internal/wire"
	"github.com/geocdn/geocdn/placement"
)

// session is one pair of connections to the origin: control (log,
// heartbeats) and data (pushes, fills). Control traffic has its own
// connection so that a large push, which can fill the data connection's
// flow-control window, never delays a heartbeat or a log entry.
type session struct {
	control, data *quic.Conn
	ctrl          *quic.Stream
	ctrlMu        sync.Mutex // serialises frames written on ctrl
	heartbeat     time.Duration
	term          time.Duration

	answerMu   sync.Mutex
	lastAnswer time.Time // when the last heartbeat answer arrived

	// answers is signalled after every heartbeat answer Edge.lease took
	// and when the session ends, for reads waiting on the origin's LSN
	// (originIssued).
	answers broadcast.Signal
}

func (s *session) answered(t time.Time) {
	s.answerMu.Lock()
	defer s.answerMu.Unlock()
	s.lastAnswer = t
}

func (s *session) lastAnswered() time.Time {
	s.answerMu.Lock()
	defer s.answerMu.Unlock()
	return s.lastAnswer
}

func (s *session) send(f wire.Frame) error {
	s.ctrlMu.Lock()
	defer s.ctrlMu.Unlock()
	return wire.WriteFrame(s.ctrl, f)
}

var errHeartbeatLost = errors.New("origin stopped answering heartbeats")

// Redial backoff: edges come back within about a second of an origin
// restart, and do not hammer an origin that stays away.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
)

// permanentError is a refusal no retry can cure; the edge stops with it.
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// connectLoop keeps a session with the origin until ctx ends, or the
// origin refuses the edge for good.
func (e *Edge) connectLoop(ctx context.Context) error {
	backoff := minBackoff
	for ctx.Err() == nil {
		start := e.clk.Now()
		err := e.runSession(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			return err
		}
		e.log.Warn("origin session ended", "err", err)
		if e.clk.Since(start) > 5*time.Second {
			backoff = minBackoff
		}
		t := e.clk.NewTimer(backoff)
		select {
		case <-t.C():
		case <-ctx.Done():
			t.Stop()
			return nil
		}
		backoff = min(2*backoff, maxBackoff)
	}
	return nil
}

// dial opens one connection of the given kind and exchanges Hello/Welcome.
func (e *Edge) dial(ctx context.Context, kind wire.ConnKind) (*quic.Conn, *quic.Stream, wire.Welcome, error) {
	tlsConf := pki.ClientTLS(e.cfg.CA, e.cfg.Cert, pki.RoleOrigin, e.clk.Now)
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := e.tr.Dial(dctx, e.cfg.Origin, tlsConf, quicConfig())
	if err != nil {
		return nil, nil, wire.Welcome{}, fmt.Errorf("dial origin %s: %w", e.cfg.Origin, err)
	}
	fail := func(err error) (*quic.Conn, *quic.Stream, wire.Welcome, error) {
		conn.CloseWithError(0, "")
		return nil, nil, wire.Welcome{}, err
	}
	st, err := conn.OpenStreamSync(dctx)
	if err != nil {
		return fail(err)
	}
	hello := wire.Hello{
		Version: wire.ProtocolVersion, Kind: kind, EdgeID: e.cfg.ID, Region: e.cfg.Region,
		Lat: e.cfg.Lat, Lon: e.cfg.Lon, FaultDomain: e.cfg.FaultDomain, PublicURL: e.cfg.PublicURL,
		Watermark: e.store.watermark(),
	}
	if err := wire.WriteFrame(st, hello); err != nil {
		return fail(err)
	}
	st.SetReadDeadline(e.clk.Now().Add(5 * time.Second))
	f, err := wire.ReadFrame(st)
	st.SetReadDeadline(time.Time{})
	if err != nil {
		return fail(fmt.Errorf("read welcome: %w", err))
	}
	switch m := f.(type) {
	case wire.Welcome:
		return conn, st, m, nil
	case wire.Reject:
		err := fmt.Errorf("origin refused the edge: %s", m.Reason)
		if m.Code == wire.RejectIdentity || m.Code == wire.RejectVersion {
			// Retrying cannot help: the certificate and the protocol
			// version are fixed for the life of the process.
			err = &permanentError{err}
		}
		return fail(err)
	}
	return fail(fmt.Errorf("unexpected %T instead of welcome", f))
}

// quicConfig matches the origin's. The idle timeout is a backstop; missed
// heartbeats end a session much sooner.
func quicConfig() *quic.Config {
	return &quic.Config{
		MaxIdleTimeout:             10 * time.Second,
		KeepAlivePeriod:            time.Second,
		MaxIncomingStreams:         1024,
		MaxIncomingUniStreams:      16,
		InitialStreamReceiveWindow: 1 << 20,
		MaxStreamReceiveWindow:     16 << 20,
		MaxConnectionReceiveWindow: 64 << 20,
	}
}

// runSession connects, follows the log, heartbeats and takes pushes until
// any of them fails.
func (e *Edge) runSession(ctx context.Context) error {
	control, ctrl, welcome, err := e.dial(ctx, wire.ConnControl)
	if err != nil {
		return err
	}
	defer control.CloseWithError(0, "")
	data, dataHello, _, err := e.dial(ctx, wire.ConnData)
	if err != nil {
		return err
	}
	defer data.CloseWithError(0, "")
	// The data connection's hello stream is done once welcomed; ending
	// both of its directions frees its slot for a fill.
	dataHello.Close()
	dataHello.CancelRead(0)
	s := &session{
		control: control, data: data, ctrl: ctrl,
		heartbeat: time.Duration(welcome.HeartbeatInterval) * time.Millisecond,
		term:      time.Duration(welcome.LeaseMillis) * time.Millisecond,
	}
	if s.heartbeat <= 0 || s.term <= 0 {
		return fmt.Errorf("origin sent heartbeat %v and lease %v", s.heartbeat, s.term)
	}
	e.mu.Lock()
	e.sess = s
	e.lease.Welcomed(welcome.CurrentLSN)
	e.mu.Unlock()
	e.log.Info("connected to origin", "origin", welcome.OriginID, "origin_lsn", welcome.CurrentLSN, "watermark", e.store.watermark())
	defer func() {
		// Every goroutine of the session has ended: no answer of its
		// reaches the lease after the reset.
		e.mu.Lock()
		e.sess = nil
		e.lease.Reset()
		e.mu.Unlock()
		// Reads waiting on this session's answers learn at once that
		// none will come.
		s.answers.Broadcast()
	}()

	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	run := func(name string, f func(context.Context, *session) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(sctx, s); err != nil {
				cancel(fmt.Errorf("%s: %w", name, err))
			}
		}()
	}
	run("log", e.followLog)
	run("heartbeat", e.heartbeats)
	run("control", e.readControl)
	run("pushes", e.acceptPushes)
	run("repair", e.repairLoop)
	<-sctx.Done()
	control.CloseWithError(0, "")
	data.CloseWithError(0, "")
	wg.Wait()
	return context.Cause(sctx)
}

// heartbeats sends a heartbeat every interval and ends the session as soon
// as answers stop, rather than waiting for QUIC's own idle timeout: a few
// missed heartbeats mean the origin is gone or restarted.
func (e *Edge) heartbeats(ctx context.Context, s *session) error {
	tk := e.clk.NewTicker(s.heartbeat)
	defer tk.Stop()
	lost := max(3*s.heartbeat, s.term/2)
	s.answered(e.clk.Now())
	var seq uint64
	for {
		seq++
		// The lease is measured from this send time.
		e.lease.Sent(seq, e.clk.Now())
		if err := s.send(wire.Heartbeat{Seq: seq, Watermark: e.store.watermark()}); err != nil {
			return err
		}
		select {
		case <-tk.C():
		case <-ctx.Done():
			return nil
		}
		// Any answer shows the origin is alive, even one that cannot
		// renew the lease yet because the log is still catching up.
		if e.clk.Since(s.lastAnswered()) > lost {
			return errHeartbeatLost
		}
	}
}

// readControl reads heartbeat answers and hands them to the lease, which
// renews only once the watermark has reached the LSN an answer carries.
func (e *Edge) readControl(ctx context.Context, s *session) error {
	r := bufio.NewReader(s.ctrl)
	for {
		f, err := wire.ReadFrame(r)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		ack, ok := f.(wire.HeartbeatAck)
		if !ok {
			return fmt.Errorf("unexpected %T on control stream", f)
		}
		s.answered(e.clk.Now())
		// LeaseMillis 0: the origin is alive but withholds the lease,
		// since this edge has left log entries unacknowledged too long.
		// Its LSN still counts for originIssued.
		term := time.Duration(ack.LeaseMillis) * time.Millisecond
		wm := e.store.watermark()
		if !e.lease.Answered(ack.Seq, ack.LSN, term, wm) {
			continue
		}
		s.answers.Broadcast()
		if term > 0 {
			last := e.lease.OriginLSN()
			e.metrics.setLag(last - min(last, wm))
		}
	}
}

// followLog applies log entries in LSN order, in batches, and acknowledges
// the new watermark after each batch.
func (e *Edge) followLog(ctx context.Context, s *session) error {
	us, err := s.control.AcceptUniStream(ctx)
	if err != nil {
		return err
	}
	entries := make(chan wire.LogEntry, 1024)
	readErr := make(chan error, 1)
	go func() {
		r := bufio.NewReaderSize(us, 64<<10)
		for {
			f, err := wire.ReadFrame(r)
			if err != nil {
				readErr <- err
				close(entries)
				return
			}
			ent, ok := f.(wire.LogEntry)
			if !ok {
				readErr <- fmt.Errorf("unexpected %T on log stream", f)
				close(entries)
				return
			}
			select {
			case entries <- ent:
			case <-ctx.Done():
				us.CancelRead(0)
			}
		}
	}()
	batch := make([]wire.LogEntry, 0, 512)
	for {
		ent, ok := <-entries
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return <-readErr
		}
		batch = append(batch[:0], ent)
	drain:
		for len(batch) < cap(batch) {
			select {
			case ent, ok := <-entries:
				if !ok {
					break drain
				}
				batch = append(batch, ent)
			default:
				break drain
			}
		}
		if err := e.applyLog(batch); err != nil {
			return err
		}
		for _, ent := range batch {
			if ent.Op == wire.OpPut && placement.IsPlanObject(ent.Namespace, ent.Key) {
				e.bg.Add(1)
				go func() {
					defer e.bg.Done()
					if err := e.planApplied(ctx, ent); err != nil && ctx.Err() == nil {
						e.log.Error("placement plan", "lsn", ent.LSN, "err", err)
					}
				}()
			}
		}
		wm := e.store.watermark()
		e.logMoved.Broadcast()
		e.metrics.setWatermark(wm)
		e.lease.Applied(wm)
		if err := s.send(wire.Ack{Watermark: wm}); err != nil {
			return err
		}
	}
}

// applyLog applies a batch of log entries in order. A purge is carried out
// at its place in the log: the entries before it are applied first, so it
// evicts the versions current at its LSN and none published after it.
func (e *Edge) applyLog(batch []wire.LogEntry) error {
	start := 0
	for i, ent := range batch {
		if ent.Op != wire.OpPurge {
			continue
		}
		fresh := ent.LSN > e.store.watermark()
		if err := e.store.apply(batch[start : i+1]); err != nil {
			return fmt.Errorf("apply log: %w", err)
		}
		start = i + 1
		if !fresh {
			continue
		}
		n, err := e.store.purge(ent)
		if err != nil {
			return fmt.Errorf("purge at lsn %d: %w", ent.LSN, err)
		}
		e.metrics.purged(n)
	}
	if start < len(batch) {
		if err := e.store.apply(batch[start:]); err != nil {
			return fmt.Errorf("apply log: %w", err)
		}
	}
	return nil
}

// acceptPushes takes pushes the origin opens on the data connection.
func (e *Edge) acceptPushes(ctx context.Context, s *session) error {
	for {
		st, err := s.data.AcceptStream(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		e.bg.Add(1)
		go func() {
			defer e.bg.Done()
			e.handlePush(st)
		}()
	}
}

// handlePush runs the edge side of the push protocol (see wire.PushOffer).
//
// The origin's stream counts against this edge's limit of 1,024 incoming
// streams (quicConfig) until both of its directions are finished here
// too: the answer's direction by Close, the origin's by reading it to its
// end or by CancelRead. The origin sends its FIN only after reading the
// answer, so no read here ever sees it on the have and refuse paths: the
// deferred CancelRead ends that direction in every branch. Without it,
// each offer answered have or refuse held a stream for the life of the
// connection, and from the 1,025th the origin could push nothing more.
func (e *Edge) handlePush(st *quic.Stream) {
	defer st.CancelRead(0)
	defer st.Close()
	f, err := wire.ReadFrame(st)
	if err != nil {
		return
	}
	offer, ok := f.(wire.PushOffer)
	if !ok {
		st.CancelRead(0)
		wire.WriteFrame(st, wire.PushReply{Status: wire.PushRefuse, Reason: fmt.Sprintf("expected a push offer, got %T", f)})
		return
	}
	// A blob can be evicted between hasBlob and setRequired; then the
	// edge asks for the bytes rather than claim a copy it lacks.
	if e.store.hasBlob(offer.Digest) && (!offer.Required || e.store.setRequired(offer.Digest, true) == nil) {
		e.metrics.push("have")
		e.awaitLog(offer.LSN)
		wire.WriteFrame(st, wire.PushReply{Status: wire.PushHave})
		return
	}
	if err := e.store.admit(int64(offer.Size)); err != nil {
		e.metrics.push("disk_full")
		e.log.Warn("push refused", "key", offer.Key, "lsn", offer.LSN, "err", err)
		wire.WriteFrame(st, wire.PushReply{Status: wire.PushRefuse, Reason: err.Error()})
		return
	}
	if err := wire.WriteFrame(st, wire.PushReply{Status: wire.PushWant}); err != nil {
		return
	}
	body := io.LimitReader(st, int64(offer.Size))
	err = e.store.writeBlob(offer.Digest, int64(offer.Size), body, offer.Required)
	if err == nil {
		// writeBlob reads nothing when a concurrent push of the same
		// content stored it first. The origin sends the whole body
		// before it reads the result, so take it and drop it: stopping
		// the origin's writes instead would fail a push that is stored.
		_, err = io.Copy(io.Discard, body)
	}
	res := wire.PushResult{Status: wire.PushStored}
	switch {
	case err == nil:
		e.metrics.push("stored")
	case errors.Is(err, ErrDigestMismatch):
		res = wire.PushResult{Status: wire.PushBadDigest, Reason: err.Error()}
		e.metrics.push("bad_digest")
	case errors.Is(err, ErrDiskFull):
		res = wire.PushResult{Status: wire.PushDiskFull, Reason: err.Error()}
		e.metrics.push("disk_full")
	default:
		res = wire.PushResult{Status: wire.PushFailed, Reason: err.Error()}
		e.metrics.push("failed")
	}
	if err != nil {
		// Stop the rest of a body this edge will not store; the origin
		// then reads the result below instead of sending it all.
		st.CancelRead(0)
		e.log.Warn("push refused", "key", offer.Key, "lsn", offer.LSN, "err", err)
	} else {
		e.awaitLog(offer.LSN)
	}
	wire.WriteFrame(st, res)
}

// pushLogWait bounds how long a push acknowledgement waits for the log.
const pushLogWait = 5 * time.Second

// awaitLog waits, briefly, until the log has reached lsn. Content and log
// travel on different connections; acknowledging a push only once its log
// entry is applied means a w= count names edges that can serve the
// version, not just edges that hold its bytes.
func (e *Edge) awaitLog(lsn uint64) {
	e.waitWatermark(context.Background(), lsn, pushLogWait)
}

// fill fetches content from the origin into the store (as an evictable
// fill unless the edge owes a replica of it) and returns the entry that
// describes the stored bytes. A zero want asks for the current version.
func (e *Edge) fill(ctx context.Context, ns, key string, want wire.Digest) (wire.LogEntry, error) {
	var have wire.Digest
	if want.IsZero() {
		// Asking for the current version: say what is held, so an
		// unchanged version costs an answer, not a body.
		if cur, ok := e.store.lookup(ns, key); ok && cur.Present {
			have = cur.Entry.Digest
		}
	}
	return e.fetch(ctx, ns, key, want, have)
}

// fetch runs one fill request: want as for fill, have the digest held.
func (e *Edge) fetch(ctx context.Context, ns, key string, want, have wire.Digest) (wire.LogEntry, error) {
	e.mu.Lock()
	s := e.sess
	e.mu.Unlock()
	if s == nil {
		return wire.LogEntry{}, errNoOrigin
	}
	octx, cancel := context.WithTimeout(ctx, e.cfg.FillTimeout)
	st, err := s.data.OpenStreamSync(octx)
	cancel()
	if err != nil {
		return wire.LogEntry{}, fmt.Errorf("fill: %w", err)
	}
	// The stream counts against the origin's limit of streams this edge
	// may open until both directions are finished at both ends. The
	// request's direction ends with the FIN below (or a reset if it
	// cannot be written whole); the answer's by CancelRead on every
	// return, which is a no-op where the answer was read to its end and
	// otherwise tells the origin to stop sending (a body not needed, or
	// one this edge could not store).
	defer st.CancelRead(0)
	stop := context.AfterFunc(ctx, func() { st.CancelRead(0); st.CancelWrite(0) })
	defer stop()
	// Stream deadlines run on the real clock (as socket deadlines do), so
	// they are set from time.Now, not from the injected clock. FillTimeout
	// bounds the answer; the body then gets time in proportion to its size
	// at a floor rate of 1 MiB/s, so a large fill is not cut off.
	st.SetDeadline(time.Now().Add(e.cfg.FillTimeout))
	if err := wire.WriteFrame(st, wire.FillRequest{Namespace: ns, Key: key, Digest: want, Have: have}); err != nil {
		st.CancelWrite(0)
		return wire.LogEntry{}, fmt.Errorf("fill: %w", err)
	}
	st.Close()
	f, err := wire.ReadFrame(st)
	if err != nil {
		return wire.LogEntry{}, fmt.Errorf("fill: %w", err)
	}
	resp, ok := f.(wire.FillResponse)
	if !ok {
		return wire.LogEntry{}, fmt.Errorf("fill: unexpected %T", f)
	}
	switch resp.Status {
	case wire.FillNotFound:
		if resp.Reason == wire.PendingReason {
			return wire.LogEntry{}, &pendingError{notFound: true}
		}
		return wire.LogEntry{}, errNotFound
	case wire.FillNotModified:
		if !e.store.hasBlob(resp.Entry.Digest) {
			// Evicted (purged) since the request: ask again for the
			// current version with its body. Not by digest: the key may
			// have moved on and that content been collected meanwhile.
			// This stream is done; end it before opening the next.
			st.CancelRead(0)
			return e.fetch(ctx, ns, key, wire.Digest{}, wire.Digest{})
		}
		return resp.Entry, nil
	case wire.FillOK:
	default:
		return wire.LogEntry{}, fmt.Errorf("fill: origin: %s", resp.Reason)
	}
	ent := resp.Entry
	st.SetReadDeadline(time.Now().Add(e.cfg.FillTimeout + time.Duration(ent.Size>>20)*time.Second))
	required := false
	if cur, ok := e.store.lookup(ns, key); ok && cur.Entry.Digest == ent.Digest {
		required = e.owes(cur.Entry)
	}
	pending := resp.Reason == wire.PendingReason
	if pending {
		// The previous version of a strong write not yet visible: kept
		// only as an evictable fill, never as the key's current version.
		required = false
	}
	if !e.store.hasBlob(ent.Digest) {
		start := e.clk.Now()
		err = e.store.writeBlob(ent.Digest, int64(ent.Size), io.LimitReader(st, int64(ent.Size)), required)
		e.metrics.fillDone(err, int64(ent.Size), e.clk.Since(start))
		if err != nil {
			return wire.LogEntry{}, fmt.Errorf("fill %s: %w", key, err)
		}
	}
	if pending {
		return ent, &pendingError{entry: ent}
	}
	return ent, nil
}

// pendingError reports a fill answered for a strong write that is not yet
// visible: entry is the previous version to serve without keeping, or,
// with notFound, the key has no visible version.
type pendingError struct {
	entry    wire.LogEntry
	notFound bool
}

func (p *pendingError) Error() string { return "strong write pending at the origin" }

var errNoOrigin = errors.New("not connected to the origin")

// owes reports whether this edge must hold a replica of ent: by the
// placement plan in force where it covers the key, else by the replica set
// recorded at publish.
func (e *Edge) owes(ent wire.LogEntry) bool {
	if p := e.plan.Load(); p != nil && !placement.IsPlanObject(ent.Namespace, ent.Key) {
		if r := p.ReplicasFor(ent.Namespace, ent.Key); r != nil {
			return slices.Contains(r, e.cfg.ID)
		}
	}
	return len(ent.Replicas) == 0 || slices.Contains(ent.Replicas, e.cfg.ID)
}

// planApplied reacts to a new plan object in the log: it fetches the plan
// (pushed to every edge, or filled here), puts it in force and drops the
// replicas the edge no longer owes. Replicas it newly owes arrive by push.
func (e *Edge) planApplied(ctx context.Context, ent wire.LogEntry) error {
	if !e.store.hasBlob(ent.Digest) {
		if _, err := e.fill(ctx, ent.Namespace, ent.Key, ent.Digest); err != nil {
			return fmt.Errorf("fetch placement plan: %w", err)
		}
	}
	if err := e.loadPlan(ent); err != nil {
		return err
	}
	drop := e.store.unowed(e.owes)
	if err := e.store.drop(drop); err != nil {
		return fmt.Errorf("drop replicas moved away: %w", err)
	}
	e.log.Info("placement plan in force", "lsn", ent.LSN, "dropped", len(drop))
	return nil
}

// loadPlan reads the plan object ent from the store and puts it in force,
// unless a later plan already is.
func (e *Edge) loadPlan(ent wire.LogEntry) error {
	c, err := e.store.openContent(ent.Digest)
	if err != nil {
		return fmt.Errorf("open placement plan: %w", err)
	}
	defer c.close()
	b := c.hot
	if c.file != nil {
		if b, err = io.ReadAll(c.file); err != nil {
			return fmt.Errorf("read placement plan: %w", err)
		}
	}
	p, err := placement.UnmarshalPlan(b)
	if err != nil {
		return fmt.Errorf("placement plan at lsn %d: %w", ent.LSN, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if ent.LSN < e.planLSN {
		return nil
	}
	e.planLSN = ent.LSN
	e.plan.Store(p)
	return nil
}

// repairInterval is how often the edge looks for replicas it owes but does
// not hold (a push lost to a dropped connection, or a crash between
// applying a log entry and storing its content).
const repairInterval = 10 * time.Second

// repairLoop fetches owed replicas that pushes did not deliver. It waits a
// full interval first so that pushes in flight after a reconnect land.
func (e *Edge) repairLoop(ctx context.Context, s *session) error {
	tk := e.clk.NewTicker(repairInterval)
	defer tk.Stop()
	for {
		select {
		case <-tk.C():
		case <-ctx.Done():
			return nil
		}
		for _, ent := range e.store.missing(e.owes) {
			if ctx.Err() != nil {
				return nil
			}
			if _, err := e.fill(ctx, ent.Namespace, ent.Key, ent.Digest); err != nil && !errors.Is(err, errNotFound) {
				e.log.Warn("repair fill", "key", ent.Key, "err", err)
			}
		}
	}
}
