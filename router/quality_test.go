package router

import (
	"bytes"
	"encoding/csv"

	"math"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/geocdn/geocdn/internal/geo"
	"github.com/geocdn/geocdn/internal/geoip"
	"github.com/geocdn/geocdn/placement"
)

// The routing-quality figures of the README: on real PoPs
// (testdata/topology.yaml, 58 edges), how often a client goes to its
// nearest edge, and how far beyond it when its record is country-only.

// realEdges are the topology's PoPs as routable edges.
func realEdges(tb testing.TB) []Edge {
	tb.Helper()
	f, err := os.Open("../testdata/topology.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	topo, err := placement.ParseTopology("topology.yaml", f)
	if err != nil {
		tb.Fatal(err)
	}
	var out []Edge
	for _, e := range topo.Edges {
		out = append(out, Edge{ID: e.ID, Region: e.Region, Lat: e.Lat, Lon: e.Lon, PublicURL: "http://" + e.ID + ".test/", Healthy: true})
	}
	return out
}

// nearestKm is the distance from p to the nearest of edges.
func nearestKm(p geo.Point, edges []Edge) (string, float64) {
	best, bestKm := "", math.Inf(1)
	for _, e := range edges {
		if d := geo.DistanceKm(p, geo.Point{Lat: e.Lat, Lon: e.Lon}); d < bestKm {
			best, bestKm = e.ID, d
		}
	}
	return best, bestKm
}

func edgeKm(p geo.Point, id string, edges []Edge) float64 {
	for _, e := range edges {
		if e.ID == id {
			return geo.DistanceKm(p, geo.Point{Lat: e.Lat, Lon: e.Lon})
		}
	}
	return math.NaN()
}

type quality struct {
	networks, nearest, equivalent int
	extraKm                       []float64
}

func (q quality) shareNearest() float64 { return 100 * float64(q.nearest) / float64(q.networks) }
func (q quality) shareEquivalent() float64 {
	return 100 * float64(q.equivalent) / float64(q.networks)
}
func (q quality) meanExtraKm() float64 {
	var s float64
	for _, x := range q.extraKm {
		s += x
	}
	return s / float64(len(q.extraKm))
}
func (q quality) p90ExtraKm() float64 {
	xs := slices.Clone(q.extraKm)
	slices.Sort(xs)
	return xs[int(math.Ceil(0.9*float64(len(xs))))-1]
}

// judge routes one client of every network of the database at path, and
// compares the edge chosen with the edge nearest the network's true
// position: truth gives it (nil: the coordinates of a city record within
// the router's accuracy limit). Only networks that have a true position
// are counted.
func judge(tb testing.TB, path string, edges []Edge, truth func(netip.Prefix) (geo.Point, bool)) quality {
	return judgeWith(tb, path, edges, truth, TableOptions{})
}

// judgeWith is judge with the table's options.
func judgeWith(tb testing.TB, path string, edges []Edge, truth func(netip.Prefix) (geo.Point, bool), opts TableOptions) quality {
	tb.Helper()
	r, err := geoip.Open(path, geoip.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	defer r.Close()
	raw, err := maxminddb.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer raw.Close()
	tab := NewTable(edges, opts)
	var q quality
	for res := range raw.Networks() {
		if res.Err() != nil {
			tb.Fatal(res.Err())
		}
		prefix := res.Prefix()
		var rec struct {
			Location struct {
				Latitude       *float64 `maxminddb:"latitude"`
				Longitude      *float64 `maxminddb:"longitude"`
				AccuracyRadius int      `maxminddb:"accuracy_radius"`
			} `maxminddb:"location"`
			City struct {
				GeoNameID uint              `maxminddb:"geoname_id"`
				Names     map[string]string `maxminddb:"names"`
			} `maxminddb:"city"`
		}
		if err := res.Decode(&rec); err != nil {
			tb.Fatal(err)
		}
		var p geo.Point
		ok := false
		if truth != nil {
			p, ok = truth(prefix)
		} else if rec.Location.Latitude != nil && len(rec.City.Names) > 0 && rec.Location.AccuracyRadius <= geoip.DefaultMaxAccuracyKm {
			// A city record the router trusts: its position is the truth.
			p, ok = geo.Point{Lat: *rec.Location.Latitude, Lon: *rec.Location.Longitude}, true
		}
		if !ok {
			continue
		}
		loc := r.Locate(prefix.Addr())
		d, err := tab.Decide(Query{Location: loc, Affinity: affinity(prefix.Addr())})
		if err != nil {
			tb.Fatal(err)
		}
		want, wantKm := nearestKm(p, edges)
		got := edgeKm(p, d.Edge, edges)
		q.networks++
		if d.Edge == want {
			q.nearest++
		}
		// Within the table's equivalence of the nearest: as near, to
		// the model, as rendezvous hashing is allowed to spread.
		if geo.EstimateRTT(got)-geo.EstimateRTT(wantKm) <= DefaultEquivalence {
			q.equivalent++
		}
		q.extraKm = append(q.extraKm, got-wantKm)
	}
	if q.networks == 0 {
		tb.Fatal("no network judged")
	}
	return q
}

// metro is a demand point of testdata/demand.csv: a real metro area.
type metro struct {
	id, country string
	p           geo.Point
}

func metros(tb testing.TB) []metro {
	tb.Helper()
	b, err := os.ReadFile("../testdata/demand.csv")
	if err != nil {
		tb.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "#") && l != "" {
			lines = append(lines, l)
		}
	}
	rows, err := csv.NewReader(strings.NewReader(strings.Join(lines, "\n"))).ReadAll()
	if err != nil {
		tb.Fatal(err)
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	var out []metro
	for _, row := range rows[1:] {
		lat, _ := strconv.ParseFloat(row[col["lat"]], 64)
		lon, _ := strconv.ParseFloat(row[col["lon"]], 64)
		out = append(out, metro{id: row[col["id"]], country: row[col["country"]], p: geo.Point{Lat: lat, Lon: lon}})
	}
	return out
}

// skewedDB writes a City database in which every metro of demand.csv is
// one /24 known only by its country: half of them with no coordinates,
// half at a country-level point with a 1,000 km radius (the metro's own
// country's centre of its cities, moved 800 km, as a database skews
// them). It returns the database's path and each network's metro.
func skewedDB(tb testing.TB) (string, map[netip.Prefix]metro) {
	tb.Helper()
	w, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType: "GeoIP2-City", IncludeReservedNetworks: true, IPVersion: 6, RecordSize: 24, Languages: []string{"en"},
		Description: map[string]string{"en": "geocdn routing-quality test: metros known only by country"},
		BuildEpoch:  time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix(),
	})
	if err != nil {
		tb.Fatal(err)
	}
	truth := map[netip.Prefix]metro{}
	for i, m := range metros(tb) {
		prefix := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)
		cc := mmdbtype.Map{"iso_code": mmdbtype.String(m.country), "names": mmdbtype.Map{"en": mmdbtype.String(m.country)}}
		rec := mmdbtype.Map{"country": cc, "registered_country": cc}
		if i%2 == 1 {
			rec["location"] = mmdbtype.Map{
				"accuracy_radius": mmdbtype.Uint16(1000),
				"latitude":        mmdbtype.Float64(m.p.Lat + 5),
				"longitude":       mmdbtype.Float64(m.p.Lon + 5),
			}
		}
		_, ipn, err := net.ParseCIDR(prefix.String())
		if err != nil {
			tb.Fatal(err)
		}
		if err := w.Insert(ipn, rec); err != nil {
			tb.Fatal(err)
		}
		truth[prefix] = m
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		tb.Fatal(err)
	}
	path := tb.TempDir() + "/skewed.mmdb"
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path, truth
}

// TestRoutingQuality: on the generated test database every network with a
// city goes to its nearest edge, or one the model counts as near as it;
// on a database of country-only records for real metros, each is routed
// within a bound of its nearest edge.
func TestRoutingQuality(t *testing.T) {
	edges := realEdges(t)
	q := judge(t, testDB, edges, nil)
	t.Logf("test database: %d networks, %.1f%% to the nearest edge, %.1f%% within %v of it", q.networks, q.shareNearest(), q.shareEquivalent(), DefaultEquivalence)
	if q.equivalent != q.networks {
		t.Errorf("%d of %d networks went to an edge farther than the equivalence allows", q.networks-q.equivalent, q.networks)
	}
	// Without the spreading (an equivalence of 1 ns), every network goes
	// to its nearest edge.
	strict := judgeWith(t, testDB, edges, nil, TableOptions{Equivalence: time.Nanosecond})
	t.Logf("test database, equivalence 1ns: %.1f%% to the nearest edge", strict.shareNearest())
	if strict.nearest != strict.networks {
		t.Errorf("equivalence 1ns: %d of %d networks not sent to their nearest edge", strict.networks-strict.nearest, strict.networks)
	}

	path, truth := skewedDB(t)
	q = judge(t, path, edges, func(p netip.Prefix) (geo.Point, bool) { m, ok := truth[p]; return m.p, ok })
	t.Logf("country-only records for %d metros: %.1f%% to the nearest edge, mean %.0f km beyond it, p90 %.0f km", q.networks, q.shareNearest(), q.meanExtraKm(), q.p90ExtraKm())
	if q.networks != len(truth) {
		t.Errorf("judged %d networks of %d", q.networks, len(truth))
	}
	// A country's point is where its people are, so a metro known only
	// by its country lands near it. The bound is loose on purpose (a big
	// country's second city is far from its first), but a continent hub
	// for a whole country would break it: Lebanon to Tokyo is 9,000 km.
	if m := q.meanExtraKm(); m > 600 || math.IsNaN(m) {
		t.Errorf("mean extra distance %.0f km", m)
	}
}

// BenchmarkRoutingQuality reports TestRoutingQuality's figures as
// metrics (the loop only repeats the judging): share of networks to the
// nearest edge on the test database, and for country-only records the
// mean and p90 distance beyond the nearest edge.
func BenchmarkRoutingQuality(b *testing.B) {
	edges := realEdges(b)
	path, truth := skewedDB(b)
	var test, skew quality
	for b.Loop() {
		test = judge(b, testDB, edges, nil)
		skew = judge(b, path, edges, func(p netip.Prefix) (geo.Point, bool) { m, ok := truth[p]; return m.p, ok })
	}
	b.ReportMetric(test.shareNearest(), "%nearest")
	b.ReportMetric(test.shareEquivalent(), "%equivalent")
	b.ReportMetric(skew.shareNearest(), "%nearest-country-only")
	b.ReportMetric(skew.meanExtraKm(), "extra-km-mean-country-only")
	b.ReportMetric(skew.p90ExtraKm(), "extra-km-p90-country-only")
}
