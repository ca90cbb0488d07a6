package loadtest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"sort"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/geocdn/geocdn/internal/geo"
	"github.com/geocdn/geocdn/internal/geoip"
	"github.com/geocdn/geocdn/placement"
)

// place is one demand point the virtual clients come from, with the
// database network that stands for it: the network whose location (as
// the router's GeoIP reader places it) is nearest the point.
type place struct {
	id, region string
	point      geo.Point
	network    netip.Prefix
	// located is where the router places an address of network, and
	// errKm its distance from point: how well the database can play a
	// client of this place.
	located geo.Point
	errKm   float64
}

// population is where the virtual clients come from: the demand points
// of the scenario's regions, drawn in proportion to their weights.
type population struct {
	places []place
	cum    []float64 // cumulative weights, for drawing a place
	// regions lists each region with its places' total weight, sorted.
	regions []regionWeight
}

type regionWeight struct {
	Region  string
	Weight  float64
	Places  int
	ErrKm   float64 // the weighted mean of its places' errKm
	Network string  // one of its networks, for messages
}

// maxNetworkAccuracyKm is the largest accuracy radius of a database
// record chosen to stand for a place when a better one exists anywhere:
// a country-level record would locate every client of the country at one
// point.
const maxNetworkAccuracyKm = 100

// newPopulation reads the demand points, weighs their regions as c says
// and finds, in the GeoIP database at dbPath, a network for each point.
func newPopulation(c Clients, dbPath string) (*population, error) {
	f, err := os.Open(c.Demand)
	if err != nil {
		return nil, fmt.Errorf("clients: %w", err)
	}
	points, err := placement.ParseDemand(c.Demand, f)
	f.Close()
	if err != nil {
		return nil, err
	}
	regionOf := map[string]bool{}
	for _, p := range points {
		regionOf[p.Region] = true
	}
	for r := range c.Regions {
		if !regionOf[r] {
			return nil, fmt.Errorf("clients: region %q has no demand point in %s", r, c.Demand)
		}
	}
	// A region's weight from the scenario replaces the sum of its
	// points' weights; its points keep their shares within it.
	sum := map[string]float64{}
	for _, p := range points {
		if !math.IsNaN(p.Lat) {
			sum[p.Region] += p.Weight
		}
	}
	weight := func(p placement.DemandPoint) float64 {
		if c.Regions == nil {
			return p.Weight
		}
		return c.Regions[p.Region] * p.Weight / sum[p.Region]
	}

	nets, err := readNetworks(dbPath)
	if err != nil {
		return nil, err
	}
	rd, err := geoip.Open(dbPath, geoip.Options{})
	if err != nil {
		return nil, err
	}
	defer rd.Close()

	pop := &population{}
	total := 0.0
	for _, p := range points {
		w := weight(p)
		// Points with no coordinates sit at a region anchor the load
		// tester does not know; they carry no clients.
		if w <= 0 || math.IsNaN(p.Lat) {
			continue
		}
		pt := geo.Point{Lat: p.Lat, Lon: p.Lon}
		n, ok := nets.nearest(pt)
		if !ok {
			return nil, fmt.Errorf("clients: the GeoIP database %s has no located network", dbPath)
		}
		loc := rd.Locate(n.Addr().Next())
		pl := place{id: p.ID, region: p.Region, point: pt, network: n, located: loc.Point,
			errKm: geo.DistanceKm(pt, loc.Point)}
		pop.places = append(pop.places, pl)
		total += w
		pop.cum = append(pop.cum, total)
	}
	if len(pop.places) == 0 {
		return nil, fmt.Errorf("clients: no demand point of %s has a positive weight and coordinates", c.Demand)
	}
	byRegion := map[string]*regionWeight{}
	prev := 0.0
	for i, pl := range pop.places {
		w := pop.cum[i] - prev
		prev = pop.cum[i]
		rw := byRegion[pl.region]
		if rw == nil {
			rw = &regionWeight{Region: pl.region, Network: pl.network.String()}
			byRegion[pl.region] = rw
		}
		rw.Weight += w
		rw.Places++
		rw.ErrKm += w * pl.errKm
	}
	for _, rw := range byRegion {
		rw.ErrKm /= rw.Weight
		pop.regions = append(pop.regions, *rw)
	}
	sort.Slice(pop.regions, func(i, j int) bool { return pop.regions[i].Region < pop.regions[j].Region })
	return pop, nil
}

// draw picks a place in proportion to its weight.
func (p *population) draw(r *rand.Rand) *place {
	x := r.Float64() * p.cum[len(p.cum)-1]
	i := sort.SearchFloat64s(p.cum, x)
	if i == len(p.cum) {
		i--
	}
	return &p.places[i]
}

// clientIP draws an address of the place's network, never its first
// (the network's own address) or, for IPv4, its last.
func (pl *place) clientIP(r *rand.Rand) netip.Addr {
	n := pl.network
	host := n.Addr().BitLen() - n.Bits()
	span := uint64(1) << min(host, 16) // enough variety; no need for more
	if span <= 2 {
		return n.Addr()
	}
	off := 1 + r.Uint64N(span-2)
	a := n.Addr()
	b := a.As16()
	for i := 15; i >= 0 && off > 0; i-- {
		s := uint64(b[i]) + off&0xff
		b[i] = byte(s)
		off = off>>8 + s>>8
	}
	out := netip.AddrFrom16(b)
	if a.Is4() {
		out = out.Unmap()
	}
	return out
}

// located is one record location of the database and a network it
// covers.
type located struct {
	unit     geo.Unit
	network  netip.Prefix
	accuracy int
}

type networkIndex []located

// readNetworks lists, for each distinct location record of the database
// (many networks share one), one network it covers, preferring IPv4 ones
// so X-Forwarded-For stays readable.
func readNetworks(path string) (networkIndex, error) {
	db, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("clients: open GeoIP database %s: %w", path, err)
	}
	defer db.Close()
	var rec struct {
		Location struct {
			Latitude       *float64 `maxminddb:"latitude"`
			Longitude      *float64 `maxminddb:"longitude"`
			AccuracyRadius int      `maxminddb:"accuracy_radius"`
		} `maxminddb:"location"`
	}
	seen := map[uintptr]int{} // record offset → index in out
	var out networkIndex
	for res := range db.Networks() {
		if err := res.Err(); err != nil {
			return nil, fmt.Errorf("clients: GeoIP database %s: %w", path, err)
		}
		n := res.Prefix()
		if i, ok := seen[res.Offset()]; ok {
			if !out[i].network.Addr().Is4() && n.Addr().Is4() {
				out[i].network = n
			}
			continue
		}
		rec.Location.Latitude, rec.Location.Longitude, rec.Location.AccuracyRadius = nil, nil, 0
		if err := res.Decode(&rec); err != nil {
			return nil, fmt.Errorf("clients: GeoIP database %s: network %s: %w", path, n, err)
		}
		if rec.Location.Latitude == nil || rec.Location.Longitude == nil {
			continue
		}
		p := geo.Point{Lat: *rec.Location.Latitude, Lon: *rec.Location.Longitude}
		seen[res.Offset()] = len(out)
		out = append(out, located{unit: p.Unit(), network: n, accuracy: rec.Location.AccuracyRadius})
	}
	return out, nil
}

// nearest is the network of the record nearest p, among records at
// most maxNetworkAccuracyKm accurate if there is any.
func (ix networkIndex) nearest(p geo.Point) (netip.Prefix, bool) {
	u := p.Unit()
	best, bestFine := -1, -1
	var d, dFine float64
	for i, l := range ix {
		km := u.DistanceKm(l.unit)
		if best < 0 || km < d {
			best, d = i, km
		}
		if l.accuracy > 0 && l.accuracy <= maxNetworkAccuracyKm && (bestFine < 0 || km < dFine) {
			bestFine, dFine = i, km
		}
	}
	switch {
	case bestFine >= 0:
		return ix[bestFine].network, true
	case best >= 0:
		return ix[best].network, true
	}
	return netip.Prefix{}, false
}

// regionInfo is the report's list of client regions.
func (p *population) regionInfo() []RegionInfo {
	out := make([]RegionInfo, len(p.regions))
	for i, rw := range p.regions {
		out[i] = RegionInfo{Name: rw.Region, Weight: rw.Weight}
	}
	return out
}
