package placement

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/geocdn/geocdn/internal/yamlx"
)

// demandColumns are the columns ParseDemand reads; others are kept for
// people (a country, a source) and ignored.
var demandColumns = []string{"id", "lat", "lon", "region", "weight"}

const utf8BOM = "\ufeff"

// ParseDemand reads demand points in the CSV format described in the
// package documentation. name labels errors, which are *InputError.
func ParseDemand(name string, r io.Reader) ([]DemandPoint, error) {
	// Spreadsheet programs start a UTF-8 CSV with a byte-order mark; it
	// is not part of the first column's name.
	br := bufio.NewReader(r)
	if bom, _ := br.Peek(len(utf8BOM)); string(bom) == utf8BOM {
		br.Discard(len(utf8BOM))
	}
	cr := csv.NewReader(br)
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	hdr, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, yamlx.Errorf(name, 0, "", "empty file: want a header id,lat,lon,region,weight and one line per demand point")
	}
	if err != nil {
		return nil, csvErr(name, err)
	}
	hline, _ := cr.FieldPos(0)
	col := map[string]int{}
	for i, h := range hdr {
		h = strings.ToLower(strings.TrimSpace(h))
		if _, dup := col[h]; dup && slices.Contains(demandColumns, h) {
			return nil, yamlx.Errorf(name, hline, h, "column given twice")
		}
		col[h] = i
	}
	for _, c := range []string{"id", "region", "weight"} {
		if _, ok := col[c]; !ok {
			return nil, yamlx.Errorf(name, hline, c, "no such column in the header %q (want id,lat,lon,region,weight)", strings.Join(hdr, ","))
		}
	}
	_, hasLat := col["lat"]
	_, hasLon := col["lon"]
	if hasLat != hasLon {
		return nil, yamlx.Errorf(name, hline, "lat/lon", "give both columns or neither")
	}
	var out []DemandPoint
	ids := map[string]int{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, csvErr(name, err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != len(hdr) {
			return nil, yamlx.Errorf(name, line, "", "%d fields, the header has %d", len(rec), len(hdr))
		}
		get := func(c string) string { return strings.TrimSpace(rec[col[c]]) }
		d := DemandPoint{ID: get("id"), Region: get("region"), src: source{name, line}}
		if d.ID == "" {
			return nil, yamlx.Errorf(name, line, "id", "empty")
		}
		if prev, dup := ids[d.ID]; dup {
			return nil, yamlx.Errorf(name, line, "id", "%q already used on line %d", d.ID, prev)
		}
		ids[d.ID] = line
		if !validID.MatchString(d.Region) {
			return nil, yamlx.Errorf(name, line, "region", "%q: want 1 to 63 letters, digits, '.', '_' or '-'", d.Region)
		}
		d.Lat, d.Lon = math.NaN(), math.NaN()
		if hasLat && (get("lat") != "" || get("lon") != "") {
			for _, c := range []struct {
				name string
				dst  *float64
				lim  float64
			}{{"lat", &d.Lat, 90}, {"lon", &d.Lon, 180}} {
				v, err := strconv.ParseFloat(get(c.name), 64)
				if err != nil || math.IsNaN(v) || v < -c.lim || v > c.lim {
					return nil, yamlx.Errorf(name, line, c.name, "want degrees in [-%v, %v], got %q", c.lim, c.lim, get(c.name))
				}
				*c.dst = v
			}
		}
		w, err := strconv.ParseFloat(get("weight"), 64)
		if err != nil || math.IsNaN(w) || math.IsInf(w, 0) || w <= 0 {
			return nil, yamlx.Errorf(name, line, "weight", "want a positive number, got %q", get("weight"))
		}
		d.Weight = w
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, yamlx.Errorf(name, hline, "", "no demand points after the header")
	}
	return out, nil
}

// csvErr turns a csv.ParseError into an InputError with its line.
func csvErr(name string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &InputError{File: name, Line: pe.Line, Field: fmt.Sprintf("column %d", pe.Column), Err: pe.Err}
	}
	return &InputError{File: name, Err: err}
}

// WriteDemand writes points in the format ParseDemand reads.
func WriteDemand(w io.Writer, points []DemandPoint) error {
	cw := csv.NewWriter(w)
	cw.Write(demandColumns)
	for _, d := range points {
		lat, lon := "", ""
		if !math.IsNaN(d.Lat) {
			lat, lon = strconv.FormatFloat(d.Lat, 'f', -1, 64), strconv.FormatFloat(d.Lon, 'f', -1, 64)
		}
		cw.Write([]string{d.ID, lat, lon, d.Region, strconv.FormatFloat(d.Weight, 'g', -1, 64)})
	}
	cw.Flush()
	return cw.Error()
}
