package placement

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
)

// solved returns a problem and its plan.
func solved(t *testing.T, objects int) (Problem, Config, *Result) {
	t.Helper()
	p := sampleProblem(t, objects)
	cfg := DefaultConfig()
	cfg.ReplicaRate = 20
	res, err := Solve(context.Background(), p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p, cfg, res
}

func TestReplanUnchanged(t *testing.T) {
	p, cfg, res := solved(t, 600)
	again, err := Replan(context.Background(), p, res.Plan, cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := again.Moves
	if m.Forced != 0 || m.Bytes != 0 || len(m.Changes) != 0 {
		t.Errorf("re-plan of an unchanged problem: %d forced, %d optional moves, %d bytes, changes %+v; want none", m.Forced, m.Optional, m.Bytes, m.Changes)
	}
	if again.MeanRTTMs > res.MeanRTTMs*(1+1e-9) {
		t.Errorf("re-plan objective %v worse than the plan in force %v", again.MeanRTTMs, res.MeanRTTMs)
	}
	if d := m.CurrentMeanRTTMs - res.MeanRTTMs; d > 1e-6 || d < -1e-6 {
		t.Errorf("CurrentMeanRTTMs = %v, the plan's objective is %v", m.CurrentMeanRTTMs, res.MeanRTTMs)
	}
}

// TestReplanLostEdge removes the edge holding the most sets: every set on
// it must move (forced), and with MaxMoves 0 nothing else does.
func TestReplanLostEdge(t *testing.T) {
	p, cfg, res := solved(t, 600)
	busiest := slices.MaxFunc(res.Edges, func(a, b EdgeReport) int { return a.Sets - b.Sets })
	var edges []Edge
	for _, e := range p.Topology.Edges {
		if e.ID != busiest.ID {
			edges = append(edges, e)
		}
	}
	q := p
	q.Topology = &Topology{Edges: edges, Measured: p.Topology.Measured}
	cfg.MaxMoves = 0
	out, err := Replan(context.Background(), q, res.Plan, cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := out.Moves
	if m.Forced != busiest.Sets || m.Optional != 0 {
		t.Errorf("edge %s held %d sets: %d forced and %d optional moves, want %d and 0", busiest.ID, busiest.Sets, m.Forced, m.Optional, busiest.Sets)
	}
	var bytes int64
	for _, c := range m.Changes {
		bytes += c.Bytes
		if !slices.Contains(c.Removed, busiest.ID) || len(c.Added) != 1 {
			t.Errorf("change %+v: want %s replaced by one edge", c, busiest.ID)
		}
	}
	if bytes != m.Bytes || (busiest.UsedBytes > 0 && m.Bytes == 0) {
		t.Errorf("bytes moved %d, changes add up to %d, the lost edge held %d", m.Bytes, bytes, busiest.UsedBytes)
	}
	for _, id := range out.Plan.Edges() {
		if id == busiest.ID {
			t.Errorf("the new plan still uses %s", id)
		}
	}
}

// TestReplanBudget starts from a poor plan (random replica sets): the
// budget bounds the optional moves, more budget never does worse, and a
// prohibitive churn penalty allows none.
func TestReplanBudget(t *testing.T) {
	p, cfg, res := solved(t, 600)
	poor := &Plan{Version: PlanVersion, Classes: res.Plan.Classes}
	rng := rand.New(rand.NewPCG(1, 2))
	ids := make([]string, len(p.Topology.Edges))
	for i, e := range p.Topology.Edges {
		ids[i] = e.ID
	}
	poor.Classes = slices.Clone(poor.Classes)
	for i := range poor.Classes {
		c := &poor.Classes[i]
		perm := rng.Perm(len(ids))
		c.Replicas = []string{ids[perm[0]], ids[perm[1]]}
	}
	prev := -1.0
	for _, budget := range []int{0, 3, 10, -1} {
		cfg := cfg
		cfg.MaxMoves = budget
		out, err := Replan(context.Background(), p, poor, cfg)
		if err != nil {
			t.Fatal(err)
		}
		m := out.Moves
		if budget >= 0 && m.Optional > budget {
			t.Errorf("budget %d: %d optional moves", budget, m.Optional)
		}
		if prev >= 0 && out.MeanRTTMs > prev*(1+1e-9) {
			t.Errorf("budget %d: mean RTT %.3f, worse than with a smaller budget (%.3f)", budget, out.MeanRTTMs, prev)
		}
		t.Logf("max moves %3d: %3d forced + %3d optional moves, %8s copied, mean RTT %.2f ms (plan in force %.2f ms, fresh plan %.2f ms)",
			budget, m.Forced, m.Optional, HumanBytes(m.Bytes), out.MeanRTTMs, m.CurrentMeanRTTMs, res.MeanRTTMs)
		prev = out.MeanRTTMs
	}

	cfg.MaxMoves = -1
	cfg.ChurnPenalty = 1e12
	out, err := Replan(context.Background(), p, poor, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Only content of no size may still move: moving it costs nothing.
	for _, c := range out.Moves.Changes {
		if len(c.Added) > c.Forced && c.Bytes > 0 {
			t.Errorf("prohibitive churn penalty: optional move %+v", c)
		}
	}
}

// TestReplanNewContent: content the plan in force does not know is placed,
// its replicas counted as forced moves with its bytes.
func TestReplanNewContent(t *testing.T) {
	p, cfg, res := solved(t, 300)
	cat := *p.Catalog
	cat.Classes = append(slices.Clone(cat.Classes), Class{Name: "new", Prefixes: []string{"new/"}, Replicas: 2})
	cat.Objects = append(slices.Clone(cat.Objects), Object{Key: "new/a.bin", Size: 5e9, Rate: 0.1})
	q := p
	q.Catalog = &cat
	out, err := Replan(context.Background(), q, res.Plan, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var c *Change
	for i := range out.Moves.Changes {
		if out.Moves.Changes[i].Name == "new" {
			c = &out.Moves.Changes[i]
		}
	}
	if c == nil || len(c.Added) != 2 || c.Forced != 2 || c.Bytes != 10e9 {
		t.Errorf("new class change %+v: want 2 forced replicas copying 10 GB", c)
	}
}
