package edge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
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
	origin        net.Addr // where both connections go
	control, data *quic.Conn
	ctrl          *quic.Stream
	ctrlMu        sync.Mutex // serialises frames written on ctrl
	heartbeat     time.Duration
	term          time.Duration
	// dialRTT is the data connection's round trip as its handshake
	// measured it, to compare other origins' handshakes with.
	dialRTT time.Duration

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
// restart, and do not hammer an origin that stays away. It paces rounds
// (every origin tried once), never the origins within one: a new raft
// leader must be found within a couple of election timeouts.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
	// longSession is how long a session must have lasted for the
	// backoff to start again from minBackoff: longer than the longest
	// backoff, so an origin that welcomes the edge and drops it at once
	// is still dialled at most about once a second. Leaders can change
	// every few seconds in a bad hour; a session that served that long
	// says nothing against the next leader.
	longSession = maxBackoff
)

// Dial limits. An origin may hold a Hello for up to two election timeouts
// while it learns who leads, so the Welcome gets welcomeTimeout; the
// handshake, which no election delays, gets quickHandshake when the round
// has other origins left to try: an origin that does not answer within it
// is most likely down (a leader that shut down), and the leader must be
// found within a couple of election timeouts. The round's last origin
// gets the full dialTimeout, so a slow or lossy path still connects,
// unless another origin answered in the round.
const (
	dialTimeout    = 5 * time.Second
	welcomeTimeout = 5 * time.Second
	quickHandshake = time.Second
	// Once an origin has refused the edge in a round, the others get
	// answeredRTTs of its round trips to answer, at least
	// minQuickHandshake (a handshake is two round trips, plus the
	// origin's own work).
	answeredRTTs      = 20
	minQuickHandshake = 250 * time.Millisecond
)

// permanentError is a refusal no retry can cure; the edge stops with it.
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }

func (p *permanentError) Unwrap() error { return p.err }

// notLeaderError is a follower's refusal (wire.RejectNotLeader): hint is
// the leader's address as the follower knows it, empty if it knows none.
type notLeaderError struct {
	origin net.Addr
	hint   string
	// rtt is the round trip QUIC measured to the refusing origin.
	rtt time.Duration
}

func (n *notLeaderError) Error() string {
	if n.hint == "" {
		return fmt.Sprintf("origin %s is not the leader and knows of none", n.origin)
	}
	return fmt.Sprintf("origin %s is not the leader; the leader is %s", n.origin, n.hint)
}

// unreachable reports whether err says an origin did not answer in time
// (a dial, the welcome or heartbeats timed out), rather than that it
// answered and refused or closed.
func unreachable(err error) bool {
	if errors.Is(err, errHeartbeatLost) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// dialOrder is the order in which a round dials the origins: the origin
// of the last session first (it is the leader, or knows who is), then
// the configured origins in their order, except that one that last timed
// out goes to the back, so that a crashed leader costs one dial timeout
// rather than one per round. Only connectLoop's goroutine uses it.
type dialOrder struct {
	last  net.Addr   // origin of the last session; nil: none, or it timed out
	order []net.Addr // the configured origins
}

func newDialOrder(origins []net.Addr) *dialOrder {
	return &dialOrder{order: slices.Clone(origins)}
}

// round is the order of the next round's dials.
func (d *dialOrder) round() []net.Addr {
	r := make([]net.Addr, 0, len(d.order)+1)
	if d.last != nil {
		r = append(r, d.last)
	}
	for _, a := range d.order {
		if !sameAddr(a, d.last) {
			r = append(r, a)
		}
	}
	return r
}

// welcomed records that a session with a began. a need not be a
// configured origin: it may be a leader a follower named.
func (d *dialOrder) welcomed(a net.Addr) { d.last = a }

// timedOut records that a did not answer in time.
func (d *dialOrder) timedOut(a net.Addr) {
	if sameAddr(a, d.last) {
		d.last = nil
	}
	if i := slices.IndexFunc(d.order, func(b net.Addr) bool { return sameAddr(a, b) }); i >= 0 {
		d.order = append(slices.Delete(d.order, i, i+1), a)
	}
}

// connectLoop keeps a session with the origin that serves edges (the raft
// leader of a cluster of origins) until ctx ends, or an origin refuses
// the edge for good. Each round dials the origins in dialOrder's order,
// one after another without pause, and follows a not-leader refusal's
// hint at once; only a round in which every origin failed is followed by
// the backoff (minBackoff doubling to maxBackoff). When a session ends,
// the next round starts at once, unless the session lasted less than the
// backoff: then the round waits out the rest of it, so an origin that
// welcomes the edge and drops it at once is not hammered. A session
// longer than longSession starts the backoff again from minBackoff.
func (e *Edge) connectLoop(ctx context.Context) error {
	order := newDialOrder(e.cfg.Origins)
	backoff := minBackoff
	for ctx.Err() == nil {
		start := e.clk.Now()
		hadSession, err := e.round(ctx, order)
		if ctx.Err() != nil {
			return nil
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			return err
		}
		wait := backoff
		if hadSession {
			lasted := e.clk.Since(start)
			if lasted > longSession {
				backoff = minBackoff
			}
			wait = backoff - lasted
		}
		if wait <= 0 {
			continue
		}
		t := e.clk.NewTimer(wait)
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

// round dials origins in order until one welcomes the edge, runs the
// session with it and reports that it did and why the session ended; or,
// when no origin welcomed the edge, every refusal and dial error. A
// follower's hint is dialled next. Every address is dialled at most once
// a round, so followers naming each other during an election cannot keep
// the edge in a loop.
func (e *Edge) round(ctx context.Context, order *dialOrder) (bool, error) {
	queue := order.round()
	tried := make(map[string]bool, len(queue))
	var errs []error
	answered := false
	// quick is the handshake allowed an origin once another answered: a
	// few of the round trips the answering origins took, so that a leader
	// a follower still names after it died costs little, never more than
	// quickHandshake.
	quick := quickHandshake
	for len(queue) > 0 && ctx.Err() == nil {
		addr := queue[0]
		queue = queue[1:]
		if tried[addr.String()] {
			continue
		}
		tried[addr.String()] = true
		handshake := dialTimeout
		if answered || slices.ContainsFunc(queue, func(a net.Addr) bool { return !tried[a.String()] }) {
			handshake = quick
		}
		welcomed, err := e.runSession(ctx, addr, handshake)
		// An origin that answered, if only to refuse, shows the cluster's
		// path works: one that then does not answer within quickHandshake
		// is down, not slow.
		answered = answered || welcomed || err != nil && !unreachable(err)
		if ctx.Err() != nil {
			return welcomed, nil
		}
		if welcomed {
			order.welcomed(addr)
			if unreachable(err) {
				order.timedOut(addr)
			}
			if lm := (*leaderMovedError)(nil); errors.As(err, &lm) {
				// A follower named the new leader: it comes first.
				order.welcomed(lm.addr)
			}
			e.log.Warn("origin session ended", "origin", addr.String(), "err", err)
			return true, err
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			return false, err
		}
		errs = append(errs, err)
		var nl *notLeaderError
		if errors.As(err, &nl) && nl.rtt > 0 {
			quick = min(quick, max(answeredRTTs*nl.rtt, minQuickHandshake))
		}
		switch {
		case errors.As(err, &nl) && nl.hint != "":
			leader, rerr := resolveLeader(nl.hint)
			if rerr != nil {
				e.log.Warn("origin named a leader that does not resolve", "origin", addr.String(), "leader", nl.hint, "err", rerr)
				continue
			}
			e.log.Debug("origin is not the leader: dialling the leader it named", "origin", addr.String(), "leader", leader.String())
			queue = append([]net.Addr{leader}, queue...)
		case unreachable(err):
			order.timedOut(addr)
			e.log.Debug("origin unreachable", "origin", addr.String(), "err", err)
		default:
			e.log.Debug("origin refused the edge", "origin", addr.String(), "err", err)
		}
	}
	if ctx.Err() != nil {
		return false, nil
	}
	err := errors.Join(errs...)
	e.log.Warn("no origin would serve the edge", "origins", len(tried), "err", err)
	return false, err
}

// resolveLeader resolves the leader's address a follower named. An IPv4
// address keeps its 4-byte form, as the configured origins' have, so
// that the packets go where a configured address's would.
func resolveLeader(hint string) (*net.UDPAddr, error) {
	a, err := net.ResolveUDPAddr("udp", hint)
	if err != nil {
		return nil, err
	}
	if ip4 := a.IP.To4(); ip4 != nil {
		a.IP = ip4
	}
	return a, nil
}

// addrStrings is the addresses' host:port texts, for logs.
func addrStrings(addrs []net.Addr) []string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return s
}

// dial opens one connection of the given kind to the origin at addr, its
// handshake bounded by handshake, and exchanges Hello/Welcome.
func (e *Edge) dial(ctx context.Context, addr net.Addr, kind wire.ConnKind, handshake time.Duration) (*quic.Conn, *quic.Stream, wire.Welcome, error) {
	tlsConf := pki.ClientTLS(e.cfg.CA, e.cfg.Cert, pki.RoleOrigin, e.clk.Now)
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	hctx, hcancel := context.WithTimeout(dctx, handshake)
	conn, err := e.tr.Dial(hctx, addr, tlsConf, quicConfig())
	hcancel()
	if err != nil {
		return nil, nil, wire.Welcome{}, fmt.Errorf("dial origin %s: %w", addr, err)
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
	st.SetReadDeadline(e.clk.Now().Add(welcomeTimeout))
	f, err := wire.ReadFrame(st)
	st.SetReadDeadline(time.Time{})
	if err != nil {
		return fail(fmt.Errorf("read welcome from %s: %w", addr, err))
	}
	switch m := f.(type) {
	case wire.Welcome:
		return conn, st, m, nil
	case wire.Reject:
		if m.Code == wire.RejectNotLeader {
			return fail(&notLeaderError{origin: addr, hint: m.Reason, rtt: conn.ConnectionStats().SmoothedRTT})
		}
		err := fmt.Errorf("origin %s refused the edge (%s): %s", addr, m.Code, m.Reason)
		if m.Code == wire.RejectIdentity || m.Code == wire.RejectVersion {
			// Retrying cannot help: the certificate and the protocol
			// version are fixed for the life of the process.
			err = &permanentError{err}
		}
		return fail(err)
	}
	return fail(fmt.Errorf("unexpected %T from %s instead of welcome", f, addr))
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

// runSession connects to the origin at addr (each handshake bounded by
// handshake), follows the log, heartbeats, takes pushes and reports scrub
// progress until any of them fails. It reports whether the origin
// welcomed both connections (a session ran), and why the session ended
// or could not begin. Both connections go to addr: the data connection to
// the origin whose log the control connection follows.
func (e *Edge) runSession(ctx context.Context, addr net.Addr, handshake time.Duration) (bool, error) {
	control, ctrl, welcome, err := e.dial(ctx, addr, wire.ConnControl, handshake)
	if err != nil {
		return false, err
	}
	defer control.CloseWithError(0, "")
	data, dataHello, _, err := e.dial(ctx, addr, wire.ConnData, handshake)
	if err != nil {
		return false, err
	}
	defer data.CloseWithError(0, "")
	// The data connection's hello stream is done once welcomed; ending
	// both of its directions frees its slot for a fill.
	dataHello.Close()
	dataHello.CancelRead(0)
	s := &session{
		origin:  addr,
		control: control, data: data, ctrl: ctrl,
		heartbeat: time.Duration(welcome.HeartbeatInterval) * time.Millisecond,
		term:      time.Duration(welcome.LeaseMillis) * time.Millisecond,
		dialRTT:   data.ConnectionStats().SmoothedRTT,
	}
	if s.heartbeat <= 0 || s.term <= 0 {
		return false, fmt.Errorf("origin %s sent heartbeat %v and lease %v", addr, s.heartbeat, s.term)
	}
	pull := make(map[string]bool, len(welcome.Pull))
	for _, ns := range welcome.Pull {
		pull[ns] = true
	}
	e.pullNS.Store(&pull)
	e.mu.Lock()
	e.sess = s
	e.lease.Welcomed(welcome.CurrentLSN)
	e.mu.Unlock()
	e.log.Info("connected to origin", "origin", welcome.OriginID, "addr", addr.String(),
		"origin_lsn", welcome.CurrentLSN, "watermark", e.store.watermark())
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
	run("rtt report", e.reportRTT)
	run("fill origin", e.fillOrigins)
	<-sctx.Done()
	control.CloseWithError(0, "")
	data.CloseWithError(0, "")
	wg.Wait()
	return true, context.Cause(sctx)
}

// OriginAddr is the QUIC address of the origin the edge has a session
// with (the leader, in a cluster of origins), or nil while it has none.
func (e *Edge) OriginAddr() net.Addr {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.sess == nil {
		return nil
	}
	return e.sess.origin
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
