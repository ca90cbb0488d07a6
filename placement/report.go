package placement

import (
	"cmp"
	"math"
	"slices"

	"github.com/geocdn/geocdn/internal/objkey"
)

// Result is a plan and what the optimiser knows about it.
type Result struct {
	// Plan is what the origin applies.
	Plan *Plan
	// MeanRTTMs is the objective: request-weighted mean estimated RTT to
	// the nearest replica.
	MeanRTTMs float64
	// Units are the replica sets, in the order of the plan (classes, then
	// objects with sets of their own).
	Units []UnitReport
	// Regions gives the latency distribution per demand region.
	Regions []RegionReport
	// Edges gives what each edge holds.
	Edges []EdgeReport
	// SLOMisses lists the demand points some of whose requests miss the
	// SLO, worst first (empty without an SLO).
	SLOMisses []SLOMiss
	// Violations lists the constraints not met (best effort only).
	Violations []Violation
	// Moves describes a re-plan's changes; nil for a fresh plan.
	Moves *Moves

	pl        *placer
	objective float64 // Σ rate × demand-weighted cost, as optimised
	nearest   [][]int32
}

// UnitReport describes one replica set.
type UnitReport struct {
	// Kind is "class" or "object".
	Kind string
	// Name is the class name, or namespace:key for an object.
	Name string
	// Class is the class the unit belongs to.
	Class string
	// K is the replication factor asked for; Replicas may be shorter in a
	// best-effort plan.
	K        int
	Replicas []string
	Bytes    int64
	Rate     float64
	// Objects is the number of catalog objects the set serves.
	Objects   int
	MeanRTTMs float64
}

// RegionReport is the estimated latency seen from one demand region,
// weighted by requests.
type RegionReport struct {
	Region string
	// Share is the region's share of all requests.
	Share               float64
	P50Ms, P95Ms, MaxMs float64
	MeanMs              float64
	DemandPoints        int
}

// EdgeReport is what one edge holds.
type EdgeReport struct {
	ID, Region, FaultDomain  string
	UsedBytes, CapacityBytes int64 // CapacityBytes 0: no limit
	// Sets is the number of replica sets that include the edge.
	Sets int
	// Share is the share of all requests the edge is nearest for.
	Share float64
}

// SLOMiss is a demand point with requests estimated to miss the SLO.
type SLOMiss struct {
	Demand, Region string
	// WorstMs is the highest latency among its requests, for Unit.
	WorstMs float64
	Unit    string
	// MissedShare is the share of the point's requests over the SLO.
	MissedShare float64
}

// report evaluates the committed sets.
func (pl *placer) report() *Result {
	in := pl.in
	r := &Result{pl: pl, nearest: make([][]int32, len(pl.units))}
	totalRate := 0.0
	for _, u := range pl.units {
		totalRate += u.rate
	}
	// Weight of (unit, point) in the request-weighted statistics. Without
	// any rate (no catalog sizes) every unit counts the same.
	weight := func(u *unit) float64 {
		if totalRate > 0 {
			return u.rate / totalRate
		}
		return 1 / float64(len(pl.units))
	}

	type sample struct{ ms, w float64 }
	perRegion := make([][]sample, len(in.regions))
	edgeShare := make([]float64, in.nE)
	pointWorst := make([]float64, in.nJ)
	pointWorstUnit := make([]int, in.nJ)
	pointMissed := make([]float64, in.nJ)
	pointTotal := make([]float64, in.nJ)
	slo := pl.cfg.SLO.Seconds() * 1000
	unitMean := make([]float64, len(pl.units))

	for i, u := range pl.units {
		set := pl.sets[i]
		near := make([]int32, in.nJ)
		r.nearest[i] = near
		if len(set) == 0 {
			unitMean[i] = math.Inf(1)
			continue
		}
		uw := weight(u)
		cost, mean := 0.0, 0.0
		for j := range in.nJ {
			best, be := noReplica, set[0]
			for _, e := range set {
				if c := in.cost[e*in.nJ+j]; c < best {
					best, be = c, e
				}
			}
			near[j] = int32(be)
			ms := in.rawMs(best)
			cost += u.w[j] * float64(best)
			mean += u.w[j] * ms
			w := uw * u.w[j]
			if w <= 0 {
				continue
			}
			perRegion[in.regionOf[j]] = append(perRegion[in.regionOf[j]], sample{ms, w})
			edgeShare[be] += w
			pointTotal[j] += w
			if slo > 0 && ms > slo {
				pointMissed[j] += w
				if ms > pointWorst[j] {
					pointWorst[j], pointWorstUnit[j] = ms, i
				}
			}
		}
		unitMean[i] = mean
		r.objective += math.Max(u.rate, 1e-9) * cost
		r.MeanRTTMs += uw * mean
	}

	for reg, samples := range perRegion {
		rr := RegionReport{Region: in.regions[reg]}
		for j := range in.nJ {
			if int(in.regionOf[j]) == reg {
				rr.DemandPoints++
			}
		}
		slices.SortFunc(samples, func(a, b sample) int { return cmp.Compare(a.ms, b.ms) })
		total := 0.0
		for _, s := range samples {
			total += s.w
			rr.MeanMs += s.w * s.ms
		}
		if total > 0 {
			rr.Share = total
			rr.MeanMs /= total
			rr.P50Ms = quantile(samples, total, 0.50, func(s sample) (float64, float64) { return s.ms, s.w })
			rr.P95Ms = quantile(samples, total, 0.95, func(s sample) (float64, float64) { return s.ms, s.w })
			rr.MaxMs = samples[len(samples)-1].ms
		}
		r.Regions = append(r.Regions, rr)
	}

	for e, ed := range in.edges {
		er := EdgeReport{ID: ed.ID, Region: ed.Region, FaultDomain: in.fdNames[in.fd[e]], CapacityBytes: ed.CapacityBytes, Share: edgeShare[e]}
		for i, u := range pl.units {
			if slices.Contains(pl.sets[i], e) {
				er.Sets++
				er.UsedBytes += u.bytes
			}
		}
		r.Edges = append(r.Edges, er)
	}

	if slo > 0 {
		for j, d := range in.demand {
			if pointMissed[j] > 0 {
				r.SLOMisses = append(r.SLOMisses, SLOMiss{
					Demand: d.ID, Region: d.Region, WorstMs: pointWorst[j],
					Unit: pl.units[pointWorstUnit[j]].name, MissedShare: pointMissed[j] / pointTotal[j],
				})
			}
		}
		slices.SortStableFunc(r.SLOMisses, func(a, b SLOMiss) int { return cmp.Compare(b.WorstMs, a.WorstMs) })
	}

	// Units in plan order: classes in catalog order, then objects.
	for _, cls := range []bool{true, false} {
		for i, u := range pl.units {
			if u.isClass() != cls {
				continue
			}
			kind := "object"
			if cls {
				kind = "class"
			}
			r.Units = append(r.Units, UnitReport{
				Kind: kind, Name: u.name, Class: pl.cat.Classes[u.class].Name, K: u.k,
				Replicas: pl.orderedIDs(i), Bytes: u.bytes, Rate: u.rate,
				Objects: len(u.members), MeanRTTMs: unitMean[i],
			})
		}
	}
	return r
}

// quantile is the weighted q-quantile of sorted samples: the smallest value
// with at least q of the weight at or below it.
func quantile[S any](sorted []S, total, q float64, get func(S) (v, w float64)) float64 {
	acc := 0.0
	for _, s := range sorted {
		v, w := get(s)
		acc += w
		if acc >= q*total*(1-1e-12) {
			return v
		}
	}
	v, _ := get(sorted[len(sorted)-1])
	return v
}

// orderedIDs returns unit i's edge ids, the edge nearest to the most of
// its demand first, so a person reading the plan sees the main replica
// first.
func (pl *placer) orderedIDs(i int) []string {
	set := slices.Clone(pl.sets[i])
	in := pl.in
	share := map[int]float64{}
	u := pl.units[i]
	for j := range in.nJ {
		best, be := noReplica, -1
		for _, e := range set {
			if c := in.cost[e*in.nJ+j]; c < best {
				best, be = c, e
			}
		}
		if be >= 0 {
			share[be] += u.w[j]
		}
	}
	slices.SortStableFunc(set, func(a, b int) int {
		if c := cmp.Compare(share[b], share[a]); c != 0 {
			return c
		}
		return cmp.Compare(in.edges[a].ID, in.edges[b].ID)
	})
	ids := make([]string, len(set))
	for k, e := range set {
		ids[k] = in.edges[e].ID
	}
	return ids
}

// plan builds the plan file from the committed sets.
func (pl *placer) plan(r *Result) *Plan {
	p := &Plan{
		Version:     PlanVersion,
		GeneratedAt: pl.cfg.GeneratedAt,
		Seed:        pl.cfg.Seed,
		Objective: Objective{
			Name:        "demand-weighted mean RTT to the nearest replica (k-median)",
			MeanRTTMs:   round3(r.MeanRTTMs),
			MinReplicas: pl.cfg.MinReplicas,
			MaxReplicas: pl.cfg.MaxReplicas,
		},
	}
	if slo := pl.cfg.SLO.Seconds() * 1000; slo > 0 {
		p.Objective.SLOMs = slo
		p.Objective.SLOMissShare = round3(pl.sloMissShare(r))
	}
	classSet := make([][]string, len(pl.cat.Classes))
	for _, ur := range r.Units {
		if ur.Kind != "class" {
			continue
		}
		c := slices.IndexFunc(pl.cat.Classes, func(c Class) bool { return c.Name == ur.Name })
		classSet[c] = ur.Replicas
		cl := pl.cat.Classes[c]
		p.Classes = append(p.Classes, PlanClass{
			Name: cl.Name, Namespace: cl.Namespace, Prefixes: slices.Clone(cl.Prefixes),
			Replicas: ur.Replicas, Bytes: ur.Bytes, Rate: round3(ur.Rate), MeanRTTMs: round3(ur.MeanRTTMs),
		})
	}
	for _, u := range pl.units {
		if u.isClass() {
			continue
		}
		ids := pl.orderedIDs(pl.index[u])
		if sameSet(classSet[u.class], ids) {
			continue // the class's set already says it
		}
		ur := r.unitReport(u.name, "object")
		o := pl.cat.Objects[u.object]
		ns := o.Namespace
		if ns == "" {
			ns = objkey.DefaultNamespace
		}
		p.Objects = append(p.Objects, PlanObject{
			Namespace: ns, Key: o.Key, Class: pl.cat.Classes[u.class].Name, Replicas: ids,
			Bytes: u.bytes, Rate: round3(u.rate), MeanRTTMs: round3(ur.MeanRTTMs),
		})
	}
	return p
}

// unitReport finds a unit's report by kind and name.
func (r *Result) unitReport(name, kind string) *UnitReport {
	for i := range r.Units {
		if r.Units[i].Name == name && r.Units[i].Kind == kind {
			return &r.Units[i]
		}
	}
	return nil
}

// sloMissShare is the share of all requests over the SLO.
func (pl *placer) sloMissShare(r *Result) float64 {
	in := pl.in
	slo := pl.cfg.SLO.Seconds() * 1000
	totalRate := 0.0
	for _, u := range pl.units {
		totalRate += u.rate
	}
	missed := 0.0
	for i, u := range pl.units {
		w := 1 / float64(len(pl.units))
		if totalRate > 0 {
			w = u.rate / totalRate
		}
		for j := range in.nJ {
			if in.rawMs(in.cost[int(r.nearest[i][j])*in.nJ+j]) > slo {
				missed += w * u.w[j]
			}
		}
	}
	return missed
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
