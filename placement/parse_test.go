package placement

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestBadInputs walks testdata/bad: each file's first line says the error
// its parser must give ("# want: ..."); the file name's prefix says which
// parser (topology-, demand-, catalog-).
func TestBadInputs(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatalf("first line %q: want \"# want: <error>\"", first)
			}
			r := bytes.NewReader(data)
			switch {
			case strings.HasPrefix(name, "topology-"):
				_, err = ParseTopology(name, r)
			case strings.HasPrefix(name, "demand-"):
				_, err = ParseDemand(name, r)
			case strings.HasPrefix(name, "catalog-"):
				_, err = ParseCatalog(name, r)
			default:
				t.Fatalf("unknown kind of file")
			}
			if err == nil {
				t.Fatalf("parse succeeded, want error %q", want)
			}
			if got := err.Error(); !strings.HasPrefix(got, want) {
				t.Errorf("error\n got: %s\nwant: %s", got, want)
			}
			var ie *InputError
			if !errors.As(err, &ie) || ie.File != name || ie.Line == 0 {
				t.Errorf("error %v: want an *InputError naming the file and a line", err)
			}
		})
	}
}

// TestSampleData checks the repository's sample files parse and are as
// large as documented.
func TestSampleData(t *testing.T) {
	top, dem := loadTestdata(t)
	if got := len(top.Edges); got < 30 {
		t.Errorf("topology has %d edges, want at least 30", got)
	}
	if got := len(dem); got < 50 {
		t.Errorf("demand has %d points, want at least 50", got)
	}
	if got := top.Measured.Len(); got != 45 {
		t.Errorf("topology has %d measured region pairs, want the 45 of the shared matrix", got)
	}
	regions := map[string]bool{}
	for _, e := range top.Edges {
		regions[e.Region] = true
	}
	for _, d := range dem {
		if math.IsNaN(d.Lat) {
			t.Errorf("demand %s has no coordinates", d.ID)
		}
	}
	if len(regions) < 20 {
		t.Errorf("edges span %d regions, want a world-wide spread", len(regions))
	}
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "1234", want: 1234},
		{in: "40TB", want: 40e12},
		{in: "40 tb", want: 40e12},
		{in: "1.5GiB", want: 3 << 29},
		{in: "1.23MB", want: 1_230_000},
		{in: "0.001kB", want: 1},
		{in: "1e12", want: 1e12},
		{in: "10_000", want: 10000},
		{in: "4TiB", want: 4 << 40},
		{in: "", bad: true},
		{in: "lots", bad: true},
		{in: "-5", bad: true},
		{in: "5 XB", bad: true},
		{in: "1e999999999", bad: true},
		{in: "99999999PB", bad: true},
	}
	for _, tt := range tests {
		got, err := ParseBytes(tt.in)
		switch {
		case tt.bad && err == nil:
			t.Errorf("ParseBytes(%q) = %d, want an error", tt.in, got)
		case !tt.bad && (err != nil || got != tt.want):
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, n := range []int64{0, 1, 999, 1000, 1230000, 45600, 1_530_000_000, 40e12, 1234567, 3 << 29} {
		s := FormatBytes(n)
		if back, err := ParseBytes(s); err != nil || back != n {
			t.Errorf("FormatBytes(%d) = %q, which parses to %d, %v", n, s, back, err)
		}
	}
	for _, tt := range []struct {
		n    int64
		want string
	}{{999, "999 B"}, {1500, "1.50 kB"}, {45_600_000, "45.6 MB"}, {999_600, "1.00 MB"}, {4e12, "4.00 TB"}} {
		if got := HumanBytes(tt.n); got != tt.want {
			t.Errorf("HumanBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

// TestCatalogRoundTrip writes a generated catalog and reads it back.
func TestCatalogRoundTrip(t *testing.T) {
	cat := GenerateCatalog(GenConfig{Objects: 300, Regions: []string{"sa-east", "jp-east"}, Seed: 3})
	cat.Classes = append(cat.Classes, Class{Name: "odd", Namespace: "tenant-1", Prefixes: []string{"", "true"}, Replicas: 3, Bytes: 5e12, Rate: 1.5, Affinity: Affinity{"*": 0.5, "kr": 2}})
	cat.Objects = append(cat.Objects, Object{Namespace: "tenant-1", Key: "null/ü 1.txt", Size: 7, Rate: 0.25, Replicas: 2})
	var buf bytes.Buffer
	if err := WriteCatalog(&buf, cat, "generated for a test\nsecond line"); err != nil {
		t.Fatal(err)
	}
	got, err := ParseCatalog("catalog.yaml", &buf)
	if err != nil {
		t.Fatalf("reading back: %v\n%s", err, buf.String())
	}
	for i := range cat.Objects {
		if cat.Objects[i].Namespace == "" {
			cat.Objects[i].Namespace = "default"
		}
	}
	// Entries remember where they were read; the rest must be equal.
	if src := got.Objects[len(got.Objects)-1].src; src.file != "catalog.yaml" || src.line == 0 {
		t.Errorf("last object read from %v, want catalog.yaml and its line", src)
	}
	for i := range got.Classes {
		got.Classes[i].src = source{}
	}
	for i := range got.Objects {
		got.Objects[i].src = source{}
	}
	if !reflect.DeepEqual(got, cat) {
		t.Errorf("round trip differs:\n got %+v\nwant %+v", got.Classes[len(got.Classes)-1], cat.Classes[len(cat.Classes)-1])
	}
}

func TestDemandRoundTrip(t *testing.T) {
	in := []DemandPoint{{ID: "a", Lat: 1.5, Lon: -2.25, Region: "r1", Weight: 3}, {ID: "b", Lat: math.NaN(), Lon: math.NaN(), Region: "r2", Weight: 0.5}}
	var buf bytes.Buffer
	if err := WriteDemand(&buf, in); err != nil {
		t.Fatal(err)
	}
	got, err := ParseDemand("d.csv", &buf)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []source{{"d.csv", 2}, {"d.csv", 3}} {
		if i < len(got) && got[i].src != want {
			t.Errorf("point %d read from %v, want %v", i, got[i].src, want)
		}
		if i < len(got) {
			got[i].src = source{}
		}
	}
	if len(got) != 2 || got[0] != in[0] || !math.IsNaN(got[1].Lat) || got[1].Region != "r2" {
		t.Errorf("round trip: got %+v, want %+v", got, in)
	}
}
