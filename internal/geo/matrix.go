package geo

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Matrix holds measured round-trip times between regions. Each region is
// measured from an anchor point (the city of its probe); a measurement
// stands for the whole region by moving it with the model: the RTT between
// a point in region A and a point in region B is the measured A–B figure
// plus the model's estimate of how much longer (or shorter) their path is
// than the anchors' path, never less than the physical floor. At the
// anchors it is the measurement exactly; within a region, or between
// regions without a figure, it is the plain estimate.
//
// Measurements are symmetric: Set(a, b) also answers b→a. A nil *Matrix
// holds no measurements. A Matrix is safe for concurrent readers once
// filled; Set and SetAnchor must not run concurrently with anything else.
type Matrix struct {
	anchors map[string]Point
	rtt     map[[2]string]time.Duration
}

// pair orders a region pair so both directions share one entry.
func pair(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

// SetAnchor records where region was measured from.
func (m *Matrix) SetAnchor(region string, p Point) {
	if m.anchors == nil {
		m.anchors = make(map[string]Point)
	}
	m.anchors[region] = p
}

// Anchor returns the point region was measured from.
func (m *Matrix) Anchor(region string) (Point, bool) {
	if m == nil {
		return Point{}, false
	}
	p, ok := m.anchors[region]
	return p, ok
}

// Set records the measured round trip between regions a and b (a ≠ b);
// when both directions were measured, pass their mean.
func (m *Matrix) Set(a, b string, rtt time.Duration) {
	if a == b {
		return
	}
	if m.rtt == nil {
		m.rtt = make(map[[2]string]time.Duration)
	}
	m.rtt[pair(a, b)] = rtt
}

// Lookup returns the measured round trip between regions a and b.
func (m *Matrix) Lookup(a, b string) (time.Duration, bool) {
	if m == nil || a == b {
		return 0, false
	}
	d, ok := m.rtt[pair(a, b)]
	return d, ok
}

// Len is the number of measured region pairs.
func (m *Matrix) Len() int {
	if m == nil {
		return 0
	}
	return len(m.rtt)
}

// OffsetMs is how far the measurement between regions ra and rb lies from
// the model's estimate between their anchors, in milliseconds. ok is false
// when there is no measurement or an anchor is missing, and then the plain
// estimate applies. Bulk callers compute it once per region pair and pass
// it to AdjustedMs for every point pair.
func (m *Matrix) OffsetMs(ra, rb string) (offset float64, ok bool) {
	d, ok := m.Lookup(ra, rb)
	if !ok {
		return 0, false
	}
	pa, okA := m.anchors[ra]
	pb, okB := m.anchors[rb]
	if !okA || !okB {
		return 0, false
	}
	return float64(d)/float64(time.Millisecond) - EstimateMs(DistanceKm(pa, pb)), true
}

// AdjustedMs is the round trip over km kilometres corrected by a region
// pair's offset, never below the physical floor.
func AdjustedMs(km, offset float64) float64 {
	return math.Max(EstimateMs(km)+offset, FloorMs(km))
}

// RTT is the round trip between a in region ra and b in region rb: the
// measured figure moved by the model where the regions have one, else the
// estimate.
func (m *Matrix) RTT(ra string, a Point, rb string, b Point) time.Duration {
	km := DistanceKm(a, b)
	off, ok := m.OffsetMs(ra, rb)
	if !ok {
		return EstimateRTT(km)
	}
	return time.Duration(AdjustedMs(km, off) * float64(time.Millisecond))
}

// ReadMatrixCSV reads a matrix in the layout of
// shared/data/inter-region-rtt.csv: lines starting with '#' are comments;
// a header "city,lat,lon,<region>..." names the columns; each row gives a
// region, its anchor's latitude and longitude, and the RTT in milliseconds
// to each column's region (row = from). When both directions are present
// the matrix holds their mean. name labels errors.
func ReadMatrixCSV(name string, r io.Reader) (*Matrix, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	hdr, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: header: %w", name, err)
	}
	if len(hdr) < 4 || !strings.EqualFold(strings.TrimSpace(hdr[0]), "city") {
		line, _ := cr.FieldPos(0)
		return nil, fmt.Errorf("%s:%d: header: want city,lat,lon,<region>..., got %q", name, line, strings.Join(hdr, ","))
	}
	cols := hdr[3:]
	type dir struct{ from, to string }
	sums := make(map[dir]float64)
	m := &Matrix{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != len(hdr) {
			return nil, fmt.Errorf("%s:%d: %d fields, header has %d", name, line, len(rec), len(hdr))
		}
		num := func(i int) (float64, error) {
			v, err := strconv.ParseFloat(strings.TrimSpace(rec[i]), 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return 0, fmt.Errorf("%s:%d: %s: want a number, got %q", name, line, hdr[i], rec[i])
			}
			return v, nil
		}
		lat, err := num(1)
		if err != nil {
			return nil, err
		}
		lon, err := num(2)
		if err != nil {
			return nil, err
		}
		from := strings.TrimSpace(rec[0])
		p := Point{lat, lon}
		if !p.Valid() {
			return nil, fmt.Errorf("%s:%d: lat/lon %v,%v out of range", name, line, lat, lon)
		}
		m.SetAnchor(from, p)
		for i, to := range cols {
			ms, err := num(3 + i)
			if err != nil {
				return nil, err
			}
			if ms < 0 {
				return nil, fmt.Errorf("%s:%d: %s: negative RTT %v", name, line, to, ms)
			}
			if to = strings.TrimSpace(to); to != from {
				sums[dir{from, to}] = ms
			}
		}
	}
	for d, ms := range sums {
		if back, ok := sums[dir{d.to, d.from}]; ok {
			ms = (ms + back) / 2
		}
		m.Set(d.from, d.to, time.Duration(ms*float64(time.Millisecond)))
	}
	return m, nil
}
