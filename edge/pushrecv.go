package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/geocdn/geocdn/internal/wire"
)

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
			e.handlePush(ctx, st)
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
func (e *Edge) handlePush(ctx context.Context, st *quic.Stream) {
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
		e.awaitLog(ctx, offer.LSN)
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
		e.awaitLog(ctx, offer.LSN)
	}
	wire.WriteFrame(st, res)
}

// pushLogWait bounds how long a push acknowledgement waits for the log.
const pushLogWait = 5 * time.Second

// awaitLog waits, briefly, until the log has reached lsn. Content and log
// travel on different connections; acknowledging a push only once its log
// entry is applied means a w= count names edges that can serve the
// version, not just edges that hold its bytes. The wait ends with the
// session, so a shutdown is not held up by it.
func (e *Edge) awaitLog(ctx context.Context, lsn uint64) {
	e.waitWatermark(ctx, lsn, pushLogWait)
}
