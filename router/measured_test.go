package router

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/geo"
	"github.com/geocdn/geocdn/internal/geoip"
	"github.com/geocdn/geocdn/internal/rttstat"
	"github.com/geocdn/geocdn/origin"
)

// TestMeasuredRTTOverridesModel: a client in Paris, for which London is
// nearest on the map. Once both European edges have measured enough of
// the client's network, the measurements rank them: London, slow for this
// network, loses to Frankfurt. Too few samples leave the model in charge,
// and a network nobody measured is unaffected.
func TestMeasuredRTTOverridesModel(t *testing.T) {
	db, err := geoip.Open(testDB, geoip.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	client := netip.MustParseAddr(ipParis)
	loc := db.Locate(client)
	network := rttstat.Network(client)
	table := func(samples float64) *Table {
		es := healthy(devEdges())
		for i := range es {
			switch es[i].ID {
			case "lhr":
				es[i].RTT = []MeasuredRTT{{Network: network, RTT: 80 * time.Millisecond, Samples: samples}}
			case "fra":
				es[i].RTT = []MeasuredRTT{{Network: network, RTT: 11 * time.Millisecond, Samples: samples}}
			}
		}
		return NewTable(es, TableOptions{CacheEntries: -1})
	}
	// The map alone: London is the nearer.
	if km := geo.DistanceKm(loc.Point, geo.Point{Lat: 51.51, Lon: -0.13}); km > geo.DistanceKm(loc.Point, geo.Point{Lat: 50.11, Lon: 8.68}) {
		t.Fatalf("test premise: London %v km is not the nearer", km)
	}

	for _, key := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		d, err := table(24).Decide(Query{Location: loc, Key: key, Network: network, Explain: true})
		if err != nil {
			t.Fatal(err)
		}
		if d.Edge != "fra" || d.RTTSource != "measured" || d.MeasuredRTTms != 11 {
			t.Fatalf("key %s: %s by %s (%v ms); want fra by its measured 11 ms: %s", key, d.Edge, d.RTTSource, d.MeasuredRTTms, d.Reason)
		}
		if !strings.Contains(d.Reason, "measured RTT 11.0 ms from "+network.String()) {
			t.Fatalf("reason %q", d.Reason)
		}
		// London is out: 80 ms is beyond Frankfurt's 11 + 5.
		for _, c := range d.Candidates {
			if c.Edge == "lhr" {
				t.Fatalf("London still a candidate: %+v", d.Candidates)
			}
		}
	}

	// Below the minimum of samples: the model decides, as if unmeasured.
	under := table(DefaultMinRTTSamples - 1)
	model := table(0)
	for _, key := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		d1, err1 := under.Decide(Query{Location: loc, Key: key, Network: network})
		d2, err2 := model.Decide(Query{Location: loc, Key: key})
		if err1 != nil || err2 != nil || d1.Edge != d2.Edge || d1.RTTSource != "model" {
			t.Fatalf("key %s: %s (%s) with %v samples, %s without: %v %v", key, d1.Edge, d1.RTTSource, DefaultMinRTTSamples-1, d2.Edge, err1, err2)
		}
	}

	// Another network, even next door, keeps the model.
	other := netip.MustParsePrefix("192.0.3.0/24")
	d, err := table(24).Decide(Query{Location: loc, Key: "a", Network: other})
	if err != nil || d.RTTSource != "model" {
		t.Fatalf("unmeasured network: %s by %q, %v", d.Edge, d.RTTSource, err)
	}

	// A client the database cannot place, but whose network was
	// measured: the measurements alone rank.
	d, err = table(24).Decide(Query{Location: geoip.Location{Source: geoip.SourceNone}, Key: "a", Network: network})
	if err != nil || d.Edge != "fra" || d.RTTSource != "measured" {
		t.Fatalf("unlocated, measured network: %s by %q, %v", d.Edge, d.RTTSource, err)
	}
}

// TestMeasuredRTTFromEdgeList: GET /v1/edges' rtt rows become the table's
// measurements; rows that do not parse or say nothing are left out.
func TestMeasuredRTTFromEdgeList(t *testing.T) {
	got := measuredRTTs([]origin.NetworkRTT{
		{Network: "192.0.2.0/24", MedianMs: 12.5, Samples: 30},
		{Network: "2001:db8:1::/48", MedianMs: 0.25, Samples: 9},
		{Network: "192.0.2.77/24", MedianMs: 3, Samples: 9}, // masked
		{Network: "not a prefix", MedianMs: 3, Samples: 9},
		{Network: "198.51.100.0/24", MedianMs: 0, Samples: 9},
		{Network: "198.51.100.0/24", MedianMs: 4, Samples: 0},
	})
	want := []MeasuredRTT{
		{Network: netip.MustParsePrefix("192.0.2.0/24"), RTT: 12500 * time.Microsecond, Samples: 30},
		{Network: netip.MustParsePrefix("2001:db8:1::/48"), RTT: 250 * time.Microsecond, Samples: 9},
		{Network: netip.MustParsePrefix("192.0.2.0/24"), RTT: 3 * time.Millisecond, Samples: 9},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}
