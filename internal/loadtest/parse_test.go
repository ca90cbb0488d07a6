package loadtest

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/geocdn/geocdn/internal/yamlx"
	"github.com/geocdn/geocdn/placement"
)

var update = flag.Bool("update", false, "rewrite testdata/bad/*.err with the errors the parser gives")

// TestBadScenarios walks testdata/bad: each NAME.yaml must fail to parse
// with exactly the message in NAME.err, as an *yamlx.InputError naming
// the file and, unless the file is empty, a line.
func TestBadScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			s, err := ParseScenario(name, bytes.NewReader(data))
			if err == nil {
				t.Fatalf("parse succeeded (%+v), want an error", s)
			}
			golden := strings.TrimSuffix(path, ".yaml") + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(err.Error()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, rerr := os.ReadFile(golden)
			if rerr != nil {
				t.Fatalf("%v (run with -update to write it)", rerr)
			}
			if got := err.Error(); got != strings.TrimSpace(string(want)) {
				t.Errorf("error\n got: %s\nwant: %s", got, strings.TrimSpace(string(want)))
			}
			var ie *yamlx.InputError
			switch {
			case !errors.As(err, &ie):
				t.Errorf("error %v is a %T, want a *yamlx.InputError", err, err)
			case ie.File != name:
				t.Errorf("error names file %q, want %q", ie.File, name)
			case ie.Line == 0 && len(bytes.TrimSpace(data)) > 0 && !bytes.HasPrefix(data, []byte("#")):
				t.Errorf("error %v names no line", err)
			}
		})
	}
}

// TestGoldenFilesPaired keeps testdata/bad tidy: an .err without its
// .yaml is a test that no longer runs.
func TestGoldenFilesPaired(t *testing.T) {
	errs, _ := filepath.Glob("testdata/bad/*.err")
	for _, e := range errs {
		if _, err := os.Stat(strings.TrimSuffix(e, ".err") + ".yaml"); err != nil {
			t.Errorf("%s has no scenario file", e)
		}
	}
}

// devEdges are the edge ids of `geocdn dev`'s cluster, which the shipped
// scenarios' fault events name.
var devEdges = []string{"iad", "dfw", "lhr", "fra", "nrt", "syd", "gru"}

// TestShippedScenarios parses every scenario in the repository's
// loadtest directory and checks what the parser cannot: that its demand
// file and regions exist, its fault events name dev edges, and its peak
// rate stays modest enough for a small machine running the cluster too.
func TestShippedScenarios(t *testing.T) {
	const repo = "../.."
	files, err := filepath.Glob(filepath.Join(repo, "loadtest", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios in %s/loadtest: %v", repo, err)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			s, err := LoadScenario(path)
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.TrimSuffix(filepath.Base(path), ".yaml"); s.Name != want {
				t.Errorf("name %q, want the file's %q", s.Name, want)
			}
			if s.Description == "" {
				t.Error("no description")
			}
			if err := s.Objects.Sizes.Validate(); err != nil {
				t.Errorf("sizes: %v", err)
			}
			f, err := os.Open(filepath.Join(repo, s.Clients.Demand))
			if err != nil {
				t.Fatalf("demand file: %v", err)
			}
			points, err := placement.ParseDemand(s.Clients.Demand, f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			for r := range s.Clients.Regions {
				if !slices.ContainsFunc(points, func(p placement.DemandPoint) bool { return p.Region == r }) {
					t.Errorf("clients.regions: %s has no demand point", r)
				}
			}
			mult := 1.0
			for _, e := range s.Events {
				switch e.Kind {
				case EventKill, EventPause, EventRestart:
					if !slices.Contains(devEdges, e.Edge) {
						t.Errorf("line %d: %s %s: not an edge of the dev cluster (%v)", e.Line, e.Kind, e.Edge, devEdges)
					}
				case EventFocus:
					mult = max(mult, e.Multiplier)
				}
			}
			peak := 0.0
			for _, ph := range s.Arrivals.Phases {
				peak = max(peak, ph.From, ph.To)
			}
			if peak*mult > 1000 {
				t.Errorf("peak read rate %g/s (×%g in a flash crowd): keep shipped scenarios to a few hundred", peak, mult)
			}
		})
	}
}

// TestParseScenarioDefaults checks what a minimal file gets.
func TestParseScenarioDefaults(t *testing.T) {
	src := "arrivals:\n  phases:\n    - {rate: 100, for: 30s}\n    - {ramp: 100..300/s, for: 10s}\n"
	got, err := ParseScenario("loadtest/mini.yaml", strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	want := &Scenario{
		File:     "loadtest/mini.yaml",
		Name:     "mini",
		Duration: 40 * time.Second,
		Target:   Target{Kind: TargetRouter, SessionRequests: 1},
		Clients:  Clients{Demand: DefaultDemand},
		Objects: Objects{Count: DefaultObjects, Prefix: "loadtest/mini/", Zipf: DefaultZipf,
			Sizes:       SizeDist{Kind: SizeFixed, Fixed: DefaultSize},
			Consistency: DefaultConsistency, Preload: true, CacheControl: DefaultCacheControl},
		Arrivals: Arrivals{Mode: Open, MaxInFlight: DefaultMaxInFlight, Phases: []Phase{
			{Duration: 30 * time.Second, From: 100, To: 100, Line: 3},
			{Duration: 10 * time.Second, From: 100, To: 300, Line: 4},
		}},
		Mix: Mix{Get: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

// TestParseScenarioForms checks the short and long spellings of the same
// things read the same.
func TestParseScenarioForms(t *testing.T) {
	const phases = "arrivals: {phases: [{rate: 100, for: 60s}]}\n"
	parse := func(t *testing.T, src string) *Scenario {
		t.Helper()
		s, err := ParseScenario("x.yaml", strings.NewReader(src+phases))
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		return s
	}
	tests := []struct {
		name     string
		a, b     string
		get      func(*Scenario) any
		wantSame any
	}{
		{"target router", "target: router\n", "target: {kind: router}\n",
			func(s *Scenario) any { return s.Target }, Target{Kind: TargetRouter, SessionRequests: 1}},
		{"target edge", "target: edge:lhr\n", "target: {edge: lhr}\n",
			func(s *Scenario) any { return s.Target }, Target{Kind: TargetEdge, Edge: "lhr", SessionRequests: 1}},
		{"fixed size", "objects: {sizes: 4KiB}\n", "objects: {sizes: {fixed: 4096}}\n",
			func(s *Scenario) any { return s.Objects.Sizes }, SizeDist{Kind: SizeFixed, Fixed: 4096}},
		{"rate per minute", "writes: [{op: purge, rate: 120/m}]\n", "writes: [{op: purge, rate: 2/s}]\n",
			func(s *Scenario) any { return s.Writes[0].Rate }, 2.0},
		{"consistency", "objects: {consistency: Prefix}\n", "objects: {consistency: consistent-prefix}\n",
			func(s *Scenario) any { return s.Objects.Consistency }, "consistent-prefix"},
		{"kill", "events: [{at: 1s, kill: lhr}]\n", "events: [{at: 1s, kill: {edge: lhr}}]\n",
			func(s *Scenario) any { return s.Events[0].Edge }, "lhr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := tt.get(parse(t, tt.a)), tt.get(parse(t, tt.b))
			if !reflect.DeepEqual(a, tt.wantSame) || !reflect.DeepEqual(b, tt.wantSame) {
				t.Errorf("got %+v and %+v, want both %+v", a, b, tt.wantSame)
			}
		})
	}

	s, err := ParseScenario("x.yaml", strings.NewReader("arrivals: {phases: [{from: 10, to: 20, for: 1s}, {ramp: 1200/m..0, for: 2s}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Arrivals.Phases, []Phase{{Duration: time.Second, From: 10, To: 20, Line: 1}, {Duration: 2 * time.Second, From: 20, To: 0, Line: 1}}; !reflect.DeepEqual(got, want) {
		t.Errorf("ramps: got %+v, want %+v", got, want)
	}
}

// TestParseScenarioEventsSorted checks events come out in time order,
// each keeping its own line.
func TestParseScenarioEventsSorted(t *testing.T) {
	src := `arrivals: {phases: [{rate: 10, for: 60s}]}
events:
  - {at: 45s, restart: lhr}
  - {at: 30s, kill: lhr}
  - {at: 35s, pause: {edge: fra, for: 5s}}
`
	s, err := ParseScenario("x.yaml", strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range s.Events {
		got = append(got, string(e.Kind)+"@"+e.At.String()+":"+strconv.Itoa(e.Line))
	}
	want := []string{"kill@30s:4", "pause@35s:5", "restart@45s:3"}
	if !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}
