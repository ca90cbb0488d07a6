package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/geocdn/geocdn/placement"
)

// TestPlacementCLIInputs runs the placement commands as an operator
// would, on the inputs of issue 16: a catalog's replicas field is planned
// as written, and explain says what losing a set's only replica means.
func TestPlacementCLIInputs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	topo := write("topology.yaml", "version: 1\nedges:\n"+
		"  - {id: lon, region: eu-west, lat: 51.51, lon: -0.13, fault_domain: uk, capacity: 10GB}\n"+
		"  - {id: par, region: eu-west, lat: 48.86, lon: 2.35, fault_domain: fr, capacity: 10GB}\n")
	demand := write("demand.csv", "\ufeffid,lat,lon,region,weight\nlondon,51.51,-0.13,eu-west,9.3\nparis,48.86,2.35,eu-west,11.0\n")
	catalog := write("catalog.yaml", "version: 1\nclasses:\n  - {name: all, prefixes: [\"\"]}\nobjects:\n  - {key: two.bin, size: 1GB, replicas: 2}\n")

	out := mustCLI(t, "placement", "plan", "--topology", topo, "--demand", demand, "--catalog", catalog,
		"--replicas", "1", "--hot-objects", "0", "--json")
	plan, err := placement.UnmarshalPlan([]byte(out))
	if err != nil {
		t.Fatalf("plan --json printed %q: %v", out, err)
	}
	if got := plan.ReplicasFor("", "two.bin"); len(got) != 2 {
		t.Errorf("two.bin (replicas: 2 in the catalog) planned on %v, want 2 edges", got)
	}

	out = mustCLI(t, "placement", "explain", "--topology", topo, "--demand", demand, "--catalog", catalog, "--replicas", "1", "other.bin")
	if !strings.Contains(out, "every request a miss, served from the origin") || strings.Contains(out, "Inf") {
		t.Errorf("explain of a one-replica set printed\n%s\nwant the loss of its replica described as misses served from the origin", out)
	}

	bad := write("bad.yaml", "version: 1\nedges:\n  - {id: a, region: r, lat: 1, lon: 2, capacity: 1,5GB}\n")
	_, errOut, err := runCLI(t, "placement", "plan", "--topology", bad, "--demand", demand)
	if err == nil || !strings.Contains(errOut, "bad.yaml:3: edges[0].capacity:") || !strings.Contains(errOut, "1.5GB") {
		t.Errorf("plan with capacity 1,5GB: err %v, stderr %q; want an error at bad.yaml:3 suggesting 1.5GB", err, errOut)
	}
}
