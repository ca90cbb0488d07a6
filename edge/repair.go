package edge

import (
	"context"
	"errors"
	"time"
)

// repairInterval is how often the edge looks for replicas it owes but does
// not hold (a push lost to a dropped connection, or a crash between
// applying a log entry and storing its content).
const repairInterval = 10 * time.Second

// repairLoop fetches owed replicas that pushes did not deliver. It waits a
// full interval first so that pushes in flight after a reconnect land.
func (e *Edge) repairLoop(ctx context.Context, s *session) error {
	tk := e.clk.NewTicker(repairInterval)
	defer tk.Stop()
	for {
		select {
		case <-tk.C():
		case <-ctx.Done():
			return nil
		}
		for _, ent := range e.store.missing(e.owes) {
			if ctx.Err() != nil {
				return nil
			}
			if _, err := e.fill(ctx, ent.Namespace, ent.Key, ent.Digest); err != nil && !errors.Is(err, errNotFound) {
				e.log.Warn("repair fill", "key", ent.Key, "err", err)
			}
		}
	}
}
