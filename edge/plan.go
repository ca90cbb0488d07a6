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
	if placement.IsOriginOnly(ent.Namespace, ent.Key) {
		return false
	}
	if p := e.plan.Load(); p != nil && !placement.IsPlanObject(ent.Namespace, ent.Key) {
		if r := p.ReplicasFor(ent.Namespace, ent.Key); r != nil {
			return slices.Contains(r, e.cfg.ID)
		}
	}
	return len(ent.Replicas) == 0 || slices.Contains(ent.Replicas, e.cfg.ID)
}

// planApplied reacts to a new plan object in the log: it fetches the plan
// (pushed to every edge, or filled here), puts it in force and unpins the
// replicas the edge no longer owes. Those stay on disk as evictable fills,
// served as cache hits until room is needed: the content is no less
// current for having moved, and when it moves back (an edge lost for a
// while returns) nothing is fetched twice. Replicas it newly owes arrive
// by push, or by the next resync.
func (e *Edge) planApplied(ctx context.Context, ent wire.LogEntry) error {
	if cur, ok := e.store.lookup(placement.PlanNamespace, placement.PlanKey); ok && cur.Entry.LSN > ent.LSN {
		// Superseded while the edge caught up: the origin no longer
		// has it, and the later plan's entry puts that one in force.
		return nil
	}
	if !e.store.hasBlob(ent.Digest) {
		if _, err := e.fill(ctx, ent.Namespace, ent.Key, ent.Digest); err != nil {
			return fmt.Errorf("fetch placement plan: %w", err)
		}
	}
	if err := e.loadPlan(ent); err != nil {
		return err
	}
	moved := e.store.unowed(e.owes)
	if err := e.store.pin(moved, false); err != nil {
		return fmt.Errorf("unpin replicas moved away: %w", err)
	}
	e.log.Info("placement plan in force", "lsn", ent.LSN, "unpinned", len(moved))
	return nil
}

// planCaughtUp puts in force the plan the log has reached, when the
// goroutine that reacts to its entry (planApplied) has not done so yet: a
// resync judges what the edge owes by it.
func (e *Edge) planCaughtUp(ctx context.Context) error {
	obj, ok := e.store.lookup(placement.PlanNamespace, placement.PlanKey)
	if !ok || obj.Entry.Op != wire.OpPut {
		return nil
	}
	e.mu.Lock()
	inForce := e.planLSN
	e.mu.Unlock()
	if obj.Entry.LSN <= inForce {
		return nil
	}
	return e.planApplied(ctx, obj.Entry)
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
