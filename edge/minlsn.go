package edge

import (
	"context"
	"time"

	"github.com/geocdn/geocdn/internal/clock"
)

// originIssued tells a session read whose GeoCDN-Min-LSN lsn is above the
// watermark whether the origin has issued lsn; since is when the request
// arrived (on e.clk). It returns the origin's last LSN as the edge knows
// it, and:
//
//   - lsnApplied once the log reaches lsn;
//   - lsnIssued as soon as a heartbeat answer (or the origin's welcome)
//     shows the origin at or past lsn: the LSN is real, the log has just
//     not brought it yet;
//   - lsnAhead when the answer to a heartbeat sent after since shows the
//     origin still below lsn. A client can only hold an LSN the origin
//     issued before the client sent the request, so the origin's last LSN
//     at any moment after the request arrived covers it: lsn was never
//     issued, and nothing the origin holds could answer the read;
//   - lsnUnconfirmed when neither came in time: one heartbeat interval
//     (the next heartbeat leaves within it) plus sessionLogWait (for its
//     answer), or just sessionLogWait when the edge had no session with
//     the origin; or when ctx ended.
//
// Without a session it still waits for the log, as session reads always
// have: an edge that is starting or reconnecting catches up within the
// wait, and the new session's answers count as soon as the log shows it
// is there. It never contacts the origin itself, only watches the
// heartbeats the edge sends anyway, so made-up LSNs cost the origin
// nothing.
func (e *Edge) originIssued(ctx context.Context, lsn uint64, since time.Time) (uint64, lsnVerdict) {
	var t clock.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	expired := false
	for {
		// Both channels are taken before the conditions they signal are
		// read, so no change between the read and the wait is missed.
		// Without a session answered stays nil: only the log can move,
		// and a new session's catch-up moves it.
		logMoved := e.logMoved.C()
		e.mu.Lock()
		s := e.sess
		last, asOf := e.lease.Origin()
		var answered <-chan struct{}
		if s != nil {
			answered = s.answers.C()
		} else {
			// As of a session that has ended (or none): proves nothing
			// about the origin after the request arrived.
			asOf = time.Time{}
		}
		e.mu.Unlock()
		switch {
		case e.store.watermark() >= lsn:
			return last, lsnApplied
		case last >= lsn:
			return last, lsnIssued
		case asOf.After(since):
			// Strictly after: a heartbeat sent at the same clock reading
			// may have left before the request arrived.
			return last, lsnAhead
		case expired || ctx.Err() != nil:
			return last, lsnUnconfirmed
		}
		if t == nil {
			d := sessionLogWait
			if s != nil {
				d += s.heartbeat
			}
			t = e.clk.NewTimer(d)
		}
		select {
		case <-logMoved:
		case <-answered:
		case <-t.C():
			// One last look: the log or the answer may have come with
			// the deadline.
			expired = true
		case <-ctx.Done():
		}
	}
}
