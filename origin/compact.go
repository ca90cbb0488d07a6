package origin

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Log compaction. The catalog holds every current version, so it is the
// snapshot: an entry older than the retention is dropped from the log,
// and an edge whose watermark falls before the first entry kept catches
// up from the catalog instead (SnapshotRequest), then follows the log
// from the snapshot's LSN. Purge entries are dropped like the others:
// a purge only evicts edge copies of versions that were current at its
// LSN, and an edge that catches up by snapshot compares every version it
// holds with the catalog, keeping a copy only where the catalog names the
// same content (same LSN and digest), which is what a refill after the
// purge would have fetched. So no purge needs replaying once its entry
// is older than the retention.

// compactChunk bounds the log entries one compaction transaction deletes,
// so that compaction never holds the write lock for long.
const compactChunk = 4096

// compactInterval is how often the origin compacts its log.
const compactInterval = time.Minute

// LogRetention is how much of the log the origin keeps: the last Entries
// entries, or entries committed within Age. Exactly one is set.
type LogRetention struct {
	Entries uint64
	Age     time.Duration
}

func (r LogRetention) String() string {
	if r.Age > 0 {
		return r.Age.String()
	}
	return fmt.Sprint(r.Entries)
}

// compactor remembers, for age-based retention, which LSN was last at
// which time; it forgets across restarts, which only delays compaction.
type compactor struct {
	marks []lsnMark
}

type lsnMark struct {
	at  time.Time
	lsn uint64
}

// keepFrom returns the first LSN retention keeps at now.
func (c *compactor) keepFrom(r LogRetention, last uint64, now time.Time) uint64 {
	if r.Age <= 0 {
		if last <= r.Entries {
			return 1
		}
		return last - r.Entries + 1
	}
	c.marks = append(c.marks, lsnMark{now, last})
	keep := uint64(1)
	cut := 0
	for i, m := range c.marks {
		if now.Sub(m.at) < r.Age {
			break
		}
		// Every entry up to m.lsn was committed at least Age ago.
		keep = m.lsn + 1
		cut = i
	}
	c.marks = c.marks[cut:]
	return keep
}

// compactLoop compacts the log, and sweeps staged content left unnamed,
// every compactInterval until ctx ends.
func (o *Origin) compactLoop(ctx context.Context) {
	var c compactor
	t := o.clk.NewTicker(compactInterval)
	defer t.Stop()
	for {
		keep := c.keepFrom(o.cfg.LogRetention, o.store.lastLSN(), o.clk.Now())
		if n, err := o.store.compact(keep); err != nil {
			o.log.Error("log compaction", "err", err)
		} else if n > 0 {
			o.log.Info("log compacted", "entries", n, "first_lsn", o.store.firstLSN())
		}
		// Staged content no command named (a leader that died between
		// streaming it and proposing) goes once it is too old to be.
		if err := o.store.sweepStage(time.Now().Add(-stageKeep)); err != nil {
			o.log.Warn("sweep staged content", "err", err)
		}
		select {
		case <-t.C():
		case <-ctx.Done():
			return
		}
	}
}

// compact drops log entries before keepFrom (never the last entry) and
// returns how many it dropped. Each transaction moves the first LSN in
// meta with the entries it deletes, and readLog checks it inside its own
// read transaction, so a reader never mistakes a compacted stretch for
// the end of the log.
func (s *store) compact(keepFrom uint64) (int, error) {
	keepFrom = min(keepFrom, s.lastLSN())
	total := 0
	for s.firstLSN() < keepFrom {
		n := 0
		var first uint64
		err := s.db.Update(func(tx *bolt.Tx) error {
			c := tx.Bucket([]byte(bucketLog)).Cursor()
			k, _ := c.First()
			for ; k != nil && n < compactChunk && binary.BigEndian.Uint64(k) < keepFrom; k, _ = c.First() {
				if err := c.Delete(); err != nil {
					return err
				}
				n++
			}
			first = keepFrom
			if k != nil {
				first = min(binary.BigEndian.Uint64(k), keepFrom)
			}
			return tx.Bucket([]byte(bucketMeta)).Put([]byte(metaFirst), binary.BigEndian.AppendUint64(nil, first))
		})
		if err != nil {
			return total, fmt.Errorf("compact log of %s: %w", s.catalogPath, err)
		}
		s.first.Store(first)
		total += n
	}
	return total, nil
}
