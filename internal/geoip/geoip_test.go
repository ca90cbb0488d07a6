package geoip

import (
	"bytes"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/geo"
)

const testDB = "../../testdata/geoip-test.mmdb"

func openTest(t *testing.T, opts Options) *Reader {
	t.Helper()
	r, err := Open(testDB, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func near(a, b geo.Point) bool { return geo.DistanceKm(a, b) < 1 }

func TestLookupCities(t *testing.T) {
	r := openTest(t, Options{})
	if got := r.DatabaseType(); got != "GeoIP2-City" {
		t.Fatalf("database type %q, want GeoIP2-City", got)
	}
	for _, tc := range []struct {
		ip, city, country, continent string
		lat, lon                     float64
		network                      string
	}{
		{"192.0.2.1", "Paris", "FR", "EU", 48.8566, 2.3522, "192.0.2.0/28"},
		{"192.0.2.30", "London", "GB", "EU", 51.5074, -0.1278, "192.0.2.16/28"},
		{"192.0.2.130", "New York", "US", "NA", 40.7128, -74.0060, "192.0.2.128/28"},
		{"192.0.2.254", "Mexico City", "MX", "NA", 19.4326, -99.1332, "192.0.2.240/28"},
		{"198.51.100.1", "São Paulo", "BR", "SA", -23.5505, -46.6333, "198.51.100.0/28"},
		{"198.51.100.65", "Tokyo", "JP", "AS", 35.6762, 139.6503, "198.51.100.64/28"},
		{"198.51.100.177", "Sydney", "AU", "OC", -33.8688, 151.2093, "198.51.100.176/28"},
		{"198.51.100.209", "Johannesburg", "ZA", "AF", -26.2041, 28.0473, "198.51.100.208/28"},
		{"::ffff:192.0.2.1", "Paris", "FR", "EU", 48.8566, 2.3522, "192.0.2.0/28"},
		{"2001:db8:1::1", "Paris", "FR", "EU", 48.8566, 2.3522, "2001:db8:1::/48"},
		{"2001:db8:15:abcd::9", "Tokyo", "JP", "AS", 35.6762, 139.6503, "2001:db8:15::/48"},
		{"2001:db8:20::1", "Cairo", "EG", "AF", 30.0444, 31.2357, "2001:db8:20::/48"},
		{"2001:db8:ff00:2::1", "Tokyo", "JP", "AS", 35.6762, 139.6503, "2001:db8:ff00:2::/64"},
	} {
		t.Run(tc.ip, func(t *testing.T) {
			rec, err := r.Lookup(netip.MustParseAddr(tc.ip))
			if err != nil {
				t.Fatal(err)
			}
			if !rec.Found || rec.City != tc.city || rec.Country != tc.country || rec.Continent != tc.continent {
				t.Fatalf("got found=%v %q %q %q, want %q %q %q", rec.Found, rec.City, rec.Country, rec.Continent, tc.city, tc.country, tc.continent)
			}
			if !rec.HasPoint || rec.Point != (geo.Point{Lat: tc.lat, Lon: tc.lon}) {
				t.Fatalf("point %v (has %v), want %v,%v", rec.Point, rec.HasPoint, tc.lat, tc.lon)
			}
			if got := rec.Network.String(); got != tc.network {
				t.Fatalf("network %s, want %s", got, tc.network)
			}
			loc := r.Locate(netip.MustParseAddr(tc.ip))
			if loc.Source != SourceCity || loc.Point != rec.Point || !strings.Contains(loc.Reason, tc.city) {
				t.Fatalf("Locate = %v %v %q, want city %v", loc.Source, loc.Point, loc.Reason, rec.Point)
			}
		})
	}
}

func TestEveryContinentHasCities(t *testing.T) {
	r := openTest(t, Options{})
	cities := map[string]bool{}
	continents := map[string]bool{}
	for i := range 32 {
		base := netip.MustParseAddr("192.0.2.1")
		if i >= 16 {
			base = netip.MustParseAddr("198.51.100.1")
		}
		b := base.As4()
		b[3] += byte(16 * (i % 16))
		for _, a := range []netip.Addr{netip.AddrFrom4(b), netip.MustParseAddr("2001:db8::1")} {
			if a.Is6() {
				a16 := a.As16()
				a16[5] = byte(i + 1)
				a = netip.AddrFrom16(a16)
			}
			rec, err := r.Lookup(a)
			if err != nil || !rec.Found || rec.City == "" {
				t.Fatalf("%s: %+v, %v", a, rec, err)
			}
			cities[rec.City] = true
			continents[rec.Continent] = true
		}
	}
	if len(cities) < 20 {
		t.Errorf("%d cities, want at least 20", len(cities))
	}
	for _, c := range []string{"AF", "AS", "EU", "NA", "OC", "SA"} {
		if !continents[c] {
			t.Errorf("no city in continent %s", c)
		}
	}
}

func TestLocateFallbacks(t *testing.T) {
	def := geo.Point{Lat: 50.11, Lon: 8.68}
	r := openTest(t, Options{Default: &def})
	for _, tc := range []struct {
		name, ip string
		source   Source
		point    geo.Point
		reason   string
	}{
		// No city but a position its radius lets us trust: its own
		// point, not the country's.
		{"no city, radius within the limit", "203.0.113.5", SourcePosition, geo.Point{Lat: 46.0, Lon: 2.0}, "no city (accuracy 500 km)"},
		{"no city, California to 100 km", "203.0.113.100", SourcePosition, geo.Point{Lat: 36.78, Lon: -119.42}, "position 36.780,-119.420 in US"},
		// Centroid traps: the country's point, whatever the radius.
		{"US centroid", "203.0.113.20", SourceCountry, countryPoints["US"], "US centroid"},
		{"US centroid v6", "2001:db8:ffff::1", SourceCountry, countryPoints["US"], "US centroid"},
		{"Canada's geographic centre at 100 km", "203.0.113.85", SourceCountry, countryPoints["CA"], "geographic centre of CA"},
		{"large radius", "203.0.113.33", SourceCountry, countryPoints["AU"], "accuracy radius 1000 km > 500 km"},
		// No coordinates: the country's point, for a country the old
		// table lacked (Lebanon went to Tokyo).
		{"no coordinates, Lebanon", "203.0.113.120", SourceCountry, countryPoints["LB"], "country LB: no coordinates"},
		{"continent only", "203.0.113.50", SourceContinent, continentPoints["AF"], "continent AF"},
		{"country without point", "203.0.113.70", SourceContinent, continentPoints["AS"], "no point for country IO"},
		{"unknown v4", "203.0.113.200", SourceDefault, def, "not in the database"},
		{"unknown v6", "2001:db8:abcd::1", SourceDefault, def, "not in the database"},
		{"outside every test network", "8.8.8.8", SourceDefault, def, "not in the database"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loc := r.Locate(netip.MustParseAddr(tc.ip))
			if loc.Source != tc.source || !near(loc.Point, tc.point) || !strings.Contains(loc.Reason, tc.reason) {
				t.Fatalf("Locate(%s) = %v %v %q; want %v %v, reason containing %q", tc.ip, loc.Source, loc.Point, loc.Reason, tc.source, tc.point, tc.reason)
			}
		})
	}
}

func TestLocateOptions(t *testing.T) {
	t.Run("no default", func(t *testing.T) {
		r := openTest(t, Options{})
		loc := r.Locate(netip.MustParseAddr("203.0.113.200"))
		if loc.Source != SourceNone || !strings.Contains(loc.Reason, "no default") {
			t.Fatalf("got %v %q, want none", loc.Source, loc.Reason)
		}
	})
	t.Run("country override", func(t *testing.T) {
		nyc := geo.Point{Lat: 40.71, Lon: -74.01}
		r := openTest(t, Options{Countries: map[string]geo.Point{"us": nyc}})
		loc := r.Locate(netip.MustParseAddr("203.0.113.20"))
		if loc.Source != SourceCountry || loc.Point != nyc {
			t.Fatalf("got %v %v, want country %v", loc.Source, loc.Point, nyc)
		}
	})
	t.Run("accuracy threshold", func(t *testing.T) {
		r := openTest(t, Options{MaxAccuracyKm: 10})
		loc := r.Locate(netip.MustParseAddr("192.0.2.1"))
		if loc.Source != SourceCountry || !strings.Contains(loc.Reason, "20 km > 10 km") {
			t.Fatalf("got %v %q, want country fallback for a 20 km radius", loc.Source, loc.Reason)
		}
	})
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "missing.mmdb"), Options{}); err == nil {
		t.Fatal("opened a missing file")
	}
	junk := filepath.Join(t.TempDir(), "junk.mmdb")
	if err := os.WriteFile(junk, []byte("not a database"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(junk, Options{}); err == nil {
		t.Fatal("opened a file that is not a database")
	}
	bad := geo.Point{Lat: 91}
	if _, err := Open(testDB, Options{Default: &bad}); err == nil {
		t.Fatal("accepted a default latitude of 91")
	}
}

func TestTablesValid(t *testing.T) {
	for name, m := range map[string]map[string]geo.Point{"country": countryPoints, "continent": continentPoints} {
		for code, p := range m {
			if !validPoint(p) || len(code) != 2 || strings.ToUpper(code) != code || (p.Lat == 0 && p.Lon == 0) {
				t.Errorf("%s %q: %v", name, code, p)
			}
		}
	}
	// Generated for every ISO 3166-1 country with people: 245 of 249.
	if len(countryPoints) < 245 {
		t.Errorf("%d country points, want every inhabited ISO 3166-1 country", len(countryPoints))
	}
	// No country point may be a centroid trap it replaces.
	for _, tr := range centroidTraps {
		if d := geo.DistanceKm(countryPoints[tr.country], tr.point); d < 100 || math.IsNaN(d) {
			t.Errorf("%s point is %.0f km from the centroid trap %v", tr.country, d, tr.point)
		}
	}
	if d := geo.DistanceKm(countryPoints["US"], usCentroid); d < 100 || math.IsNaN(d) {
		t.Errorf("US point is %.0f km from the centroid", d)
	}
}

func BenchmarkLocate(b *testing.B) {
	r, err := Open(testDB, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	a := netip.MustParseAddr("192.0.2.1")
	for b.Loop() {
		r.Locate(a)
	}
}

// TestOpenRefusesCorruptDatabase: a database whose data section is
// damaged is refused at open, naming the file, though its metadata and
// search tree are intact; the intact file opens and knows when it was
// built.
func TestOpenRefusesCorruptDatabase(t *testing.T) {
	good, err := os.ReadFile(testDB)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(testDB, Options{})
	if err != nil {
		t.Fatalf("the intact database: %v", err)
	}
	if r.BuildTime().IsZero() || r.BuildTime().After(time.Now()) {
		t.Errorf("build time %v", r.BuildTime())
	}
	meta := bytes.LastIndex(good, []byte("\xab\xcd\xefMaxMind.com"))
	if meta < 400 {
		t.Fatalf("no metadata marker in %s", testDB)
	}
	bad := bytes.Clone(good)
	for i := meta - 300; i < meta-100; i++ {
		bad[i] = 0xff // the end of the data section: invalid control bytes
	}
	path := filepath.Join(t.TempDir(), "corrupt.mmdb")
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("a database with a damaged data section: %v; want an error naming %s as corrupt", err, path)
	}
}
