package placement

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/geocdn/geocdn/internal/objkey"
)

// Explanation says why a key's replicas are where they are.
type Explanation struct {
	Namespace, Key string
	// Rule is how the plan maps the key to its set: an object entry (and
	// why the object has one), or the class whose prefix matched.
	Rule string
	// Unit is the set the key follows.
	Unit UnitReport
	// KRule says where the replication factor came from.
	KRule string
	// Demand is where the content's requests come from, by region, largest
	// first.
	Demand []RegionShare
	// Replicas explains each chosen edge.
	Replicas []ReplicaReason
	// Alternatives are the best edges not chosen, and what kept them out.
	Alternatives []Alternative
	// FaultDomains is how many distinct fault domains the set spans and
	// how many it must.
	FaultDomains, FaultDomainsNeeded int
}

// RegionShare is a region's share of a content's requests.
type RegionShare struct {
	Region string
	Share  float64
}

// ReplicaReason is one chosen edge: the demand it is nearest for and what
// losing it would cost.
type ReplicaReason struct {
	ID, Region, FaultDomain string
	// Share of the content's requests nearest to this edge, and their mean
	// RTT.
	Share, MeanMs float64
	// LossMs is how much the content's mean RTT would rise without it,
	// when another replica remains to take its requests.
	LossMs float64
	// Only marks the set's only replica: without it every request for
	// the content is a miss, served from the origin at the origin's
	// latency, which placement does not model. LossMs is then 0.
	Only bool
}

// Alternative is an edge not chosen.
type Alternative struct {
	ID, Region, FaultDomain string
	// Replacing is the chosen edge whose swap for this one costs least,
	// and DeltaMs what that swap does to the mean RTT (positive: worse).
	Replacing string
	DeltaMs   float64
	// Blocked names a constraint that rules the swap out ("no room: ...",
	// "fault domain ..."), empty when the edge is simply worse.
	Blocked string
}

// Explain says why the object key of namespace ("" is "default") is placed
// where the plan puts it. The key need not be in the catalog: it follows
// its class.
func (r *Result) Explain(namespace, key string) (*Explanation, error) {
	if err := objkey.Validate(key); err != nil {
		return nil, err
	}
	if namespace == "" {
		namespace = objkey.DefaultNamespace
	}
	pl := r.pl
	ex := &Explanation{Namespace: namespace, Key: key}
	var u *unit
	for _, v := range pl.units {
		if !v.isClass() {
			o := pl.cat.Objects[v.object]
			ns := cmp.Or(o.Namespace, objkey.DefaultNamespace)
			if ns == namespace && o.Key == key {
				u = v
			}
		}
	}
	if u != nil && slices.ContainsFunc(r.Plan.Objects, func(o PlanObject) bool { return o.Namespace == namespace && o.Key == key }) {
		ex.Rule = "object entry: among the hottest objects, it wants a different set from its class's"
		if u.fixedBy == "object "+u.name {
			ex.Rule = "object entry: its catalog entry fixes its replicas" + at(" at ", u.fixedAt)
		}
	} else {
		cname, ok := r.Plan.ClassFor(namespace, key)
		if !ok {
			return nil, fmt.Errorf("%s:%s matches no class of the plan, so the origin's static rule places it", namespace, key)
		}
		for _, v := range pl.units {
			if v.isClass() && v.name == cname {
				u = v
			}
		}
		pc := r.Plan.Classes[slices.IndexFunc(r.Plan.Classes, func(c PlanClass) bool { return c.Name == cname })]
		longest := ""
		for _, p := range pc.Prefixes {
			if len(p) >= len(longest) && len(key) >= len(p) && key[:len(p)] == p {
				longest = p
			}
		}
		ex.Rule = fmt.Sprintf("class %s, whose prefix %q is the longest matching the key", cname, longest)
	}
	i := pl.index[u]
	ex.Unit = *r.unitReport(u.name, map[bool]string{true: "class", false: "object"}[u.isClass()])

	switch {
	case u.fixedBy != "":
		ex.KRule = fmt.Sprintf("k=%d, fixed by the replicas field of %s in the catalog%s", u.k, u.fixedBy, at(" at ", u.fixedAt))
	case pl.cfg.ReplicaRate > 0 && u.isClass():
		cl := pl.cat.Classes[u.class]
		n := len(u.members)
		if cl.Bytes > 0 || cl.Rate > 0 {
			n++
		}
		ex.KRule = fmt.Sprintf("k=%d for a mean of %.4g req/s per object (%.4g req/s over %d): min %d, plus one from %.4g req/s and one per doubling, at most %d",
			u.k, u.rate/float64(max(n, 1)), u.rate, n, pl.cfg.MinReplicas, pl.cfg.ReplicaRate, pl.cfg.MaxReplicas)
	case pl.cfg.ReplicaRate > 0:
		ex.KRule = fmt.Sprintf("k=%d for %.4g req/s: min %d, plus one from %.4g req/s and one per doubling, at most %d",
			u.k, u.rate, pl.cfg.MinReplicas, pl.cfg.ReplicaRate, pl.cfg.MaxReplicas)
	default:
		ex.KRule = fmt.Sprintf("k=%d, the minimum (no replica rate configured)", u.k)
	}
	if len(pl.sets[i]) < u.k {
		ex.KRule += fmt.Sprintf("; only %d placed (see violations)", len(pl.sets[i]))
	}

	in := pl.in
	share := make([]float64, len(in.regions))
	for j := range in.nJ {
		share[in.regionOf[j]] += u.w[j]
	}
	for reg, s := range share {
		if s > 0 {
			ex.Demand = append(ex.Demand, RegionShare{in.regions[reg], s})
		}
	}
	slices.SortStableFunc(ex.Demand, func(a, b RegionShare) int { return cmp.Compare(b.Share, a.Share) })

	set := pl.sets[i]
	mean := func(set []int) float64 {
		m := 0.0
		for j := range in.nJ {
			best := noReplica
			for _, e := range set {
				best = min(best, in.cost[e*in.nJ+j])
			}
			m += u.w[j] * in.rawMs(best)
		}
		return m
	}
	now := mean(set)
	without := func(set []int, i int) []int { return append(append([]int(nil), set[:i]...), set[i+1:]...) }
	for x, e := range set {
		rr := ReplicaReason{ID: in.edges[e].ID, Region: in.edges[e].Region, FaultDomain: in.fdNames[in.fd[e]]}
		for j := range in.nJ {
			if int(r.nearest[i][j]) == e {
				rr.Share += u.w[j]
				rr.MeanMs += u.w[j] * in.rawMs(in.cost[e*in.nJ+j])
			}
		}
		if rr.Share > 0 {
			rr.MeanMs /= rr.Share
		}
		if len(set) > 1 {
			rr.LossMs = mean(without(set, x)) - now
		} else {
			rr.Only = true
		}
		ex.Replicas = append(ex.Replicas, rr)
	}
	slices.SortStableFunc(ex.Replicas, func(a, b ReplicaReason) int { return cmp.Compare(b.Share, a.Share) })

	s := search{in: in}
	need := pl.needFD(u.k)
	ex.FaultDomains, ex.FaultDomainsNeeded = s.fdCount(set), need
	for e := range in.nE {
		if slices.Contains(set, e) || len(set) == 0 {
			continue
		}
		alt := Alternative{ID: in.edges[e].ID, Region: in.edges[e].Region, FaultDomain: in.fdNames[in.fd[e]], DeltaMs: math.Inf(1)}
		bestX := 0
		for x := range set {
			next := without(set, x)
			next = append(next, e)
			if d := mean(next) - now; d < alt.DeltaMs {
				alt.DeltaMs, bestX = d, x
			}
		}
		alt.Replacing = in.edges[set[bestX]].ID
		next := append(without(set, bestX), e)
		switch {
		case pl.residual[e] < u.bytes:
			alt.Blocked = fmt.Sprintf("no room: %s free, needs %s", HumanBytes(max(pl.residual[e], 0)), HumanBytes(u.bytes))
		case s.fdCount(next) < min(need, s.fdCount(set)):
			alt.Blocked = fmt.Sprintf("fault domain %s: the set would span %d, needs %d", alt.FaultDomain, s.fdCount(next), need)
		}
		ex.Alternatives = append(ex.Alternatives, alt)
	}
	slices.SortStableFunc(ex.Alternatives, func(a, b Alternative) int { return cmp.Compare(a.DeltaMs, b.DeltaMs) })
	ex.Alternatives = ex.Alternatives[:min(len(ex.Alternatives), 5)]
	return ex, nil
}
