package placement

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
)

// smallProblem draws a problem small enough to solve exhaustively: 6 to
// 12 edges picked from the sample topology (measured RTTs included), 2 to
// 4 fault domains, 15 to 40 demand points from the sample demand, 1 to 3
// objects each in a class of its own with k of 1 to 3, sizes of 1 to 9 GB
// and capacities that often hold only one or two of them.
func smallProblem(rng *rand.Rand, top *Topology, dem []DemandPoint) Problem {
	nE := 6 + rng.IntN(7)
	nFD := 2 + rng.IntN(3)
	nObj := 1 + rng.IntN(3)
	t := &Topology{Measured: top.Measured}
	for _, x := range rng.Perm(len(top.Edges))[:nE] {
		e := top.Edges[x]
		e.FaultDomain = fmt.Sprintf("fd%d", rng.IntN(nFD))
		t.Edges = append(t.Edges, e)
	}
	var points []DemandPoint
	for _, x := range rng.Perm(len(dem))[:15+rng.IntN(26)] {
		points = append(points, dem[x])
	}
	cat := &Catalog{}
	var total int64
	for i := range nObj {
		k := 1 + rng.IntN(3)
		var aff Affinity
		if rng.IntN(2) == 0 {
			aff = Affinity{points[rng.IntN(len(points))].Region: 5 + 15*rng.Float64()}
		}
		prefix := fmt.Sprintf("c%d/", i)
		cat.Classes = append(cat.Classes, Class{Name: fmt.Sprintf("c%d", i), Prefixes: []string{prefix}, Affinity: aff, Replicas: k})
		size := int64(1+rng.IntN(9)) * 1e9
		total += size
		cat.Objects = append(cat.Objects, Object{Key: prefix + "obj", Size: size, Rate: 1 + 99*rng.Float64(), Replicas: k})
	}
	mean := float64(total) / float64(nObj)
	for i := range t.Edges {
		if rng.IntN(10) >= 3 {
			t.Edges[i].CapacityBytes = int64((0.5 + 2*rng.Float64()) * mean)
		}
	}
	return Problem{Topology: t, Demand: points, Catalog: cat}
}

// exhaustive returns the optimum of the placer's problem by enumerating
// every feasible set of every unit and every combination that fits the
// capacities (branch and bound over units, cheapest sets first), or +Inf
// when no combination is feasible.
func exhaustive(pl *placer) float64 {
	type option struct {
		set  []int
		cost float64
	}
	opts := make([][]option, len(pl.units))
	s := search{in: pl.in}
	for i, u := range pl.units {
		k := pl.kFor(u)
		var rec func(start int, set []int)
		rec = func(start int, set []int) {
			if len(set) == k {
				if s.fdCount(set) >= pl.needFD(k) {
					opts[i] = append(opts[i], option{slices.Clone(set), pl.unitCost(u, set)})
				}
				return
			}
			for e := start; e < pl.in.nE; e++ {
				rec(e+1, append(set, e))
			}
		}
		rec(0, nil)
		slices.SortFunc(opts[i], func(a, b option) int { return cmp.Compare(a.cost, b.cost) })
	}
	// bound[i]: the cheapest sets of units i.. ignoring capacity.
	bound := make([]float64, len(pl.units)+1)
	for i := len(pl.units) - 1; i >= 0; i-- {
		bound[i] = bound[i+1] + math.Inf(1)
		if len(opts[i]) > 0 {
			bound[i] = bound[i+1] + opts[i][0].cost
		}
	}
	residual := make([]int64, pl.in.nE)
	for e, ed := range pl.in.edges {
		residual[e] = ed.CapacityBytes
		if residual[e] == 0 {
			residual[e] = math.MaxInt64
		}
	}
	best := math.Inf(1)
	var rec func(i int, cost float64)
	rec = func(i int, cost float64) {
		if i == len(pl.units) {
			best = min(best, cost)
			return
		}
		u := pl.units[i]
		for _, o := range opts[i] {
			if cost+o.cost+bound[i+1] >= best {
				return // sorted: no later option can do better
			}
			fits := true
			for _, e := range o.set {
				fits = fits && residual[e] >= u.bytes
			}
			if !fits {
				continue
			}
			for _, e := range o.set {
				residual[e] -= u.bytes
			}
			rec(i+1, cost+o.cost)
			for _, e := range o.set {
				residual[e] += u.bytes
			}
		}
	}
	rec(0, 0)
	return best
}

// TestExhaustiveGap compares Solve with the exact optimum on random small
// problems with capacities and fault domains. PLACEMENT_GAP_INSTANCES and
// PLACEMENT_GAP_SEED run a longer sweep (thousands of instances take
// seconds): the default hundred is a regression check, not the whole
// evidence.
func TestExhaustiveGap(t *testing.T) {
	top, dem := loadTestdata(t)
	want := 100
	if testing.Short() {
		want = 50
	}
	var seed uint64 = 2026
	if v, err := strconv.Atoi(os.Getenv("PLACEMENT_GAP_INSTANCES")); err == nil && v > 0 {
		want = v
	}
	if v, err := strconv.ParseUint(os.Getenv("PLACEMENT_GAP_SEED"), 10, 64); err == nil {
		seed = v
	}
	rng := rand.New(rand.NewPCG(seed, 3))
	var gaps []float64
	optimal, infeasible, bound := 0, 0, 0
	worst := ""
	// Draw until enough instances have a feasible placement.
	for i := 0; len(gaps) < want && i < 2*want; i++ {
		p := smallProblem(rng, top, dem)
		cfg := DefaultConfig()
		cfg.Seed = int64(i)
		pl, err := newPlacer(p, cfg)
		if err != nil {
			t.Fatal(err)
		}
		opt := exhaustive(pl)
		res, err := Solve(context.Background(), p, cfg)
		if math.IsInf(opt, 1) {
			infeasible++
			if !errors.Is(err, ErrInfeasible) {
				t.Errorf("instance %d: no feasible placement exists, Solve returned %v", i, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("instance %d: optimum %.4g exists, Solve: %v", i, opt, err)
			continue
		}
		for _, u := range pl.units {
			bound = max(bound, u.k)
		}
		gap := res.objective/opt - 1
		if gap < -1e-9 {
			t.Errorf("instance %d: Solve %.6g below the optimum %.6g: the enumeration is wrong", i, res.objective, opt)
		}
		gap = max(gap, 0)
		if gap < 1e-9 {
			optimal++
		}
		if gap > 0 && (len(gaps) == 0 || gap > slices.Max(gaps)) {
			worst = fmt.Sprintf(" (instance %d: %d edges, %d sets)", i, len(p.Topology.Edges), len(pl.units))
		}
		gaps = append(gaps, gap)
	}
	if len(gaps) < want {
		t.Fatalf("only %d feasible instances", len(gaps))
	}
	mean, median, worstGap := gapStats(gaps)
	over := 0
	for _, g := range gaps {
		if g > 0.05 {
			over++
		}
	}
	t.Logf("exhaustive optimum vs Solve on %d feasible instances, seed %d (%d infeasible ones refused, k ≤ %d): optimal in %d, gap mean %.4f%%, median %.4f%%, max %.3f%%%s, %d over 5%%",
		len(gaps), seed, infeasible, bound, optimal, 100*mean, 100*median, 100*worstGap, worst, over)
	if mean > 0.01 || worstGap > 0.05 {
		t.Errorf("gap mean %.3f%%, max %.3f%%: want ≤ 1%% and ≤ 5%%", 100*mean, 100*worstGap)
	}
}

func gapStats(xs []float64) (mean, median, maxV float64) {
	s := slices.Clone(xs)
	slices.Sort(s)
	for _, x := range s {
		mean += x
	}
	return mean / float64(len(s)), s[len(s)/2], s[len(s)-1]
}

// baseline places units in priority order with pick choosing each set
// among the edges with room, and returns the placer.
func baseline(t *testing.T, p Problem, cfg Config, pick func(pl *placer, u *unit, allowed []bool) []int) *placer {
	t.Helper()
	pl, err := newPlacer(p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range pl.order {
		allowed, _ := pl.allowed(u)
		pl.commit(u, pick(pl, u, allowed))
	}
	return pl
}

// pickSpread takes edges from cands in order, skipping those that would
// leave the fault-domain spread unreachable.
func pickSpread(pl *placer, u *unit, cands []int) []int {
	k, need := pl.kFor(u), pl.needFD(pl.kFor(u))
	s := search{in: pl.in}
	var set []int
	for _, e := range cands {
		if len(set) == k {
			break
		}
		if slices.Contains(set, e) {
			continue
		}
		n := s.fdCount(append(slices.Clone(set), e))
		if n+k-len(set)-1 >= need {
			set = append(set, e)
		}
	}
	return set
}

// randomPick is the random baseline: any k edges with room, spread over
// the fault domains.
func randomPick(rng *rand.Rand) func(pl *placer, u *unit, allowed []bool) []int {
	return func(pl *placer, u *unit, allowed []bool) []int {
		var cands []int
		for _, e := range rng.Perm(pl.in.nE) {
			if allowed[e] {
				cands = append(cands, e)
			}
		}
		return pickSpread(pl, u, cands)
	}
}

// nearestHeaviest is the "put it where the demand is" baseline: the
// edge nearest to the unit's heaviest demand point, then to the next
// heaviest, and so on.
func nearestHeaviest(pl *placer, u *unit, allowed []bool) []int {
	in := pl.in
	points := make([]int, in.nJ)
	for j := range points {
		points[j] = j
	}
	slices.SortStableFunc(points, func(a, b int) int { return cmp.Compare(u.w[b], u.w[a]) })
	var cands []int
	for _, j := range points {
		best, be := noReplica, -1
		for e := range in.nE {
			if c := in.cost[e*in.nJ+j]; allowed[e] && !slices.Contains(cands, e) && c < best {
				best, be = c, e
			}
		}
		if be >= 0 {
			cands = append(cands, be)
		}
	}
	return pickSpread(pl, u, cands)
}

// greedyOnly is Solve without local search, to show what the swaps add.
func greedyOnly(pl *placer, u *unit, allowed []bool) []int {
	k := pl.kFor(u)
	s := newSearch(pl.in, u.w, u.mult, k, pl.needFD(k), allowed)
	s.greedy()
	return slices.Clone(s.set)
}

// TestBaselines prints the objective of Solve next to simple baselines,
// on the sample topology and demand with a generated catalog, and on the
// random small problems; Solve must beat each of them.
func TestBaselines(t *testing.T) {
	top, dem := loadTestdata(t)
	objects := 1000
	if testing.Short() {
		objects = 300
	}
	sample := Problem{Topology: top, Demand: dem, Catalog: GenerateCatalog(GenConfig{Objects: objects, Regions: regionsOf(dem), Seed: 7})}
	cfg := DefaultConfig()
	cfg.ReplicaRate = 20

	type row struct {
		name string
		ms   float64
	}
	measure := func(p Problem, cfg Config, draws int) []row {
		res, err := Solve(context.Background(), p, cfg)
		if err != nil {
			t.Fatal(err)
		}
		rows := []row{{"greedy + swap local search (Solve)", res.MeanRTTMs}}
		g := baseline(t, p, cfg, greedyOnly)
		rows = append(rows, row{"greedy alone", g.meanOf(g.sets)})
		nh := baseline(t, p, cfg, nearestHeaviest)
		rows = append(rows, row{"nearest to the heaviest demand", nh.meanOf(nh.sets)})
		rnd := 0.0
		for d := range draws {
			r := baseline(t, p, cfg, randomPick(rand.New(rand.NewPCG(uint64(d), 9))))
			rnd += r.meanOf(r.sets) / float64(draws)
		}
		rows = append(rows, row{fmt.Sprintf("random (mean of %d draws)", draws), rnd})
		return rows
	}
	report := func(title string, rows []row) {
		var b strings.Builder
		tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "method\tmean RTT ms\tvs Solve\t\n")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%.2f\t%+.1f%%\t\n", r.name, r.ms, 100*(r.ms/rows[0].ms-1))
		}
		tw.Flush()
		t.Logf("%s\n%s", title, b.String())
		for _, r := range rows[1:] {
			if r.ms < rows[0].ms*(1-1e-9) {
				t.Errorf("%s: baseline %q (%.3f ms) beats Solve (%.3f ms)", title, r.name, r.ms, rows[0].ms)
			}
		}
	}
	report(fmt.Sprintf("sample topology (%d edges), demand (%d metros), %d generated objects, k 2 to 4:", len(top.Edges), len(dem), objects), measure(sample, cfg, 10))

	// Random small problems: sum each method's objective over those that
	// every method can place.
	rng := rand.New(rand.NewPCG(2026, 4))
	sums := map[string]float64{}
	var names []string
	count := 0
	for range 25 {
		p := smallProblem(rng, top, dem)
		if _, err := Solve(context.Background(), p, DefaultConfig()); err != nil {
			continue
		}
		rows := measure(p, DefaultConfig(), 10)
		ok := true
		for _, r := range rows {
			ok = ok && !math.IsInf(r.ms, 0) && !math.IsNaN(r.ms)
		}
		if !ok {
			continue
		}
		count++
		for _, r := range rows {
			if _, seen := sums[r.name]; !seen {
				names = append(names, r.name)
			}
			sums[r.name] += r.ms
		}
	}
	var rows []row
	for _, n := range names {
		rows = append(rows, row{n, sums[n] / float64(count)})
	}
	report(fmt.Sprintf("random small problems (%d, mean of each method's objective):", count), rows)
}
