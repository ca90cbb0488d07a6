// Package geo is geocdn's one latency model, shared by placement and
// routing: great-circle distance between coordinates and the round-trip
// time it implies when no measurement is known.
//
// Key invariant: every estimate of client↔edge latency anywhere in geocdn
// comes from EstimateRTT (or a measured RTT), so the optimiser and the
// router never disagree about which edge is nearer.
package geo

import (
	"math"
	"time"
)

// EarthRadiusKm is the mean Earth radius.
const EarthRadiusKm = 6371.0

// Model constants. Light in fibre covers about 200 km per millisecond, so
// one millisecond of round trip per 100 km of path; real routes are longer
// than the great circle (RouteInflation); LastMile is the access network
// and processing at both ends.
const (
	KmPerMsRTT     = 100.0
	RouteInflation = 1.4
	LastMile       = 5 * time.Millisecond
)

// Point is a location in degrees.
type Point struct {
	Lat, Lon float64
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
	ms := km / KmPerMsRTT * RouteInflation
	return time.Duration(ms*float64(time.Millisecond)) + LastMile
}

// RTT estimates the round-trip time between a and b.
func RTT(a, b Point) time.Duration { return EstimateRTT(DistanceKm(a, b)) }
