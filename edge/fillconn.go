package edge

import (
	"context"
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
			select {
			case <-ctx.Done():
			case <-fc.conn.Context().Done():
			}
			e.mu.Lock()
			if e.fillc == fc {
				e.fillc = nil
			}
			e.mu.Unlock()
			fc.conn.CloseWithError(0, "")
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
