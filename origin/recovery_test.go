package origin

import (
	"slices"
	"testing"

	"github.com/geocdn/geocdn/placement"
)

func recoveryPlan(classA, classB, object []string) *placement.Plan {
	return &placement.Plan{
		Version: placement.PlanVersion,
		Classes: []placement.PlanClass{
			{Name: "a", Prefixes: []string{"a/"}, Replicas: classA},
			{Name: "b", Prefixes: []string{""}, Replicas: classB},
		},
		Objects: []placement.PlanObject{{Namespace: "default", Key: "hot", Replicas: object}},
	}
}

func TestSamePlacementIgnoresOrder(t *testing.T) {
	x := recoveryPlan([]string{"e1", "e2"}, []string{"e3"}, []string{"e1", "e3"})
	y := recoveryPlan([]string{"e2", "e1"}, []string{"e3"}, []string{"e3", "e1"})
	z := recoveryPlan([]string{"e2", "e4"}, []string{"e3"}, []string{"e3", "e1"})
	if !samePlacement(x, y) || samePlacement(x, z) || samePlacement(x, nil) || !samePlacement(nil, nil) {
		t.Fatal("samePlacement: want order ignored, sets compared, nil only equal to nil")
	}
}

// Losing e1: the union keeps e1 and adds its substitute e4; the edges
// that must confirm before e1 lets go are those of the next plan's
// shrinking sets, the substitute included, and no others.
func TestUnionAndKeepersOfShrinking(t *testing.T) {
	base := recoveryPlan([]string{"e1", "e2"}, []string{"e3", "e5"}, []string{"e1", "e3"})
	next := recoveryPlan([]string{"e4", "e2"}, []string{"e3", "e5"}, []string{"e4", "e3"})
	u := unionPlacement(base, next)
	if got := u.ReplicasFor("default", "a/x"); !slices.Equal(got, []string{"e4", "e2", "e1"}) {
		t.Errorf("union class a: %v, want [e4 e2 e1]", got)
	}
	if got := u.ReplicasFor("default", "hot"); !slices.Equal(got, []string{"e4", "e3", "e1"}) {
		t.Errorf("union object: %v", got)
	}
	if err := u.Validate(); err != nil {
		t.Errorf("union: %v", err)
	}
	if !samePlacement(unionPlacement(u, next), u) {
		t.Error("the union of the union and the next plan is not the union")
	}
	if got := keepersOfShrinking(u, next); !slices.Equal(got, []string{"e2", "e3", "e4"}) {
		t.Errorf("keepers: %v, want [e2 e3 e4] (class b does not shrink)", got)
	}
	if got := keepersOfShrinking(base, base); len(got) != 0 {
		t.Errorf("keepers of no change: %v", got)
	}
	// Nothing in force: the next plan is the union.
	if unionPlacement(nil, next) != next {
		t.Error("union with no plan in force is not the next plan")
	}
}
