package edge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/geocdn/geocdn/internal/wire"
	"github.com/geocdn/geocdn/placement"
)

// followLog applies log entries in LSN order, in batches, and acknowledges
// the new watermark after each batch.
func (e *Edge) followLog(ctx context.Context, s *session) error {
	us, err := s.control.AcceptUniStream(ctx)
	if err != nil {
		return err
	}
	err = e.consumeLog(ctx, us, func() { us.CancelRead(0) }, func(wm uint64) error {
		return s.send(wire.Ack{Watermark: wm})
	})
	var gap *logGapError
	if errors.As(err, &gap) {
		// The log no longer reaches back to the watermark.
		if err := e.catchUpBySnapshot(ctx, s, gap.first); err != nil {
			return fmt.Errorf("snapshot catch-up: %w", err)
		}
		return errSnapshotTaken
	}
	return err
}

// consumeLog reads log entries from r until it ends, ctx ends (nil) or the
// origin says its log starts past the watermark (*logGapError), and
// applies them in batches, calling ack with the watermark after each.
// cancelRead stops r's stream when consumeLog stops before its end.
//
// The watermark promises every entry up to it, so entries are applied
// only as an unbroken run from it: the reader stops at ctx's end rather
// than drop an entry and go on with the frames still buffered, and an
// entry past the next LSN (the origin's LSNs have no holes) ends the
// stream with an error, to be followed again from the watermark.
func (e *Edge) consumeLog(ctx context.Context, r io.Reader, cancelRead func(), ack func(uint64) error) error {
	entries := make(chan wire.LogEntry, 1024)
	readErr := make(chan error, 1)
	go func() {
		defer close(entries)
		br := bufio.NewReaderSize(r, 64<<10)
		for {
			f, err := wire.ReadFrame(br)
			if err != nil {
				readErr <- err
				return
			}
			if gap, ok := f.(wire.LogGap); ok {
				readErr <- &logGapError{gap.FirstLSN}
				return
			}
			ent, ok := f.(wire.LogEntry)
			if !ok {
				readErr <- fmt.Errorf("unexpected %T on log stream", f)
				return
			}
			select {
			case entries <- ent:
			case <-ctx.Done():
				cancelRead()
				readErr <- ctx.Err()
				return
			}
		}
	}()
	batch := make([]wire.LogEntry, 0, 512)
	for {
		ent, ok := <-entries
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return <-readErr
		}
		batch = append(batch[:0], ent)
	drain:
		for len(batch) < cap(batch) {
			select {
			case ent, ok := <-entries:
				if !ok {
					break drain
				}
				batch = append(batch, ent)
			default:
				break drain
			}
		}
		// An entry past the next LSN is a hole: what comes before it is
		// applied, and the stream ends there.
		var hole error
		next := e.store.watermark() + 1
		for i := range batch {
			if lsn := batch[i].LSN; lsn > next {
				hole = fmt.Errorf("log stream skipped from lsn %d to %d; following it again from the watermark", next, lsn)
				batch = batch[:i]
				break
			} else if lsn == next {
				next++
			}
		}
		if err := e.applyLog(batch); err != nil {
			cancelRead()
			return err
		}
		for _, ent := range batch {
			if ent.Op == wire.OpPut && placement.IsPlanObject(ent.Namespace, ent.Key) {
				e.bg.Add(1)
				go func() {
					defer e.bg.Done()
					if err := e.planApplied(ctx, ent); err != nil && ctx.Err() == nil {
						e.log.Error("placement plan", "lsn", ent.LSN, "err", err)
					}
				}()
			}
		}
		wm := e.store.watermark()
		e.logMoved.Broadcast()
		e.metrics.setWatermark(wm)
		e.lease.Applied(wm)
		if err := ack(wm); err != nil {
			cancelRead()
			return err
		}
		if hole != nil {
			cancelRead()
			return hole
		}
	}
}

// logGapError is the origin's LogGap: its log starts at first, past the
// edge's watermark.
type logGapError struct{ first uint64 }

func (g *logGapError) Error() string {
	return fmt.Sprintf("the origin's log starts at lsn %d, past this edge's watermark", g.first)
}

// errSnapshotTaken ends a session after a snapshot catch-up, so that the
// next one asks for the log from the snapshot's LSN.
var errSnapshotTaken = errors.New("caught up by snapshot; reconnecting to follow the log from there")

// applyLog applies a batch of log entries in order. A purge is carried out
// at its place in the log: the entries before it are applied first, so it
// evicts the versions current at its LSN and none published after it.
func (e *Edge) applyLog(batch []wire.LogEntry) error {
	start := 0
	for i, ent := range batch {
		if ent.Op != wire.OpPurge {
			continue
		}
		fresh := ent.LSN > e.store.watermark()
		if err := e.store.apply(batch[start : i+1]); err != nil {
			return fmt.Errorf("apply log: %w", err)
		}
		start = i + 1
		if !fresh {
			continue
		}
		n, err := e.store.purge(ent)
		if err != nil {
			return fmt.Errorf("purge at lsn %d: %w", ent.LSN, err)
		}
		e.metrics.purged(n)
	}
	if start < len(batch) {
		if err := e.store.apply(batch[start:]); err != nil {
			return fmt.Errorf("apply log: %w", err)
		}
	}
	return nil
}
