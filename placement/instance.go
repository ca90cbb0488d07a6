package placement

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/geocdn/geocdn/internal/geo"
)

// instance is a problem prepared for search: the latency of every
// (edge, demand point) pair and the indexes the search needs. It is
// read-only once built, so searches on it may run concurrently.
type instance struct {
	edges  []Edge
	demand []DemandPoint // locations resolved
	nE, nJ int
	// cost[e*nJ+j] is the latency in ms from demand point j to edge e,
	// penalised beyond the SLO when Config.SLOPenalty is set (rawMs undoes
	// it). Edge-major, so the search's inner loop over demand points reads
	// one contiguous row. float32: half the memory traffic, and a
	// millisecond figure needs no more than seven digits.
	cost []float32
	// slo and penalty define the SLO penalty: c' = c + penalty when c > slo.
	slo, penalty float64

	base []float64 // demand weights, summing to 1
	// regionCost[e*len(regions)+r] is Σ base_j·cost[e][j] over the points
	// of region r: the first greedy step of every search reads it.
	regionCost []float64
	regions    []string  // demand regions, sorted
	regionOf   []int32   // demand point → index in regions
	regionSum  []float64 // Σ base per region

	fd      []int32  // edge → fault domain index
	fdNames []string // fault domains, in order of first edge
	nFD     int

	workers int

	// coarse, for large demand, is the same problem with nearby demand
	// points of a region merged (see coarsen); coarseOf maps each point
	// to its group. nil when the demand is small enough to search as is.
	coarse   *instance
	coarseOf []int32
}

// Coarsening: above coarsenAbove demand points, searches first run on at
// most coarseMax groups of nearby points and then finish on the full
// demand, which then usually takes one confirming pass instead of a
// greedy construction and several passes.
const (
	coarsenAbove = 2048
	coarseMax    = 1024
)

// minParallelWork is the number of (edge, demand point) pairs below which
// a pass runs on one goroutine: starting goroutines costs more than it
// saves.
const minParallelWork = 1 << 17

// newInstance validates the problem and computes the latency matrix.
func newInstance(p Problem, cfg Config) (*instance, error) {
	if p.Topology == nil || len(p.Topology.Edges) == 0 {
		return nil, errors.New("topology has no edges")
	}
	if len(p.Demand) == 0 {
		return nil, errors.New("no demand points")
	}
	in := &instance{
		edges:   p.Topology.Edges,
		nE:      len(p.Topology.Edges),
		nJ:      len(p.Demand),
		workers: cfg.Workers,
	}
	if in.workers <= 0 {
		in.workers = runtime.GOMAXPROCS(0)
	}
	if cfg.SLO > 0 && cfg.SLOPenalty > 0 {
		in.slo, in.penalty = cfg.SLO.Seconds()*1000, cfg.SLOPenalty
	}
	m := p.Topology.Measured

	ids := make(map[string]bool, in.nE)
	fdIndex := map[faultDomain]int32{}
	in.fd = make([]int32, in.nE)
	for i, e := range in.edges {
		switch {
		case !validID.MatchString(e.ID):
			return nil, fmt.Errorf("edge %d: id %q: want 1 to 63 letters, digits, '.', '_' or '-'", i, e.ID)
		case ids[e.ID]:
			return nil, fmt.Errorf("edge %q given twice", e.ID)
		case !e.Point().Valid() || math.IsNaN(e.Lat) || math.IsNaN(e.Lon):
			return nil, fmt.Errorf("edge %q: lat/lon %v,%v out of range", e.ID, e.Lat, e.Lon)
		case e.CapacityBytes < 0:
			return nil, fmt.Errorf("edge %q: negative capacity", e.ID)
		}
		ids[e.ID] = true
		fd := e.domain()
		x, ok := fdIndex[fd]
		if !ok {
			x = int32(len(in.fdNames))
			fdIndex[fd] = x
			in.fdNames = append(in.fdNames, fd.String())
		}
		in.fd[i] = x
	}
	in.nFD = len(in.fdNames)

	in.demand = slices.Clone(p.Demand)
	total := 0.0
	regionIndex := map[string]int32{}
	for i := range in.demand {
		d := &in.demand[i]
		if math.IsNaN(d.Lat) || math.IsNaN(d.Lon) {
			a, ok := m.Anchor(d.Region)
			if !ok {
				if m == nil {
					return nil, d.src.errorf("lat/lon", "demand point %q has no lat/lon, and the topology has no regions: to anchor its region %q: give the point's lat and lon, or add regions: [{name: %s, lat: ..., lon: ...}] to the topology",
						d.ID, d.Region, d.Region)
				}
				return nil, d.src.errorf("lat/lon", "demand point %q has no lat/lon, and its region %q has no anchor in the topology: give the point's lat and lon, or add {name: %s, lat: ..., lon: ...} to the topology's regions:",
					d.ID, d.Region, d.Region)
			}
			d.Lat, d.Lon = a.Lat, a.Lon
		}
		if !(geo.Point{Lat: d.Lat, Lon: d.Lon}).Valid() {
			return nil, d.src.errorf("lat/lon", "demand point %q: lat/lon %v,%v out of range", d.ID, d.Lat, d.Lon)
		}
		if !(d.Weight > 0) || math.IsInf(d.Weight, 0) {
			return nil, d.src.errorf("weight", "demand point %q: weight %v: want a positive number", d.ID, d.Weight)
		}
		total += d.Weight
		if _, ok := regionIndex[d.Region]; !ok {
			regionIndex[d.Region] = 0
			in.regions = append(in.regions, d.Region)
		}
	}
	slices.Sort(in.regions)
	for i, r := range in.regions {
		regionIndex[r] = int32(i)
	}
	in.base = make([]float64, in.nJ)
	in.regionOf = make([]int32, in.nJ)
	in.regionSum = make([]float64, len(in.regions))
	for j, d := range in.demand {
		in.base[j] = d.Weight / total
		in.regionOf[j] = regionIndex[d.Region]
		in.regionSum[in.regionOf[j]] += in.base[j]
	}

	// Measured offsets per (edge region, demand region) pair, computed once
	// rather than per point pair.
	edgeRegions := map[string]int{}
	edgeRegion := make([]int, in.nE)
	for i, e := range in.edges {
		x, ok := edgeRegions[e.Region]
		if !ok {
			x = len(edgeRegions)
			edgeRegions[e.Region] = x
		}
		edgeRegion[i] = x
	}
	offset := make([]float64, len(edgeRegions)*len(in.regions))
	for er, x := range edgeRegions {
		for y, dr := range in.regions {
			off, ok := m.OffsetMs(er, dr)
			if !ok {
				off = math.NaN()
			}
			offset[x*len(in.regions)+y] = off
		}
	}

	eu := make([]geo.Unit, in.nE)
	for i, e := range in.edges {
		eu[i] = e.Point().Unit()
	}
	du := make([]geo.Unit, in.nJ)
	for j, d := range in.demand {
		du[j] = geo.Point{Lat: d.Lat, Lon: d.Lon}.Unit()
	}
	in.cost = make([]float32, in.nE*in.nJ)
	nR := len(in.regions)
	in.regionCost = make([]float64, in.nE*nR)
	in.parallel(in.nE, in.nE*in.nJ, func(lo, hi int) {
		for e := lo; e < hi; e++ {
			row := in.cost[e*in.nJ : (e+1)*in.nJ]
			offs := offset[edgeRegion[e]*nR : (edgeRegion[e]+1)*nR]
			for j := range row {
				km := eu[e].DistanceKm(du[j])
				var ms float64
				if off := offs[in.regionOf[j]]; off == off { // not NaN: measured
					ms = geo.AdjustedMs(km, off)
				} else {
					ms = geo.EstimateMs(km)
				}
				if in.penalty > 0 && ms > in.slo {
					ms += in.penalty
				}
				row[j] = float32(ms)
				in.regionCost[e*nR+int(in.regionOf[j])] += in.base[j] * float64(row[j])
			}
		}
	})
	if in.nJ > coarsenAbove {
		in.coarsen()
	}
	return in, nil
}

// coarsen builds in.coarse: demand points grouped by region and a
// latitude/longitude grid whose cells double in size until there are at
// most coarseMax groups. A group's latency to an edge is the weighted mean
// of its points' latencies, so the coarse objective of a set that is
// nearest for whole groups is the fine one exactly.
func (in *instance) coarsen() {
	type cell struct {
		region int32
		lat    int32
		lon    int32
	}
	var groups map[cell]int32
	for deg := 0.5; ; deg *= 2 {
		groups = make(map[cell]int32)
		in.coarseOf = make([]int32, in.nJ)
		var order []cell
		for j, d := range in.demand {
			c := cell{in.regionOf[j], int32(math.Floor(d.Lat / deg)), int32(math.Floor(d.Lon / deg))}
			g, ok := groups[c]
			if !ok {
				g = int32(len(order))
				groups[c] = g
				order = append(order, c)
			}
			in.coarseOf[j] = g
		}
		if len(order) <= coarseMax || deg > 360 {
			break
		}
	}
	nG := len(groups)
	c := &instance{
		edges: in.edges, nE: in.nE, nJ: nG,
		slo: in.slo, penalty: in.penalty,
		regions: in.regions, regionSum: in.regionSum,
		fd: in.fd, fdNames: in.fdNames, nFD: in.nFD,
		workers:  in.workers,
		base:     make([]float64, nG),
		regionOf: make([]int32, nG),
		demand:   make([]DemandPoint, nG),
	}
	for j, g := range in.coarseOf {
		c.base[g] += in.base[j]
		c.regionOf[g] = in.regionOf[j]
		c.demand[g].Region = in.demand[j].Region
	}
	c.cost = make([]float32, in.nE*nG)
	nR := len(in.regions)
	c.regionCost = make([]float64, in.nE*nR)
	in.parallel(in.nE, in.nE*in.nJ, func(lo, hi int) {
		acc := make([]float64, nG)
		for e := lo; e < hi; e++ {
			clear(acc)
			for j, v := range in.row(e) {
				acc[in.coarseOf[j]] += in.base[j] * float64(v)
			}
			row := c.row(e)
			for g := range row {
				row[g] = float32(acc[g] / c.base[g])
				c.regionCost[e*nR+int(c.regionOf[g])] += acc[g]
			}
		}
	})
	in.coarse = c
}

// coarseWeights sums per-point weights w into in.coarse's groups.
func (in *instance) coarseWeights(w []float64) []float64 {
	cw := make([]float64, in.coarse.nJ)
	for j, g := range in.coarseOf {
		cw[g] += w[j]
	}
	return cw
}

// rawMs undoes the SLO penalty: it moves every latency above the SLO up by
// the same amount, so a penalised figure is above the SLO exactly when the
// latency was, and the inverse is a subtraction, which saves keeping a
// second matrix.
func (in *instance) rawMs(c float32) float64 {
	v := float64(c)
	if in.penalty > 0 && v > in.slo {
		v -= in.penalty
	}
	return v
}

// row returns edge e's latencies to every demand point.
func (in *instance) row(e int) []float32 { return in.cost[e*in.nJ : (e+1)*in.nJ] }

// parallel runs fn over [0, n) split into contiguous chunks, one per
// worker, when work (pairs touched) is large enough to pay for the
// goroutines; else inline. Each index belongs to exactly one chunk, so
// results written per index do not depend on the number of workers.
func (in *instance) parallel(n, work int, fn func(lo, hi int)) {
	w := in.workers
	if work < minParallelWork || w <= 1 || n < 2 {
		fn(0, n)
		return
	}
	w = min(w, n)
	var wg sync.WaitGroup
	for i := range w {
		lo, hi := i*n/w, (i+1)*n/w
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}
