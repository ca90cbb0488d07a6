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

// fillConn is a fill connection to an origin other than the leader.
type fillConn struct {
	conn   *quic.Conn
	origin net.Addr
	id     string // the origin's id, from its welcome
}

// fillOriginRetry is the wait before another fill origin is chosen after
// the fill connection closed or none would do.
const fillOriginRetry = 5 * time.Second

// fillOriginSlack is how much farther than the leader a follower may be
// and still take the edge's fills: near-ties go to a follower, to leave
// the leader to writes.
func fillOriginSlack(leader time.Duration) time.Duration {
	return max(leader/5, time.Millisecond)
}

// fillOrigins keeps a fill connection to the nearest origin other than the
// leader of session s while s runs. It never ends the session: without a
// fill connection every fill goes to the leader.
func (e *Edge) fillOrigins(ctx context.Context, s *session) error {
	if !slices.ContainsFunc(e.cfg.Origins, func(a net.Addr) bool { return a.String() != s.origin.String() }) {
		return nil // no other origin to fill from
	}
	for {
		if fc := e.pickFillOrigin(ctx, s); fc != nil {
			e.mu.Lock()
			e.fillc = fc
			e.mu.Unlock()
			e.log.Info("filling from a follower", "origin", fc.id, "addr", fc.origin.String(),
				"rtt", fc.conn.ConnectionStats().SmoothedRTT, "leader_rtt", s.data.ConnectionStats().SmoothedRTT)
			moved := make(chan *leaderMovedError, 1)
			go e.readLeaderNews(ctx, fc, s, moved)
			var err error
			select {
			case <-ctx.Done():
			case <-fc.conn.Context().Done():
			case lm := <-moved:
				err = lm
			}
			e.mu.Lock()
			if e.fillc == fc {
				e.fillc = nil
			}
			e.mu.Unlock()
			fc.conn.CloseWithError(0, "")
			if err != nil {
				return err // ends the session: the edge dials the new leader
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

// pickFillOrigin dials every configured origin but the leader of s, and
// keeps the connection to the one with the shortest round trip, if it is
// within fillOriginSlack of the leader's; nil if none is.
func (e *Edge) pickFillOrigin(ctx context.Context, s *session) *fillConn {
	leaderRTT := s.data.ConnectionStats().SmoothedRTT
	var best *fillConn
	var bestRTT time.Duration
	for _, addr := range e.cfg.Origins {
		if addr.String() == s.origin.String() {
			continue
		}
		conn, st, welcome, err := e.dial(ctx, addr, wire.ConnFill, quickHandshake)
		if err != nil {
			e.log.Debug("no fill connection", "origin", addr.String(), "err", err)
			continue
		}
		st.Close()
		st.CancelRead(0)
		rtt := conn.ConnectionStats().SmoothedRTT
		if best == nil || rtt < bestRTT {
			if best != nil {
				best.conn.CloseWithError(0, "")
			}
			best, bestRTT = &fillConn{conn: conn, origin: addr, id: welcome.OriginID}, rtt
			continue
		}
		conn.CloseWithError(0, "")
	}
	if best != nil && bestRTT > leaderRTT+fillOriginSlack(leaderRTT) {
		best.conn.CloseWithError(0, "")
		return nil
	}
	return best
}

// FillOrigin is the id of the origin the edge sends its fills to first,
// or "" when it fills from the leader only.
func (e *Edge) FillOrigin() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fillc == nil {
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
