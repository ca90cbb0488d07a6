package placement

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
)

// Solve computes a placement for p. It never reads the clock or the
// network; the same problem, configuration and seed give the same plan.
// Constraints that cannot be met give an error wrapping ErrInfeasible (an
// *InfeasibleError listing them all), or, with cfg.BestEffort, a plan
// whose Violations list them.
func Solve(ctx context.Context, p Problem, cfg Config) (*Result, error) {
	pl, err := newPlacer(p, cfg)
	if err != nil {
		return nil, err
	}
	for _, u := range pl.order {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		pl.place(u)
	}
	if err := pl.resolveContention(ctx); err != nil {
		return nil, err
	}
	if err := pl.priceCapacity(ctx); err != nil {
		return nil, err
	}
	if err := pl.shuffleOrders(ctx); err != nil {
		return nil, err
	}
	return pl.finish()
}

// placer holds the state of one planning run: the units, their sets and
// the capacity left on each edge.
type placer struct {
	in    *instance
	cfg   Config
	cat   *Catalog
	units []*unit
	order []*unit // priority order
	index map[*unit]int
	sets  [][]int // per unit (index in units)
	// constrained marks units whose search had edges ruled out by
	// capacity.
	constrained []bool
	residual    []int64 // per edge; math.MaxInt64 when unlimited
	free        [][]int // per unit, freeSet's answer
	cache       map[cacheKey][]int
	moves       *Moves // re-plan only
}

// cacheKey identifies a search whose answer another unit can reuse: same
// demand shape, same k, nothing excluded by capacity.
type cacheKey struct {
	w *float64
	k int
}

func newPlacer(p Problem, cfg Config) (*placer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	in, err := newInstance(p, cfg)
	if err != nil {
		return nil, err
	}
	cat := p.Catalog
	if cat == nil {
		cat = defaultCatalog()
	}
	if len(cat.Classes) == 0 {
		return nil, fmt.Errorf("catalog has no classes")
	}
	units, err := buildUnits(in, cat, cfg)
	if err != nil {
		return nil, err
	}
	pl := &placer{
		in: in, cfg: cfg, cat: cat, units: units, order: priority(units),
		index:       make(map[*unit]int, len(units)),
		sets:        make([][]int, len(units)),
		constrained: make([]bool, len(units)),
		residual:    make([]int64, in.nE),
		free:        make([][]int, len(units)),
		cache:       map[cacheKey][]int{},
	}
	for i, u := range units {
		pl.index[u] = i
	}
	for e, ed := range in.edges {
		pl.residual[e] = ed.CapacityBytes
		if ed.CapacityBytes == 0 {
			pl.residual[e] = math.MaxInt64
		}
	}
	return pl, nil
}

// kFor is the replica count a unit gets: its k, or every edge when the
// topology has fewer (a violation reported by finish).
func (pl *placer) kFor(u *unit) int { return min(u.k, pl.in.nE) }

// needFD is the fault-domain spread a set of k edges must have.
func (pl *placer) needFD(k int) int { return min(k, pl.in.nFD) }

func (pl *placer) allowed(u *unit) (allowed []bool, excluded bool) {
	allowed = make([]bool, pl.in.nE)
	for e := range allowed {
		allowed[e] = pl.residual[e] >= u.bytes
		excluded = excluded || !allowed[e]
	}
	return allowed, excluded
}

func (pl *placer) rng(u *unit) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(pl.cfg.Seed), uint64(pl.index[u])+1))
}

func (pl *placer) restarts(in *instance) int {
	if pl.cfg.Restarts < 0 || in.nJ*in.nE > pl.cfg.RestartWork {
		return 0
	}
	return pl.cfg.Restarts
}

// place finds a set for u under the capacity left and commits it, reusing
// the set of an earlier unit with the same demand and k when it fits.
func (pl *placer) place(u *unit) {
	i := pl.index[u]
	k := pl.kFor(u)
	allowed, excluded := pl.allowed(u)
	pl.constrained[i] = excluded
	key := cacheKey{&u.w[0], k}
	if set, ok := pl.cache[key]; ok && pl.fits(u, set) {
		pl.commit(u, slices.Clone(set))
		return
	}
	set := pl.search(u, allowed, nil, pl.rng(u), nil)
	if !excluded {
		pl.cache[key] = slices.Clone(set)
	}
	pl.commit(u, set)
}

// search finds a set for u among allowed edges: local search from warm
// when given, else greedy construction, local search and (small problems)
// seeded restarts from rng. Large demand is searched coarse first, then
// finished on the full demand.
func (pl *placer) search(u *unit, allowed []bool, warm []int, rng *rand.Rand, fixed []float64) []int {
	in := pl.in
	k := pl.kFor(u)
	s := newSearch(in, u.w, u.mult, k, pl.needFD(k), allowed)
	s.fixed = fixed
	if warm != nil {
		s.reset(warm)
		s.localSearch()
		return slices.Clone(s.set)
	}
	if in.coarse == nil {
		return s.solve(rng, pl.restarts(in))
	}
	cs := newSearch(in.coarse, in.coarseWeights(u.w), u.mult, k, pl.needFD(k), allowed)
	cs.fixed = fixed
	s.reset(cs.solve(rng, pl.restarts(in.coarse)))
	s.localSearch()
	return slices.Clone(s.set)
}

func (pl *placer) fits(u *unit, set []int) bool {
	for _, e := range set {
		if pl.residual[e] < u.bytes {
			return false
		}
	}
	return true
}

func (pl *placer) commit(u *unit, set []int) {
	pl.sets[pl.index[u]] = set
	for _, e := range set {
		if pl.residual[e] != math.MaxInt64 {
			pl.residual[e] -= u.bytes
		}
	}
}

func (pl *placer) release(u *unit) {
	for _, e := range pl.sets[pl.index[u]] {
		if pl.residual[e] != math.MaxInt64 {
			pl.residual[e] += u.bytes
		}
	}
	pl.sets[pl.index[u]] = nil
}

// unitCost is u's share of the objective under set: its request rate
// times its demand-weighted latency (rate 0 still counts a little, so such
// content is not placed arbitrarily when it competes for space).
func (pl *placer) unitCost(u *unit, set []int) float64 {
	if len(set) == 0 {
		return math.Inf(1)
	}
	in := pl.in
	sum := 0.0
	for j := range in.nJ {
		best := noReplica
		for _, e := range set {
			best = min(best, in.cost[e*in.nJ+j])
		}
		sum += u.w[j] * float64(best)
	}
	return math.Max(u.rate, 1e-9) * sum
}

// resolveContention improves on the order-dependence of placing units one
// by one. A unit that capacity held back from a better set, or that could
// not meet its constraints at all, tries giving way: a unit occupying an
// edge it could not use is re-placed after it (and, if that one then
// breaks a constraint, it may push one of its own blockers in turn: an
// ejection chain of depth 2). A change is kept when fewer constraints are
// broken, or as many and the objective of the units it touched falls.
// Rounds repeat while something improves (at most 4).
func (pl *placer) resolveContention(ctx context.Context) error {
	for round := 0; round < 4; round++ {
		improved := false
		for _, u := range pl.order {
			if err := ctx.Err(); err != nil {
				return err
			}
			i := pl.index[u]
			broken := pl.shortfalls(u) > 0
			if !pl.constrained[i] && !broken {
				continue
			}
			var wanted []int // edges u cannot use and would like to
			if !broken {
				free := pl.freeSet(u)
				if pl.unitCost(u, free) >= pl.unitCost(u, pl.sets[i])*(1-1e-9) {
					pl.constrained[i] = false
					continue
				}
				for _, e := range free {
					if !slices.Contains(pl.sets[i], e) && pl.residual[e] < u.bytes {
						wanted = append(wanted, e)
					}
				}
			}
			for _, v := range pl.blockers(u, wanted) {
				if pl.tryReorder(u, v) {
					improved = true
					if pl.shortfalls(u) == 0 && !pl.constrained[i] {
						break
					}
				}
			}
		}
		if !improved {
			break
		}
	}
	return nil
}

// blockers returns the units holding the edges in wanted, or, when wanted
// is nil, any edge u has no room on.
func (pl *placer) blockers(u *unit, wanted []int) []*unit {
	if wanted == nil {
		for e := range pl.in.nE {
			if pl.residual[e] < u.bytes || pl.residual[e] < 0 {
				wanted = append(wanted, e)
			}
		}
	}
	var out []*unit
	for _, e := range wanted {
		for _, v := range pl.order {
			if v != u && v.bytes > 0 && slices.Contains(pl.sets[pl.index[v]], e) && !slices.Contains(out, v) {
				out = append(out, v)
			}
		}
	}
	return out
}

// snapshot is the placer's mutable state, to undo a trial.
type snapshot struct {
	sets        [][]int
	residual    []int64
	constrained []bool
}

func (pl *placer) snapshot() snapshot {
	return snapshot{slices.Clone(pl.sets), slices.Clone(pl.residual), slices.Clone(pl.constrained)}
}

func (pl *placer) restore(s snapshot) {
	copy(pl.sets, s.sets)
	copy(pl.residual, s.residual)
	copy(pl.constrained, s.constrained)
}

// touched records, for the units a trial changes, their broken
// constraints and cost before it, in the order first touched.
type touched struct {
	units []*unit
	bad   []int
	cost  []float64
}

func (t *touched) add(pl *placer, us ...*unit) {
	for _, u := range us {
		if !slices.Contains(t.units, u) {
			t.units = append(t.units, u)
			t.bad = append(t.bad, pl.shortfalls(u))
			t.cost = append(t.cost, pl.unitCost(u, pl.sets[pl.index[u]]))
		}
	}
}

// better reports whether the touched units now break fewer constraints,
// or as many at a lower cost.
func (t *touched) better(pl *placer) bool {
	badBefore, badAfter := 0, 0
	before, after := 0.0, 0.0
	for i, u := range t.units {
		badBefore += t.bad[i]
		before += t.cost[i]
		badAfter += pl.shortfalls(u)
		after += pl.unitCost(u, pl.sets[pl.index[u]])
	}
	return badAfter < badBefore || badAfter == badBefore && after < before*(1-1e-9)
}

// tryReorder re-places u and then v (see reorder), keeping the result when
// it is better and restoring the previous state otherwise.
func (pl *placer) tryReorder(u, v *unit) bool {
	snap := pl.snapshot()
	var t touched
	pl.reorder(u, v, 1, &t)
	if t.better(pl) {
		return true
	}
	pl.restore(snap)
	return false
}

// reorder re-places u, then v. If v is left breaking a constraint and
// depth allows, v gives way to one of its own blockers the same way,
// whichever first leaves the two of them better off.
func (pl *placer) reorder(u, v *unit, depth int, t *touched) {
	t.add(pl, u, v)
	pl.release(u)
	pl.release(v)
	pl.place(u)
	pl.place(v)
	if depth == 0 || pl.shortfalls(v) == 0 {
		return
	}
	for _, w := range pl.blockers(v, nil) {
		if slices.Contains(t.units, w) {
			continue
		}
		snap := pl.snapshot()
		var sub touched
		pl.reorder(v, w, depth-1, &sub)
		if sub.better(pl) {
			t.add(pl, w) // w's state before is in sub; record it from there
			t.bad[len(t.bad)-1], t.cost[len(t.cost)-1] = sub.bad[slices.Index(sub.units, w)], sub.cost[slices.Index(sub.units, w)]
			return
		}
		pl.restore(snap)
	}
}

// priceCapacity improves a plan that capacity shaped, by Lagrangian
// relaxation of the capacity constraints, over the units that compete:
// those breaking a constraint or kept from a better set by others' use of
// space, and the units holding the edges they want. Each edge gets a price
// per byte; every competing unit then picks its set alone, paying the
// prices, as if the others took no space; edges left overfull get dearer,
// those with room cheaper (subgradient steps, Polyak's rule); and each
// round a feasible plan is built by placing the competing units in
// priority order (reversed every other round) at those prices, within the
// space left. Prices steer content that gains little from a contested edge
// away from it, which placing units one by one cannot see. The best plan
// found (fewest broken constraints, then lowest objective) is kept; the
// plan from before is one of the candidates, so the phase never makes
// things worse. It stops after CapacityRounds rounds, or once it has
// searched about capacityWork (edge, demand point) pairs.
func (pl *placer) priceCapacity(ctx context.Context) error {
	if pl.cfg.CapacityRounds <= 0 {
		return nil
	}
	group := pl.competing()
	if len(group) == 0 {
		return nil
	}
	in := pl.in
	best := pl.snapshot()
	bestBad, bestCost := pl.totals()
	// Space the units outside the group hold stays theirs.
	space := make([]float64, in.nE)
	for e, ed := range in.edges {
		space[e] = math.Inf(1)
		if ed.CapacityBytes > 0 {
			space[e] = float64(ed.CapacityBytes)
		}
	}
	for i, u := range pl.units {
		if !slices.Contains(group, u) {
			for _, e := range pl.sets[i] {
				space[e] -= float64(u.bytes)
			}
		}
	}
	lambda := make([]float64, in.nE)
	relaxed := make([][]int, len(pl.units))
	alone := make([][]bool, len(pl.units))
	for _, u := range group {
		i := pl.index[u]
		alone[i] = make([]bool, in.nE)
		for e := range in.edges {
			alone[i][e] = space[e] >= float64(u.bytes)
		}
	}
	prices := func(u *unit) []float64 {
		f := make([]float64, in.nE)
		for e := range f {
			f[e] = lambda[e] * float64(u.bytes) / math.Max(u.rate, 1e-9)
		}
		return f
	}
	alpha, bestBound, stall, work := 1.0, math.Inf(-1), 0, 0
	for round := range pl.cfg.CapacityRounds {
		if err := ctx.Err(); err != nil {
			return err
		}
		// The relaxed problem; its value bounds the group's optimum from
		// below.
		bound := 0.0
		load := make([]float64, in.nE)
		for _, u := range group {
			i := pl.index[u]
			var rng *rand.Rand
			if relaxed[i] == nil {
				rng = pl.rng(u)
			}
			relaxed[i] = pl.search(u, alone[i], relaxed[i], rng, prices(u))
			bound += pl.unitCost(u, relaxed[i])
			for _, e := range relaxed[i] {
				bound += lambda[e] * float64(u.bytes)
				load[e] += float64(u.bytes)
			}
		}
		norm := 0.0
		for e := range in.edges {
			if !math.IsInf(space[e], 1) {
				bound -= lambda[e] * space[e]
				if g := load[e] - space[e]; g > 0 || lambda[e] > 0 {
					norm += g * g
				}
			}
		}
		// A feasible plan at these prices: the group placed again, each
		// unit starting from its relaxed set's edges that still have room.
		for _, u := range group {
			pl.release(u)
		}
		order := group
		if round%2 == 1 {
			// Alternate rounds fill in reverse priority, so content
			// placed last gets first pick at the prices too.
			order = slices.Clone(group)
			slices.Reverse(order)
		}
		for _, u := range order {
			i := pl.index[u]
			allowed, excluded := pl.allowed(u)
			pl.constrained[i] = excluded
			var keep []int
			for _, e := range relaxed[i] {
				if allowed[e] {
					keep = append(keep, e)
				}
			}
			pl.commit(u, pl.complete(u, allowed, keep, prices(u)))
		}
		if bad, _ := pl.totals(); bad > 0 {
			if err := pl.resolveContention(ctx); err != nil {
				return err
			}
		}
		if bad, cost := pl.totals(); bad < bestBad || bad == bestBad && cost < bestCost*(1-1e-12) {
			best, bestBad, bestCost = pl.snapshot(), bad, cost
		}
		work += 2 * len(group) * in.nJ * in.nE
		if norm == 0 || work > capacityWork {
			break // the relaxed sets fit, or the time is spent
		}
		if bound > bestBound*(1+1e-9) {
			bestBound, stall = bound, 0
		} else if stall++; stall >= 3 {
			alpha, stall = alpha/2, 0
		}
		groupCost := 0.0
		for _, u := range group {
			groupCost += pl.unitCost(u, best.sets[pl.index[u]])
		}
		target := groupCost
		if bestBad > 0 {
			target = math.Max(groupCost, bound) * 1.05
		}
		step := alpha * math.Max(target-bound, 1e-3*math.Abs(target)) / norm
		for e := range in.edges {
			if !math.IsInf(space[e], 1) {
				lambda[e] = math.Max(0, lambda[e]+step*(load[e]-space[e]))
			}
		}
	}
	pl.restore(best)
	return nil
}

// competing returns, in priority order, the units that compete for space:
// those breaking a constraint, those whose set with only their own size
// to fit (freeSet) is better than the one they have, and the units holding
// the edges those want.
func (pl *placer) competing() []*unit {
	var group []*unit
	var wanted []int
	for _, u := range pl.order {
		i := pl.index[u]
		if pl.shortfalls(u) > 0 {
			group = append(group, u)
			for e := range pl.in.nE {
				if pl.residual[e] < u.bytes && !slices.Contains(wanted, e) {
					wanted = append(wanted, e)
				}
			}
			continue
		}
		blocked := false
		for e, ed := range pl.in.edges {
			blocked = blocked || ed.CapacityBytes >= u.bytes && pl.residual[e] < u.bytes && !slices.Contains(pl.sets[i], e)
		}
		if !blocked {
			continue
		}
		free := pl.freeSet(u)
		if pl.unitCost(u, free) >= pl.unitCost(u, pl.sets[i])*(1-1e-9) {
			continue
		}
		group = append(group, u)
		for _, e := range free {
			if !slices.Contains(pl.sets[i], e) && !slices.Contains(wanted, e) {
				wanted = append(wanted, e)
			}
		}
	}
	for _, u := range pl.order {
		if slices.Contains(group, u) || u.bytes == 0 {
			continue
		}
		if slices.ContainsFunc(pl.sets[pl.index[u]], func(e int) bool { return slices.Contains(wanted, e) }) {
			group = append(group, u)
		}
	}
	slices.SortStableFunc(group, func(a, b *unit) int { return slices.Index(pl.order, a) - slices.Index(pl.order, b) })
	return group
}

// freeSet is the set u would take if no other unit used any space, found
// once per run.
func (pl *placer) freeSet(u *unit) []int {
	i := pl.index[u]
	if pl.free[i] == nil {
		all := make([]bool, pl.in.nE)
		for e, ed := range pl.in.edges {
			all[e] = ed.CapacityBytes == 0 || ed.CapacityBytes >= u.bytes
		}
		pl.free[i] = pl.search(u, all, nil, pl.rng(u), nil)
	}
	return pl.free[i]
}

// complete finishes a set for u from keep (edges it may hold): greedy up
// to k, then local search, all at the given fixed costs.
func (pl *placer) complete(u *unit, allowed []bool, keep []int, fixed []float64) []int {
	k := pl.kFor(u)
	if len(keep) == 0 {
		return pl.search(u, allowed, nil, nil, fixed)
	}
	s := newSearch(pl.in, u.w, u.mult, k, pl.needFD(k), allowed)
	s.fixed = fixed
	s.greedyFrom(keep[:min(len(keep), k)])
	s.localSearch()
	return slices.Clone(s.set)
}

// capacityWork bounds the capacity pricing of a large problem, counted as
// one pass over the (edge, demand point) pairs per search (a search makes
// two to four): 5·10⁸ is about two rounds for 16 competing sets over
// 1,000 edges × 10,000 points, a second or two. Small problems run all
// their rounds well within it.
const capacityWork = 500_000_000

// shuffleOrders, for small problems where capacity made content compete,
// places the units again in seeded random orders (Config.Restarts of them)
// and keeps the best plan: the order decides who gets a contested edge,
// and with few units trying orders is cheap.
func (pl *placer) shuffleOrders(ctx context.Context) error {
	if !pl.contended() || pl.restarts(pl.in) == 0 || len(pl.units)*pl.in.nJ*pl.in.nE > pl.cfg.RestartWork {
		return nil
	}
	rng := rand.New(rand.NewPCG(uint64(pl.cfg.Seed), 0))
	best := pl.snapshot()
	bestBad, bestCost := pl.totals()
	for range pl.restarts(pl.in) {
		if err := ctx.Err(); err != nil {
			return err
		}
		order := slices.Clone(pl.order)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, u := range pl.units {
			pl.release(u)
		}
		for _, u := range order {
			pl.place(u)
		}
		if err := pl.resolveContention(ctx); err != nil {
			return err
		}
		if bad, cost := pl.totals(); bad < bestBad || bad == bestBad && cost < bestCost*(1-1e-12) {
			best, bestBad, bestCost = pl.snapshot(), bad, cost
		}
	}
	pl.restore(best)
	return nil
}

// contended reports whether capacity shaped the plan: some unit breaks a
// constraint, or has no room left on an edge that could hold it alone.
func (pl *placer) contended() bool {
	for i, u := range pl.units {
		if pl.shortfalls(u) > 0 {
			return true
		}
		for e, ed := range pl.in.edges {
			if ed.CapacityBytes >= u.bytes && pl.residual[e] < u.bytes && !slices.Contains(pl.sets[i], e) {
				return true
			}
		}
	}
	return false
}

// totals is the number of broken constraints and the objective over all
// units.
func (pl *placer) totals() (bad int, cost float64) {
	for i, u := range pl.units {
		bad += pl.shortfalls(u)
		cost += pl.unitCost(u, pl.sets[i])
	}
	return bad, cost
}

// shortfalls counts the constraints u's set breaks that placement can
// mend: missing replicas (beyond those the topology lacks), missing fault
// domains, edges over capacity.
func (pl *placer) shortfalls(u *unit) int {
	set := pl.sets[pl.index[u]]
	k := pl.kFor(u)
	n := k - len(set)
	s := search{in: pl.in}
	n += max(0, pl.needFD(k)-s.fdCount(set))
	for _, e := range set {
		if pl.residual[e] < 0 {
			n++
		}
	}
	return n
}

// violations lists every constraint the current sets do not meet.
func (pl *placer) violations() []Violation {
	var vs []Violation
	in := pl.in
	// The largest edge: content bigger than it fits nowhere, which is a
	// fact about the unit, not about the edges best effort put it on.
	largest := -1
	for e, ed := range in.edges {
		if ed.CapacityBytes == 0 {
			largest = -1
			break
		}
		if largest < 0 || ed.CapacityBytes > in.edges[largest].CapacityBytes {
			largest = e
		}
	}
	fitsNowhere := func(u *unit) bool { return largest >= 0 && u.bytes > in.edges[largest].CapacityBytes }
	for i, u := range pl.units {
		set := pl.sets[i]
		subject := u.label()
		if fitsNowhere(u) {
			ed := in.edges[largest]
			vs = append(vs, Violation{Constraint: "capacity", Subject: subject,
				Detail: fmt.Sprintf("%s fits on no edge: %s more than the largest capacity, %s (edge %s)%s",
					HumanBytes(u.bytes), HumanBytes(u.bytes-ed.CapacityBytes), HumanBytes(ed.CapacityBytes), ed.ID, at("; catalog entry at ", u.src))})
		}
		if len(set) < u.k {
			why := fmt.Sprintf("needs %d replicas, the topology has %d edges", u.k, in.nE)
			if in.nE >= u.k {
				why = fmt.Sprintf("needs %d replicas, only %d edges have room for %s", u.k, len(set), HumanBytes(u.bytes))
			}
			if u.fixedBy != "" {
				why += fmt.Sprintf(" (k fixed by the replicas of %s%s)", u.fixedBy, at(" at ", u.fixedAt))
			}
			vs = append(vs, Violation{Constraint: "replicas", Subject: subject, Detail: why})
		}
		s := search{in: in}
		if got, need := s.fdCount(set), pl.needFD(u.k); got < need {
			vs = append(vs, Violation{Constraint: "fault-domains", Subject: subject,
				Detail: fmt.Sprintf("replicas span %d fault domains, need %d", got, need)})
		}
	}
	for e, ed := range in.edges {
		if pl.residual[e] >= 0 {
			continue
		}
		// Content that fits nowhere is reported above; the edge is over
		// capacity only if the rest overfills it too.
		var who []string
		used := int64(0)
		for i, u := range pl.units {
			if slices.Contains(pl.sets[i], e) && u.bytes > 0 && !fitsNowhere(u) {
				who = append(who, u.label())
				used += u.bytes
			}
		}
		if used > ed.CapacityBytes {
			vs = append(vs, Violation{Constraint: "capacity", Subject: "edge " + ed.ID,
				Detail: fmt.Sprintf("%s placed, capacity %s (%s)", HumanBytes(used), HumanBytes(ed.CapacityBytes), abbreviate(who, 5))})
		}
	}
	return vs
}

func (u *unit) label() string {
	if u.isClass() {
		return "class " + u.name
	}
	return "object " + u.name
}

// at is prep followed by src ("at catalog.yaml:12"), or "" for an entry
// built in code.
func at(prep string, src source) string {
	if !src.known() {
		return ""
	}
	return prep + src.String()
}

func abbreviate(xs []string, n int) string {
	if len(xs) <= n {
		return strings.Join(xs, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(xs[:n], ", "), len(xs)-n)
}

// finish checks constraints and builds the plan and its report.
func (pl *placer) finish() (*Result, error) {
	vs := pl.violations()
	if len(vs) > 0 && !pl.cfg.BestEffort {
		return nil, &InfeasibleError{Violations: vs}
	}
	r := pl.report()
	r.Violations = vs
	r.Plan = pl.plan(r)
	r.Plan.Violations = vs
	r.Moves = pl.moves
	return r, nil
}
