// Command gen writes testdata/geoip-test.mmdb, a small database in
// MaxMind's GeoIP2-City format that maps documentation networks (RFC 5737,
// RFC 3849) to real cities, for tests and the dev cluster. It is run by
// `go generate ./internal/geoip`.
//
// Layout (every city network has host .1 … .14, or ::1 upwards):
//
//	192.0.2.0/24       16 cities, one /28 each, in the order of cities[0:16]
//	198.51.100.0/24    16 cities, one /28 each, cities[16:32]
//	2001:db8:N::/48    city N-1 (hex N = 1 … 0x20), the same 32 cities
//	2001:db8:ff00:1::/64, 2001:db8:ff00:2::/64   Paris and Tokyo in one /48
//	203.0.113.0/24     records that exercise the fallbacks (see specials)
//	2001:db8:ffff::/48 the US centroid, as for 203.0.113.16/28
//
// Invariant: the output is a function of this file only (fixed build
// epoch, ordered inserts, sorted maps), so regenerating it gives the same
// bytes and the committed file can be checked against the program.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// buildEpoch is fixed so builds are reproducible: 2026-01-01T00:00:00Z.
const buildEpoch = 1767225600

type country struct{ iso, name, continent string }

var (
	fr  = country{"FR", "France", "EU"}
	gb  = country{"GB", "United Kingdom", "EU"}
	de  = country{"DE", "Germany", "EU"}
	es  = country{"ES", "Spain", "EU"}
	nl  = country{"NL", "Netherlands", "EU"}
	se  = country{"SE", "Sweden", "EU"}
	pl  = country{"PL", "Poland", "EU"}
	it  = country{"IT", "Italy", "EU"}
	us  = country{"US", "United States", "NA"}
	ca  = country{"CA", "Canada", "NA"}
	mx  = country{"MX", "Mexico", "NA"}
	br  = country{"BR", "Brazil", "SA"}
	ar  = country{"AR", "Argentina", "SA"}
	cl  = country{"CL", "Chile", "SA"}
	co  = country{"CO", "Colombia", "SA"}
	jp  = country{"JP", "Japan", "AS"}
	kr  = country{"KR", "South Korea", "AS"}
	sg  = country{"SG", "Singapore", "AS"}
	in  = country{"IN", "India", "AS"}
	hk  = country{"HK", "Hong Kong", "AS"}
	ae  = country{"AE", "United Arab Emirates", "AS"}
	au  = country{"AU", "Australia", "OC"}
	nz  = country{"NZ", "New Zealand", "OC"}
	za  = country{"ZA", "South Africa", "AF"}
	ng  = country{"NG", "Nigeria", "AF"}
	eg  = country{"EG", "Egypt", "AF"}
	iot = country{"IO", "British Indian Ocean Territory", "AS"}
	lb  = country{"LB", "Lebanon", "AS"}
)

var continentNames = map[string]string{
	"AF": "Africa", "AN": "Antarctica", "AS": "Asia", "EU": "Europe",
	"NA": "North America", "OC": "Oceania", "SA": "South America",
}

var euMembers = map[string]bool{"FR": true, "DE": true, "ES": true, "NL": true, "SE": true, "PL": true, "IT": true}

type city struct {
	name     string
	c        country
	lat, lon float64
	tz       string
}

// cities: the order fixes the networks (see the package comment), so
// append only.
var cities = []city{
	{"Paris", fr, 48.8566, 2.3522, "Europe/Paris"},
	{"London", gb, 51.5074, -0.1278, "Europe/London"},
	{"Frankfurt am Main", de, 50.1109, 8.6821, "Europe/Berlin"},
	{"Madrid", es, 40.4168, -3.7038, "Europe/Madrid"},
	{"Amsterdam", nl, 52.3676, 4.9041, "Europe/Amsterdam"},
	{"Stockholm", se, 59.3293, 18.0686, "Europe/Stockholm"},
	{"Warsaw", pl, 52.2297, 21.0122, "Europe/Warsaw"},
	{"Milan", it, 45.4642, 9.1900, "Europe/Rome"},
	{"New York", us, 40.7128, -74.0060, "America/New_York"},
	{"Washington", us, 38.9072, -77.0369, "America/New_York"},
	{"Dallas", us, 32.7767, -96.7970, "America/Chicago"},
	{"Chicago", us, 41.8781, -87.6298, "America/Chicago"},
	{"Los Angeles", us, 34.0522, -118.2437, "America/Los_Angeles"},
	{"Seattle", us, 47.6062, -122.3321, "America/Los_Angeles"},
	{"Toronto", ca, 43.6532, -79.3832, "America/Toronto"},
	{"Mexico City", mx, 19.4326, -99.1332, "America/Mexico_City"},
	{"São Paulo", br, -23.5505, -46.6333, "America/Sao_Paulo"},
	{"Buenos Aires", ar, -34.6037, -58.3816, "America/Argentina/Buenos_Aires"},
	{"Santiago", cl, -33.4489, -70.6693, "America/Santiago"},
	{"Bogotá", co, 4.7110, -74.0721, "America/Bogota"},
	{"Tokyo", jp, 35.6762, 139.6503, "Asia/Tokyo"},
	{"Osaka", jp, 34.6937, 135.5023, "Asia/Tokyo"},
	{"Seoul", kr, 37.5665, 126.9780, "Asia/Seoul"},
	{"Singapore", sg, 1.3521, 103.8198, "Asia/Singapore"},
	{"Mumbai", in, 19.0760, 72.8777, "Asia/Kolkata"},
	{"Hong Kong", hk, 22.3193, 114.1694, "Asia/Hong_Kong"},
	{"Dubai", ae, 25.2048, 55.2708, "Asia/Dubai"},
	{"Sydney", au, -33.8688, 151.2093, "Australia/Sydney"},
	{"Auckland", nz, -36.8485, 174.7633, "Pacific/Auckland"},
	{"Johannesburg", za, -26.2041, 28.0473, "Africa/Johannesburg"},
	{"Lagos", ng, 6.5244, 3.3792, "Africa/Lagos"},
	{"Cairo", eg, 30.0444, 31.2357, "Africa/Cairo"},
}

// cityAccuracyKm is the accuracy radius of every city record: typical of
// MaxMind's city-level answers for broadband addresses.
const cityAccuracyKm = 20

type special struct {
	network string
	rec     mmdbtype.Map
}

// specials exercise Locate's fallbacks, one behaviour per network.
func specials() []special {
	return []special{
		// No city, coordinates within the accuracy trusted → the
		// record's own position.
		{"203.0.113.0/28", record(nil, &fr, 46.0, 2.0, 500, "Europe/Paris")},
		// MaxMind's US centroid for US addresses it cannot place.
		{"203.0.113.16/28", record(nil, &us, 37.751, -97.822, 1000, "America/Chicago")},
		// A city with an accuracy radius too large to trust → country.
		{"203.0.113.32/28", record(&city{"Alice Springs", au, -23.6980, 133.8807, "Australia/Darwin"}, &au, -23.6980, 133.8807, 1000, "")},
		// A continent and nothing else → continent point.
		{"203.0.113.48/28", continentOnly("AF")},
		// A country no place is known in, no coordinates → continent.
		{"203.0.113.64/28", record(nil, &iot, 0, 0, 0, "")},
		// A country-level record at a country's geographic centre, with
		// a radius small enough to pass → the country's point.
		{"203.0.113.80/28", record(nil, &ca, 60.0, -95.0, 100, "")},
		// No city, in California, 100 km: a position, not the US point.
		{"203.0.113.96/28", record(nil, &us, 36.78, -119.42, 100, "America/Los_Angeles")},
		// A country outside the old hand-made table, no coordinates.
		{"203.0.113.112/28", record(nil, &lb, 0, 0, 0, "")},
		{"2001:db8:ffff::/48", record(nil, &us, 37.751, -97.822, 1000, "America/Chicago")},
		// Two cities in one /48, to check that per-network caching keys
		// by the database's own networks.
		{"2001:db8:ff00:1::/64", cityRecord(cities[0])},
		{"2001:db8:ff00:2::/64", cityRecord(cities[20])},
	}
}

func names(en string) mmdbtype.Map {
	return mmdbtype.Map{"en": mmdbtype.String(en)}
}

func countryMap(c country) mmdbtype.Map {
	m := mmdbtype.Map{"iso_code": mmdbtype.String(c.iso), "names": names(c.name)}
	if euMembers[c.iso] {
		m["is_in_european_union"] = mmdbtype.Bool(true)
	}
	return m
}

func continentMap(code string) mmdbtype.Map {
	return mmdbtype.Map{"code": mmdbtype.String(code), "names": names(continentNames[code])}
}

func continentOnly(code string) mmdbtype.Map {
	return mmdbtype.Map{"continent": continentMap(code)}
}

func cityRecord(ct city) mmdbtype.Map {
	return record(&ct, &ct.c, ct.lat, ct.lon, cityAccuracyKm, ct.tz)
}

// record lays a GeoIP2-City record out as MaxMind does. A zero accuracy
// means no location at all.
func record(ct *city, c *country, lat, lon float64, accuracyKm uint16, tz string) mmdbtype.Map {
	m := mmdbtype.Map{}
	if ct != nil {
		m["city"] = mmdbtype.Map{"names": names(ct.name)}
	}
	if c != nil {
		m["continent"] = continentMap(c.continent)
		m["country"] = countryMap(*c)
		m["registered_country"] = countryMap(*c)
	}
	if accuracyKm > 0 {
		loc := mmdbtype.Map{
			"accuracy_radius": mmdbtype.Uint16(accuracyKm),
			"latitude":        mmdbtype.Float64(lat),
			"longitude":       mmdbtype.Float64(lon),
		}
		if tz != "" {
			loc["time_zone"] = mmdbtype.String(tz)
		}
		m["location"] = loc
	}
	return m
}

// build returns the database's bytes.
func build() ([]byte, error) {
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		BuildEpoch:   buildEpoch,
		DatabaseType: "GeoIP2-City",
		Description: map[string]string{
			"en": "geocdn test database: documentation networks mapped to cities; not real data",
		},
		// The documentation networks are reserved; this database is
		// made of nothing else.
		IncludeReservedNetworks: true,
		IPVersion:               6,
		Languages:               []string{"en"},
		RecordSize:              24,
	})
	if err != nil {
		return nil, err
	}
	insert := func(cidr string, rec mmdbtype.Map) error {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			return err
		}
		if err := tree.Insert(n, rec); err != nil {
			return fmt.Errorf("insert %s: %w", cidr, err)
		}
		return nil
	}
	for i, ct := range cities {
		v4 := fmt.Sprintf("192.0.2.%d/28", 16*i)
		if i >= 16 {
			v4 = fmt.Sprintf("198.51.100.%d/28", 16*(i-16))
		}
		if err := insert(v4, cityRecord(ct)); err != nil {
			return nil, err
		}
		if err := insert(fmt.Sprintf("2001:db8:%x::/48", i+1), cityRecord(ct)); err != nil {
			return nil, err
		}
	}
	for _, s := range specials() {
		if err := insert(s.network, s.rec); err != nil {
			return nil, err
		}
	}
	var buf bytes.Buffer
	if _, err := tree.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	out := fs.String("o", "geoip-test.mmdb", "output file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := build()
	if err != nil {
		return err
	}
	return os.WriteFile(*out, b, 0o644)
}
