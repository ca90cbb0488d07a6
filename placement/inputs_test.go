package placement

import (
	"context"
	"errors"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
)

// parseAll reads a problem from texts, as the CLI reads its files.
func parseAll(t *testing.T, topology, demand, catalog string) Problem {
	t.Helper()
	var p Problem
	var err error
	if p.Topology, err = ParseTopology("topology.yaml", strings.NewReader(topology)); err != nil {
		t.Fatal(err)
	}
	if p.Demand, err = ParseDemand("demand.csv", strings.NewReader(demand)); err != nil {
		t.Fatal(err)
	}
	if catalog != "" {
		if p.Catalog, err = ParseCatalog("catalog.yaml", strings.NewReader(catalog)); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// lineTopology is lineProblem's topology as a file: five edges along the
// equator over fault domains x, x, y, y, z.
const lineTopology = `version: 1
edges:
  - {id: a, region: r, lat: 0, lon: 0, fault_domain: x, capacity: 10GB}
  - {id: b, region: r, lat: 0, lon: 10, fault_domain: x, capacity: 10GB}
  - {id: c, region: r, lat: 0, lon: 20, fault_domain: y, capacity: 10GB}
  - {id: d, region: r, lat: 0, lon: 30, fault_domain: y, capacity: 10GB}
  - {id: e, region: r, lat: 0, lon: 40, fault_domain: z, capacity: 10GB}
`

const lineDemand = `id,lat,lon,region,weight
p0,0,1,r,1
p1,0,11,r,3
p2,0,21,r,5
p3,0,31,r,7
p4,0,41,r,9
`

func TestDemandByteOrderMark(t *testing.T) {
	got, err := ParseDemand("demand.csv", strings.NewReader("\ufeffid,lat,lon,region,weight\ntokyo,35.69,139.69,jp-east,37.4\n"))
	if err != nil {
		t.Fatalf("a demand file with a byte-order mark: %v", err)
	}
	if len(got) != 1 || got[0].ID != "tokyo" || got[0].Weight != 37.4 {
		t.Errorf("got %+v, want the point tokyo", got)
	}
}

// TestSolveErrorsNameTheEntry: a problem only the optimiser can see in an
// entry read from a file is an *InputError naming that file and line.
func TestSolveErrorsNameTheEntry(t *testing.T) {
	tests := []struct {
		name                      string
		topology, demand, catalog string
		want                      string
	}{
		{
			name:     "demand point without coordinates, topology without regions",
			topology: lineTopology,
			demand:   "id,lat,lon,region,weight\np0,0,1,r,1\np1,,,mars,2\n",
			want:     `demand.csv:3: lat/lon: demand point "p1" has no lat/lon, and the topology has no regions: to anchor its region "mars": give the point's lat and lon, or add regions: [{name: mars, lat: ..., lon: ...}] to the topology`,
		},
		{
			name:     "demand point without coordinates, region without an anchor",
			topology: "version: 1\nregions:\n  - {name: r, lat: 0, lon: 0}\n" + strings.TrimPrefix(lineTopology, "version: 1\n"),
			demand:   "id,lat,lon,region,weight\np0,,,r,1\np1,,,mars,2\n",
			want:     `demand.csv:3: lat/lon: demand point "p1" has no lat/lon, and its region "mars" has no anchor in the topology: give the point's lat and lon, or add {name: mars, lat: ..., lon: ...} to the topology's regions:`,
		},
		{
			name:     "class affinity leaves no demand",
			topology: lineTopology,
			demand:   lineDemand,
			catalog:  "version: 1\nclasses:\n  - {name: all, prefixes: [\"\"]}\n  - name: elsewhere\n    prefixes: [x/]\n    affinity: {r: 0}\n",
			want:     "catalog.yaml:4: affinity: class elsewhere: its affinity leaves it no demand",
		},
		{
			name:     "object affinity leaves no demand",
			topology: lineTopology,
			demand:   lineDemand,
			catalog:  "version: 1\nclasses:\n  - {name: all, prefixes: [\"\"]}\nobjects:\n  - {key: x, size: 1GB, rate: 5, affinity: {\"*\": 0}}\n",
			want:     "catalog.yaml:5: affinity: object x: its affinity leaves it no demand",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := parseAll(t, tt.topology, tt.demand, tt.catalog)
			_, err := Solve(context.Background(), p, Config{})
			var ie *InputError
			if !errors.As(err, &ie) || ie.File == "" || ie.Line == 0 {
				t.Fatalf("Solve error = %v, want an *InputError naming the file and line", err)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error\n got: %v\nwant: %s", err, tt.want)
			}
		})
	}
}

// TestCatalogReplicasHonoured: a replicas field on an object fixes its k,
// more or fewer than its class's, whatever its rate and HotObjects.
func TestCatalogReplicasHonoured(t *testing.T) {
	const header = "version: 1\nclasses:\n"
	tests := []struct {
		name    string
		catalog string
		cfg     Config
		want    int  // replicas of x
		entry   bool // x has an entry of its own in the plan file
	}{
		{
			name:    "no rate",
			catalog: header + "  - {name: all, prefixes: [\"\"], bytes: 1GB, rate: 10}\nobjects:\n  - {key: x, size: 1GB, replicas: 2}\n",
			cfg:     Config{MinReplicas: 1, MaxReplicas: 1},
			want:    2, entry: true,
		},
		{
			name:    "outside the hot objects",
			catalog: header + "  - {name: all, prefixes: [\"\"]}\nobjects:\n  - {key: hot, size: 1GB, rate: 100}\n  - {key: x, size: 1GB, rate: 1, replicas: 2}\n",
			cfg:     Config{MinReplicas: 1, MaxReplicas: 1, HotObjects: 1},
			want:    2, entry: true,
		},
		{
			name:    "no hot objects at all",
			catalog: header + "  - {name: all, prefixes: [\"\"]}\nobjects:\n  - {key: x, size: 1GB, rate: 50, replicas: 2}\n",
			cfg:     Config{MinReplicas: 1, MaxReplicas: 1, HotObjects: -1},
			want:    2, entry: true,
		},
		{
			name:    "fewer than its class fixes",
			catalog: header + "  - {name: all, prefixes: [\"\"], replicas: 3}\nobjects:\n  - {key: x, size: 1GB, rate: 5, replicas: 1}\n",
			want:    1, entry: true,
		},
		{
			name:    "fewer than the rate gives its class",
			catalog: header + "  - {name: all, prefixes: [\"\"], bytes: 1GB, rate: 10}\nobjects:\n  - {key: x, size: 1GB, rate: 5, replicas: 1}\n",
			cfg:     Config{MinReplicas: 3, MaxReplicas: 3},
			want:    1, entry: true,
		},
		{
			name:    "as many as its class fixes: its class's set",
			catalog: header + "  - {name: all, prefixes: [\"\"], replicas: 2}\nobjects:\n  - {key: x, size: 1GB, rate: 5, replicas: 2}\n",
			want:    2, entry: false,
		},
		{
			// Without a replicas field, only more replicas than its class
			// (or an affinity of its own) earns a hot object its own set.
			name:    "a rate asking fewer than its class: its class's set",
			catalog: header + "  - {name: all, prefixes: [\"\"], bytes: 1GB, rate: 1000}\nobjects:\n  - {key: x, size: 1GB, rate: 1}\n",
			cfg:     Config{MinReplicas: 2, MaxReplicas: 4, ReplicaRate: 10},
			want:    4, entry: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := parseAll(t, lineTopology, lineDemand, tt.catalog)
			res, err := Solve(context.Background(), p, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Plan.ReplicasFor("", "x"); len(got) != tt.want {
				t.Errorf("x planned on %v, want %d replicas", got, tt.want)
			}
			entry := slices.ContainsFunc(res.Plan.Objects, func(o PlanObject) bool { return o.Key == "x" })
			if entry != tt.entry {
				t.Errorf("x has a plan entry of its own: %v, want %v (plan objects %+v)", entry, tt.entry, res.Plan.Objects)
			}
			ex, err := res.Explain("", "x")
			if err != nil {
				t.Fatal(err)
			}
			if tt.entry && !strings.Contains(ex.KRule, "fixed by the replicas field of object default:x in the catalog at catalog.yaml:") {
				t.Errorf("k rule %q, want it to name the object's catalog entry", ex.KRule)
			}
		})
	}
}

// TestCatalogReplicasRefused: a k the topology cannot give is refused,
// naming the object and where its replicas field is.
func TestCatalogReplicasRefused(t *testing.T) {
	catalog := "version: 1\nclasses:\n  - {name: all, prefixes: [\"\"]}\nobjects:\n  - {key: y, size: 1GB}\n  - {key: x, size: 1GB, replicas: 6}\n"
	p := parseAll(t, lineTopology, lineDemand, catalog)
	_, err := Solve(context.Background(), p, Config{HotObjects: -1})
	want := "replicas: object default:x: needs 6 replicas, the topology has 5 edges (k fixed by the replicas of object default:x at catalog.yaml:6)"
	if !errors.Is(err, ErrInfeasible) || !strings.Contains(err.Error(), want) {
		t.Errorf("Solve error = %v, want ErrInfeasible with %q", err, want)
	}
}

// TestFaultDomainOfItsOwn: an edge without a fault domain shares none
// with an edge whose fault domain is spelled like its id.
func TestFaultDomainOfItsOwn(t *testing.T) {
	p := lineProblem()
	p.Topology.Edges = p.Topology.Edges[:3]
	p.Topology.Edges[0].FaultDomain = "" // a: alone
	p.Topology.Edges[1].FaultDomain = "a"
	p.Topology.Edges[2].FaultDomain = "a"
	p.Demand = p.Demand[:3] // heaviest next to b and c
	res, err := Solve(context.Background(), p, Config{MinReplicas: 2, MaxReplicas: 2})
	if err != nil {
		t.Fatal(err)
	}
	// b and c fail together, so a set of two must include a.
	if got := res.Plan.ReplicasFor("", "k"); !slices.Contains(got, "a") {
		t.Errorf("replicas %v: want a, the only edge outside fault domain a", got)
	}
	domains := map[string]string{}
	for _, e := range res.Edges {
		domains[e.ID] = e.FaultDomain
	}
	if want := map[string]string{"a": "edge/a", "b": "a", "c": "a"}; !maps.Equal(domains, want) {
		t.Errorf("fault domains %v, want %v", domains, want)
	}
}

// TestExplainOnlyReplica: losing a set's only replica is not an infinite
// latency but a miss on every request.
func TestExplainOnlyReplica(t *testing.T) {
	p := lineProblem()
	p.Catalog = oneObject(1e9, 1)
	res, err := Solve(context.Background(), p, Config{})
	if err != nil {
		t.Fatal(err)
	}
	ex, err := res.Explain("", "obj")
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.Replicas) != 1 {
		t.Fatalf("replicas %+v, want one", ex.Replicas)
	}
	if r := ex.Replicas[0]; !r.Only || r.LossMs != 0 || math.IsInf(r.LossMs, 0) {
		t.Errorf("the only replica: %+v, want Only and no LossMs", r)
	}
	p.Catalog = oneObject(1e9, 2)
	if res, err = Solve(context.Background(), p, Config{}); err != nil {
		t.Fatal(err)
	}
	if ex, err = res.Explain("", "obj"); err != nil {
		t.Fatal(err)
	}
	for _, r := range ex.Replicas {
		if r.Only || !(r.LossMs > 0) {
			t.Errorf("replica %+v of two: want a finite loss and not Only", r)
		}
	}
}
