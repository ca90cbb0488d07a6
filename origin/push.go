package origin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/quic-go/quic-go"

	"github.com/geocdn/geocdn/internal/wire"
)

// pushBatch bounds how many log entries a pusher reads at once, so a
// reconnect (which moves the cursor) takes effect quickly.
const pushBatch = 256

// pushAttempts bounds retries of a push whose bytes arrived corrupted.
const pushAttempts = 3

var errPushRefused = errors.New("edge refused push")

// runPusher delivers, for one edge, the content of every current version the
// edge must hold, in log order, over the edge's data connection. Its cursor
// restarts at the edge's watermark on every reconnect, so pushes owed to an
// edge that was away are delivered when it returns (hinted handoff).
func (o *Origin) runPusher(ctx context.Context, e *edge) {
	sem := make(chan struct{}, o.cfg.PushConcurrency)
	var inflight sync.WaitGroup
	defer inflight.Wait()
	for {
		conn, err := e.waitData(ctx)
		if err != nil {
			return
		}
		dispatch := func(ent wire.LogEntry) bool {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return false
			}
			e.mu.Lock()
			e.unpushed[ent.LSN] = struct{}{}
			e.mu.Unlock()
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				defer func() { <-sem }()
				o.pushWithRetry(ctx, e, conn, ent)
			}()
			return true
		}
		e.mu.Lock()
		cursor := e.pushCursor
		planSync := e.planSync
		e.planSync = false
		e.mu.Unlock()
		if planSync {
			if err := o.syncPlan(ctx, e, dispatch); err != nil {
				if ctx.Err() != nil {
					return
				}
				o.log.Error("pusher: plan sync", "edge", e.info.ID, "err", err)
			}
			continue
		}
		if cursor >= o.store.lastLSN() {
			_, changed := e.dataConn()
			select {
			case <-e.pushWake:
			case <-changed:
			case <-ctx.Done():
				return
			}
			continue
		}
		var batch []wire.LogEntry
		err = o.store.readLog(cursor, func(ent wire.LogEntry) error {
			batch = append(batch, ent)
			if len(batch) == pushBatch {
				return errBatchFull
			}
			return nil
		})
		if errors.Is(err, errLogGap) {
			// Compacted past the cursor: the edge catches up by
			// snapshot, and anti-entropy fetches the content the
			// skipped entries owed it.
			e.mu.Lock()
			if e.pushCursor == cursor {
				e.pushCursor = max(cursor, o.store.firstLSN()-1)
			}
			e.mu.Unlock()
			continue
		}
		if err != nil && !errors.Is(err, errBatchFull) {
			o.log.Error("pusher: read log", "edge", e.info.ID, "err", err)
			return
		}
		for _, ent := range batch {
			e.mu.Lock()
			if e.pushCursor != cursor {
				// The edge reconnected and announced a new watermark.
				e.mu.Unlock()
				break
			}
			e.pushCursor = ent.LSN
			cursor = ent.LSN
			e.mu.Unlock()
			if ent.Op != wire.OpPut || !o.owes(ent, e.info.ID) || !o.isCurrent(ent) {
				continue
			}
			if !dispatch(ent) {
				return
			}
		}
	}
}

var errBatchFull = errors.New("batch full")

// ensurePusher starts e's pusher once; it runs until ctx ends.
func (o *Origin) ensurePusher(ctx context.Context, e *edge) {
	e.mu.Lock()
	running := e.pusherRunning
	e.pusherRunning = true
	e.mu.Unlock()
	if running {
		return
	}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		o.runPusher(ctx, e)
	}()
}

// isCurrent reports whether ent is still the current version of its key;
// superseded versions are not worth pushing.
func (o *Origin) isCurrent(ent wire.LogEntry) bool {
	cur, err := o.store.get(ent.Namespace, ent.Key)
	return err == nil && cur.LSN == ent.LSN
}

func (o *Origin) pushWithRetry(ctx context.Context, e *edge, conn *quic.Conn, ent wire.LogEntry) {
	var err error
	for attempt := 0; attempt < pushAttempts; attempt++ {
		var n int64
		n, err = o.pushOnce(ctx, e, conn, ent)
		o.metrics.pushBytes.Add(float64(n))
		if err == nil {
			e.pushSettled(ent.LSN)
			o.metrics.pushes.WithLabelValues("stored").Inc()
			o.acks.stored(ent.LSN, e.info.ID)
			o.emit(Event{Kind: EventPushStored, Edge: e.info.ID, LSN: ent.LSN, Digest: ent.Digest, Bytes: n})
			return
		}
		if !errors.Is(err, errBadDigest) {
			break
		}
	}
	if errors.Is(err, errSuperseded) {
		e.pushSettled(ent.LSN)
		return
	}
	if errors.Is(err, errPushRefused) || errors.Is(err, errBadDigest) {
		// The edge answered: resending on reconnect would not help. A
		// transfer cut off by the connection stays unsettled and is
		// offered again when the edge returns.
		e.pushSettled(ent.LSN)
	}
	o.metrics.pushes.WithLabelValues("failed").Inc()
	o.emit(Event{Kind: EventPushFailed, Edge: e.info.ID, LSN: ent.LSN, Digest: ent.Digest, Err: err})
	if ctx.Err() == nil {
		o.log.Warn("push failed", "edge", e.info.ID, "lsn", ent.LSN, "key", ent.Key, "err", err)
	}
}

var errBadDigest = errors.New("edge saw a digest mismatch")

// errSuperseded ends a push whose version was replaced while it ran.
var errSuperseded = errors.New("version superseded")

// pushOnce runs the push protocol of wire.PushOffer on a new stream.
//
// The stream counts against the edge's limit of 1,024 open streams until
// both of its directions are finished at both ends, so every return below
// ends both directions here (see endPushStream), and the edge does the same
// on its side whatever it answers. Once the edge stops granting streams,
// every later push to it waits in OpenStreamSync: the push streams gauges
// show both states.
func (o *Origin) pushOnce(ctx context.Context, e *edge, conn *quic.Conn, ent wire.LogEntry) (n int64, err error) {
	id := e.info.ID
	o.metrics.pushStreamsWaiting.add(id, 1)
	st, err := conn.OpenStreamSync(ctx)
	o.metrics.pushStreamsWaiting.add(id, -1)
	if err != nil {
		return 0, err
	}
	o.metrics.pushStreamsOpen.add(id, 1)
	// Deferred first so it runs last, once both directions are ended,
	// whichever way the push ends (the connection may drop mid-push).
	defer o.metrics.pushStreamsOpen.add(id, -1)
	// sent is set once the origin has written all the protocol asks of it
	// (the offer, and the body if wanted); until then its direction is
	// reset rather than closed, so a cut-off body is never taken for a
	// whole one.
	sent := false
	defer func() { endPushStream(st, sent) }()
	stop := context.AfterFunc(ctx, func() { st.CancelRead(0); st.CancelWrite(0) })
	defer stop()
	offer := wire.PushOffer{
		LSN: ent.LSN, Namespace: ent.Namespace, Key: ent.Key,
		Digest: ent.Digest, Size: ent.Size, Required: true,
	}
	if err := wire.WriteFrame(st, offer); err != nil {
		return 0, err
	}
	f, err := wire.ReadFrame(st)
	if err != nil {
		return 0, fmt.Errorf("read push reply: %w", err)
	}
	reply, ok := f.(wire.PushReply)
	if !ok {
		return 0, fmt.Errorf("push: unexpected %T", f)
	}
	switch reply.Status {
	case wire.PushHave:
		sent = true
		return 0, nil
	case wire.PushRefuse:
		sent = true
		return 0, fmt.Errorf("%w: %s", errPushRefused, reply.Reason)
	}
	blob, err := o.store.openBlob(ent.Digest)
	if err != nil {
		if !o.isCurrent(ent) {
			// A newer version replaced this one and its blob was collected
			// meanwhile: nothing is owed any more.
			return 0, errSuperseded
		}
		return 0, err
	}
	var body io.Reader = blob
	if hook := o.pushBody.Load(); hook != nil {
		body = (*hook)(ent, blob)
	}
	n, err = io.Copy(st, body)
	blob.Close()
	if err != nil && !stoppedByPeer(err) {
		return n, err
	}
	// Either the body is out, or the edge stopped reading it (a full disk
	// part-way): in both cases its result says what became of the push.
	sent = true
	st.Close()
	f, err = wire.ReadFrame(st)
	if err != nil {
		return n, fmt.Errorf("read push result: %w", err)
	}
	res, ok := f.(wire.PushResult)
	if !ok {
		return n, fmt.Errorf("push: unexpected %T", f)
	}
	switch res.Status {
	case wire.PushStored:
		return n, nil
	case wire.PushBadDigest:
		return n, errBadDigest
	default:
		return n, fmt.Errorf("%w: %s", errPushRefused, res.Reason)
	}
}

// endPushStream ends both directions of a push stream at the origin: its
// own with a FIN once everything it owed was written (else a reset), the
// edge's by STOP_SENDING, since the origin reads nothing after the answer
// it is done with. CancelRead is a no-op if the edge's FIN was read
// already; without it the stream would stay open at the origin for as
// long as the connection lives.
func endPushStream(st *quic.Stream, sent bool) {
	if sent {
		st.Close()
	} else {
		st.CancelWrite(0)
	}
	st.CancelRead(0)
}

// stoppedByPeer reports whether a write failed because the peer sent
// STOP_SENDING: it stopped reading, and may still answer.
func stoppedByPeer(err error) bool {
	var se *quic.StreamError
	return errors.As(err, &se) && se.Remote
}

// ackTracker lets a publish wait until enough replica-set edges stored its
// version (the w= parameter).
type ackTracker struct {
	mu      sync.Mutex
	waiters map[uint64][]*ackWait
	// early remembers acks that arrived before the publish registered its
	// wait (a pusher may be woken by another commit first).
	early map[uint64][]string
}

type ackWait struct {
	eligible []string // edges whose ack counts
	need     int
	acked    []string
	done     chan struct{}
}

// earlyLimit bounds the acks remembered for LSNs nobody waits for.
const earlyLimit = 4096

func newAckTracker() *ackTracker {
	return &ackTracker{waiters: make(map[uint64][]*ackWait), early: make(map[uint64][]string)}
}

// wait registers interest in lsn; done closes once need eligible edges have
// stored it. need ≤ 0 is done at once.
func (t *ackTracker) wait(lsn uint64, eligible []string, need int) *ackWait {
	w := &ackWait{eligible: eligible, need: need, done: make(chan struct{})}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range t.early[lsn] {
		w.add(id)
	}
	delete(t.early, lsn)
	if len(w.acked) >= need {
		close(w.done)
		return w
	}
	t.waiters[lsn] = append(t.waiters[lsn], w)
	return w
}

// dropDown stops w waiting for the eligible edges down says are down and
// have not acked: w=all counts the replica-set edges not down, and an
// edge that goes down while a publish waits (killed, cut off until its
// lease ran out) will not ack until it is back, which may be never. It
// catches up from the log when it returns, as an edge down at publish
// time does. need follows the edges still eligible.
func (t *ackTracker) dropDown(w *ackWait, down func(id string) bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	select {
	case <-w.done:
		return
	default:
	}
	kept := w.eligible[:0:0]
	for _, id := range w.eligible {
		if slices.Contains(w.acked, id) || !down(id) {
			kept = append(kept, id)
		}
	}
	if len(kept) == len(w.eligible) {
		return
	}
	w.eligible = kept
	w.need = len(kept)
	if len(w.acked) >= w.need {
		close(w.done)
	}
}

func (w *ackWait) add(id string) bool {
	if !slices.Contains(w.eligible, id) || slices.Contains(w.acked, id) {
		return false
	}
	w.acked = append(w.acked, id)
	return len(w.acked) == w.need
}

// result returns the edges that acked so far.
func (t *ackTracker) result(w *ackWait) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(w.acked)
}

func (t *ackTracker) release(lsn uint64, w *ackWait) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ws := t.waiters[lsn]
	if i := slices.Index(ws, w); i >= 0 {
		ws = slices.Delete(ws, i, i+1)
	}
	if len(ws) == 0 {
		delete(t.waiters, lsn)
	} else {
		t.waiters[lsn] = ws
	}
}

func (t *ackTracker) stored(lsn uint64, edge string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ws, ok := t.waiters[lsn]
	if !ok {
		if len(t.early) >= earlyLimit {
			lowest := lsn
			for l := range t.early {
				lowest = min(lowest, l)
			}
			delete(t.early, lowest)
		}
		t.early[lsn] = append(t.early[lsn], edge)
		return
	}
	for _, w := range ws {
		if w.add(edge) {
			close(w.done)
		}
	}
}
