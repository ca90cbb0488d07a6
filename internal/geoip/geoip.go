// Package geoip locates clients with a MaxMind GeoIP2 or GeoLite2 City
// database (or the test database generated from ./gen) for the router.
//
// A database answer is only as good as its accuracy radius. Locate uses a
// record's own coordinates whenever that radius is within MaxAccuracyKm,
// with a city or without one (a record placed in a region to 100 km is a
// position, city name or not). It does not for known centroid traps: for
// addresses it can place no better than a country, a database may return
// the country's geographic centre, which for a large country is far from
// almost all of its people; MaxMind's US centroid, 37.751,-97.822, is a
// farm in Kansas that has sent real traffic to the wrong coast. Those
// records, and those with too large a radius or no coordinates, fall back
// in order to a point of the record's country (where its people are:
// countries_gen.go, generated from GeoNames for every ISO 3166-1 country
// with people), of its continent, then to the configured default.
//
// Key invariant: Locate never fails and every Location it returns says
// which of those sources it came from and why (Source and Reason), so a
// routing decision can always be explained.
package geoip

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/geocdn/geocdn/internal/geo"
)

// DefaultMaxAccuracyKm is the largest accuracy radius at which Locate
// uses a record's own coordinates. MaxMind's city-level answers are mostly
// 1–200 km; answers for a whole large country 1000 km.
const DefaultMaxAccuracyKm = 500

// usCentroid is where MaxMind places US addresses it cannot locate better.
var usCentroid = geo.Point{Lat: 37.751, Lon: -97.822}

// Source says where a Location's point came from, best first.
type Source uint8

const (
	// SourceNone: nothing located the address and no default is set;
	// Point is meaningless.
	SourceNone Source = iota
	// SourceDefault: the configured default location.
	SourceDefault
	// SourceContinent: a representative point of the record's continent.
	SourceContinent
	// SourceCountry: a representative point of the record's country.
	SourceCountry
	// SourcePosition: the record's own coordinates, trusted by their
	// accuracy radius, in a record that names no city.
	SourcePosition
	// SourceCity: the record's own coordinates, in a record with a city.
	SourceCity
)

var sourceNames = [...]string{"none", "default", "continent", "country", "position", "city"}

func (s Source) String() string {
	if int(s) < len(sourceNames) {
		return sourceNames[s]
	}
	return fmt.Sprintf("source(%d)", s)
}

// MarshalText makes a Source read as its name in JSON.
func (s Source) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Record is what the database says about an address, before any fallback.
type Record struct {
	// Found is false when the address is in no network of the database.
	Found bool
	// Network is the database network the record covers: every address in
	// it has the same answer. When not Found, the empty range around the
	// address (it may be invalid if the database could not say).
	Network netip.Prefix
	// City is the city's English name, empty for a country-level record.
	City string
	// CityID is the city's GeoNames id, 0 if absent.
	CityID uint
	// Country is the ISO 3166-1 alpha-2 code; CountryName its English name.
	Country, CountryName string
	// Continent is MaxMind's two-letter continent code (AF, AN, AS, EU,
	// NA, OC, SA).
	Continent string
	// HasPoint is true when the record has coordinates.
	HasPoint bool
	Point    geo.Point
	// AccuracyKm is the radius around Point within which the address is
	// with about 67% confidence; 0 when absent.
	AccuracyKm int
}

// Location is a client's position for routing and how it was found.
type Location struct {
	Point  geo.Point
	Source Source
	// Reason explains Source in a sentence for route explanations.
	Reason string
	// Record is the database answer behind the location.
	Record Record
}

// Options configures fallbacks. The zero value is usable.
type Options struct {
	// MaxAccuracyKm is the largest accuracy radius at which a record's
	// own coordinates are used.
	// Default DefaultMaxAccuracyKm; at least 1.
	MaxAccuracyKm int
	// Default is where clients that nothing else locates are placed. Nil
	// means none: such clients get SourceNone.
	Default *geo.Point
	// Countries adds to or overrides the built-in country points, keyed by
	// upper-case ISO 3166-1 alpha-2 code.
	Countries map[string]geo.Point
}

// Reader looks addresses up in one database file. It is safe for
// concurrent use; Close it when done.
type Reader struct {
	db            *geoip2.Reader
	dbType        string
	built         time.Time
	maxAccuracyKm int
	def           *geo.Point
	countries     map[string]geo.Point
}

// Open reads a GeoIP2/GeoLite2 City database into memory and verifies it
// whole (its metadata, search tree and data section, as the reader's
// Verify does): a database that is corrupt anywhere is refused, with the
// file's name and the reason, rather than answer some lookups wrong. It
// is read rather than memory-mapped, so that a Reader dropped for a newer
// file needs no Close while lookups may still run on it.
func Open(path string, opts Options) (*Reader, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("open geoip database: %w", err)
	}
	r, err := OpenBytes(b, opts)
	if err != nil {
		return nil, fmt.Errorf("geoip database %s: %w", path, err)
	}
	return r, nil
}

// OpenBytes is Open for a database already in memory; b must not change
// while the Reader is in use.
func OpenBytes(b []byte, opts Options) (*Reader, error) {
	raw, err := maxminddb.OpenBytes(b)
	if err != nil {
		return nil, fmt.Errorf("not a MaxMind DB: %w", err)
	}
	if err := raw.Verify(); err != nil {
		return nil, fmt.Errorf("corrupt: %w", err)
	}
	db, err := geoip2.OpenBytes(b)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	r, err := newReader(db, opts)
	if err != nil {
		return nil, err
	}
	return r, nil
}

func newReader(db *geoip2.Reader, opts Options) (*Reader, error) {
	typ := db.Metadata().DatabaseType
	// Country databases answer City lookups too, but never with
	// coordinates: every client would fall back to its country. Refuse
	// them so a wrong --geoip file is noticed at start.
	if !strings.Contains(typ, "City") && !strings.Contains(typ, "Enterprise") {
		return nil, fmt.Errorf("database type %q has no city locations (want GeoIP2-City or GeoLite2-City)", typ)
	}
	if opts.MaxAccuracyKm < 0 {
		return nil, errors.New("max accuracy: must not be negative")
	}
	if opts.Default != nil && !validPoint(*opts.Default) {
		return nil, fmt.Errorf("default location %v: latitude or longitude out of range", *opts.Default)
	}
	r := &Reader{db: db, dbType: typ, maxAccuracyKm: opts.MaxAccuracyKm, countries: make(map[string]geo.Point, len(countryPoints)+len(opts.Countries)),
		built: time.Unix(int64(db.Metadata().BuildEpoch), 0).UTC()}
	if r.maxAccuracyKm == 0 {
		r.maxAccuracyKm = DefaultMaxAccuracyKm
	}
	if opts.Default != nil {
		d := *opts.Default
		r.def = &d
	}
	for cc, p := range countryPoints {
		r.countries[cc] = p
	}
	for cc, p := range opts.Countries {
		if !validPoint(p) {
			return nil, fmt.Errorf("country location %s %v: latitude or longitude out of range", cc, p)
		}
		r.countries[strings.ToUpper(cc)] = p
	}
	return r, nil
}

// DatabaseType is the database's metadata type, e.g. "GeoLite2-City".
func (r *Reader) DatabaseType() string { return r.dbType }

// BuildTime is when the database was built (its metadata's build epoch).
func (r *Reader) BuildTime() time.Time { return r.built }

// Close releases the database.
func (r *Reader) Close() error { return r.db.Close() }

// Lookup returns the database's record for addr (IPv4-mapped IPv6
// addresses are looked up as IPv4).
func (r *Reader) Lookup(addr netip.Addr) (Record, error) {
	addr = addr.Unmap().WithZone("")
	c, err := r.db.City(addr)
	if err != nil {
		return Record{}, fmt.Errorf("geoip lookup %s: %w", addr, err)
	}
	if !c.HasData() {
		// The network still matters: it is the empty range around addr,
		// which callers may cache as a whole.
		return Record{Network: c.Traits.Network}, nil
	}
	rec := Record{
		Found:       true,
		Network:     c.Traits.Network,
		City:        c.City.Names.English,
		CityID:      c.City.GeoNameID,
		Country:     c.Country.ISOCode,
		CountryName: c.Country.Names.English,
		Continent:   c.Continent.Code,
		AccuracyKm:  int(c.Location.AccuracyRadius),
	}
	if c.Location.HasCoordinates() {
		p := geo.Point{Lat: *c.Location.Latitude, Lon: *c.Location.Longitude}
		if validPoint(p) {
			rec.HasPoint, rec.Point = true, p
		}
	}
	return rec, nil
}

// Locate returns where to route addr from, falling back from city to
// country, continent and the default as the package comment describes.
func (r *Reader) Locate(addr netip.Addr) Location {
	rec, err := r.Lookup(addr)
	if err != nil {
		return r.fallback(rec, "lookup failed: "+err.Error())
	}
	if !rec.Found {
		return r.fallback(rec, "address not in the database")
	}
	why := r.untrusted(rec)
	switch {
	case why != "":
		return r.fallback(rec, why)
	case rec.City == "" && rec.CityID == 0:
		return Location{
			Point:  rec.Point,
			Source: SourcePosition,
			Reason: fmt.Sprintf("position %.3f,%.3f in %s, no city (accuracy %d km)", rec.Point.Lat, rec.Point.Lon, rec.Country, rec.AccuracyKm),
			Record: rec,
		}
	}
	return Location{
		Point:  rec.Point,
		Source: SourceCity,
		Reason: fmt.Sprintf("city %s (accuracy %d km)", placeName(rec), rec.AccuracyKm),
		Record: rec,
	}
}

// untrusted returns "" when rec's own coordinates place the client well
// enough, else why not.
func (r *Reader) untrusted(rec Record) string {
	noCity := rec.City == "" && rec.CityID == 0
	switch {
	case !rec.HasPoint:
		return "no coordinates"
	case isUSCentroid(rec.Point):
		return fmt.Sprintf("coordinates %.3f,%.3f are MaxMind's US centroid, not a position", rec.Point.Lat, rec.Point.Lon)
	case noCity && centroidTrap(rec.Country, rec.Point):
		return fmt.Sprintf("no city, coordinates %.3f,%.3f are the geographic centre of %s, not a position", rec.Point.Lat, rec.Point.Lon, rec.Country)
	case rec.AccuracyKm > r.maxAccuracyKm:
		return fmt.Sprintf("accuracy radius %d km > %d km", rec.AccuracyKm, r.maxAccuracyKm)
	case noCity && rec.AccuracyKm == 0:
		return fmt.Sprintf("no city and no accuracy radius (coordinates %.3f,%.3f)", rec.Point.Lat, rec.Point.Lon)
	}
	return ""
}

func isUSCentroid(p geo.Point) bool {
	return math.Abs(p.Lat-usCentroid.Lat) < 0.0005 && math.Abs(p.Lon-usCentroid.Lon) < 0.0005
}

// fallback places rec by country, continent or default; why says why the
// record's own coordinates were not used.
func (r *Reader) fallback(rec Record, why string) Location {
	if rec.Country != "" {
		if p, ok := r.countries[rec.Country]; ok {
			return Location{Point: p, Source: SourceCountry, Record: rec,
				Reason: fmt.Sprintf("country %s: %s", rec.Country, why)}
		}
		why = fmt.Sprintf("%s; no point for country %s", why, rec.Country)
	}
	if rec.Continent != "" {
		if p, ok := continentPoints[rec.Continent]; ok {
			return Location{Point: p, Source: SourceContinent, Record: rec,
				Reason: fmt.Sprintf("continent %s: %s", rec.Continent, why)}
		}
		why = fmt.Sprintf("%s; no point for continent %s", why, rec.Continent)
	}
	if r.def != nil {
		return Location{Point: *r.def, Source: SourceDefault, Record: rec,
			Reason: fmt.Sprintf("default location %.4f,%.4f: %s", r.def.Lat, r.def.Lon, why)}
	}
	return Location{Source: SourceNone, Record: rec, Reason: "unlocated, no default location: " + why}
}

func placeName(rec Record) string {
	name := rec.City
	if name == "" {
		name = fmt.Sprintf("geoname %d", rec.CityID)
	}
	if rec.Country != "" {
		name += ", " + rec.Country
	}
	return name
}

// validPoint reports whether p is a latitude in [-90, 90] and a longitude
// in [-180, 180] (NaN is neither).
func validPoint(p geo.Point) bool {
	return p.Lat >= -90 && p.Lat <= 90 && p.Lon >= -180 && p.Lon <= 180
}
