package router

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/geocdn/geocdn/internal/geo"
	"github.com/geocdn/geocdn/internal/geoip"
)

const testDB = "../testdata/geoip-test.mmdb"

// Addresses of the generated test database (internal/geoip/gen).
const (
	ipParis        = "192.0.2.1"
	ipLondon       = "192.0.2.17"
	ipNewYork      = "192.0.2.129"
	ipSaoPaulo     = "198.51.100.1"
	ipTokyo        = "198.51.100.65"
	ipSydney       = "198.51.100.177"
	ipJohannesburg = "198.51.100.209"
	ipUSCentroid   = "203.0.113.20"
	ipUnknown      = "203.0.113.200"
	ip6Paris       = "2001:db8:1::1"
	ip6Tokyo       = "2001:db8:15::1"
	ip6Sydney      = "2001:db8:1c::7"
)

// devEdges are the `geocdn dev` cluster's edges.
func devEdges() []Edge {
	return []Edge{
		{ID: "iad", Region: "us-east", Lat: 38.90, Lon: -77.04},
		{ID: "dfw", Region: "us-central", Lat: 32.78, Lon: -96.80},
		{ID: "lhr", Region: "eu-west", Lat: 51.51, Lon: -0.13},
		{ID: "fra", Region: "eu-central", Lat: 50.11, Lon: 8.68},
		{ID: "nrt", Region: "ap-northeast", Lat: 35.68, Lon: 139.69},
		{ID: "syd", Region: "ap-southeast", Lat: -33.87, Lon: 151.21},
		{ID: "gru", Region: "sa-east", Lat: -23.55, Lon: -46.63},
	}
}

func healthy(es []Edge) []Edge {
	for i := range es {
		es[i].Healthy = true
		if es[i].PublicURL == "" {
			es[i].PublicURL = "http://" + es[i].ID + ".test/"
		}
	}
	return es
}

func openDB(t testing.TB, def *geo.Point) *geoip.Reader {
	t.Helper()
	db, err := geoip.Open(testDB, geoip.Options{Default: def})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestDecideNearest(t *testing.T) {
	frankfurt := geo.Point{Lat: 50.11, Lon: 8.68}
	db := openDB(t, &frankfurt)
	tab := NewTable(healthy(devEdges()), TableOptions{})
	for _, tc := range []struct {
		name, ip string
		want     []string
		source   geoip.Source
		reason   string
	}{
		{"Paris → a European edge", ipParis, []string{"lhr", "fra"}, geoip.SourceCity, "city Paris"},
		{"London → London", ipLondon, []string{"lhr"}, geoip.SourceCity, "1 edge within 5ms"},
		{"Tokyo → the Asian edge", ipTokyo, []string{"nrt"}, geoip.SourceCity, "city Tokyo"},
		{"New York → Washington", ipNewYork, []string{"iad"}, geoip.SourceCity, "city New York"},
		{"São Paulo → São Paulo", ipSaoPaulo, []string{"gru"}, geoip.SourceCity, "city São Paulo"},
		{"Sydney → Sydney", ipSydney, []string{"syd"}, geoip.SourceCity, "city Sydney"},
		{"IPv6 Paris", ip6Paris, []string{"lhr", "fra"}, geoip.SourceCity, "city Paris"},
		{"IPv6 Tokyo", ip6Tokyo, []string{"nrt"}, geoip.SourceCity, "city Tokyo"},
		{"IPv6 Sydney", ip6Sydney, []string{"syd"}, geoip.SourceCity, "city Sydney"},
		{"IPv4-mapped Tokyo", "::ffff:" + ipTokyo, []string{"nrt"}, geoip.SourceCity, "city Tokyo"},
		{"unknown → default (Frankfurt)", ipUnknown, []string{"fra"}, geoip.SourceDefault, "default location"},
		{"US centroid → US population centre, not Kansas", ipUSCentroid, []string{"iad", "dfw"}, geoip.SourceCountry, "US centroid"},
		// A record with no city but a 100 km radius in California is a
		// position: the nearer US edge, not the country's centre.
		{"California, no city → Dallas", "203.0.113.100", []string{"dfw"}, geoip.SourcePosition, "no city (accuracy 100 km)"},
		// Known only as Lebanon: Beirut, so Europe, not Asia's hub.
		{"Lebanon, country only → Europe, not Tokyo", "203.0.113.120", []string{"fra"}, geoip.SourceCountry, "country LB"},
		// Canada's geographic centre is a trap: Toronto's side.
		{"Canada's centre → the population, near the east", "203.0.113.85", []string{"iad"}, geoip.SourceCountry, "geographic centre of CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loc := db.Locate(netip.MustParseAddr(tc.ip))
			d, err := tab.Decide(Query{Location: loc, Namespace: "default", Key: "index.html", Explain: true})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(tc.want, d.Edge) {
				t.Fatalf("edge %s, want one of %v (reason %q)", d.Edge, tc.want, d.Reason)
			}
			if d.Location.Source != tc.source || !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("source %v reason %q; want %v and %q", d.Location.Source, d.Reason, tc.source, tc.reason)
			}
			if d.URL != "http://"+d.Edge+".test" {
				t.Fatalf("url %q", d.URL)
			}
			if d.EstRTTms <= 0 || d.DistanceKm < 0 {
				t.Fatalf("distance %v km, rtt %v ms", d.DistanceKm, d.EstRTTms)
			}
			want := geo.EstimateRTT(geo.DistanceKm(loc.Point, pointOf(t, d.Edge)))
			if got := ms(want); abs(got-d.EstRTTms) > 1e-6 {
				t.Fatalf("est rtt %v ms, want the shared model's %v", d.EstRTTms, got)
			}
			if len(d.Candidates) < len(tc.want) || d.Candidates[0].EstRTTms > d.Candidates[len(d.Candidates)-1].EstRTTms {
				t.Fatalf("candidates %+v", d.Candidates)
			}
		})
	}
}

func pointOf(t *testing.T, id string) geo.Point {
	for _, e := range devEdges() {
		if e.ID == id {
			return geo.Point{Lat: e.Lat, Lon: e.Lon}
		}
	}
	t.Fatalf("no edge %s", id)
	return geo.Point{}
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

func TestDecideUnlocatedSpreadsOverAll(t *testing.T) {
	db := openDB(t, nil)
	tab := NewTable(healthy(devEdges()), TableOptions{})
	loc := db.Locate(netip.MustParseAddr(ipUnknown))
	if loc.Source != geoip.SourceNone {
		t.Fatalf("source %v, want none", loc.Source)
	}
	seen := map[string]bool{}
	for i := range 200 {
		d, err := tab.Decide(Query{Location: loc, Key: fmt.Sprintf("k%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		seen[d.Edge] = true
		if !strings.Contains(d.Reason, "every edge equivalent") {
			t.Fatalf("reason %q", d.Reason)
		}
	}
	if len(seen) != len(devEdges()) {
		t.Fatalf("unlocated clients reached %d edges, want all %d", len(seen), len(devEdges()))
	}
}

// Three edges in one city are equivalent: keys spread over all three,
// each key always to the same one, and a fourth edge takes keys only
// for itself (rendezvous hashing moves nothing else).
func TestRendezvousSpread(t *testing.T) {
	db := openDB(t, nil)
	paris := []Edge{
		{ID: "par1", Lat: 48.86, Lon: 2.35}, {ID: "par2", Lat: 48.85, Lon: 2.36}, {ID: "par3", Lat: 48.87, Lon: 2.34},
	}
	tab := NewTable(healthy(slices.Clone(paris)), TableOptions{})
	loc := db.Locate(netip.MustParseAddr(ipParis))
	const n = 3000
	first := make([]string, n)
	count := map[string]int{}
	for i := range n {
		d, err := tab.Decide(Query{Location: loc, Namespace: "default", Key: fmt.Sprintf("obj/%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		first[i] = d.Edge
		count[d.Edge]++
	}
	for _, e := range paris {
		if c := count[e.ID]; c < n/5 {
			t.Errorf("edge %s got %d of %d keys, want about a third", e.ID, c, n)
		}
	}
	// Same answer from a separately built table (another router).
	again := NewTable(healthy(slices.Clone(paris)), TableOptions{})
	grown := NewTable(healthy(append(slices.Clone(paris), Edge{ID: "par4", Lat: 48.86, Lon: 2.35})), TableOptions{})
	moved := 0
	for i := range n {
		q := Query{Location: loc, Namespace: "default", Key: fmt.Sprintf("obj/%d", i)}
		d, _ := again.Decide(q)
		if d.Edge != first[i] {
			t.Fatalf("key %d: %s then %s", i, first[i], d.Edge)
		}
		g, _ := grown.Decide(q)
		if g.Edge != first[i] {
			if g.Edge != "par4" {
				t.Fatalf("key %d moved from %s to %s, not to the new edge", i, first[i], g.Edge)
			}
			moved++
		}
	}
	if moved < n/8 || moved > n/3 {
		t.Errorf("%d of %d keys moved to the new edge, want about a quarter", moved, n)
	}
	// Another namespace, same key: an independent choice.
	diff := 0
	for i := range n {
		d, _ := tab.Decide(Query{Location: loc, Namespace: "other", Key: fmt.Sprintf("obj/%d", i)})
		if d.Edge != first[i] {
			diff++
		}
	}
	if diff < n/3 {
		t.Errorf("only %d of %d keys changed edge with the namespace", diff, n)
	}
}

func TestPlanHoldersPreferred(t *testing.T) {
	db := openDB(t, nil)
	tab := NewTable(healthy(devEdges()), TableOptions{})
	paris := db.Locate(netip.MustParseAddr(ipParis))
	for i := range 100 {
		key := fmt.Sprintf("k%d", i)
		// lhr and fra are equivalent for Paris: the holder wins.
		for _, holder := range []string{"lhr", "fra"} {
			d, err := tab.Decide(Query{Location: paris, Key: key, Holders: []string{"nrt", holder}, Explain: true})
			if err != nil {
				t.Fatal(err)
			}
			if d.Edge != holder || !strings.Contains(d.Reason, "1 holding the object") {
				t.Fatalf("%s with holders [nrt %s]: %s (%q)", key, holder, d.Edge, d.Reason)
			}
			for _, c := range d.Candidates {
				if c.Holds == nil || *c.Holds != (c.Edge == holder) {
					t.Fatalf("candidate %+v", c)
				}
			}
		}
	}
	// A holder far away does not beat a near edge: latency first.
	d, _ := tab.Decide(Query{Location: paris, Key: "x", Holders: []string{"nrt"}})
	if d.Edge != "lhr" && d.Edge != "fra" {
		t.Fatalf("Paris with holder nrt went to %s", d.Edge)
	}
	if !strings.Contains(d.Reason, "none holding") {
		t.Fatalf("reason %q", d.Reason)
	}
	// nil Holders (unknown plan): no mention of the plan.
	d, _ = tab.Decide(Query{Location: paris, Key: "x"})
	if strings.Contains(d.Reason, "plan") {
		t.Fatalf("reason %q mentions the plan", d.Reason)
	}
}

func TestDecideNoEdge(t *testing.T) {
	es := healthy(devEdges())
	for i := range es {
		es[i].Healthy = false
	}
	for _, tab := range []*Table{NewTable(nil, TableOptions{}), NewTable(es, TableOptions{})} {
		if _, err := tab.Decide(Query{Key: "k"}); err != ErrNoEdge {
			t.Fatalf("err %v, want ErrNoEdge", err)
		}
	}
}

// The cached ranking and the uncached one agree.
func TestRankCacheAgrees(t *testing.T) {
	db := openDB(t, nil)
	edges := manyEdges(1000)
	cached := NewTable(edges, TableOptions{CacheEntries: 8})
	uncached := NewTable(edges, TableOptions{CacheEntries: -1})
	for _, ip := range []string{ipParis, ipTokyo, ipSydney, ipSaoPaulo, ipJohannesburg, ipNewYork, ip6Paris} {
		loc := db.Locate(netip.MustParseAddr(ip))
		for i := range 50 {
			q := Query{Location: loc, Key: fmt.Sprintf("k%d", i)}
			a, _ := cached.Decide(q)
			b, _ := uncached.Decide(q)
			if a.Edge != b.Edge || a.EstRTTms != b.EstRTTms {
				t.Fatalf("%s %s: cached %s %v, uncached %s %v", ip, q.Key, a.Edge, a.EstRTTms, b.Edge, b.EstRTTms)
			}
			// Brute force: nothing nearer than the chosen edge by more
			// than the margin.
			for _, e := range edges {
				rtt := ms(geo.EstimateRTT(geo.DistanceKm(loc.Point, geo.Point{Lat: e.Lat, Lon: e.Lon})))
				if rtt < a.EstRTTms-5 {
					t.Fatalf("%s: chose %s at %.2f ms but %s is at %.2f ms", ip, a.Edge, a.EstRTTms, e.ID, rtt)
				}
			}
		}
	}
}

// manyEdges places n edges deterministically around the world's cities,
// as a large CDN would.
func manyEdges(n int) []Edge {
	hubs := []geo.Point{
		{Lat: 48.86, Lon: 2.35}, {Lat: 51.51, Lon: -0.13}, {Lat: 50.11, Lon: 8.68}, {Lat: 40.71, Lon: -74.01},
		{Lat: 38.90, Lon: -77.04}, {Lat: 32.78, Lon: -96.80}, {Lat: 34.05, Lon: -118.24}, {Lat: 35.68, Lon: 139.69},
		{Lat: 1.35, Lon: 103.82}, {Lat: 19.08, Lon: 72.88}, {Lat: -33.87, Lon: 151.21}, {Lat: -23.55, Lon: -46.63},
		{Lat: -26.20, Lon: 28.05}, {Lat: 6.52, Lon: 3.38}, {Lat: 30.04, Lon: 31.24}, {Lat: 37.57, Lon: 126.98},
	}
	x := uint64(1)
	next := func() float64 { // xorshift: deterministic jitter in [-1, 1)
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		return float64(x%2000)/1000 - 1
	}
	es := make([]Edge, n)
	for i := range es {
		h := hubs[i%len(hubs)]
		es[i] = Edge{
			ID: fmt.Sprintf("e%04d", i), Region: fmt.Sprintf("r%d", i%len(hubs)),
			Lat: h.Lat + 3*next(), Lon: h.Lon + 3*next(),
			PublicURL: fmt.Sprintf("http://e%04d.test", i), Healthy: true,
		}
	}
	return es
}
