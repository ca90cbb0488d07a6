package simwan

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Region is a place on the simulated WAN.
type Region struct {
	Name     string
	Lat, Lon float64
}

// Matrix holds measured round-trip times between regions. Row is the
// sender, column the receiver; the measurements are not quite symmetric
// and the matrix keeps them as measured. A Matrix is immutable once built.
type Matrix struct {
	regions []Region
	index   map[string]int
	rtt     [][]time.Duration
}

// Regions returns the matrix's regions in table order.
func (m *Matrix) Regions() []Region { return append([]Region(nil), m.regions...) }

// Region returns the named region.
func (m *Matrix) Region(name string) (Region, bool) {
	i, ok := m.index[name]
	if !ok {
		return Region{}, false
	}
	return m.regions[i], true
}

// RTT is the measured round-trip time from region a to region b.
func (m *Matrix) RTT(a, b string) (time.Duration, bool) {
	i, ok1 := m.index[a]
	j, ok2 := m.index[b]
	if !ok1 || !ok2 {
		return 0, false
	}
	return m.rtt[i][j], true
}

// OneWay is the latency a packet from a to b is given: half the measured
// round trip, the usual model when only RTTs are known.
func (m *Matrix) OneWay(a, b string) (time.Duration, bool) {
	d, ok := m.RTT(a, b)
	return d / 2, ok
}

// Farthest is the largest RTT in the matrix.
func (m *Matrix) Farthest() time.Duration {
	var f time.Duration
	for _, row := range m.rtt {
		for _, d := range row {
			f = max(f, d)
		}
	}
	return f
}

// NewMatrix builds a matrix from regions and their RTTs in milliseconds
// (rttMS[i][j] from regions[i] to regions[j]).
func NewMatrix(regions []Region, rttMS [][]float64) (*Matrix, error) {
	m := &Matrix{regions: append([]Region(nil), regions...), index: make(map[string]int, len(regions))}
	if len(rttMS) != len(regions) {
		return nil, fmt.Errorf("simwan: %d rows for %d regions", len(rttMS), len(regions))
	}
	for i, r := range regions {
		if _, dup := m.index[r.Name]; dup || r.Name == "" {
			return nil, fmt.Errorf("simwan: region %q empty or repeated", r.Name)
		}
		m.index[r.Name] = i
		if len(rttMS[i]) != len(regions) {
			return nil, fmt.Errorf("simwan: row %q has %d columns, want %d", r.Name, len(rttMS[i]), len(regions))
		}
		row := make([]time.Duration, len(regions))
		for j, ms := range rttMS[i] {
			if ms < 0 {
				return nil, fmt.Errorf("simwan: negative rtt %v from %q", ms, r.Name)
			}
			row[j] = time.Duration(ms * float64(time.Millisecond))
		}
		m.rtt = append(m.rtt, row)
	}
	return m, nil
}

// ParseCSV reads the format of data/inter-region-rtt.csv: '#' comment
// lines, a header "city,lat,lon,<region>..." and one row per region whose
// columns follow the header's order.
func ParseCSV(r io.Reader) (*Matrix, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	recs, err := cr.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("simwan: %w", err)
	}
	if len(recs) < 2 {
		return nil, errors.New("simwan: no rows")
	}
	hdr := recs[0]
	if len(hdr) < 4 || strings.ToLower(hdr[0]) != "city" {
		return nil, fmt.Errorf("simwan: header %q: want city,lat,lon,<regions>", strings.Join(hdr, ","))
	}
	cols := hdr[3:]
	rows := recs[1:]
	if len(rows) != len(cols) {
		return nil, fmt.Errorf("simwan: %d rows for %d columns", len(rows), len(cols))
	}
	regions := make([]Region, len(rows))
	rtt := make([][]float64, len(rows))
	for i, rec := range rows {
		if rec[0] != cols[i] {
			return nil, fmt.Errorf("simwan: row %d is %q, want %q (rows follow the header's order)", i+1, rec[0], cols[i])
		}
		lat, err1 := strconv.ParseFloat(rec[1], 64)
		lon, err2 := strconv.ParseFloat(rec[2], 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("simwan: row %q: %w", rec[0], err)
		}
		regions[i] = Region{Name: rec[0], Lat: lat, Lon: lon}
		rtt[i] = make([]float64, len(cols))
		for j, f := range rec[3:] {
			if rtt[i][j], err = strconv.ParseFloat(f, 64); err != nil {
				return nil, fmt.Errorf("simwan: row %q column %q: %w", rec[0], cols[j], err)
			}
		}
	}
	return NewMatrix(regions, rtt)
}

// DefaultMatrix is the matrix of ../shared/data/inter-region-rtt.csv:
// average RTTs between cloud regions from IBM Cloud VPC's "Network
// latency" table for 27 Jul – 25 Aug 2024. TestDefaultMatrixMatchesCSV
// keeps the two equal. It is built afresh on every call so no caller can
// change another's copy.
func DefaultMatrix() *Matrix {
	regions := []Region{
		{"Dallas", 32.78, -96.80},
		{"Toronto", 43.65, -79.38},
		{"Washington DC", 38.90, -77.04},
		{"Frankfurt", 50.11, 8.68},
		{"London", 51.51, -0.13},
		{"Madrid", 40.42, -3.70},
		{"Osaka", 34.69, 135.50},
		{"Sydney", -33.87, 151.21},
		{"Tokyo", 35.68, 139.69},
		{"Sao Paulo", -23.55, -46.63},
	}
	rtt := [][]float64{
		{0, 34, 31, 123, 113, 119, 150, 186, 143, 146},
		{34, 0, 19, 93, 82, 108, 168, 215, 162, 129},
		{31, 19, 0, 91, 75, 87, 172, 214, 164, 118},
		{123, 93, 91, 0, 13, 29, 232, 250, 233, 198},
		{113, 83, 75, 13, 0, 27, 244, 261, 243, 188},
		{122, 106, 88, 29, 27, 0, 257, 275, 258, 209},
		{150, 169, 172, 231, 243, 257, 0, 122, 9, 293},
		{186, 214, 214, 249, 261, 275, 122, 0, 115, 328},
		{143, 162, 166, 233, 244, 256, 9, 115, 0, 284},
		{144, 128, 119, 196, 187, 208, 291, 328, 283, 0},
	}
	m, err := NewMatrix(regions, rtt)
	if err != nil {
		panic(err) // the table above is constant; a test covers it
	}
	return m
}
