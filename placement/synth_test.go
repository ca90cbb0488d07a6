package placement

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

// loadTestdata reads the repository's sample topology and demand.
func loadTestdata(t testing.TB) (*Topology, []DemandPoint) {
	t.Helper()
	f, err := os.Open("../testdata/topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	top, err := ParseTopology("testdata/topology.yaml", f)
	if err != nil {
		t.Fatal(err)
	}
	g, err := os.Open("../testdata/demand.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	dem, err := ParseDemand("testdata/demand.csv", g)
	if err != nil {
		t.Fatal(err)
	}
	return top, dem
}

// regionsOf lists demand regions, heaviest first.
func regionsOf(dem []DemandPoint) []string {
	w := map[string]float64{}
	var rs []string
	for _, d := range dem {
		if _, ok := w[d.Region]; !ok {
			rs = append(rs, d.Region)
		}
		w[d.Region] += d.Weight
	}
	for i := range rs {
		for j := i + 1; j < len(rs); j++ {
			if w[rs[j]] > w[rs[i]] || (w[rs[j]] == w[rs[i]] && rs[j] < rs[i]) {
				rs[i], rs[j] = rs[j], rs[i]
			}
		}
	}
	return rs
}

// jitter moves p up to km kilometres in a random direction.
func jitter(rng *rand.Rand, lat, lon, km float64) (float64, float64) {
	d := km * math.Sqrt(rng.Float64()) / 111.0
	a := rng.Float64() * 2 * math.Pi
	lat2 := math.Max(-89.9, math.Min(89.9, lat+d*math.Cos(a)))
	lon2 := lon + d*math.Sin(a)/math.Max(0.1, math.Cos(lat*math.Pi/180))
	lon2 = math.Mod(lon2+540, 360) - 180
	return lat2, lon2
}

// scaleProblem grows the sample topology and demand to nEdges edges and
// nDemand demand points by scattering copies around the real cities
// (edges within 300 km, demand within 150 km), keeping regions, fault
// domains and the demand's population weights.
func scaleProblem(t testing.TB, nEdges, nDemand, nObjects int, seed uint64) Problem {
	top, dem := loadTestdata(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	big := &Topology{Measured: top.Measured}
	for i := range nEdges {
		e := top.Edges[i%len(top.Edges)]
		e.ID = fmt.Sprintf("%s-%d", e.ID, i/len(top.Edges))
		if i >= len(top.Edges) {
			e.Lat, e.Lon = jitter(rng, e.Lat, e.Lon, 300)
		}
		e.CapacityBytes = 0
		big.Edges = append(big.Edges, e)
	}
	per := make([]int, len(dem))
	for i := range nDemand {
		per[i%len(dem)]++
	}
	var points []DemandPoint
	for i, d := range dem {
		for c := range per[i] {
			p := d
			p.ID = fmt.Sprintf("%s-%d", d.ID, c)
			p.Weight = d.Weight / float64(per[i])
			if c > 0 {
				p.Lat, p.Lon = jitter(rng, d.Lat, d.Lon, 150)
			}
			points = append(points, p)
		}
	}
	cat := GenerateCatalog(GenConfig{Objects: nObjects, Regions: regionsOf(dem), Seed: seed})
	return Problem{Topology: big, Demand: points, Catalog: cat}
}
