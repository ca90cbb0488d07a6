package edge

import (
	"context"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/geocdn/geocdn/internal/wire"
)

// Fills from followers.
//
// The edge follows the leader's log, but content is addressed by digest,
// so any origin that holds a version can serve it. While a session with
// the leader runs, the edge keeps a fill connection (wire.ConnFill) to the
// nearest other origin, by the round-trip time QUIC measured during the
// handshakes, and sends its fills by digest there first (placement and
// repair fills, misses of keys the log named). That origin serves what it
// holds and declines the rest; the edge then asks the leader, which also
// answers every fill of a key's current version. So an edge fills from
// the origin of its own region where there is one, and the leader's
// capacity goes to writes and the log.
//
// The same connection brings leader news (wire.LeaderChanged): the origin
// names the leader at once and whenever raft tells it of a new one, and
// the edge leaves a session with any other origin for it. The edge keeps
// the connection for the news even when that origin is too far to fill
// from.

// fillConn is a fill connection to an origin other than the leader.
type fillConn struct {
	conn   *quic.Conn
	origin net.Addr
	id     string // the origin's id, from its welcome
	// fills is set when the origin is near enough to fill from (within
	// fillOriginSlack of the leader); otherwise the connection only
	// brings leader news.
	fills bool
}

// fillOriginRetry is the wait before the edge looks for a fill origin
// again when none would do. One that goes away is replaced at once.
const fillOriginRetry = 5 * time.Second

// newsOnlyRecheck is how long the edge keeps a fill connection that only
// brings leader news before it looks for a nearer origin again.
const newsOnlyRecheck = 30 * time.Second

// fillConnSteady is how long a fill connection must have lasted for the
// edge to replace it at once when it ends.
const fillConnSteady = time.Second

// fillOriginSlack is how much farther than the leader a follower may be
// and still take the edge's fills: near-ties go to a follower, to leave
// the leader to writes. Handshake RTTs carry the handshake's own work, a
// few milliseconds on a busy machine, so nothing closer than 5 ms apart
// counts as farther.
func fillOriginSlack(leader time.Duration) time.Duration {
	return max(leader/2, 5*time.Millisecond)
}

// fillOrigins keeps a fill connection to the nearest origin other than the
// leader of session s while s runs. It ends the session only when that
// origin names another leader; without a fill connection every fill goes
// to the leader, and a dead leader is found by its missed heartbeats.
func (e *Edge) fillOrigins(ctx context.Context, s *session) error {
	if !slices.ContainsFunc(e.cfg.Origins, func(a net.Addr) bool { return a.String() != s.origin.String() }) {
		return nil // no other origin to fill from
	}
	for {
		if fc := e.pickFillOrigin(ctx, s); fc != nil {
			picked := e.clk.Now()
			e.mu.Lock()
			e.fillc = fc
			e.mu.Unlock()
			e.log.Info("fill connection", "origin", fc.id, "addr", fc.origin.String(), "fills", fc.fills,
				"rtt", fc.conn.ConnectionStats().SmoothedRTT, "leader_rtt", s.dialRTT)
			moved := make(chan *leaderMovedError, 1)
			go e.readLeaderNews(ctx, fc, s, moved)
			// A connection that only brings news is looked at again
			// later for one near enough to fill from (a busy moment may
			// have made a near origin's handshake look slow).
			recheck := e.clk.NewTimer(newsOnlyRecheck)
			if fc.fills {
				recheck.Stop()
			}
			var err error
			select {
			case <-ctx.Done():
			case <-fc.conn.Context().Done():
			case <-recheck.C():
			case lm := <-moved:
				err = lm
			}
			recheck.Stop()
			e.mu.Lock()
			if e.fillc == fc {
				e.fillc = nil
			}
			e.mu.Unlock()
			fc.conn.CloseWithError(0, "")
			if err != nil {
				return err // ends the session: the edge dials the new leader
			}
			if ctx.Err() == nil && e.clk.Since(picked) >= fillConnSteady {
				// That origin went away, or it is time to look again:
				// pick at once, so that the next leader change finds a
				// fill connection. One that closes as soon as it is
				// made waits the retry.
				continue
			}
		}
		t := e.clk.NewTimer(fillOriginRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// pickFillOrigin dials every configured origin but the leader of s, all
// at once, and keeps the connection to the one with the shortest round
// trip among those that answered within pickWindow of the first (nil if
// none did), to fill from if it is within fillOriginSlack of the leader's.
// An origin that is down does not hold the choice up: the others are not
// kept waiting for its handshake to time out.
func (e *Edge) pickFillOrigin(ctx context.Context, s *session) *fillConn {
	// Handshake against handshake: a connection in use has a smoothed
	// RTT without the handshake's own work in it.
	leaderRTT := s.dialRTT
	results := make(chan *fillConn)
	dials := 0
	for _, addr := range e.cfg.Origins {
		if addr.String() == s.origin.String() {
			continue
		}
		dials++
		go func() {
			conn, st, welcome, err := e.dial(ctx, addr, wire.ConnFill, quickHandshake)
			if err != nil {
				e.log.Debug("no fill connection", "origin", addr.String(), "err", err)
				results <- nil
				return
			}
			st.Close()
			st.CancelRead(0)
			results <- &fillConn{conn: conn, origin: addr, id: welcome.OriginID}
		}()
	}
	var (
		best     *fillConn
		deadline <-chan time.Time
	)
	rtt := func(fc *fillConn) time.Duration { return fc.conn.ConnectionStats().SmoothedRTT }
	for ; dials > 0; dials-- {
		var fc *fillConn
		select {
		case fc = <-results:
		case <-deadline:
			// Too late to be chosen: close whatever still comes.
			go func(n int) {
				for range n {
					if fc := <-results; fc != nil {
						fc.conn.CloseWithError(0, "")
					}
				}
			}(dials)
			dials = 0
		}
		if dials == 0 {
			break
		}
		if fc == nil {
			continue
		}
		if best == nil {
			deadline = time.After(pickWindow(rtt(fc)))
		}
		if best == nil || rtt(fc) < rtt(best) {
			if best != nil {
				best.conn.CloseWithError(0, "")
			}
			best = fc
		} else {
			fc.conn.CloseWithError(0, "")
		}
	}
	if best != nil {
		best.fills = rtt(best) <= leaderRTT+fillOriginSlack(leaderRTT)
	}
	return best
}

// pickWindow is how long, after the first origin answered a fill
// connection, the others may take to be considered: nearer ones answer
// sooner, so a few of the first one's round trips are enough.
func pickWindow(first time.Duration) time.Duration {
	return max(4*first, 20*time.Millisecond)
}

// FillOrigin is the id of the origin the edge sends its fills to first,
// or "" when it fills from the leader only.
func (e *Edge) FillOrigin() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fillc == nil || !e.fillc.fills {
		return ""
	}
	return e.fillc.id
}

// leaderMovedError ends a session whose origin no longer leads, as the
// fill origin said: addr is the new leader's, which the edge dials next.
type leaderMovedError struct {
	id   string
	addr net.Addr
}

func (l *leaderMovedError) Error() string {
	return "origin " + l.id + " at " + l.addr.String() + " leads now"
}

// leaderNewsWait bounds the read of one wire.LeaderChanged.
const leaderNewsWait = 5 * time.Second

// readLeaderNews reads the leaders fc's origin announces, and sends on
// moved (once, then returns) the first that is not the origin of session
// s. It returns when the connection ends or it sends something it cannot
// read.
func (e *Edge) readLeaderNews(ctx context.Context, fc *fillConn, s *session, moved chan<- *leaderMovedError) {
	for {
		st, err := fc.conn.AcceptUniStream(ctx)
		if err != nil {
			return
		}
		st.SetReadDeadline(time.Now().Add(leaderNewsWait))
		f, err := wire.ReadFrame(st)
		st.CancelRead(0)
		lc, ok := f.(wire.LeaderChanged)
		if err != nil || !ok {
			e.log.Warn("fill origin sent something other than a leader change; closing the fill connection", "origin", fc.id, "frame", fmt.Sprintf("%T", f), "err", err)
			fc.conn.CloseWithError(0, "unexpected frame on a fill connection")
			return
		}
		addr, err := resolveLeader(lc.QUIC)
		if err != nil {
			e.log.Warn("fill origin named a leader that does not resolve", "origin", fc.id, "leader", lc.QUIC, "err", err)
			continue
		}
		if sameAddr(addr, s.origin) {
			continue
		}
		e.log.Info("the fill origin names a new leader; leaving the old one", "from", fc.id, "leader", lc.OriginID, "addr", addr.String(), "session", s.origin.String())
		moved <- &leaderMovedError{id: lc.OriginID, addr: addr}
		return
	}
}
