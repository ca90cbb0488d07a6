package origin

import (
	"testing"
	"time"
)

func TestRestartPushesStartsBeforeUnsettledPushes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		unpushed  []uint64
		watermark uint64
		want      uint64
	}{
		{"nothing unsettled", nil, 12, 12},
		{"unsettled below the watermark", []uint64{5, 9}, 12, 4},
		{"unsettled above the watermark", []uint64{15}, 12, 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEdge(edgeInfo{ID: "e1"})
			for _, l := range tc.unpushed {
				e.unpushed[l] = struct{}{}
			}
			e.mu.Lock()
			e.restartPushesLocked(tc.watermark)
			e.mu.Unlock()
			if e.pushCursor != tc.want {
				t.Fatalf("cursor %d, want %d", e.pushCursor, tc.want)
			}
			if len(e.unpushed) != 0 {
				t.Fatalf("unsettled pushes kept after restart: %v", e.unpushed)
			}
		})
	}
}

func TestEdgeStateAfterOriginStart(t *testing.T) {
	start := time.Unix(1000, 0)
	rule := stateRule{heartbeat: 250 * time.Millisecond, unknownUntil: start.Add(2 * time.Second)}
	e := newEdge(edgeInfo{ID: "e1"})
	if got := e.state(start.Add(time.Second), rule); got != EdgeSuspect {
		t.Fatalf("unheard edge within a term of start: %s, want suspect (its old lease may run)", got)
	}
	if got := e.state(start.Add(3*time.Second), rule); got != EdgeDown {
		t.Fatalf("unheard edge after a term: %s, want down", got)
	}
	e.mu.Lock()
	e.leaseExpires = start.Add(5 * time.Second)
	e.lastHeartbeat = start.Add(3 * time.Second)
	e.control = nil
	e.mu.Unlock()
	if got := e.state(start.Add(3100*time.Millisecond), rule); got != EdgeSuspect {
		t.Fatalf("leased edge without a control connection: %s, want suspect", got)
	}
	if got := e.state(start.Add(6*time.Second), rule); got != EdgeDown {
		t.Fatalf("expired lease: %s, want down", got)
	}
}
