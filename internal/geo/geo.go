// Package geo is geocdn's one latency model, shared by placement and
// routing: great-circle distance between coordinates, the round-trip time
// it implies when no measurement is known, and a table of measured
// round-trip times between regions that refines the estimate where it has
// figures.
//
// Key invariant: every estimate of client↔edge latency anywhere in geocdn
// comes from EstimateRTT (or a measured RTT through a Matrix), so the
// optimiser and the router never disagree about which edge is nearer.
package geo

import (
	"math"
	"time"
)

// EarthRadiusKm is the mean Earth radius.
const EarthRadiusKm = 6371.0

// Model constants. Light in fibre covers about 200 km per millisecond, so
// one millisecond of round trip per 100 km of path (KmPerMsRTT, physics, not
// fitted); real routes are longer than the great circle (RouteInflation);
// LastMile is the fixed cost of a path whatever its length.
//
// RouteInflation and LastMile are a least-squares fit, minimising the sum
// of squared relative errors, of RTT = d/KmPerMsRTT·RouteInflation +
// LastMile to the 45 region pairs of ../shared/data/inter-region-rtt.csv
// (IBM Cloud measurements, both directions averaged). The fit gives 1.5506
// and 4.01 ms, rounded here to 1.55 and 4 ms. With those values the model's
// relative error over the 45 pairs is mean 14.2%, median 9.8%, max 37.9%
// (the worst pairs, London–Osaka first, are Europe↔Japan and São Paulo↔Asia, whose cables do
// not follow the great circle); TestCalibration recomputes the fit and the
// errors and fails if the constants drift from them. The previous guess
// (1.4 and 5 ms) had mean 14.6%, median 6.9%, max 43.3%.
//
// The pairs are data centre to data centre, so LastMile does not include a
// subscriber's access network, which adds more. It is the same for every
// edge, so it never changes which edge is nearest, only absolute figures
// compared with an SLO.
const (
	KmPerMsRTT     = 100.0
	RouteInflation = 1.55
	LastMile       = 4 * time.Millisecond
)

// Point is a location in degrees.
type Point struct {
	Lat, Lon float64
}

// Valid reports whether p is a latitude in [-90, 90] and a longitude in
// [-180, 180].
func (p Point) Valid() bool {
	return p.Lat >= -90 && p.Lat <= 90 && p.Lon >= -180 && p.Lon <= 180
}

// DistanceKm is the great-circle (haversine) distance between a and b.
func DistanceKm(a, b Point) float64 {
	const rad = math.Pi / 180
	dLat := (b.Lat - a.Lat) * rad
	dLon := (b.Lon - a.Lon) * rad
	s := math.Sin(dLat/2)*math.Sin(dLat/2) +
		math.Cos(a.Lat*rad)*math.Cos(b.Lat*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * EarthRadiusKm * math.Asin(math.Min(1, math.Sqrt(s)))
}

// EstimateRTT is the model's round-trip time for a path of km kilometres.
func EstimateRTT(km float64) time.Duration {
	return time.Duration(EstimateMs(km) * float64(time.Millisecond))
}

// EstimateMs is EstimateRTT in milliseconds as a float, for callers that
// compute millions of estimates and compare them; it is the one place the
// formula is written.
func EstimateMs(km float64) float64 {
	return km/KmPerMsRTT*RouteInflation + float64(LastMile)/float64(time.Millisecond)
}

// FloorMs is the physical lower bound on a round trip over km kilometres:
// straight fibre, no routing detour, no fixed cost. Adjusted estimates
// never go below it.
func FloorMs(km float64) float64 { return km / KmPerMsRTT }

// RTT estimates the round-trip time between a and b.
func RTT(a, b Point) time.Duration { return EstimateRTT(DistanceKm(a, b)) }

// Unit is a point as a unit vector from the Earth's centre. Distances
// between Units cost one square root and one arcsine, against haversine's
// four trigonometric calls, which matters when a planner fills a matrix of
// millions of pairs; both give the same great-circle distance.
type Unit struct{ X, Y, Z float64 }

// Unit returns p as a unit vector.
func (p Point) Unit() Unit {
	const rad = math.Pi / 180
	sLat, cLat := math.Sincos(p.Lat * rad)
	sLon, cLon := math.Sincos(p.Lon * rad)
	return Unit{cLat * cLon, cLat * sLon, sLat}
}

// DistanceKm is the great-circle distance between u and v: the chord
// between them turned back into an arc.
func (u Unit) DistanceKm(v Unit) float64 {
	dx, dy, dz := u.X-v.X, u.Y-v.Y, u.Z-v.Z
	chord := math.Sqrt(dx*dx + dy*dy + dz*dz)
	return 2 * EarthRadiusKm * math.Asin(math.Min(1, chord/2))
}
