package main

import (
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ps       []place
		lat, lon float64
	}{
		// One heavy city outweighs two light ones: the median sits on it
		// (a mean would be pulled between them).
		{"heavy city wins", []place{{lat: 40, lon: -74, pop: 8e6}, {lat: 34, lon: -118, pop: 1e6}, {lat: 41.9, lon: -87.6, pop: 1e6}}, 40, -74},
		// Three equal cities on the equator: the middle one.
		{"middle of three", []place{{lat: 0, lon: 10, pop: 1}, {lat: 0, lon: 20, pop: 1}, {lat: 0, lon: 30, pop: 1}}, 0, 20},
		// Across the antimeridian: stays there, not at longitude 0.
		{"antimeridian", []place{{lat: -17, lon: 179, pop: 1}, {lat: -17, lon: -179, pop: 1}}, -17, 180},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lat, lon := median(tc.ps)
			if haversineKm(lat, lon, tc.lat, tc.lon) > 5 {
				t.Fatalf("median %.3f,%.3f; want %.3f,%.3f", lat, lon, tc.lat, tc.lon)
			}
		})
	}
}

func TestParse(t *testing.T) {
	row := func(name, lat, lon, cc, pop string) string {
		f := make([]string, 19)
		f[2], f[4], f[5], f[8], f[14] = name, lat, lon, cc, pop
		return strings.Join(f, "\t")
	}
	var good []string
	for range 1000 {
		good = append(good, row("Town", "1.5", "2.5", "XX", "20000"))
	}
	ps, err := parse([]byte(strings.Join(good, "\n") + "\n"))
	if err != nil || len(ps) != 1000 || ps[0].lat != 1.5 || ps[0].pop != 20000 {
		t.Fatalf("parse good: %v, %d places", err, len(ps))
	}
	for name, in := range map[string]string{
		"short line":     strings.Join(good[:10], "\n") + "\nonly\tthree\tcolumns\n",
		"bad latitude":   row("T", "north", "2", "XX", "1") + "\n",
		"too few places": strings.Join(good[:10], "\n"),
	} {
		if _, err := parse([]byte(in)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestISOCountries(t *testing.T) {
	cs := isoCountries()
	// ISO 3166-1 has 249 officially assigned codes; XK is Kosovo's
	// user-assigned one, which GeoNames and MaxMind use.
	if len(cs) != 250 {
		t.Errorf("%d codes, want 249 and XK", len(cs))
	}
	have := map[string]bool{}
	for _, c := range cs {
		have[c] = true
	}
	for _, c := range []string{"US", "LB", "JO", "KW", "BH", "AM", "AZ", "LY", "XK", "SS", "BV"} {
		if !have[c] {
			t.Errorf("%s missing", c)
		}
	}
	for _, c := range []string{"SU", "YU", "AN", "EU", "UN", "AC", "ZZ", "QO"} {
		if have[c] {
			t.Errorf("%s is not an ISO 3166-1 country", c)
		}
	}
}
