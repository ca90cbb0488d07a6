package edge

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/geocdn/geocdn/internal/wire"
	"github.com/geocdn/geocdn/placement"
)

// owes reports whether this edge must hold a replica of ent: by the
// placement plan in force where it covers the key, else by the replica set
// recorded at publish.
func (e *Edge) owes(ent wire.LogEntry) bool {
	if p := e.plan.Load(); p != nil && !placement.IsPlanObject(ent.Namespace, ent.Key) {
		if r := p.ReplicasFor(ent.Namespace, ent.Key); r != nil {
			return slices.Contains(r, e.cfg.ID)
		}
	}
	return len(ent.Replicas) == 0 || slices.Contains(ent.Replicas, e.cfg.ID)
}

// planApplied reacts to a new plan object in the log: it fetches the plan
// (pushed to every edge, or filled here), puts it in force and drops the
// replicas the edge no longer owes. Replicas it newly owes arrive by push.
func (e *Edge) planApplied(ctx context.Context, ent wire.LogEntry) error {
	if !e.store.hasBlob(ent.Digest) {
		if _, err := e.fill(ctx, ent.Namespace, ent.Key, ent.Digest); err != nil {
			return fmt.Errorf("fetch placement plan: %w", err)
		}
	}
	if err := e.loadPlan(ent); err != nil {
		return err
	}
	drop := e.store.unowed(e.owes)
	if err := e.store.drop(drop); err != nil {
		return fmt.Errorf("drop replicas moved away: %w", err)
	}
	e.log.Info("placement plan in force", "lsn", ent.LSN, "dropped", len(drop))
	return nil
}

// loadPlan reads the plan object ent from the store and puts it in force,
// unless a later plan already is.
func (e *Edge) loadPlan(ent wire.LogEntry) error {
	c, err := e.store.openContent(ent.Digest)
	if err != nil {
		return fmt.Errorf("open placement plan: %w", err)
	}
	defer c.close()
	b := c.hot
	if c.file != nil {
		if b, err = io.ReadAll(c.file); err != nil {
			return fmt.Errorf("read placement plan: %w", err)
		}
	}
	p, err := placement.UnmarshalPlan(b)
	if err != nil {
		return fmt.Errorf("placement plan at lsn %d: %w", ent.LSN, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if ent.LSN < e.planLSN {
		return nil
	}
	e.planLSN = ent.LSN
	e.plan.Store(p)
	return nil
}
