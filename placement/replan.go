package placement

import (
	"cmp"
	"context"
	"math"
	"slices"

	"github.com/geocdn/geocdn/internal/objkey"
)

// Moves is what a re-plan changes relative to the plan in force.
type Moves struct {
	// Changes lists the replica sets that change, and the sets of the plan
	// in force that no longer exist.
	Changes []Change
	// Forced counts replicas that must be added: new content, a replica on
	// an edge that left the topology or lacks space, a changed k or
	// fault-domain spread. Optional counts those added to lower latency,
	// within Config.MaxMoves and Config.ChurnPenalty.
	Forced, Optional int
	// Bytes is the total that would be copied to edges: for every object,
	// its size times the edges that would hold it and do not now.
	Bytes int64
	// CurrentMeanRTTMs is the objective of the plan in force on today's
	// demand (over the content it covers); Result.MeanRTTMs is the new
	// one's.
	CurrentMeanRTTMs float64
}

// Change is the change of one replica set.
type Change struct {
	Kind, Name     string
	Added, Removed []string
	// Forced is how many of Added must be made.
	Forced int
	// Bytes is what the change copies to edges.
	Bytes int64
}

// GiB is the unit of Config.ChurnPenalty.
const GiB = 1 << 30

// Replan computes a placement starting from current, the plan in force:
// each set keeps its edges unless it must change (an edge left the
// topology or lacks space, k or the fault-domain spread changed, the
// content is new) and then improves by local search, adding at most
// cfg.MaxMoves replicas beyond the forced ones (the most latency per move
// first) and only those that buy cfg.ChurnPenalty per GiB moved. The
// result's Moves lists the changes and the bytes they copy.
func Replan(ctx context.Context, p Problem, current *Plan, cfg Config) (*Result, error) {
	pl, err := newPlacer(p, cfg)
	if err != nil {
		return nil, err
	}
	if current == nil {
		current = &Plan{Version: PlanVersion} // nothing in force: everything is new
	}
	in := pl.in
	edgeIndex := make(map[string]int, in.nE)
	for e, ed := range in.edges {
		edgeIndex[ed.ID] = e
	}
	// The current set of each unit, as the origin would look it up.
	cur := make([][]int, len(pl.units))
	curIDs := make([][]string, len(pl.units)) // including edges no longer in the topology
	for i, u := range pl.units {
		var ids []string
		if u.isClass() {
			for _, c := range current.Classes {
				if c.Name == u.name {
					ids = c.Replicas
				}
			}
		} else {
			o := pl.cat.Objects[u.object]
			ids = current.ReplicasFor(o.Namespace, o.Key)
		}
		curIDs[i] = ids
		for _, id := range ids {
			if e, ok := edgeIndex[id]; ok && !slices.Contains(cur[i], e) {
				cur[i] = append(cur[i], e)
			}
		}
	}
	for i, u := range pl.units {
		pl.sets[i] = cur[i]
		pl.charge(u, cur[i], +1)
	}
	currentMean := pl.meanOf(cur)

	// Forced repairs, most valuable content first.
	start := make([][]int, len(pl.units))
	for _, u := range pl.order {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		i := pl.index[u]
		pl.release(u)
		start[i] = pl.repair(u, cur[i])
		pl.commit(u, start[i])
	}

	// Improvement chains: the sets local search passes through from each
	// repaired set. Space is reserved for every edge a chain visits, so
	// any prefix of any chain can be taken without overfilling an edge.
	type step struct {
		set  []int
		cost float64 // rate-weighted, without churn penalty
	}
	chains := make([][]step, len(pl.units))
	for _, u := range pl.order {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		i := pl.index[u]
		pl.release(u)
		allowed, _ := pl.allowed(u)
		for _, e := range start[i] {
			allowed[e] = true
		}
		k := pl.kFor(u)
		s := newSearch(in, u.w, u.mult, k, pl.needFD(k), allowed)
		// Edges the content is on now, or must move to anyway, are free;
		// any other costs the churn penalty, in the unit's own scale
		// (its objective is rate × demand-weighted latency).
		free := make([]bool, in.nE)
		for _, e := range cur[i] {
			free[e] = true
		}
		for _, e := range start[i] {
			free[e] = true
		}
		noMoves := pl.cfg.MaxMoves == 0
		if pl.cfg.ChurnPenalty > 0 && u.bytes > 0 {
			pen := math.Inf(1)
			if u.rate > 0 {
				pen = pl.cfg.ChurnPenalty * float64(u.bytes) / GiB / u.rate
			}
			noMoves = noMoves || math.IsInf(pen, 1)
			s.fixed = make([]float64, in.nE)
			for e := range s.fixed {
				if !free[e] {
					s.fixed[e] = pen
				}
			}
		}
		chain := []step{{start[i], pl.unitCost(u, start[i])}}
		s.onSwap = func(next []int) {
			chain = append(chain, step{slices.Clone(next), pl.unitCost(u, next)})
		}
		if !noMoves {
			s.reset(start[i])
			s.localSearch()
		}
		chains[i] = chain
		var visited []int
		for _, st := range chain {
			for _, e := range st.set {
				if !slices.Contains(visited, e) {
					visited = append(visited, e)
				}
			}
		}
		pl.commit(u, visited)
	}

	// Spend the move budget: repeatedly take the next step of the chain
	// whose step buys the most per move added.
	pos := make([]int, len(pl.units))
	optional := func(i, p int) int {
		n := 0
		for _, e := range chains[i][p].set {
			if !slices.Contains(start[i], e) {
				n++
			}
		}
		return n
	}
	budget := pl.cfg.MaxMoves
	for {
		best, bestVal := -1, 0.0
		for i := range pl.units {
			if pos[i]+1 >= len(chains[i]) {
				continue
			}
			gain := chains[i][pos[i]].cost - chains[i][pos[i]+1].cost
			dm := optional(i, pos[i]+1) - optional(i, pos[i])
			if budget >= 0 && dm > budget {
				continue
			}
			val := gain / float64(max(dm, 0)+1)
			if dm <= 0 {
				val = math.Inf(1) // free: no move added
			}
			if best < 0 || val > bestVal {
				best, bestVal = i, val
			}
		}
		if best < 0 {
			break
		}
		if budget >= 0 {
			budget -= optional(best, pos[best]+1) - optional(best, pos[best])
		}
		pos[best]++
	}

	for _, u := range pl.units {
		pl.release(u)
	}
	for i, u := range pl.units {
		pl.commit(u, chains[i][pos[i]].set)
	}

	mv := &Moves{CurrentMeanRTTMs: currentMean}
	for i, u := range pl.units {
		final := pl.sets[i]
		ch := Change{Kind: "object", Name: u.name}
		if u.isClass() {
			ch.Kind = "class"
		}
		var finalIDs []string
		for _, e := range final {
			finalIDs = append(finalIDs, in.edges[e].ID)
			if !slices.Contains(cur[i], e) {
				ch.Added = append(ch.Added, in.edges[e].ID)
				if slices.Contains(start[i], e) {
					ch.Forced++
				}
			}
		}
		for _, id := range curIDs[i] {
			if !slices.Contains(finalIDs, id) {
				ch.Removed = append(ch.Removed, id)
			}
		}
		ch.Bytes = pl.bytesMoved(u, final, current)
		mv.Forced += ch.Forced
		mv.Optional += len(ch.Added) - ch.Forced
		mv.Bytes += ch.Bytes
		if len(ch.Added) > 0 || len(ch.Removed) > 0 || ch.Bytes > 0 {
			slices.Sort(ch.Added)
			slices.Sort(ch.Removed)
			mv.Changes = append(mv.Changes, ch)
		}
	}
	// Sets of the plan in force that nothing maps to any more.
	for _, c := range current.Classes {
		if !slices.ContainsFunc(pl.units, func(u *unit) bool { return u.isClass() && u.name == c.Name }) {
			mv.Changes = append(mv.Changes, Change{Kind: "class", Name: c.Name, Removed: slices.Sorted(slices.Values(c.Replicas))})
		}
	}
	for _, o := range current.Objects {
		if !slices.ContainsFunc(pl.units, func(u *unit) bool { return !u.isClass() && u.name == o.Namespace+":"+o.Key }) {
			mv.Changes = append(mv.Changes, Change{Kind: "object", Name: o.Namespace + ":" + o.Key, Removed: slices.Sorted(slices.Values(o.Replicas))})
		}
	}
	slices.SortStableFunc(mv.Changes, func(a, b Change) int { return cmp.Compare(b.Bytes, a.Bytes) })
	pl.moves = mv
	return pl.finish()
}

// charge adds (sign +1) or removes u's bytes on set's edges.
func (pl *placer) charge(u *unit, set []int, sign int64) {
	for _, e := range set {
		if pl.residual[e] != math.MaxInt64 {
			pl.residual[e] -= sign * u.bytes
		}
	}
}

// repair turns u's current set into one that meets k, capacity and the
// fault-domain spread with as few new edges as it can: it keeps the
// current edges that still fit, drops the least useful when there are too
// many or their fault domains repeat, then adds greedily.
func (pl *placer) repair(u *unit, cur []int) []int {
	k := pl.kFor(u)
	need := pl.needFD(k)
	allowed, _ := pl.allowed(u)
	keep := make([]int, 0, len(cur))
	for _, e := range cur {
		if allowed[e] {
			keep = append(keep, e)
		}
	}
	s := newSearch(pl.in, u.w, u.mult, k, need, allowed)
	// Drop the cheapest-to-lose edge while the set is too big or cannot
	// reach the spread by filling its free slots.
	for len(keep) > 0 && (len(keep) > k || s.fdCount(keep)+k-len(keep) < need) {
		dupFD := len(keep) <= k // only edges sharing a fault domain help the spread
		bestI, bestCost := -1, math.Inf(1)
		for i, e := range keep {
			if dupFD {
				shared := false
				for _, f := range keep {
					shared = shared || (f != e && pl.in.fd[f] == pl.in.fd[e])
				}
				if !shared {
					continue
				}
			}
			rest := append(append([]int(nil), keep[:i]...), keep[i+1:]...)
			if c := pl.unitCost(u, rest); c < bestCost || len(rest) == 0 {
				bestI, bestCost = i, c
			}
		}
		if bestI < 0 {
			break
		}
		keep = append(keep[:bestI], keep[bestI+1:]...)
	}
	s.greedyFrom(keep)
	return slices.Clone(s.set)
}

// meanOf is the request-weighted mean RTT of sets, over units that have
// one.
func (pl *placer) meanOf(sets [][]int) float64 {
	in := pl.in
	total, sum := 0.0, 0.0
	for i, u := range pl.units {
		if len(sets[i]) == 0 {
			continue
		}
		w := math.Max(u.rate, 1e-9)
		mean := 0.0
		for j := range in.nJ {
			best := noReplica
			for _, e := range sets[i] {
				best = min(best, in.cost[e*in.nJ+j])
			}
			mean += u.w[j] * in.rawMs(best)
		}
		sum += w * mean
		total += w
	}
	if total == 0 {
		return 0
	}
	return sum / total
}

// bytesMoved is what placing u on final copies: for each object it
// serves, its size times the edges of final that do not hold it under
// current, plus the class's unlisted bytes for edges new to the class.
func (pl *placer) bytesMoved(u *unit, final []int, current *Plan) int64 {
	var n int64
	ids := make([]string, len(final))
	for i, e := range final {
		ids[i] = pl.in.edges[e].ID
	}
	newTo := func(held []string) int64 {
		c := int64(0)
		for _, id := range ids {
			if !slices.Contains(held, id) {
				c++
			}
		}
		return c
	}
	for _, m := range u.members {
		o := pl.cat.Objects[m]
		ns := o.Namespace
		if ns == "" {
			ns = objkey.DefaultNamespace
		}
		n += o.Size * newTo(current.ReplicasFor(ns, o.Key))
	}
	if u.isClass() {
		cl := pl.cat.Classes[u.class]
		var held []string
		for _, c := range current.Classes {
			if c.Name == cl.Name {
				held = c.Replicas
			}
		}
		n += cl.Bytes * newTo(held)
	}
	return n
}
