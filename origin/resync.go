package origin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/geocdn/geocdn/internal/wire"
)

// ResyncStatus is the latest anti-entropy report of an edge, as the edge
// sent it at the end of its resync.
type ResyncStatus struct {
	Edge     string    `json:"edge"`
	At       time.Time `json:"at"`
	Trigger  string    `json:"trigger"` // "periodic" or "operator"
	Outcome  string    `json:"outcome"` // "in-sync", "repaired", "failed"
	Duration string    `json:"duration"`
	Snapshot bool      `json:"snapshot,omitempty"`
	// Differences by kind.
	Missing  uint64 `json:"missing"`
	Stale    uint64 `json:"stale"`
	Extra    uint64 `json:"extra"`
	Metadata uint64 `json:"metadata"`
	Corrupt  uint64 `json:"corrupt"`
	Repaired uint64 `json:"repaired"`
	Failed   uint64 `json:"failed"`
	// Entries and Bytes exchanged, content aside.
	Entries uint64 `json:"entries"`
	Bytes   uint64 `json:"bytes"`
	Error   string `json:"error,omitempty"`
}

// Divergence is the number of differences the resync found.
func (r ResyncStatus) Divergence() uint64 {
	return r.Missing + r.Stale + r.Extra + r.Metadata + r.Corrupt
}

func resyncStatus(id string, at time.Time, r wire.ResyncReport) ResyncStatus {
	s := ResyncStatus{
		Edge: id, At: at, Trigger: "periodic",
		Duration: (time.Duration(r.DurationMillis) * time.Millisecond).String(),
		Snapshot: r.Snapshot,
		Missing:  r.Missing, Stale: r.Stale, Extra: r.Extra, Metadata: r.Metadata, Corrupt: r.Corrupt,
		Repaired: r.Repaired, Failed: r.Failed, Entries: r.Entries, Bytes: r.Bytes, Error: r.Error,
	}
	if r.ID != 0 {
		s.Trigger = "operator"
	}
	switch {
	case r.Error != "" || r.Failed > 0:
		s.Outcome = "failed"
	case s.Divergence() > 0 || r.Snapshot:
		s.Outcome = "repaired"
	default:
		s.Outcome = "in-sync"
	}
	return s
}

// resyncs tracks reports and the operators waiting for them.
type resyncs struct {
	mu      sync.Mutex
	nextID  uint64
	waiting map[uint64]chan ResyncStatus
}

func (r *resyncs) register() (uint64, chan ResyncStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waiting == nil {
		r.waiting = make(map[uint64]chan ResyncStatus)
	}
	r.nextID++
	ch := make(chan ResyncStatus, 1)
	r.waiting[r.nextID] = ch
	return r.nextID, ch
}

func (r *resyncs) forget(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.waiting, id)
}

func (r *resyncs) deliver(id uint64, s ResyncStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ch := r.waiting[id]; ch != nil {
		ch <- s
		delete(r.waiting, id)
	}
}

// errResyncProtocol marks a request an edge must not send: the
// connection is closed with it.
var errResyncProtocol = errors.New("resync protocol violation")

// serveResync answers an edge's anti-entropy requests on st, the first of
// which is first, until the edge sends its report and FIN. Answers are
// read from the catalog in one transaction each and written after it.
func (o *Origin) serveResync(e *edge, st *quic.Stream, first wire.Frame) error {
	r := bufio.NewReader(st)
	w := bufio.NewWriterSize(st, 64<<10)
	f := first
	for {
		var err error
		switch m := f.(type) {
		case wire.TreeRequest:
			hs, lsn, terr := o.store.treeNodes(int(m.Level), m.Indices)
			if terr != nil {
				return fmt.Errorf("%w: %v", errResyncProtocol, terr)
			}
			err = writeFrames(w, wire.TreeNodes{LSN: lsn, Hashes: hs})
		case wire.LeafRequest:
			ts, lsn, rerr := o.store.leafTuples(m.Leaves)
			err = writeTuples(w, ts, wire.ResyncEnd{LSN: lsn, Error: errText(rerr)})
		case wire.EntryRequest:
			es, lsn, rerr := o.store.currentEntries(m.Objects)
			err = writeEntries(w, es, wire.ResyncEnd{LSN: lsn, Error: errText(rerr)})
		case wire.SnapshotRequest:
			es, lsn, rerr := o.store.snapshotRange(m.FromLeaf, m.ToLeaf)
			if rerr != nil {
				es = nil
			}
			err = writeEntries(w, es, wire.ResyncEnd{LSN: lsn, Error: errText(rerr)})
		case wire.ResyncReport:
			s := resyncStatus(e.info.ID, o.clk.Now(), m)
			e.mu.Lock()
			e.lastResync = &s
			e.mu.Unlock()
			o.metrics.resyncDone(s)
			o.resyncs.deliver(m.ID, s)
			o.log.Info("edge resync", "edge", e.info.ID, "trigger", s.Trigger, "outcome", s.Outcome,
				"missing", s.Missing, "stale", s.Stale, "extra", s.Extra, "metadata", s.Metadata, "corrupt", s.Corrupt,
				"repaired", s.Repaired, "failed", s.Failed, "entries", s.Entries, "bytes", s.Bytes, "duration", s.Duration, "err", s.Error)
			return nil
		default:
			return fmt.Errorf("%w: %T on a resync stream", errResyncProtocol, f)
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			return err
		}
		if f, err = wire.ReadFrame(r); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			if errors.Is(err, wire.ErrMalformed) || errors.Is(err, wire.ErrUnknownFrame) || errors.Is(err, wire.ErrFrameTooLarge) {
				return fmt.Errorf("%w: %w", errResyncProtocol, err)
			}
			return err
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func writeFrames(w io.Writer, fs ...wire.Frame) error {
	for _, f := range fs {
		if err := wire.WriteFrame(w, f); err != nil {
			return err
		}
	}
	return nil
}

// maxTupleFrame is the payload size at which LeafTuples frames are cut.
const maxTupleFrame = 64 << 10

func writeTuples(w io.Writer, ts []wire.Tuple, end wire.ResyncEnd) error {
	var batch []wire.Tuple
	size := 0
	for _, t := range ts {
		n := wire.TupleLen(t)
		if len(batch) == wire.MaxTuples || (len(batch) > 0 && size+n > maxTupleFrame) {
			if err := wire.WriteFrame(w, wire.LeafTuples{Tuples: batch}); err != nil {
				return err
			}
			batch, size = batch[:0], 0
		}
		batch = append(batch, t)
		size += n
	}
	if len(batch) > 0 {
		if err := wire.WriteFrame(w, wire.LeafTuples{Tuples: batch}); err != nil {
			return err
		}
	}
	return wire.WriteFrame(w, end)
}

func writeEntries(w io.Writer, es []wire.LogEntry, end wire.ResyncEnd) error {
	for _, e := range es {
		if err := wire.WriteFrame(w, e); err != nil {
			return err
		}
	}
	return wire.WriteFrame(w, end)
}

// requestResync asks a connected edge to resync now, on its control
// stream, and returns the id its report will carry.
func (o *Origin) requestResync(e *edge) (uint64, chan ResyncStatus, error) {
	id, ch := o.resyncs.register()
	e.mu.Lock()
	st := e.ctrl
	e.mu.Unlock()
	if st == nil {
		o.resyncs.forget(id)
		return 0, nil, fmt.Errorf("edge %s is not connected", e.info.ID)
	}
	if err := e.sendControl(wire.ResyncNow{ID: id}); err != nil {
		o.resyncs.forget(id)
		return 0, nil, fmt.Errorf("edge %s: %w", e.info.ID, err)
	}
	return id, ch, nil
}

// maxResyncWait bounds how long POST /v1/resync waits for reports.
const maxResyncWait = 10 * time.Minute

// handleResync serves POST /v1/resync[?edge=ID][&timeout=D]: it asks the
// edge (every connected edge without ?edge) to resync at once and answers
// their reports, or, for an edge that does not report in time, what is
// known. An unknown edge is 404; an edge that is not connected is 503.
func (o *Origin) handleResync(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > 0 || len(r.TransferEncoding) > 0 {
		writeError(w, http.StatusUnsupportedMediaType, "POST /v1/resync takes no body; name the edge with ?edge=ID")
		return
	}
	q := r.URL.Query()
	for k := range q {
		if k != "edge" && k != "timeout" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown parameter %q (want edge, timeout)", k))
			return
		}
	}
	wait := maxResyncWait
	if v := q.Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > maxResyncWait {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("timeout %q: want a duration between 0 and %s", v, maxResyncWait))
			return
		}
		wait = d
	}
	var targets []*edge
	if id := q.Get("edge"); id != "" || q.Has("edge") {
		e := o.edges.get(id)
		if e == nil {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no edge %q: the origin has never heard of it (GET /v1/edges lists those it knows)", id))
			return
		}
		targets = []*edge{e}
	} else {
		targets = o.edges.all()
	}
	type pending struct {
		e  *edge
		id uint64
		ch chan ResyncStatus
	}
	var started []pending
	var out []ResyncStatus
	for _, e := range targets {
		id, ch, err := o.requestResync(e)
		if err != nil {
			if len(targets) == 1 {
				writeError(w, http.StatusServiceUnavailable, err.Error())
				return
			}
			out = append(out, ResyncStatus{Edge: e.info.ID, Trigger: "operator", Outcome: "failed", Error: err.Error()})
			continue
		}
		started = append(started, pending{e, id, ch})
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	for _, p := range started {
		select {
		case s := <-p.ch:
			out = append(out, s)
		case <-ctx.Done():
			o.resyncs.forget(p.id)
			out = append(out, ResyncStatus{Edge: p.e.info.ID, Trigger: "operator", Outcome: "failed", Error: "no report before the timeout; the resync may still be running"})
		}
	}
	if out == nil {
		out = []ResyncStatus{}
	}
	writeJSON(w, http.StatusOK, out)
}
