package placement

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
)

// noReplica stands in for "no replica yet" in the nearest-distance arrays:
// larger than any latency, small enough that weight × it stays finite.
// Differences with it are taken in float64: in float32, 1e9 − 80 is 1e9.
const noReplica = float32(1e9)

// search finds a replica set of size k for one demand shape: greedy
// construction, then best-improvement swap local search, then seeded
// restarts when the instance is small. The objective is Σ_j w_j ·
// min_{e∈S} cost[e][j]; constraints are the allowed edges (capacity) and
// the fault-domain spread. All tie-breaks go to the lower edge index, so
// the result depends only on the inputs and the seed.
type search struct {
	in *instance
	w  []float64
	// mult, when set, is w as per-region multipliers of the base weights
	// (w_j = base_j · mult[region_j]), which makes the first greedy step
	// cheap.
	mult    []float64
	k       int
	needFD  int    // distinct fault domains a full set must span
	allowed []bool // edges the unit fits on

	// For the current set: per demand point, the nearest and second
	// nearest latency and the position in set of the nearest.
	set    []int
	d1, d2 []float32
	n1     []uint8
	cost   float64

	// Per-candidate scratch, indexed by edge.
	candCost []float64
	candOut  []int16

	// onSwap, when set, sees every swap local search makes.
	onSwap func(next []int)

	// fixed, when set, is a cost per edge of holding it, added to the
	// objective: a re-plan's churn penalty on edges that do not hold the
	// content yet, or the price of an edge's capacity while units compete
	// for it.
	fixed []float64
}

func newSearch(in *instance, w, mult []float64, k, needFD int, allowed []bool) *search {
	return &search{
		in: in, w: w, mult: mult, k: k, needFD: needFD, allowed: allowed,
		d1:       make([]float32, in.nJ),
		d2:       make([]float32, in.nJ),
		n1:       make([]uint8, in.nJ),
		candCost: make([]float64, in.nE),
		candOut:  make([]int16, in.nE),
	}
}

// penaltyOf is the fixed cost of holding the set.
func (s *search) penaltyOf(set []int) float64 {
	p := 0.0
	if s.fixed != nil {
		for _, e := range set {
			p += s.fixed[e]
		}
	}
	return p
}

// reset makes set the current set and recomputes the nearest arrays.
func (s *search) reset(set []int) {
	s.set = append(s.set[:0], set...)
	in := s.in
	for j := range s.d1 {
		s.d1[j], s.d2[j], s.n1[j] = noReplica, noReplica, 0
	}
	for i, e := range s.set {
		row := in.row(e)
		for j, c := range row {
			switch {
			case c < s.d1[j]:
				s.d2[j], s.d1[j], s.n1[j] = s.d1[j], c, uint8(i)
			case c < s.d2[j]:
				s.d2[j] = c
			}
		}
	}
	s.cost = 0
	for j, c := range s.d1 {
		s.cost += s.w[j] * float64(c)
	}
	s.cost += s.penaltyOf(s.set)
}

// fdCount is the number of distinct fault domains in set.
func (s *search) fdCount(set []int) int {
	n := 0
	for i, e := range set {
		dup := false
		for _, f := range set[:i] {
			if s.in.fd[f] == s.in.fd[e] {
				dup = true
				break
			}
		}
		if !dup {
			n++
		}
	}
	return n
}

func (s *search) inSet(e int) bool { return slices.Contains(s.set, e) }

// bestAdd returns the candidate whose addition lowers the cost most,
// among edges accepted by ok, or -1.
func (s *search) bestAdd(ok func(e int) bool) int {
	in := s.in
	if len(s.set) == 0 && s.mult != nil {
		// From an empty set the cost of e is Σ_j w_j c_ej, and w_j is the
		// base weight times a per-region multiplier: per-region sums of
		// base-weighted latencies, computed once per instance, give it in
		// (regions) steps instead of (demand points).
		for e := range in.nE {
			s.candCost[e] = math.Inf(-1)
			if !ok(e) {
				continue
			}
			sums := in.regionCost[e*len(in.regions) : (e+1)*len(in.regions)]
			c := 0.0
			for r, m := range s.mult {
				c += m * sums[r]
			}
			if s.fixed != nil {
				c += s.fixed[e]
			}
			s.candCost[e] = -c
		}
	} else {
		in.parallel(in.nE, in.nE*in.nJ, func(lo, hi int) {
			d1 := s.d1[:in.nJ]
			w := s.w[:in.nJ]
			for e := lo; e < hi; e++ {
				if !ok(e) || s.inSet(e) {
					s.candCost[e] = math.Inf(-1)
					continue
				}
				// Only points nearer to e than to the set change; most
				// of a row is skipped on one comparison.
				gain := 0.0
				for j, c := range in.row(e) {
					if x := d1[j]; c < x {
						gain += w[j] * (float64(x) - float64(c))
					}
				}
				if s.fixed != nil {
					gain -= s.fixed[e]
				}
				s.candCost[e] = gain
			}
		})
	}
	best, bestGain := -1, math.Inf(-1)
	for e, g := range s.candCost {
		if g > bestGain {
			best, bestGain = e, g
		}
	}
	return best
}

// greedy builds a set from scratch: see greedyFrom.
func (s *search) greedy() { s.greedyFrom(nil) }

// greedyFrom completes start: each step adds the edge that lowers
// the cost most, among allowed edges that keep the fault-domain spread
// reachable. When that runs out it relaxes, in order, the spread and then
// capacity, so the result always has k edges (when the topology has k)
// and the caller reports what it had to give up.
func (s *search) greedyFrom(start []int) {
	s.reset(start)
	for len(s.set) < s.k {
		used := s.fdCount(s.set)
		left := s.k - len(s.set) - 1
		spreadOK := func(e int) bool {
			n := used
			if !s.hasFD(s.set, s.in.fd[e]) {
				n++
			}
			return n+left >= s.needFD
		}
		e := s.bestAdd(func(e int) bool { return s.allowed[e] && spreadOK(e) })
		if e < 0 {
			e = s.bestAdd(func(e int) bool { return s.allowed[e] })
		}
		if e < 0 {
			e = s.bestAdd(func(int) bool { return true })
		}
		if e < 0 {
			break
		}
		s.reset(append(slices.Clone(s.set), e))
	}
}

func (s *search) hasFD(set []int, fd int32) bool {
	for _, e := range set {
		if s.in.fd[e] == fd {
			return true
		}
	}
	return false
}

// localSearch applies the best improving swap (one edge out, one in) until
// none improves the cost. A swap may not bring in an edge the unit does
// not fit on, and may not lower the fault-domain spread below the
// requirement (or below what the set already has, if it falls short).
func (s *search) localSearch() {
	if len(s.set) == 0 {
		return
	}
	in := s.in
	k := len(s.set)
	// A bound on iterations guards against cycling on float noise; every
	// accepted swap lowers the cost by a relative 1e-12 at least.
	for iter := 0; iter < 50*k+100; iter++ {
		spreadNow := s.fdCount(s.set)
		needSpread := min(s.needFD, spreadNow)
		// Without position i: the fault domains left and whether each
		// domain is still present.
		without := make([][]int, k)
		spreadWithout := make([]int, k)
		for i := range s.set {
			without[i] = append(append([]int(nil), s.set[:i]...), s.set[i+1:]...)
			spreadWithout[i] = s.fdCount(without[i])
		}
		// removal[i]: what removing set[i] alone costs, summed over the
		// points it is nearest to.
		removal := make([]float64, k)
		for j, x := range s.d1 {
			removal[s.n1[j]] += s.w[j] * (float64(s.d2[j]) - float64(x))
		}
		pen := s.penaltyOf(s.set)
		base := s.cost - pen
		in.parallel(in.nE, in.nE*in.nJ, func(lo, hi int) {
			relief := make([]float64, k)
			for e := lo; e < hi; e++ {
				s.candCost[e] = math.Inf(1)
				if !s.allowed[e] || s.inSet(e) {
					continue
				}
				clear(relief)
				// gain: what adding e saves. relief[i]: how much of
				// removal[i] e takes back, from the points nearer to e than
				// to their second-nearest replica. Points farther than that
				// change nothing and cost one comparison.
				gain := 0.0
				row := in.row(e)
				d1, d2, n1, w := s.d1[:len(row)], s.d2[:len(row)], s.n1[:len(row)], s.w[:len(row)]
				for j, c := range row {
					y := d2[j]
					if c >= y {
						continue
					}
					x := d1[j]
					if c < x {
						gain += w[j] * (float64(x) - float64(c))
						relief[n1[j]] += w[j] * (float64(y) - float64(x))
					} else {
						relief[n1[j]] += w[j] * (float64(y) - float64(c))
					}
				}
				best, bestI := math.Inf(1), -1
				for i := range k {
					sp := spreadWithout[i]
					if !s.hasFD(without[i], in.fd[e]) {
						sp++
					}
					if sp < needSpread {
						continue
					}
					c := base - gain + removal[i] - relief[i]
					if s.fixed != nil {
						c += pen - s.fixed[s.set[i]] + s.fixed[e]
					}
					if c < best {
						best, bestI = c, i
					}
				}
				s.candCost[e] = best
				s.candOut[e] = int16(bestI)
			}
		})
		bestE, bestCost := -1, s.cost
		for e, c := range s.candCost {
			if c < bestCost-1e-12*math.Abs(s.cost) {
				bestE, bestCost = e, c
			}
		}
		if bestE < 0 {
			return
		}
		next := slices.Clone(s.set)
		next[s.candOut[bestE]] = bestE
		s.reset(next)
		if s.onSwap != nil {
			s.onSwap(next)
		}
	}
}

// solve runs greedy and local search, then restarts: from greedy
// constructions forced to start at each of the next-best single edges,
// then from random feasible sets drawn from rng, keeping the best. Swaps
// that would break the fault-domain spread are not moves, so a set can be
// stuck one infeasible step from a better one; other starting points get
// around that on small instances, where they are cheap.
func (s *search) solve(rng *rand.Rand, restarts int) []int {
	s.greedy()
	s.localSearch()
	best, bestCost := slices.Clone(s.set), s.cost
	if rng == nil || len(s.set) < s.k || restarts <= 0 {
		return best
	}
	try := func(start []int) {
		s.reset(start)
		s.localSearch()
		if s.cost < bestCost-1e-12*math.Abs(bestCost) {
			best, bestCost = slices.Clone(s.set), s.cost
		}
	}
	// The first edges greedy did not start from, best alone first.
	first := best[0]
	s.reset(nil)
	s.bestAdd(func(e int) bool { return s.allowed[e] })
	var firsts []int
	for e, g := range s.candCost {
		if e != first && !math.IsInf(g, -1) {
			firsts = append(firsts, e)
		}
	}
	slices.SortStableFunc(firsts, func(a, b int) int { return cmp.Compare(s.candCost[b], s.candCost[a]) })
	for _, e := range firsts[:min(len(firsts), restarts)] {
		s.greedyFrom([]int{e})
		if len(s.set) == s.k && s.fdCount(s.set) >= s.needFD {
			try(slices.Clone(s.set))
		}
	}
	for range restarts {
		start := s.randomStart(rng)
		if start == nil {
			break
		}
		try(start)
	}
	s.reset(best)
	return best
}

// randomStart draws a feasible set: allowed edges in random order, taken
// when they keep the spread reachable. nil when none is found.
func (s *search) randomStart(rng *rand.Rand) []int {
	var cand []int
	for e := range s.in.nE {
		if s.allowed[e] {
			cand = append(cand, e)
		}
	}
	rng.Shuffle(len(cand), func(i, j int) { cand[i], cand[j] = cand[j], cand[i] })
	var set []int
	for _, e := range cand {
		if len(set) == s.k {
			break
		}
		n := s.fdCount(set)
		if !s.hasFD(set, s.in.fd[e]) {
			n++
		}
		if n+s.k-len(set)-1 >= s.needFD {
			set = append(set, e)
		}
	}
	if len(set) < s.k {
		return nil
	}
	return set
}
