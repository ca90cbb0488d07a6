package geo

import (
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// rttCSV is the measured matrix; the repository's parent directory holds
// shared/.
const rttCSV = "../../../shared/data/inter-region-rtt.csv"

func TestDistanceKm(t *testing.T) {
	tests := []struct {
		name string
		a, b Point
		want float64 // km, from published great-circle figures
	}{
		{"same point", Point{51.51, -0.13}, Point{51.51, -0.13}, 0},
		{"London–New York", Point{51.5074, -0.1278}, Point{40.7128, -74.0060}, 5570},
		{"Tokyo–Sydney", Point{35.6762, 139.6503}, Point{-33.8688, 151.2093}, 7820},
		{"antipodes", Point{0, 0}, Point{0, 180}, math.Pi * EarthRadiusKm},
		{"pole to pole", Point{90, 0}, Point{-90, 0}, math.Pi * EarthRadiusKm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DistanceKm(tt.a, tt.b)
			if math.Abs(got-tt.want) > 0.005*tt.want+0.001 {
				t.Errorf("DistanceKm = %.1f km, want %.1f km", got, tt.want)
			}
			if u := tt.a.Unit().DistanceKm(tt.b.Unit()); math.Abs(u-got) > 1e-6*got+1e-6 {
				t.Errorf("Unit.DistanceKm = %.6f km, haversine %.6f km", u, got)
			}
		})
	}
}

func TestEstimateRTT(t *testing.T) {
	tests := []struct {
		km   float64
		want time.Duration
	}{
		{0, LastMile},
		{1000, LastMile + time.Duration(10*RouteInflation*float64(time.Millisecond))},
	}
	for _, tt := range tests {
		if got := EstimateRTT(tt.km); got != tt.want {
			t.Errorf("EstimateRTT(%v) = %v, want %v", tt.km, got, tt.want)
		}
	}
	if got, want := RTT(Point{0, 0}, Point{0, 0}), LastMile; got != want {
		t.Errorf("RTT(same point) = %v, want %v", got, want)
	}
}

func TestMatrix(t *testing.T) {
	lon, was := Point{51.51, -0.13}, Point{38.90, -77.04}
	var m Matrix
	m.SetAnchor("eu-west", lon)
	m.SetAnchor("us-east", was)
	m.Set("eu-west", "us-east", 75*time.Millisecond)
	dublin, nyc := Point{53.35, -6.26}, Point{40.71, -74.01}

	tests := []struct {
		name   string
		ra     string
		a      Point
		rb     string
		b      Point
		want   time.Duration
		approx bool
	}{
		{"anchors give the measurement", "eu-west", lon, "us-east", was, 75 * time.Millisecond, false},
		{"symmetric", "us-east", was, "eu-west", lon, 75 * time.Millisecond, false},
		{"same region uses the model", "eu-west", lon, "eu-west", dublin, RTT(lon, dublin), false},
		{"unmeasured pair uses the model", "eu-west", lon, "ap-east", nyc, RTT(lon, nyc), false},
		{"moved by the model's difference", "eu-west", dublin, "us-east", nyc,
			75*time.Millisecond + time.Duration((EstimateMs(DistanceKm(dublin, nyc))-EstimateMs(DistanceKm(lon, was)))*float64(time.Millisecond)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := m.RTT(tt.ra, tt.a, tt.rb, tt.b)
			diff := got - tt.want
			if diff < 0 {
				diff = -diff
			}
			if (tt.approx && diff > time.Microsecond) || (!tt.approx && diff > time.Nanosecond) {
				t.Errorf("RTT = %v, want %v", got, tt.want)
			}
		})
	}

	// The floor: a measurement far below the model cannot make a long path
	// faster than light in fibre.
	var fast Matrix
	fast.SetAnchor("a", Point{0, 0})
	fast.SetAnchor("b", Point{0, 1})
	fast.Set("a", "b", 0)
	far := Point{0, 60}
	if got, floor := fast.RTT("a", Point{0, 0}, "b", far), FloorMs(DistanceKm(Point{0, 0}, far)); got.Seconds()*1000 < floor-1e-6 {
		t.Errorf("RTT = %v, below the physical floor %.2f ms", got, floor)
	}

	var nilM *Matrix
	if got, want := nilM.RTT("x", lon, "y", was), RTT(lon, was); got != want {
		t.Errorf("nil Matrix RTT = %v, want the estimate %v", got, want)
	}
}

func TestReadMatrixCSVErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"no header", "", "m.csv: header"},
		{"bad header", "x,y\n", "m.csv:1: header"},
		{"short row", "city,lat,lon,A,B\nA,1,2,0\n", "m.csv:2: 4 fields"},
		{"bad number", "city,lat,lon,A\nA,1,2,zero\n", "m.csv:2: A: want a number"},
		{"bad lat", "city,lat,lon,A\nA,91,2,0\n", "m.csv:2: lat/lon"},
		{"negative", "city,lat,lon,A,B\nA,1,2,0,-3\n", "m.csv:2: B: negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadMatrixCSV("m.csv", strings.NewReader(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ReadMatrixCSV error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// measuredPairs reads the shared measurements: each unordered pair once,
// with the mean of both directions and the anchors' distance.
func measuredPairs(t *testing.T) (km, ms []float64, names [][2]string) {
	t.Helper()
	f, err := os.Open(rttCSV)
	if err != nil {
		t.Skipf("measured RTTs not available (%v): the model is uncalibrated against data in this checkout", err)
	}
	defer f.Close()
	m, err := ReadMatrixCSV(rttCSV, f)
	if err != nil {
		t.Fatal(err)
	}
	var regions []string
	for r := range m.anchors {
		regions = append(regions, r)
	}
	slices.Sort(regions)
	for i, a := range regions {
		for _, b := range regions[i+1:] {
			d, ok := m.Lookup(a, b)
			if !ok {
				continue
			}
			km = append(km, DistanceKm(m.anchors[a], m.anchors[b]))
			ms = append(ms, d.Seconds()*1000)
			names = append(names, [2]string{a, b})
		}
	}
	if len(km) < 10 {
		t.Fatalf("%s: only %d measured pairs", rttCSV, len(km))
	}
	return km, ms, names
}

// TestCalibration checks the model against the measured RTTs between real
// regions, reports its error, and refits the constants so a change to them
// that the data do not support fails here.
func TestCalibration(t *testing.T) {
	km, ms, names := measuredPairs(t)

	rel := make([]float64, len(km))
	worst := 0
	for i := range km {
		rel[i] = math.Abs(EstimateMs(km[i])-ms[i]) / ms[i]
		if rel[i] > rel[worst] {
			worst = i
		}
	}
	mean, median, maxErr := stats(rel)
	t.Logf("model RTT = d/%.0f km·%.2f + %v over %d measured pairs: relative error mean %.1f%%, median %.1f%%, max %.1f%% (%s–%s: measured %.0f ms, model %.0f ms)",
		KmPerMsRTT, RouteInflation, LastMile, len(km), 100*mean, 100*median, 100*maxErr,
		names[worst][0], names[worst][1], ms[worst], EstimateMs(km[worst]))

	// Weighted least squares on relative error: minimise Σ((a + b·d − y)/y)².
	var sw, swx, swy, swxx, swxy float64
	for i := range km {
		w := 1 / (ms[i] * ms[i])
		sw += w
		swx += w * km[i]
		swy += w * ms[i]
		swxx += w * km[i] * km[i]
		swxy += w * km[i] * ms[i]
	}
	slope := (sw*swxy - swx*swy) / (sw*swxx - swx*swx)
	icept := (swy - slope*swx) / sw
	fitInflation := slope * KmPerMsRTT
	t.Logf("least-squares fit: RouteInflation %.4f, LastMile %.2f ms", fitInflation, icept)
	if math.Abs(fitInflation-RouteInflation) > 0.01 {
		t.Errorf("RouteInflation = %v, the measurements fit %.4f", RouteInflation, fitInflation)
	}
	if lm := LastMile.Seconds() * 1000; math.Abs(icept-lm) > 0.5 {
		t.Errorf("LastMile = %v, the measurements fit %.2f ms", LastMile, icept)
	}
	// The figures quoted in the constants' comment.
	if mean > 0.15 || median > 0.11 || maxErr > 0.39 {
		t.Errorf("relative error mean %.3f, median %.3f, max %.3f: worse than the documented 0.142, 0.098, 0.379", mean, median, maxErr)
	}
}

func stats(xs []float64) (mean, median, maxV float64) {
	s := slices.Clone(xs)
	slices.Sort(s)
	for _, x := range s {
		mean += x
	}
	mean /= float64(len(s))
	median = s[len(s)/2]
	if len(s)%2 == 0 {
		median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return mean, median, s[len(s)-1]
}
