package origin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"
	"github.com/quic-go/quic-go"

	"github.com/geocdn/geocdn/internal/fsys"
	"github.com/geocdn/geocdn/internal/pki"
	"github.com/geocdn/geocdn/internal/wire"
)

// QUIC application error codes used when closing connections.
const (
	codeNormal   quic.ApplicationErrorCode = 0
	codeRejected quic.ApplicationErrorCode = 1
	codeReplaced quic.ApplicationErrorCode = 2
	codeProtocol quic.ApplicationErrorCode = 3
)

var errUnexpectedFrame = errors.New("unexpected frame")

func (o *Origin) acceptLoop(ctx context.Context) {
	for {
		conn, err := o.quicLn.Accept(ctx)
		if err != nil {
			return
		}
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			o.serveConn(ctx, conn)
		}()
	}
}

// serveConn reads the Hello on the connection's first stream and hands the
// connection to the control or data handler.
func (o *Origin) serveConn(ctx context.Context, conn *quic.Conn) {
	id, err := pki.PeerIdentity(conn.ConnectionState().TLS)
	if err != nil {
		conn.CloseWithError(codeRejected, "no valid edge identity")
		return
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	st, err := conn.AcceptStream(hctx)
	cancel()
	if err != nil {
		conn.CloseWithError(codeProtocol, "no hello")
		return
	}
	st.SetReadDeadline(o.clk.Now().Add(10 * time.Second))
	f, err := wire.ReadFrame(st)
	st.SetReadDeadline(time.Time{})
	hello, ok := f.(wire.Hello)
	reject := func(code wire.RejectCode, reason string) {
		wire.WriteFrame(st, wire.Reject{Code: code, Reason: reason})
		st.Close()
		// Closing at once could overtake the Reject frame; the edge closes
		// as soon as it reads it, so wait for that, briefly.
		t := o.clk.NewTimer(time.Second)
		select {
		case <-conn.Context().Done():
		case <-t.C():
		}
		t.Stop()
		conn.CloseWithError(codeRejected, reason)
		o.log.Warn("edge refused", "remote", conn.RemoteAddr().String(), "reason", reason)
	}
	switch {
	case err != nil || !ok:
		reject(wire.RejectBadHello, "first frame must be a hello")
		return
	case hello.Version < wire.MinProtocolVersion || hello.Version > wire.ProtocolVersion:
		reject(wire.RejectVersion, fmt.Sprintf("protocol version %d not supported (want %d to %d)", hello.Version, wire.MinProtocolVersion, wire.ProtocolVersion))
		return
	case hello.EdgeID != id.ID:
		reject(wire.RejectIdentity, fmt.Sprintf("announced id %q does not match certificate identity %s", hello.EdgeID, id))
		return
	case o.isClosing():
		reject(wire.RejectShutdown, "origin shutting down")
		return
	}
	info := edgeInfo{
		ID: hello.EdgeID, Region: hello.Region, Lat: hello.Lat, Lon: hello.Lon,
		FaultDomain: hello.FaultDomain, PublicURL: hello.PublicURL,
	}
	if hello.Kind == wire.ConnFill {
		o.serveFillConn(ctx, info, conn, st)
		return
	}
	// Only the leader serves edges: the log, leases and pushes are its. A
	// follower still records the edge, so that it knows it if it leads
	// next.
	if lead, _, lid := o.awaitLeader(ctx, o.electionWait()); !lead {
		if err := o.edges.merge([]edgeInfo{info}); err != nil {
			o.log.Error("edge registry", "err", err)
		}
		reject(wire.RejectNotLeader, o.edgeAddrOf(lid))
		return
	}
	known := o.edges.get(info.ID)
	e, err := o.edges.announce(info)
	if err != nil {
		o.log.Error("edge registry", "err", err)
	}
	if known == nil || known.info != info {
		o.edgesChanged.Broadcast()
	}
	if !o.welcome(conn, st) {
		return
	}
	switch hello.Kind {
	case wire.ConnControl:
		o.serveControl(ctx, e, conn, st, hello)
	case wire.ConnData:
		// The hello stream of a data connection is done once welcomed.
		// Ending both of its directions here frees its slot in the
		// origin's stream limit for a fill.
		st.Close()
		st.CancelRead(0)
		o.serveData(ctx, e, conn)
	}
}

// serveControl runs an edge's control connection: heartbeats and acks on
// the hello stream, the log on a unidirectional stream of its own.
func (o *Origin) serveControl(ctx context.Context, e *edge, conn *quic.Conn, st *quic.Stream, hello wire.Hello) {
	e.mu.Lock()
	old := e.control
	e.control = conn
	e.ctrl = st
	e.watermark = hello.Watermark
	e.restartPushesLocked(hello.Watermark)
	e.mu.Unlock()
	if old != nil {
		old.CloseWithError(codeReplaced, "replaced by a newer connection")
	}
	o.ensurePusher(ctx, e)
	e.wakePusher()
	o.emit(Event{Kind: EventEdgeConnected, Edge: e.info.ID, LSN: hello.Watermark})
	o.log.Info("edge connected", "edge", e.info.ID, "region", e.info.Region, "watermark", hello.Watermark)

	cctx, cancel := context.WithCancel(conn.Context())
	defer cancel()
	go func() {
		if err := o.sendLog(cctx, conn, hello.Watermark); err != nil && cctx.Err() == nil {
			o.log.Warn("log stream ended", "edge", e.info.ID, "err", err)
			conn.CloseWithError(codeProtocol, "log stream failed")
		}
	}()

	err := o.readControl(e, st)
	e.mu.Lock()
	if e.control == conn {
		e.control = nil
		e.ctrl = nil
	}
	e.mu.Unlock()
	if errors.Is(err, wire.ErrMalformed) || errors.Is(err, wire.ErrFrameTooLarge) || errors.Is(err, wire.ErrUnknownFrame) || errors.Is(err, errUnexpectedFrame) {
		conn.CloseWithError(codeProtocol, err.Error())
	} else {
		conn.CloseWithError(codeNormal, "")
	}
	o.emit(Event{Kind: EventEdgeDisconnected, Edge: e.info.ID, Err: err})
	o.log.Info("edge disconnected", "edge", e.info.ID, "err", err)
}

// readControl answers heartbeats and records acks and scrub progress
// until the stream ends.
func (o *Origin) readControl(e *edge, st *quic.Stream) error {
	r := bufio.NewReader(st)
	for {
		f, err := wire.ReadFrame(r)
		if err != nil {
			return err
		}
		switch m := f.(type) {
		case wire.Heartbeat:
			now := o.clk.Now()
			e.mu.Lock()
			e.watermark = max(e.watermark, m.Watermark)
			e.lastHeartbeat = now
			wm := e.watermark
			e.mu.Unlock()
			renew := o.grantor.MayRenew(wm, o.store.lastLSN(), o.clk.Now())
			if renew {
				// The lease is recorded before the answer that grants it
				// goes out, and the LSN the answer names is read after:
				// a strong write settled while the edge's lease looked
				// run out (Settled read it before this) has committed,
				// so the answer names it and the edge knows it is
				// behind; one settled later sees the lease and waits for
				// the edge. Recorded the other way round, the write
				// could settle between the two and the edge be granted a
				// lease with an LSN before it, serving the replaced
				// version as current. The edge counts its lease from
				// before it sent the heartbeat, so the origin never
				// believes it ends earlier than the edge does.
				e.mu.Lock()
				if exp := o.grantor.Expiry(o.clk.Now()); exp.After(e.leaseExpires) {
					e.leaseExpires = exp
				}
				e.mu.Unlock()
			}
			ack := wire.HeartbeatAck{Seq: m.Seq, LSN: o.store.lastLSN()}
			if renew {
				ack.LeaseMillis = uint64(o.grantor.Term() / time.Millisecond)
			}
			if err := e.writeControl(st, ack); err != nil {
				return err
			}
		case wire.Ack:
			e.mu.Lock()
			e.watermark = max(e.watermark, m.Watermark)
			e.mu.Unlock()
			o.acked.Broadcast()
		case wire.ScrubProgress:
			o.edgeScrubbed(e, m)
		case wire.RTTReport:
			o.edgeMeasuredRTT(e, m)
		default:
			return fmt.Errorf("%w: %T on control stream", errUnexpectedFrame, f)
		}
	}
}

// sendLog streams log entries after `after`, in LSN order, for as long as
// the connection lives.
func (o *Origin) sendLog(ctx context.Context, conn *quic.Conn, after uint64) error {
	us, err := conn.OpenUniStreamSync(ctx)
	if err != nil {
		return err
	}
	defer us.Close()
	w := bufio.NewWriterSize(us, 64<<10)
	for {
		wake := o.commits.C()
		err := o.store.readLog(after, func(e wire.LogEntry) error {
			if _, err := w.Write(wire.AppendFrame(nil, e)); err != nil {
				return err
			}
			after = e.LSN
			return nil
		})
		if errors.Is(err, errLogGap) {
			// The edge is behind the compacted log: it catches up by
			// snapshot and reconnects with the snapshot's LSN.
			if err := w.Flush(); err != nil {
				return err
			}
			if err := wire.WriteFrame(us, wire.LogGap{FirstLSN: o.store.firstLSN()}); err != nil {
				return err
			}
			<-ctx.Done()
			return nil
		}
		if err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil
		}
	}
}

// serveData runs an edge's data connection: it serves the fills the edge
// asks for, and is where pushes to the edge go.
func (o *Origin) serveData(ctx context.Context, e *edge, conn *quic.Conn) {
	if old := e.setData(conn); old != nil {
		old.CloseWithError(codeReplaced, "replaced by a newer connection")
	}
	defer e.clearData(conn)
	o.acceptStreams(ctx, conn, func(st *quic.Stream) { o.serveStream(e, conn, st) })
}

// acceptStreams runs serve on every stream the edge opens on conn, each on
// a goroutine of its own, until the connection ends.
func (o *Origin) acceptStreams(ctx context.Context, conn *quic.Conn, serve func(*quic.Stream)) {
	for {
		st, err := conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			serve(st)
		}()
	}
}

// welcome answers an edge's accepted Hello on st; on failure it closes
// conn and reports false.
func (o *Origin) welcome(conn *quic.Conn, st *quic.Stream) bool {
	err := wire.WriteFrame(st, wire.Welcome{
		Version:           wire.ProtocolVersion,
		OriginID:          o.cfg.ID,
		CurrentLSN:        o.store.lastLSN(),
		LeaseMillis:       uint64(o.cfg.LeaseTerm / time.Millisecond),
		HeartbeatInterval: uint64(o.cfg.HeartbeatInterval / time.Millisecond),
		FirstLSN:          o.store.firstLSN(),
		Pull:              o.ups.namespaces(),
	})
	if err != nil {
		conn.CloseWithError(codeProtocol, "write welcome")
		return false
	}
	return true
}

// serveFillConn runs a fill connection (wire.ConnFill), which any origin
// takes, leader or not: every stream is one fill. Content is addressed by
// digest, so a follower serves any version it holds (followerDeclines);
// the edge asks the leader for what it declines.
func (o *Origin) serveFillConn(ctx context.Context, info edgeInfo, conn *quic.Conn, st *quic.Stream) {
	if !o.welcome(conn, st) {
		return
	}
	st.Close()
	st.CancelRead(0)
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		o.announceLeaders(ctx, conn)
	}()
	e := o.edges.get(info.ID)
	if e == nil {
		e = &edge{info: info}
	}
	o.acceptStreams(ctx, conn, func(st *quic.Stream) {
		f, err := wire.ReadFrame(st)
		req, ok := f.(wire.FillRequest)
		if err != nil || !ok {
			st.CancelRead(0)
			st.CancelWrite(0)
			conn.CloseWithError(codeProtocol, "a fill connection carries fill requests only")
			return
		}
		if why := o.followerDeclines(req); why != "" {
			st.CancelRead(0)
			wire.WriteFrame(st, wire.FillResponse{Status: wire.FillError, Reason: why})
			st.Close()
			return
		}
		o.serveFill(e, st, req)
	})
}

// announceLeaders tells the edge at the other end of conn, a fill
// connection, which origin leads (wire.LeaderChanged): at once, and at
// every change this origin learns of, until the connection ends. An edge
// that fills from a follower so learns of a new leader as soon as the
// follower does, instead of by missing the old leader's heartbeats.
func (o *Origin) announceLeaders(ctx context.Context, conn *quic.Conn) {
	var sent raft.ServerID
	for {
		wait := o.leaderChanged.C()
		if _, lid := o.raft.r.LeaderWithID(); lid != "" && lid != sent {
			addr := o.edgeAddrOf(lid)
			if lid == raft.ServerID(o.cfg.ID) {
				addr = o.QUICAddr().String()
			}
			if addr != "" {
				if err := sendUni(ctx, conn, wire.LeaderChanged{OriginID: string(lid), QUIC: addr}); err != nil {
					return
				}
				sent = lid
			}
		}
		select {
		case <-wait:
		case <-conn.Context().Done():
			return
		case <-ctx.Done():
			return
		}
	}
}

// sendUni sends f alone on a new unidirectional stream of conn.
func sendUni(ctx context.Context, conn *quic.Conn, f wire.Frame) error {
	st, err := conn.OpenUniStreamSync(ctx)
	if err != nil {
		return err
	}
	if err := wire.WriteFrame(st, f); err != nil {
		st.CancelWrite(0)
		return err
	}
	return st.Close()
}

// followerDeclines says why this origin, unless it leads, leaves the fill
// req to the leader, or is empty if it serves it. A follower serves
// content by digest, which it holds or not; which version is current is
// the leader's to say, since a follower's catalog may trail the log the
// edge follows, and which strong versions edges may see depends on the
// leases the leader grants.
func (o *Origin) followerDeclines(req wire.FillRequest) string {
	if o.isLeader() {
		return ""
	}
	if req.Digest.IsZero() {
		return "the current version is the leader's to say"
	}
	f, err := o.store.openBlob(req.Digest)
	if err != nil {
		return "content not held by this origin"
	}
	f.Close()
	return ""
}

// fillAttempts bounds the catalog reads of one fill (see serveFill).
const fillAttempts = 4

// restartedReason refuses strong fills in the grace after an origin start:
// leases from before it may still run, and which strong versions edges
// treat as visible is unknown until they have.
const restartedReason = "origin restarted: strong versions are confirmed once earlier leases have run out"

// serveStream answers a stream the edge opened on its data connection: a
// fill, or an anti-entropy exchange. A malformed or out-of-place
// anti-entropy frame closes the connection, with the reason logged;
// nothing was applied anywhere, since the edge applies only what a whole
// answer carries.
func (o *Origin) serveStream(e *edge, conn *quic.Conn, st *quic.Stream) {
	f, err := wire.ReadFrame(st)
	if req, ok := f.(wire.FillRequest); ok && err == nil {
		o.serveFill(e, st, req)
		return
	}
	if req, ok := f.(wire.ForwardRequest); ok && err == nil {
		o.serveForward(e, st, req)
		return
	}
	switch f.(type) {
	case wire.TreeRequest, wire.LeafRequest, wire.EntryRequest, wire.SnapshotRequest, wire.ResyncReport:
		defer st.CancelRead(0)
		defer st.Close()
		if err := o.serveResync(e, st, f); err != nil {
			st.CancelWrite(0)
			if errors.Is(err, errResyncProtocol) {
				o.log.Warn("edge broke the resync protocol; disconnecting it", "edge", e.info.ID, "err", err)
				conn.CloseWithError(codeProtocol, err.Error())
			}
		}
		return
	}
	st.CancelRead(0)
	reason := "expected a fill or resync request"
	if err != nil {
		reason = fmt.Sprintf("%s: %v", reason, err)
	}
	wire.WriteFrame(st, wire.FillResponse{Status: wire.FillError, Reason: reason})
	st.Close()
	if errors.Is(err, wire.ErrMalformed) || errors.Is(err, wire.ErrUnknownFrame) || errors.Is(err, wire.ErrFrameTooLarge) {
		o.log.Warn("edge sent a malformed request; disconnecting it", "edge", e.info.ID, "err", err)
		conn.CloseWithError(codeProtocol, err.Error())
	}
}

// serveFill answers one FillRequest.
//
// The stream counts against the origin's limit of 1,024 streams the edge
// may open until both of its directions are finished at both ends. The
// edge sends nothing after its request, but its FIN may come after the
// request bytes (a FIN sent late is legal), and no read here would ever
// see it: so the origin stops reading once it has the request, in every
// branch, rather than rely on the FIN riding with the request. Otherwise
// each fill whose FIN came late would hold a stream for the life of the
// connection, and after about a thousand the edge could fill no more.
func (o *Origin) serveFill(e *edge, st *quic.Stream, req wire.FillRequest) {
	defer st.CancelRead(0)
	// A body cut off by a failure is reset rather than closed, so the edge
	// never takes a short body for a whole one; Close after a reset is a
	// no-op that only reports it.
	defer st.Close()
	var note string // the pull's note on the version served (stale-if-error)
	if req.Pull != nil && req.Digest.IsZero() {
		var done bool
		var key string
		if done, key, note = o.servePull(e, st, req); done {
			return
		}
		req.Key = key // a Vary variant's, if the pull selected one
	}
	var (
		err  error
		ent  wire.LogEntry
		blob fsys.File
	)
	// A fill of the current version reads the catalog, then opens the
	// version's blob. A commit in between that replaces the version
	// collects its blob, and the open fails although the key exists: the
	// catalog then names a newer version, so it is read again. Each round
	// means another commit of the key came between two steps of a fill;
	// a few bound the pathological case.
	for attempt := 1; ; attempt++ {
		if req.Digest.IsZero() {
			var h *heldBlob
			var pending bool
			if ent, err, h, pending = o.fillVersion(req.Namespace, req.Key); pending {
				if o.grantor.InGrace(o.clk.Now()) {
					// The version visible so far was taken from the catalog
					// after the restart; it may be a write the previous run
					// never made visible, while edges still serve the one
					// before under leases that previous run granted.
					o.unhold(h)
					wire.WriteFrame(st, wire.FillResponse{Status: wire.FillError, Reason: restartedReason})
					return
				}
				n, err := o.servePending(st, h)
				if err != nil {
					st.CancelWrite(0)
				}
				o.emit(Event{Kind: EventFillServed, Edge: e.info.ID, Bytes: n, Err: err})
				return
			}
		} else {
			ent, err = o.store.get(req.Namespace, req.Key)
		}
		if err == nil && req.Digest.IsZero() && ent.Consistency == wire.Strong && o.grantor.InGrace(o.clk.Now()) {
			// Leases from before the restart may still run, and which
			// strong versions edges treat as visible is unknown until then.
			wire.WriteFrame(st, wire.FillResponse{Status: wire.FillError, Reason: restartedReason})
			return
		}
		switch {
		case errors.Is(err, ErrNotFound):
			wire.WriteFrame(st, wire.FillResponse{Status: wire.FillNotFound, Reason: "no such object"})
			return
		case err != nil:
			wire.WriteFrame(st, wire.FillResponse{Status: wire.FillError, Reason: err.Error()})
			return
		}
		if req.Digest.IsZero() && !req.Have.IsZero() && req.Have == ent.Digest {
			// Revalidation: the edge holds the current content already.
			wire.WriteFrame(st, wire.FillResponse{Status: wire.FillNotModified, Entry: ent, Reason: note})
			o.emit(Event{Kind: EventFillServed, Edge: e.info.ID, LSN: ent.LSN, Digest: ent.Digest})
			return
		}
		if !req.Digest.IsZero() && req.Digest != ent.Digest {
			// The edge asks for a version that is no longer current; serve it
			// while the blob still exists, so the edge's view stays coherent.
			ent = wire.LogEntry{Op: wire.OpPut, Namespace: req.Namespace, Key: req.Key, Digest: req.Digest}
		}
		if blob, err = o.store.openBlob(ent.Digest); err == nil {
			break
		}
		if !req.Digest.IsZero() || attempt == fillAttempts {
			wire.WriteFrame(st, wire.FillResponse{Status: wire.FillNotFound, Reason: "content no longer held"})
			return
		}
	}
	defer blob.Close()
	fi, err := blob.Stat()
	if err != nil {
		wire.WriteFrame(st, wire.FillResponse{Status: wire.FillError, Reason: err.Error()})
		return
	}
	ent.Size = uint64(fi.Size())
	if err := wire.WriteFrame(st, wire.FillResponse{Status: wire.FillOK, Entry: ent, Reason: note}); err != nil {
		return
	}
	n, err := io.Copy(st, blob)
	if err != nil {
		st.CancelWrite(0)
	}
	o.metrics.fillBytes.Add(float64(n))
	o.emit(Event{Kind: EventFillServed, Edge: e.info.ID, LSN: ent.LSN, Digest: ent.Digest, Bytes: n, Err: err})
}

// servePull answers a fill of a namespace with an upstream for a key that
// the catalog does not hold or holds as pulled: it brings the key up to
// date (see pull: fetched, revalidated or left fresh) and reports whether
// it answered. A version the pull stored or kept is left to serveFill,
// which then finds it in the catalog; a response not stored is streamed
// through, and an upstream failure answered as such. Published keys are
// serveFill's alone. key is the key serveFill serves: the request's, or
// the Vary variant the pull selected for the request's fields.
func (o *Origin) servePull(e *edge, st *quic.Stream, req wire.FillRequest) (done bool, key, note string) {
	key = req.Key
	if _, ok := o.ups.forNamespace(req.Namespace); !ok {
		return false, key, ""
	}
	if cur, err := o.store.get(req.Namespace, req.Key); err == nil && cur.Pulled == nil {
		return false, key, "" // published
	}
	pr := pullRequest{Namespace: req.Namespace, Key: req.Key, ClientIP: req.Pull.ClientIP, Host: req.Pull.Host, Forward: req.Pull.Forward}
	if len(req.Pull.Header) > 0 {
		pr.Header = (&wire.Pulled{Header: req.Pull.Header}).HTTPHeader()
	}
	out, err := o.pull(st.Context(), pr)
	var ue *errUpstream
	switch {
	case err == nil && out.Stored && out.Detail == wire.StaleIfErrorReason:
		return false, out.Entry.Key, out.Detail
	case err == nil && out.Stored:
		return false, out.Entry.Key, ""
	case err == nil:
		defer out.Body.Close()
		resp := wire.FillResponse{Status: wire.FillPassThrough, Reason: out.Detail, Entry: wire.LogEntry{
			Op: wire.OpPut, Namespace: req.Namespace, Key: req.Key,
			Pulled: &wire.Pulled{Status: out.Status, Header: wire.HeaderFields(out.Header)},
		}}
		if err := resp.Entry.Validate(); err != nil {
			// A header no log entry can carry (too many fields, too long):
			// the edge answers 502 rather than pass on half of it.
			wire.WriteFrame(st, wire.FillResponse{Status: wire.FillBadGateway, Reason: "upstream response header: " + err.Error()})
			return true, key, ""
		}
		if err := wire.WriteFrame(st, resp); err != nil {
			return true, key, ""
		}
		n, err := io.Copy(st, out.Body)
		if err != nil {
			st.CancelWrite(0) // a cut body is reset, never ended as if whole
		}
		o.metrics.fillBytes.Add(float64(n))
		o.emit(Event{Kind: EventFillServed, Edge: e.info.ID, Bytes: n, Err: err})
		return true, key, ""
	case errors.Is(err, ErrNotFound):
		return false, key, ""
	case errors.As(err, &ue) && ue.timeout():
		wire.WriteFrame(st, wire.FillResponse{Status: wire.FillGatewayTimeout, Reason: err.Error()})
	case errors.As(err, &ue):
		wire.WriteFrame(st, wire.FillResponse{Status: wire.FillBadGateway, Reason: err.Error()})
	default:
		wire.WriteFrame(st, wire.FillResponse{Status: wire.FillError, Reason: err.Error()})
	}
	return true, key, ""
}
