package placement

import (
	"context"
	"fmt"
	"math"
	"slices"
)

// Reassign returns the plan to put in force while the edges named in lost
// are away: every replica set of base that names a lost edge gets, in the
// lost edge's place, another edge chosen by the optimiser, and every other
// set is left as base has it. The replication factor of each set is kept
// where enough edges remain, and its fault-domain spread where enough fault
// domains do; a set that cannot be restored in full is reported in the
// plan's Violations, never refused.
//
// edges are every edge the caller knows, the lost ones included: those
// neither lost nor unavailable (down for now, not yet lost) are the
// candidates, and the positions of all of them stand in for demand, which a
// plan does not record. Each set's demand is taken to lie
// in the regions of the edges base gave it (the lost edge's region
// included), which is where the optimiser put them, so a substitute lands
// near the demand the lost edge served.
//
// The result shares nothing with base. It is base itself when no set names
// a lost edge; Moves lists the replicas added and removed otherwise.
func Reassign(ctx context.Context, base *Plan, edges []Edge, lost, unavailable []string) (*Plan, *Moves, error) {
	if err := base.Validate(); err != nil {
		return nil, nil, fmt.Errorf("reassign: %w", err)
	}
	isLost := func(id string) bool { return slices.Contains(lost, id) }
	affected := func(ids []string) bool { return slices.ContainsFunc(ids, isLost) }
	if !slices.ContainsFunc(base.Classes, func(c PlanClass) bool { return affected(c.Replicas) }) &&
		!slices.ContainsFunc(base.Objects, func(o PlanObject) bool { return affected(o.Replicas) }) {
		return base, nil, nil
	}
	known := make(map[string]Edge, len(edges))
	topo := &Topology{}
	var demand []DemandPoint
	for _, e := range edges {
		if _, dup := known[e.ID]; dup {
			return nil, nil, fmt.Errorf("reassign: edge %q listed twice", e.ID)
		}
		known[e.ID] = e
		demand = append(demand, DemandPoint{ID: e.ID, Lat: e.Lat, Lon: e.Lon, Region: e.Region, Weight: 1})
		if !isLost(e.ID) && !slices.Contains(unavailable, e.ID) {
			topo.Edges = append(topo.Edges, e)
		}
	}
	if len(topo.Edges) == 0 {
		return nil, nil, fmt.Errorf("reassign: no edge is available to take replicas")
	}
	for _, id := range base.Edges() {
		if _, ok := known[id]; !ok {
			return nil, nil, fmt.Errorf("reassign: the plan names edge %q, whose position is unknown", id)
		}
	}
	// The demand of a set lies in its edges' regions; elsewhere a trace of
	// it, so that a set whose regions lost every edge still has somewhere
	// to go.
	affinity := func(ids []string) Affinity {
		a := Affinity{"*": 1e-3}
		for _, id := range ids {
			a[known[id].Region] = 1
		}
		return a
	}
	// A rate of zero would leave an object out of the sets of its own
	// and a class without demand; the rates only weigh sets against each
	// other here.
	rate := func(r float64) float64 { return math.Max(r, 1e-9) }
	cat := &Catalog{}
	for _, c := range base.Classes {
		cat.Classes = append(cat.Classes, Class{
			Name: c.Name, Namespace: c.Namespace, Prefixes: c.Prefixes,
			Affinity: affinity(c.Replicas), Replicas: len(c.Replicas),
			Bytes: c.Bytes, Rate: rate(c.Rate),
		})
	}
	for _, o := range base.Objects {
		cat.Objects = append(cat.Objects, Object{
			Namespace: o.Namespace, Key: o.Key, Size: o.Bytes, Rate: rate(o.Rate),
			Affinity: affinity(o.Replicas), Replicas: len(o.Replicas),
		})
	}
	cfg := Config{
		MinReplicas: 1, MaxReplicas: 64,
		HotObjects: max(len(base.Objects), 1),
		BestEffort: true,
		Seed:       base.Seed,
		MaxMoves:   0, // only the moves the lost edges force
		Restarts:   -1,
	}
	res, err := Replan(ctx, Problem{Topology: topo, Demand: demand, Catalog: cat}, base, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("reassign: %w", err)
	}
	// Substitutes take the lost edges' places; the kept edges keep theirs
	// (nearest to the most demand first). Sets no lost edge was in stay
	// exactly as base has them, whatever else the optimiser would change.
	merge := func(old, planned []string) []string {
		if !affected(old) {
			return slices.Clone(old)
		}
		var subs []string
		for _, id := range planned {
			if !slices.Contains(old, id) {
				subs = append(subs, id)
			}
		}
		var out []string
		for _, id := range old {
			switch {
			case !isLost(id):
				out = append(out, id)
			case len(subs) > 0:
				out = append(out, subs[0])
				subs = subs[1:]
			}
		}
		// Subs beyond the lost edges' places replace edges that are
		// only down for now; those keep their places.
		return out
	}
	planned := make(map[string][]string, len(res.Plan.Classes))
	for _, c := range res.Plan.Classes {
		planned[c.Name] = c.Replicas
	}
	p := &Plan{Version: base.Version, GeneratedAt: base.GeneratedAt, Seed: base.Seed, Objective: base.Objective}
	for _, c := range base.Classes {
		c.Prefixes = slices.Clone(c.Prefixes)
		c.Replicas = merge(c.Replicas, planned[c.Name])
		if len(c.Replicas) == 0 {
			return nil, nil, fmt.Errorf("reassign: class %s: every replica lost, and no edge can take one", c.Name)
		}
		p.Classes = append(p.Classes, c)
	}
	for _, o := range base.Objects {
		o.Replicas = merge(o.Replicas, res.Plan.ReplicasFor(o.Namespace, o.Key))
		if len(o.Replicas) == 0 {
			return nil, nil, fmt.Errorf("reassign: object %s:%s: every replica lost, and no edge can take one", o.Namespace, o.Key)
		}
		p.Objects = append(p.Objects, o)
	}
	p.Violations = slices.Clone(base.Violations)
	domains := map[faultDomain]bool{}
	for _, e := range topo.Edges {
		domains[e.domain()] = true
	}
	check := func(subject string, old, now []string) {
		if !affected(old) {
			return
		}
		if len(now) < len(old) {
			p.Violations = append(p.Violations, Violation{Constraint: "replicas", Subject: subject,
				Detail: fmt.Sprintf("needs %d replicas, %d edges remain to hold them", len(old), len(now))})
		}
		fds := map[faultDomain]bool{}
		for _, id := range now {
			fds[known[id].domain()] = true
		}
		if need := min(len(old), len(domains)); len(fds) < need {
			p.Violations = append(p.Violations, Violation{Constraint: "fault-domains", Subject: subject,
				Detail: fmt.Sprintf("replicas span %d fault domains, need %d", len(fds), need)})
		}
	}
	for i, c := range base.Classes {
		check("class "+c.Name, c.Replicas, p.Classes[i].Replicas)
	}
	for i, o := range base.Objects {
		check("object "+o.Namespace+":"+o.Key, o.Replicas, p.Objects[i].Replicas)
	}
	if err := p.Validate(); err != nil {
		return nil, nil, fmt.Errorf("reassign: %w", err)
	}
	return p, res.Moves, nil
}
