package geoip

import "github.com/geocdn/geocdn/internal/geo"

// centroidTraps are points a database may give an address it can place
// no better than a country: the country's geographic centre, which for a
// large country is far from almost all of its people. A record without a
// city within trapRadiusKm of one is placed at its country's point
// instead, whatever its accuracy radius says. They are MaxMind's
// published average latitude and longitude of these countries (the
// points its legacy databases gave country-level records) and their
// geographic centres as commonly published; MaxMind's US centroid is
// usCentroid, checked for every record.
var centroidTraps = []struct {
	country string
	point   geo.Point
}{
	{"US", geo.Point{Lat: 38.00, Lon: -97.00}},
	{"US", geo.Point{Lat: 37.09, Lon: -95.71}},
	{"CA", geo.Point{Lat: 60.00, Lon: -95.00}},
	{"CA", geo.Point{Lat: 56.13, Lon: -106.35}},
	{"RU", geo.Point{Lat: 60.00, Lon: 100.00}},
	{"RU", geo.Point{Lat: 61.52, Lon: 105.32}},
	{"AU", geo.Point{Lat: -27.00, Lon: 133.00}},
	{"AU", geo.Point{Lat: -25.27, Lon: 133.78}},
	{"BR", geo.Point{Lat: -10.00, Lon: -55.00}},
	{"BR", geo.Point{Lat: -14.24, Lon: -51.93}},
	{"CN", geo.Point{Lat: 35.00, Lon: 105.00}},
	{"CN", geo.Point{Lat: 35.86, Lon: 104.20}},
	{"IN", geo.Point{Lat: 20.00, Lon: 77.00}},
	{"IN", geo.Point{Lat: 20.59, Lon: 78.96}},
	{"KZ", geo.Point{Lat: 48.00, Lon: 68.00}},
	{"KZ", geo.Point{Lat: 48.02, Lon: 66.92}},
	{"AR", geo.Point{Lat: -34.00, Lon: -64.00}},
	{"AR", geo.Point{Lat: -38.42, Lon: -63.62}},
	{"DZ", geo.Point{Lat: 28.00, Lon: 3.00}},
	{"DZ", geo.Point{Lat: 28.03, Lon: 1.66}},
	{"MX", geo.Point{Lat: 23.00, Lon: -102.00}},
	{"MX", geo.Point{Lat: 23.63, Lon: -102.55}},
	{"ID", geo.Point{Lat: -5.00, Lon: 120.00}},
	{"ID", geo.Point{Lat: -0.79, Lon: 113.92}},
	{"SA", geo.Point{Lat: 25.00, Lon: 45.00}},
	{"SA", geo.Point{Lat: 23.89, Lon: 45.08}},
}

// trapRadiusKm is how near a centroid trap a record's point counts as it.
const trapRadiusKm = 50

// centroidTrap reports whether p, in country, is one of centroidTraps.
func centroidTrap(country string, p geo.Point) bool {
	for _, t := range centroidTraps {
		if t.country == country && geo.DistanceKm(t.point, p) <= trapRadiusKm {
			return true
		}
	}
	return false
}

// continentPoints places a client known only by its continent (MaxMind
// continent codes): the continent's busiest interconnection hub, or for
// North America a central one so neither coast is penalised twice.
// Antarctica has none: its few clients take the default.
var continentPoints = map[string]geo.Point{
	"AF": {Lat: -26.20, Lon: 28.05},  // Johannesburg
	"AS": {Lat: 1.35, Lon: 103.82},   // Singapore
	"EU": {Lat: 50.11, Lon: 8.68},    // Frankfurt
	"NA": {Lat: 41.88, Lon: -87.63},  // Chicago
	"OC": {Lat: -33.87, Lon: 151.21}, // Sydney
	"SA": {Lat: -23.55, Lon: -46.63}, // São Paulo
}
