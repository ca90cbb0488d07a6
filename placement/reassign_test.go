package placement

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// reassignEdges: two edges in ap-northeast, one each in ap-southeast,
// eu-central, eu-west and us-east, each its own fault domain.
func reassignEdges() []Edge {
	return []Edge{
		{ID: "tokyo", Region: "ap-northeast", Lat: 35.68, Lon: 139.69, FaultDomain: "tokyo"},
		{ID: "osaka", Region: "ap-northeast", Lat: 34.69, Lon: 135.50, FaultDomain: "osaka"},
		{ID: "singapore", Region: "ap-southeast", Lat: 1.35, Lon: 103.82, FaultDomain: "singapore"},
		{ID: "fra", Region: "eu-central", Lat: 50.11, Lon: 8.68, FaultDomain: "fra"},
		{ID: "lon", Region: "eu-west", Lat: 51.51, Lon: -0.13, FaultDomain: "lon"},
		{ID: "virginia", Region: "us-east", Lat: 38.9, Lon: -77.0, FaultDomain: "virginia"},
	}
}

func reassignBase() *Plan {
	return &Plan{
		Version: PlanVersion, Seed: 7,
		Classes: []PlanClass{
			{Name: "asia", Prefixes: []string{"asia/"}, Replicas: []string{"tokyo", "singapore"}, Bytes: 1 << 30, Rate: 50},
			{Name: "eu", Prefixes: []string{""}, Replicas: []string{"fra", "lon"}, Bytes: 1 << 30, Rate: 80},
		},
		Objects: []PlanObject{
			{Namespace: "default", Key: "hot.js", Class: "eu", Replicas: []string{"tokyo", "fra", "virginia"}, Bytes: 1 << 20, Rate: 900},
			{Namespace: "default", Key: "cold.bin", Class: "eu", Replicas: []string{"lon"}, Bytes: 1 << 20},
		},
	}
}

func TestReassignReplacesOnlyTheLostEdgeNearItsDemand(t *testing.T) {
	base := reassignBase()
	p, mv, err := Reassign(context.Background(), base, reassignEdges(), []string{"tokyo"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Osaka is the nearest edge to Tokyo's demand with a fault domain
	// the set does not use; it takes Tokyo's place in the list.
	if got := p.ReplicasFor("default", "asia/app.js"); !slices.Equal(got, []string{"osaka", "singapore"}) {
		t.Errorf("class asia: %v, want [osaka singapore]", got)
	}
	if got := p.ReplicasFor("default", "hot.js"); !slices.Equal(got, []string{"osaka", "fra", "virginia"}) {
		t.Errorf("object hot.js: %v, want [osaka fra virginia]", got)
	}
	// Sets without the lost edge are untouched.
	if got := p.ReplicasFor("default", "eu/x"); !slices.Equal(got, []string{"fra", "lon"}) {
		t.Errorf("class eu: %v, want [fra lon]", got)
	}
	if got := p.ReplicasFor("default", "cold.bin"); !slices.Equal(got, []string{"lon"}) {
		t.Errorf("object cold.bin: %v, want [lon]", got)
	}
	if slices.Contains(p.Edges(), "tokyo") {
		t.Errorf("the plan still names the lost edge: %v", p.Edges())
	}
	if len(p.Violations) != 0 {
		t.Errorf("violations: %v", p.Violations)
	}
	if mv == nil || mv.Forced != 2 {
		t.Errorf("moves %+v: want 2 forced", mv)
	}
	// base is not modified.
	if got := base.ReplicasFor("default", "asia/app.js"); !slices.Equal(got, []string{"tokyo", "singapore"}) {
		t.Errorf("base changed: %v", got)
	}
}

func TestReassignRespectsFaultDomains(t *testing.T) {
	edges := reassignEdges()
	edges[1].FaultDomain = "singapore" // osaka fails with singapore
	p, _, err := Reassign(context.Background(), reassignBase(), edges, []string{"tokyo"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := p.ReplicasFor("default", "asia/app.js")
	if len(got) != 2 || slices.Contains(got, "osaka") || !slices.Contains(got, "singapore") {
		t.Errorf("class asia: %v, want singapore and an edge outside its fault domain", got)
	}
	if len(p.Violations) != 0 {
		t.Errorf("violations: %v", p.Violations)
	}
}

func TestReassignSkipsUnavailableEdges(t *testing.T) {
	p, _, err := Reassign(context.Background(), reassignBase(), reassignEdges(), []string{"tokyo"}, []string{"osaka"})
	if err != nil {
		t.Fatal(err)
	}
	got := p.ReplicasFor("default", "asia/app.js")
	if len(got) != 2 || slices.Contains(got, "osaka") || slices.Contains(got, "tokyo") {
		t.Errorf("class asia: %v, want two edges, neither osaka (down) nor tokyo (lost)", got)
	}
}

func TestReassignReportsWhatCannotBeRestored(t *testing.T) {
	lost := []string{"tokyo", "osaka", "singapore", "lon", "virginia"}
	p, _, err := Reassign(context.Background(), reassignBase(), reassignEdges(), lost, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.ReplicasFor("default", "asia/a"); !slices.Equal(got, []string{"fra"}) {
		t.Errorf("class asia: %v, want [fra]", got)
	}
	var text []string
	for _, v := range p.Violations {
		text = append(text, v.String())
	}
	all := strings.Join(text, "\n")
	for _, want := range []string{"replicas: class asia: needs 2 replicas, 1 edges remain", "replicas: object default:hot.js: needs 3 replicas"} {
		if !strings.Contains(all, want) {
			t.Errorf("violations %q lack %q", all, want)
		}
	}
}

func TestReassignNothingLost(t *testing.T) {
	base := reassignBase()
	p, mv, err := Reassign(context.Background(), base, reassignEdges(), []string{"nowhere"}, nil)
	if err != nil || p != base || mv != nil {
		t.Fatalf("Reassign with no set on a lost edge = %p, %v, %v; want base itself", p, mv, err)
	}
}

func TestReassignErrors(t *testing.T) {
	all := []string{"tokyo", "osaka", "singapore", "fra", "lon", "virginia"}
	if _, _, err := Reassign(context.Background(), reassignBase(), reassignEdges(), all, nil); err == nil || !strings.Contains(err.Error(), "no edge is available") {
		t.Errorf("every edge lost: err %v", err)
	}
	if _, _, err := Reassign(context.Background(), reassignBase(), reassignEdges()[:5], []string{"tokyo"}, nil); err == nil || !strings.Contains(err.Error(), `"virginia", whose position is unknown`) {
		t.Errorf("edge missing from the list: err %v", err)
	}
}
