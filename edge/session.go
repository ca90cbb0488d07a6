package edge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/geocdn/geocdn/internal/broadcast"
	"github.com/geocdn/geocdn/internal/pki"
	"github.com/geocdn/geocdn/internal/wire"
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

// runSession connects, follows the log, heartbeats, takes pushes and
// reports scrub progress until any of them fails.
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
	run("resync", e.resyncLoop)
	run("scrub report", e.reportScrub)
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
		if now, ok := f.(wire.ResyncNow); ok {
			select {
			case e.resyncNow <- now.ID:
			default:
				// Sixteen requests queued: the resync they wait for
				// answers this one too, and the origin times it out.
				e.log.Warn("resync request dropped: too many queued", "id", now.ID)
			}
			continue
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
