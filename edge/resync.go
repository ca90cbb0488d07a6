package edge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/geocdn/geocdn/internal/aetree"
	"github.com/geocdn/geocdn/internal/wire"
)

// Anti-entropy: the edge compares what it holds with what the origin says
// it should hold, and repairs the differences. See DESIGN.md § Replication,
// resync and recovery, and wire/resync.go for the exchange.
//
// A resync:
//  1. checks that every blob recorded on disk still has its file;
//  2. compares hash trees with the origin, root first, then only subtrees
//     that differ, then the tuples of the leaves that differ;
//  3. fetches the full entries of keys it holds wrongly or not at all,
//     and fixes its index: missing or stale entries re-applied, entries
//     the origin no longer has removed;
//  4. fetches the content it owes and lacks.
//
// A difference counts only if the log cannot explain it: every answer
// carries the origin's LSN, the edge waits until its own watermark has
// reached it, and a key the log changed after that LSN (store.touched) is
// left to the log. Each repair applies only if the key is still as it was
// compared (store.reconcile), so a resync racing the log never undoes it.

// resyncLogWait bounds how long a resync waits for the log to reach the
// LSN of an answer before comparing anyway.
const resyncLogWait = 10 * time.Second

// resyncLoop runs a resync every ResyncInterval, jittered by ±20% so that
// edges do not all arrive at once, and whenever the origin asks.
func (e *Edge) resyncLoop(ctx context.Context, s *session) error {
	for {
		var id uint64
		t := e.clk.NewTimer(jitter(e.cfg.ResyncInterval))
		select {
		case <-t.C():
		case id = <-e.resyncNow:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return nil
		}
		rep := e.resync(ctx, s, id)
		if ctx.Err() != nil {
			return nil
		}
		if rep.Error != "" {
			e.log.Warn("resync failed", "err", rep.Error)
		}
	}
}

// jitter returns d moved by up to ±20%.
func jitter(d time.Duration) time.Duration {
	return d - d/5 + time.Duration(rand.Int64N(int64(d)*2/5+1))
}

// resyncStream is the edge's end of one anti-entropy exchange; it counts
// the bytes and entries it moves.
type resyncStream struct {
	st  *quic.Stream
	c   counted // st, counting into rep.Bytes
	r   *bufio.Reader
	rep *wire.ResyncReport
}

// counted counts the bytes read from and written to a stream.
type counted struct {
	rw io.ReadWriter
	n  *uint64
}

func (c counted) Read(p []byte) (int, error) {
	n, err := c.rw.Read(p)
	*c.n += uint64(n)
	return n, err
}

func (c counted) Write(p []byte) (int, error) {
	n, err := c.rw.Write(p)
	*c.n += uint64(n)
	return n, err
}

func (e *Edge) openResync(ctx context.Context, s *session, rep *wire.ResyncReport) (*resyncStream, error) {
	octx, cancel := context.WithTimeout(ctx, e.cfg.FillTimeout)
	st, err := s.data.OpenStreamSync(octx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("open resync stream: %w", err)
	}
	context.AfterFunc(ctx, func() { st.CancelRead(0); st.CancelWrite(0) })
	c := counted{st, &rep.Bytes}
	return &resyncStream{st: st, c: c, r: bufio.NewReaderSize(c, 64<<10), rep: rep}, nil
}

func (r *resyncStream) send(f wire.Frame) error {
	r.st.SetWriteDeadline(time.Now().Add(time.Minute))
	return wire.WriteFrame(r.c, f)
}

func (r *resyncStream) read() (wire.Frame, error) {
	r.st.SetReadDeadline(time.Now().Add(time.Minute))
	f, err := wire.ReadFrame(r.r)
	if err != nil {
		return nil, fmt.Errorf("resync: %w", err)
	}
	return f, nil
}

// errBadAnswer is an answer that breaks the protocol; the resync stops
// and applies nothing of it.
var errBadAnswer = errors.New("resync: malformed answer from the origin")

func (r *resyncStream) tree(level int, indices []uint32) ([]aetree.Hash, uint64, error) {
	if err := r.send(wire.TreeRequest{Level: uint8(level), Indices: indices}); err != nil {
		return nil, 0, err
	}
	f, err := r.read()
	if err != nil {
		return nil, 0, err
	}
	nodes, ok := f.(wire.TreeNodes)
	if !ok || len(nodes.Hashes) != len(indices) {
		return nil, 0, fmt.Errorf("%w: %T with the wrong number of hashes for %d nodes", errBadAnswer, f, len(indices))
	}
	out := make([]aetree.Hash, len(nodes.Hashes))
	for i, h := range nodes.Hashes {
		out[i] = aetree.Hash(h)
	}
	return out, nodes.LSN, nil
}

// tuples asks for the tuples of leaves.
func (r *resyncStream) tuples(leaves []uint32) (map[objKey]wire.Tuple, uint64, error) {
	if err := r.send(wire.LeafRequest{Leaves: leaves}); err != nil {
		return nil, 0, err
	}
	asked := make(map[uint32]bool, len(leaves))
	for _, l := range leaves {
		asked[l] = true
	}
	out := make(map[objKey]wire.Tuple)
	for {
		f, err := r.read()
		if err != nil {
			return nil, 0, err
		}
		switch m := f.(type) {
		case wire.LeafTuples:
			for _, t := range m.Tuples {
				if !asked[aetree.Leaf(t.Namespace, t.Key)] {
					return nil, 0, fmt.Errorf("%w: tuple %q is in a leaf not asked for", errBadAnswer, t.Key)
				}
				out[objKey{t.Namespace, t.Key}] = t
			}
			r.rep.Entries += uint64(len(m.Tuples))
		case wire.ResyncEnd:
			if m.Error != "" {
				return nil, 0, fmt.Errorf("resync: origin: %s", m.Error)
			}
			return out, m.LSN, nil
		default:
			return nil, 0, fmt.Errorf("%w: %T in a leaf answer", errBadAnswer, f)
		}
	}
}

// entries reads LogEntry frames up to a ResyncEnd: the answer to an
// EntryRequest or SnapshotRequest.
func (r *resyncStream) entries(req wire.Frame, valid func(*wire.LogEntry) bool) ([]wire.LogEntry, uint64, error) {
	if err := r.send(req); err != nil {
		return nil, 0, err
	}
	var out []wire.LogEntry
	for {
		f, err := r.read()
		if err != nil {
			return nil, 0, err
		}
		switch m := f.(type) {
		case wire.LogEntry:
			if m.Op != wire.OpPut || !valid(&m) {
				return nil, 0, fmt.Errorf("%w: entry %q (%v) not asked for", errBadAnswer, m.Key, m.Op)
			}
			out = append(out, m)
			r.rep.Entries++
		case wire.ResyncEnd:
			if m.Error != "" {
				return nil, 0, fmt.Errorf("resync: origin: %s", m.Error)
			}
			return out, m.LSN, nil
		default:
			return nil, 0, fmt.Errorf("%w: %T in an entry answer", errBadAnswer, f)
		}
	}
}

// Resync runs one anti-entropy exchange with the origin now and returns its
// report; it fails at once if the edge is not connected.
func (e *Edge) Resync(ctx context.Context) (wire.ResyncReport, error) {
	e.mu.Lock()
	s := e.sess
	e.mu.Unlock()
	if s == nil {
		return wire.ResyncReport{}, errNoOrigin
	}
	rep := e.resync(ctx, s, 0)
	if rep.Error != "" {
		return rep, errors.New(rep.Error)
	}
	return rep, nil
}

// resync runs one resync on session s; id is the origin's request, 0 for
// a periodic one.
func (e *Edge) resync(ctx context.Context, s *session, id uint64) wire.ResyncReport {
	rep := wire.ResyncReport{ID: id}
	e.exchange(ctx, s, "resync", &rep, func() error { return e.compare(ctx, s, &rep) })
	return rep
}

// exchange runs one resync or snapshot catch-up, one at a time: first,
// then the fetch of owed content, and reports the outcome to the metrics,
// the log and the origin. It returns the first error, also in rep.Error.
func (e *Edge) exchange(ctx context.Context, s *session, what string, rep *wire.ResyncReport, first func() error) error {
	select {
	case e.resyncSem <- struct{}{}:
	case <-ctx.Done():
		rep.Error = ctx.Err().Error()
		return ctx.Err()
	}
	defer func() { <-e.resyncSem }()
	start := e.clk.Now()
	err := first()
	if err == nil {
		err = e.fetchOwed(ctx, rep)
	}
	if err != nil {
		rep.Error = err.Error()
	}
	rep.DurationMillis = uint64(e.clk.Since(start) / time.Millisecond)
	e.metrics.resyncDone(rep)
	e.log.Info(what, "missing", rep.Missing, "stale", rep.Stale, "extra", rep.Extra, "metadata", rep.Metadata,
		"corrupt", rep.Corrupt, "repaired", rep.Repaired, "failed", rep.Failed, "entries", rep.Entries, "bytes", rep.Bytes,
		"duration_ms", rep.DurationMillis, "watermark", e.store.watermark(), "err", rep.Error)
	e.sendReport(ctx, s, rep)
	return err
}

// reportTimeout bounds sending a resync report and waiting for the origin
// to record it; the report is for people and the origin's status, and a
// connection that cannot carry it in that time is being replaced anyway.
const reportTimeout = 10 * time.Second

// sendReport sends rep to the origin on a stream of its own, so it
// arrives even when the exchange's stream broke, and waits until the
// origin has recorded it: the origin closes its side once it has. Without
// that wait a session ended straight after (as a snapshot catch-up ends
// one) closes the connection with the report still in flight, and the
// origin never learns of the exchange.
func (e *Edge) sendReport(ctx context.Context, s *session, rep *wire.ResyncReport) {
	octx, cancel := context.WithTimeout(ctx, e.cfg.FillTimeout)
	st, err := s.data.OpenStreamSync(octx)
	cancel()
	if err != nil {
		return
	}
	st.SetDeadline(time.Now().Add(reportTimeout))
	if err := wire.WriteFrame(st, *rep); err != nil {
		st.CancelWrite(0)
		st.CancelRead(0)
		return
	}
	st.Close()
	if _, err := io.Copy(io.Discard, st); err != nil {
		st.CancelRead(0)
	}
}

// compare runs steps 1 to 3 of a resync.
func (e *Edge) compare(ctx context.Context, s *session, rep *wire.ResyncReport) error {
	// Files gone from under the store are forgotten here and, where
	// owed, fetched again in step 4 (counted as missing there).
	if _, err := e.store.verifyFiles(); err != nil {
		return err
	}
	// Blobs the scrubber quarantined since the last report.
	rep.Corrupt += e.quarantined.Swap(0)
	stop := e.store.trackTouched()
	defer stop()
	rs, err := e.openResync(ctx, s, rep)
	if err != nil {
		return err
	}
	defer func() { rs.st.CancelRead(0); rs.st.CancelWrite(0) }()
	leaves, err := aetree.Descend(e.store.tree, func(level int, idx []uint32) ([]aetree.Hash, error) {
		hs, lsn, err := rs.tree(level, idx)
		if err == nil {
			// Compare with the edge's tree once the log has brought it
			// to where the origin's was.
			e.waitWatermark(ctx, lsn, resyncLogWait)
		}
		return hs, err
	})
	if err != nil {
		return err
	}
	for start := 0; start < len(leaves); start += wire.MaxLeaves {
		if err := e.compareLeaves(ctx, rs, leaves[start:min(start+wire.MaxLeaves, len(leaves))], rep); err != nil {
			return err
		}
	}
	return nil
}

// compareLeaves compares and repairs the given leaves.
func (e *Edge) compareLeaves(ctx context.Context, rs *resyncStream, leaves []uint32, rep *wire.ResyncReport) error {
	theirs, lsn, err := rs.tuples(leaves)
	if err != nil {
		return err
	}
	e.waitWatermark(ctx, lsn, resyncLogWait)
	ours, wm, err := e.store.leafEntries(leaves)
	if err != nil {
		return err
	}
	if wm < lsn {
		// The log did not get there in time: what differs may be on its
		// way. Compare again next time.
		return fmt.Errorf("resync: the log is at %d, behind the origin's answer at %d", wm, lsn)
	}
	var fetch []wire.ObjectRef
	expect := make(map[objKey]uint64)
	var repairs []repair
	keys := make(map[objKey]bool, len(theirs)+len(ours))
	for k := range theirs {
		keys[k] = true
	}
	for k := range ours {
		keys[k] = true
	}
	for k := range keys {
		t, inTheirs := theirs[k]
		o, inOurs := ours[k]
		if inTheirs && inOurs && t.LSN == o.LSN && t.Digest == o.Digest {
			continue
		}
		if e.store.touchedAfter(k, lsn) || (inOurs && o.LSN > lsn) {
			continue // the log changed it after the origin's answer
		}
		var cur uint64
		if inOurs {
			cur = o.LSN
		}
		switch {
		case !inTheirs:
			rep.Extra++
			repairs = append(repairs, repair{k: k, expect: cur})
			continue
		case !inOurs || o.LSN == t.LSN:
			rep.Metadata++
		default:
			rep.Stale++
		}
		fetch = append(fetch, wire.ObjectRef{Namespace: k.ns, Key: k.key})
		expect[k] = cur
	}
	for start := 0; start < len(fetch); start += wire.MaxEntryRequest {
		part := fetch[start:min(start+wire.MaxEntryRequest, len(fetch))]
		want := make(map[objKey]bool, len(part))
		for _, r := range part {
			want[objKey{r.Namespace, r.Key}] = true
		}
		es, _, err := rs.entries(wire.EntryRequest{Objects: part}, func(ent *wire.LogEntry) bool {
			return want[objKey{ent.Namespace, ent.Key}] && ent.Validate() == nil
		})
		if err != nil {
			return err
		}
		for i := range es {
			k := objKey{es[i].Namespace, es[i].Key}
			if t := theirs[k]; es[i].LSN != t.LSN {
				continue // moved on at the origin since: the log brings it
			}
			repairs = append(repairs, repair{k: k, expect: expect[k], entry: &es[i]})
		}
	}
	n, err := e.store.reconcile(repairs)
	rep.Repaired += uint64(n)
	if err != nil {
		rep.Failed += uint64(len(repairs) - n)
		return err
	}
	return nil
}

// fetchOwed fetches the content of every current version the edge owes
// and lacks: step 4 of a resync, and the end of a snapshot catch-up.
func (e *Edge) fetchOwed(ctx context.Context, rep *wire.ResyncReport) error {
	if err := e.planCaughtUp(ctx); err != nil {
		return err
	}
	// Owed content held only as an evictable fill becomes a replica.
	if err := e.store.pin(e.store.unpinnedOwed(e.owes), true); err != nil {
		return err
	}
	missing := e.store.absent(e.owes, true)
	rep.Missing += uint64(len(missing))
	var errs []error
	// Content is addressed by digest: keys that share one are fetched once.
	fetched := make(map[wire.Digest]bool)
	for _, ent := range missing {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var err error
		if !fetched[ent.Digest] {
			_, err = e.fill(ctx, ent.Namespace, ent.Key, ent.Digest)
			fetched[ent.Digest] = err == nil
		}
		switch {
		case err == nil:
			rep.Repaired++
		case errors.Is(err, errNotFound):
			// Superseded at the origin meanwhile; the log brings the rest.
		default:
			rep.Failed++
			if len(errs) < 3 {
				errs = append(errs, fmt.Errorf("fetch %s: %w", ent.Key, err))
			}
		}
	}
	return errors.Join(errs...)
}
