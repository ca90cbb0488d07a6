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
// A fill by digest goes to the follower the edge fills from, when there is
// one, and to the leader when that follower declines or fails (see
// fillconn.go); a fill of the current version goes to the leader.
func (e *Edge) fetch(ctx context.Context, ns, key string, want, have wire.Digest) (wire.LogEntry, error) {
	e.mu.Lock()
	s, fc := e.sess, e.fillc
	e.mu.Unlock()
	if s == nil {
		return wire.LogEntry{}, errNoOrigin
	}
	req := wire.FillRequest{Namespace: ns, Key: key, Digest: want, Have: have}
	if fc != nil && fc.fills && !want.IsZero() {
		// Which version is current is the leader's to say; a version
		// named by digest any origin holding it can serve.
		a, err := e.fetchFrom(ctx, fc.conn, true, req)
		ent := a.entry
		if err == nil {
			e.metrics.fillFrom("follower")
			return ent, nil
		}
		if ctx.Err() != nil {
			return ent, err
		}
		e.metrics.fillFrom("follower_declined")
		e.log.Debug("follower declined a fill; asking the leader", "origin", fc.id, "ns", ns, "key", key, "err", err)
	}
	e.metrics.fillFrom("leader")
	a, err := e.fetchFrom(ctx, s.data, false, req)
	return a.entry, err
}

// pull is fill for a namespace with an upstream: the leader brings the
// key up to date from the upstream if it must (info carries the client's
// request for it) and answers with the current version, stored here like
// any fill, or with a response that was not stored, to stream to this one
// client.
func (e *Edge) pull(ctx context.Context, ns, key string, have wire.Digest, info *wire.PullInfo) (fillAnswer, error) {
	e.mu.Lock()
	s := e.sess
	e.mu.Unlock()
	if s == nil {
		return fillAnswer{}, errNoOrigin
	}
	e.metrics.fillFrom("leader")
	return e.fetchFrom(ctx, s.data, false, wire.FillRequest{Namespace: ns, Key: key, Have: have, Pull: info})
}

// forward sends a request no cache answers (a method other than GET and
// HEAD, in a namespace with an upstream) through the origin to the
// upstream, with body streamed after it, and returns the upstream's
// response to stream back, or errUpstream.
func (e *Edge) forward(ctx context.Context, req wire.ForwardRequest, body io.Reader) (*passThrough, error) {
	e.mu.Lock()
	s := e.sess
	e.mu.Unlock()
	if s == nil {
		return nil, errNoOrigin
	}
	octx, cancel := context.WithTimeout(ctx, e.cfg.FillTimeout)
	st, err := s.data.OpenStreamSync(octx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { st.CancelRead(0); st.CancelWrite(0) })
	ok := false
	defer func() {
		if !ok {
			st.CancelRead(0)
			stop()
		}
	}()
	st.SetWriteDeadline(time.Now().Add(e.cfg.FillTimeout))
	if err := wire.WriteFrame(st, req); err != nil {
		st.CancelWrite(0)
		return nil, fmt.Errorf("forward: %w", err)
	}
	if body != nil {
		if _, err := io.Copy(&idleWriter{st: st, idle: e.cfg.FillTimeout}, body); err != nil {
			st.CancelWrite(0)
			return nil, fmt.Errorf("forward request body: %w", err)
		}
	}
	st.Close()
	st.SetReadDeadline(time.Now().Add(e.cfg.FillTimeout))
	f, err := wire.ReadFrame(st)
	if err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	resp, isResp := f.(wire.FillResponse)
	switch {
	case !isResp:
		return nil, fmt.Errorf("forward: unexpected %T", f)
	case resp.Status == wire.FillPassThrough:
		ok = true
		return &passThrough{entry: resp.Entry, reason: resp.Reason, body: &streamBody{st: st, idle: e.cfg.FillTimeout, stop: stop}}, nil
	case resp.Status == wire.FillBadGateway, resp.Status == wire.FillGatewayTimeout:
		return nil, &errUpstream{timeout: resp.Status == wire.FillGatewayTimeout, reason: resp.Reason}
	}
	return nil, fmt.Errorf("forward: origin: %s", resp.Reason)
}

// idleWriter writes to a stream, each write allowed idle for up to idle.
type idleWriter struct {
	st   *quic.Stream
	idle time.Duration
}

func (w *idleWriter) Write(p []byte) (int, error) {
	w.st.SetWriteDeadline(time.Now().Add(w.idle))
	return w.st.Write(p)
}

// fillAnswer is what a fill brought: the version now stored here, or
// (pass) a response not stored; reason is the origin's note on a stored
// one (wire.StaleIfErrorReason).
type fillAnswer struct {
	entry  wire.LogEntry
	pass   *passThrough
	reason string
}

// passThrough is an upstream response the origin did not store: its
// status and fields in entry.Pulled, why not in reason, and its body.
type passThrough struct {
	entry  wire.LogEntry
	reason string
	body   io.ReadCloser
}

// errUpstream is the origin's report that the upstream failed: no answer
// in time (timeout), or none it could use.
type errUpstream struct {
	timeout bool
	reason  string
}

func (e *errUpstream) Error() string { return "upstream: " + e.reason }

// streamBody reads a pass-through body from st, each read allowed idle
// for up to idle; Close stops the stream.
type streamBody struct {
	st   *quic.Stream
	idle time.Duration
	stop func() bool
}

func (b *streamBody) Read(p []byte) (int, error) {
	b.st.SetReadDeadline(time.Now().Add(b.idle))
	return b.st.Read(p)
}

func (b *streamBody) Close() error {
	b.stop()
	b.st.CancelRead(0)
	return nil
}

// errDeclined is a fill a follower left to the leader.
var errDeclined = errors.New("the follower left the fill to the leader")

// fetchFrom runs one fill request over conn, a follower's fill connection
// when follower is set (whose "not found" only means it does not know).
// A pull answered with a response not stored returns it as a passThrough,
// whose body the caller must close.
func (e *Edge) fetchFrom(ctx context.Context, conn *quic.Conn, follower bool, req wire.FillRequest) (_ fillAnswer, err error) {
	var pass *passThrough
	ns, key := req.Namespace, req.Key
	octx, cancel := context.WithTimeout(ctx, e.cfg.FillTimeout)
	st, err := conn.OpenStreamSync(octx)
	cancel()
	if err != nil {
		return fillAnswer{}, fmt.Errorf("fill: %w", err)
	}
	// The stream counts against the origin's limit of streams this edge
	// may open until both directions are finished at both ends. The
	// request's direction ends with the FIN below (or a reset if it
	// cannot be written whole); the answer's by CancelRead on every
	// return, which is a no-op where the answer was read to its end and
	// otherwise tells the origin to stop sending (a body not needed, or
	// one this edge could not store).
	stop := context.AfterFunc(ctx, func() { st.CancelRead(0); st.CancelWrite(0) })
	defer func() {
		if pass == nil { // a pass-through body is ended by its Close
			st.CancelRead(0)
			stop()
		}
	}()
	// Stream deadlines run on the real clock (as socket deadlines do), so
	// they are set from time.Now, not from the injected clock. FillTimeout
	// bounds the answer; the body then gets time in proportion to its size
	// at a floor rate of 1 MiB/s, so a large fill is not cut off.
	st.SetDeadline(time.Now().Add(e.cfg.FillTimeout))
	if err := wire.WriteFrame(st, req); err != nil {
		st.CancelWrite(0)
		return fillAnswer{}, fmt.Errorf("fill: %w", err)
	}
	st.Close()
	f, err := wire.ReadFrame(st)
	if err != nil {
		return fillAnswer{}, fmt.Errorf("fill: %w", err)
	}
	resp, ok := f.(wire.FillResponse)
	if !ok {
		return fillAnswer{}, fmt.Errorf("fill: unexpected %T", f)
	}
	if follower && (resp.Status == wire.FillNotFound || resp.Status == wire.FillError) {
		return fillAnswer{}, fmt.Errorf("%w: %s", errDeclined, resp.Reason)
	}
	switch resp.Status {
	case wire.FillNotFound:
		if resp.Reason == wire.PendingReason {
			return fillAnswer{}, &pendingError{notFound: true}
		}
		return fillAnswer{}, errNotFound
	case wire.FillNotModified:
		if !e.store.hasBlob(resp.Entry.Digest) {
			// Evicted (purged) since the request: ask again for the
			// current version with its body. Not by digest: the key may
			// have moved on and that content been collected meanwhile.
			// This stream is done; end it before opening the next.
			st.CancelRead(0)
			req.Digest, req.Have = wire.Digest{}, wire.Digest{}
			if req.Pull == nil {
				ent, err := e.fetch(ctx, ns, key, wire.Digest{}, wire.Digest{})
				return fillAnswer{entry: ent}, err
			}
			return e.fetchFrom(ctx, conn, follower, req)
		}
		return fillAnswer{entry: resp.Entry, reason: resp.Reason}, nil
	case wire.FillPassThrough:
		pass = &passThrough{entry: resp.Entry, reason: resp.Reason, body: &streamBody{st: st, idle: e.cfg.FillTimeout, stop: stop}}
		return fillAnswer{entry: resp.Entry, pass: pass}, nil
	case wire.FillBadGateway, wire.FillGatewayTimeout:
		return fillAnswer{}, &errUpstream{timeout: resp.Status == wire.FillGatewayTimeout, reason: resp.Reason}
	case wire.FillOK:
	default:
		return fillAnswer{}, fmt.Errorf("fill: origin: %s", resp.Reason)
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
			return fillAnswer{}, fmt.Errorf("fill %s: %w", key, err)
		}
	}
	if pending {
		return fillAnswer{entry: ent}, &pendingError{entry: ent}
	}
	return fillAnswer{entry: ent, reason: resp.Reason}, nil
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
