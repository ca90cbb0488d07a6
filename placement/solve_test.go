package placement

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// lineProblem is five edges along the equator, 10° apart, over three fault
// domains, with demand next to each edge, heaviest at the east end.
func lineProblem() Problem {
	top := &Topology{}
	fds := []string{"x", "x", "y", "y", "z"}
	for i := range 5 {
		top.Edges = append(top.Edges, Edge{ID: string(rune('a' + i)), Region: "r", Lon: float64(10 * i), FaultDomain: fds[i], CapacityBytes: 10e9})
	}
	var dem []DemandPoint
	for i := range 5 {
		dem = append(dem, DemandPoint{ID: fmt.Sprintf("p%d", i), Lon: float64(10*i) + 1, Region: "r", Weight: float64(1 + 2*i)})
	}
	return Problem{Topology: top, Demand: dem}
}

func oneObject(size int64, k int) *Catalog {
	return &Catalog{
		Classes: []Class{{Name: "all", Prefixes: []string{""}, Replicas: k}},
		Objects: []Object{{Key: "obj", Size: size, Rate: 10, Replicas: k}},
	}
}

func TestSolveConstraints(t *testing.T) {
	tests := []struct {
		name    string
		catalog *Catalog
		cfg     Config
		want    []string // replica set, in any order
		wantErr string   // substring of an InfeasibleError
	}{
		{name: "k=1 goes to the heaviest demand", catalog: oneObject(1e9, 1), want: []string{"d"}},
		{name: "k=2 spans two fault domains", catalog: oneObject(1e9, 2), want: []string{"c", "e"}},
		{name: "k=3 spans three", catalog: oneObject(1e9, 3), want: []string{"b", "d", "e"}},
		{name: "without a catalog, k from the config", cfg: Config{MinReplicas: 2, MaxReplicas: 2}, want: []string{"c", "e"}},
		{name: "more replicas than edges", catalog: oneObject(1e9, 6), wantErr: "replicas: class all: needs 6 replicas, the topology has 5 edges"},
		{name: "too big for any edge", catalog: oneObject(20e9, 1), wantErr: "capacity: class all: 20.0 GB fits on no edge: 10.0 GB more than the largest capacity, 10.0 GB (edge a)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := lineProblem()
			p.Catalog = tt.catalog
			res, err := Solve(context.Background(), p, tt.cfg)
			if tt.wantErr != "" {
				var ie *InfeasibleError
				if !errors.Is(err, ErrInfeasible) || !errors.As(err, &ie) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Solve error = %v, want ErrInfeasible with %q", err, tt.wantErr)
				}
				if len(ie.Violations) != 1 {
					t.Errorf("violations %v, want only the one the error names", ie.Violations)
				}
				cfg := tt.cfg
				cfg.BestEffort = true
				res, err := Solve(context.Background(), p, cfg)
				if err != nil {
					t.Fatalf("best effort: %v", err)
				}
				if len(res.Plan.Violations) == 0 || !slices.EqualFunc(res.Plan.Violations, ie.Violations, func(a, b Violation) bool { return a == b }) {
					t.Errorf("best-effort violations %v, want those of the error %v", res.Plan.Violations, ie.Violations)
				}
				if err := res.Plan.Validate(); err != nil {
					t.Errorf("best-effort plan invalid: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := res.Plan.ReplicasFor("default", "obj")
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("replicas = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCapacityShared: two 6 GB objects that both want edge d cannot both
// have it (10 GB); the busier one does.
func TestCapacityShared(t *testing.T) {
	p := lineProblem()
	p.Catalog = &Catalog{
		Classes: []Class{{Name: "hot", Prefixes: []string{"hot/"}, Replicas: 1}, {Name: "warm", Prefixes: []string{"warm/"}, Replicas: 1}},
		Objects: []Object{{Key: "hot/x", Size: 6e9, Rate: 100, Replicas: 1}, {Key: "warm/x", Size: 6e9, Rate: 10, Replicas: 1}},
	}
	res, err := Solve(context.Background(), p, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Plan.ReplicasFor("", "hot/x"); !slices.Equal(got, []string{"d"}) {
		t.Errorf("hot: %v, want [d]", got)
	}
	if got := res.Plan.ReplicasFor("", "warm/x"); len(got) != 1 || got[0] == "d" {
		t.Errorf("warm: %v, want one edge other than d", got)
	}
	for _, e := range res.Edges {
		if e.CapacityBytes > 0 && e.UsedBytes > e.CapacityBytes {
			t.Errorf("edge %s holds %d of %d bytes", e.ID, e.UsedBytes, e.CapacityBytes)
		}
	}
}

func TestReplicasForRate(t *testing.T) {
	cfg := Config{MinReplicas: 2, MaxReplicas: 5, ReplicaRate: 100}
	tests := []struct {
		rate float64
		want int
	}{{0, 2}, {99, 2}, {100, 3}, {199, 3}, {200, 4}, {400, 5}, {1e6, 5}}
	for _, tt := range tests {
		if got := cfg.ReplicasFor(tt.rate); got != tt.want {
			t.Errorf("ReplicasFor(%v) = %d, want %d", tt.rate, got, tt.want)
		}
	}
	if got := (Config{}).ReplicasFor(1e9); got != 2 {
		t.Errorf("default config: ReplicasFor = %d, want MinReplicas 2", got)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{MinReplicas: 3, MaxReplicas: 2}, "replicas"},
		{Config{MaxReplicas: 65}, "replicas"},
		{Config{SLOPenalty: 2}, "slo penalty without an slo"},
		{Config{ReplicaRate: math.NaN()}, "replica rate"},
		{Config{MaxMoves: -2}, "max moves"},
		{Config{ChurnPenalty: -1}, "churn penalty"},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%+v) = %v, want an error about %s", tt.cfg, err, tt.want)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate() = %v", err)
	}
}

// sampleProblem is the sample topology and demand with a generated
// catalog.
func sampleProblem(t testing.TB, objects int) Problem {
	top, dem := loadTestdata(t)
	return Problem{Topology: top, Demand: dem, Catalog: GenerateCatalog(GenConfig{Objects: objects, Regions: regionsOf(dem), Seed: 11})}
}

// TestPlanInvariants checks a plan of the sample data against the model:
// every object's lookup gives the set its unit got, every set has k edges
// over enough fault domains, no edge is over capacity, and the reported
// objective is the request-weighted mean of the units'.
func TestPlanInvariants(t *testing.T) {
	p := sampleProblem(t, 1500)
	cfg := DefaultConfig()
	cfg.ReplicaRate = 20
	res, err := Solve(context.Background(), p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Plan.Validate(); err != nil {
		t.Fatal(err)
	}
	pl := res.pl
	fdOf := map[string]string{}
	for _, e := range p.Topology.Edges {
		fdOf[e.ID] = e.FaultDomain
	}
	nFD := len(slices.Compact(slices.Sorted(func(yield func(string) bool) {
		for _, v := range fdOf {
			if !yield(v) {
				return
			}
		}
	})))
	objectUnits := 0
	meanSum, rateSum := 0.0, 0.0
	for _, ur := range res.Units {
		if len(ur.Replicas) != ur.K {
			t.Errorf("%s %s: %d replicas, k=%d", ur.Kind, ur.Name, len(ur.Replicas), ur.K)
		}
		fds := map[string]bool{}
		for _, id := range ur.Replicas {
			fds[fdOf[id]] = true
		}
		if len(fds) < min(ur.K, nFD) {
			t.Errorf("%s %s: %d fault domains, want %d", ur.Kind, ur.Name, len(fds), min(ur.K, nFD))
		}
		meanSum += ur.Rate * ur.MeanRTTMs
		rateSum += ur.Rate
	}
	if got := meanSum / rateSum; math.Abs(got-res.MeanRTTMs) > 1e-6*got {
		t.Errorf("MeanRTTMs = %v, the units' request-weighted mean is %v", res.MeanRTTMs, got)
	}
	for i, u := range pl.units {
		want := pl.orderedIDs(i)
		for _, m := range u.members {
			o := p.Catalog.Objects[m]
			if got := res.Plan.ReplicasFor(o.Namespace, o.Key); !sameSet(got, want) {
				t.Errorf("object %s (unit %s): ReplicasFor = %v, unit placed it on %v", o.Key, u.name, got, want)
			}
		}
		if !u.isClass() {
			objectUnits++
		}
	}
	if objectUnits == 0 || len(res.Plan.Objects) == 0 {
		t.Errorf("%d object units, %d plan objects: the hottest objects should get sets of their own", objectUnits, len(res.Plan.Objects))
	}
	for _, e := range res.Edges {
		if e.CapacityBytes > 0 && e.UsedBytes > e.CapacityBytes {
			t.Errorf("edge %s: %d bytes placed, capacity %d", e.ID, e.UsedBytes, e.CapacityBytes)
		}
	}
	share := 0.0
	for _, r := range res.Regions {
		share += r.Share
		if !(r.P50Ms <= r.P95Ms && r.P95Ms <= r.MaxMs) {
			t.Errorf("region %s: p50 %v, p95 %v, max %v out of order", r.Region, r.P50Ms, r.P95Ms, r.MaxMs)
		}
	}
	if math.Abs(share-1) > 1e-9 {
		t.Errorf("region shares sum to %v, want 1", share)
	}
}

// TestDeterministic: the same input and seed give the same plan, whatever
// the number of workers, on both the direct and the coarse-first search.
func TestDeterministic(t *testing.T) {
	// Just over coarsenAbove demand points, so the coarse-first search
	// runs, and small enough for the race detector.
	problems := map[string]Problem{
		"sample": sampleProblem(t, 800),
		"coarse": scaleProblem(t, 25, coarsenAbove+50, 150, 5),
	}
	for name, p := range problems {
		t.Run(name, func(t *testing.T) {
			var first []byte
			for _, workers := range []int{1, 3} {
				cfg := DefaultConfig()
				cfg.Seed, cfg.Workers, cfg.ReplicaRate = 42, workers, 20
				cfg.GeneratedAt = time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
				res, err := Solve(context.Background(), p, cfg)
				if err != nil {
					t.Fatal(err)
				}
				data, err := res.Plan.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				if first == nil {
					first = data
				} else if !bytes.Equal(first, data) {
					t.Fatalf("workers=%d: plan differs from the first run", workers)
				}
			}
		})
	}
}

func TestSLO(t *testing.T) {
	p := sampleProblem(t, 400)
	var share [2]float64
	for i, penalty := range []float64{0, 200} {
		cfg := DefaultConfig()
		cfg.SLO, cfg.SLOPenalty = 60*time.Millisecond, penalty
		res, err := Solve(context.Background(), p, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.SLOMisses) == 0 {
			t.Fatalf("penalty %v: no demand point misses a 60 ms SLO with 2 replicas worldwide", penalty)
		}
		for j, m := range res.SLOMisses {
			if m.WorstMs <= 60 || m.MissedShare <= 0 || m.MissedShare > 1+1e-9 {
				t.Errorf("miss %+v: want worst > 60 ms and a share in (0, 1]", m)
			}
			if j > 0 && m.WorstMs > res.SLOMisses[j-1].WorstMs {
				t.Errorf("misses not sorted worst first")
			}
		}
		share[i] = res.Plan.Objective.SLOMissShare
		if res.Plan.Objective.SLOMs != 60 || share[i] <= 0 {
			t.Errorf("objective %+v: want slo_ms 60 and a miss share", res.Plan.Objective)
		}
	}
	t.Logf("share of requests over a 60 ms SLO: %.1f%% plain k-median, %.1f%% with the SLO penalty", 100*share[0], 100*share[1])
	if share[1] > share[0] {
		t.Errorf("the SLO penalty raised the miss share from %v to %v", share[0], share[1])
	}
}

func TestExplain(t *testing.T) {
	p := sampleProblem(t, 1000)
	cfg := DefaultConfig()
	cfg.ReplicaRate = 20
	res, err := Solve(context.Background(), p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Plan.Objects) == 0 {
		t.Fatal("no object entries to explain")
	}
	obj := res.Plan.Objects[0]
	tests := []struct {
		key, rule string
	}{
		{obj.Key, "object entry"},
		{"web/not-in-the-catalog.js", `class web, whose prefix "web/"`},
		{"news/cn/today.html", `class news-cn, whose prefix "news/cn/"`},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			ex, err := res.Explain("", tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(ex.Rule, tt.rule) {
				t.Errorf("rule %q, want it to start with %q", ex.Rule, tt.rule)
			}
			if got := res.Plan.ReplicasFor("", tt.key); !sameSet(got, ex.Unit.Replicas) {
				t.Errorf("explained set %v, plan says %v", ex.Unit.Replicas, got)
			}
			total := 0.0
			for _, r := range ex.Replicas {
				total += r.Share
				if r.LossMs < 0 {
					t.Errorf("replica %s: dropping it would lower latency by %v ms: not a local optimum", r.ID, -r.LossMs)
				}
			}
			if math.Abs(total-1) > 1e-6 {
				t.Errorf("replica shares sum to %v", total)
			}
			for i, a := range ex.Alternatives {
				if a.Blocked == "" && a.DeltaMs < -1e-6 {
					t.Errorf("alternative %s would improve the mean by %v ms and nothing blocks it", a.ID, -a.DeltaMs)
				}
				if i > 0 && a.DeltaMs < ex.Alternatives[i-1].DeltaMs {
					t.Errorf("alternatives not sorted")
				}
			}
			if !strings.Contains(ex.KRule, fmt.Sprintf("k=%d", ex.Unit.K)) || len(ex.Demand) == 0 {
				t.Errorf("explanation %+v lacks the k rule or the demand", ex)
			}
		})
	}
	if _, err := res.Explain("", "../etc"); err == nil {
		t.Errorf("Explain of an invalid key: want an error")
	}
}

func TestContextCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Solve(ctx, sampleProblem(t, 100), DefaultConfig()); !errors.Is(err, context.Canceled) {
		t.Errorf("Solve with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestBadProblems(t *testing.T) {
	tests := []struct {
		name string
		edit func(p *Problem)
		want string
	}{
		{"no edges", func(p *Problem) { p.Topology = &Topology{} }, "topology has no edges"},
		{"no demand", func(p *Problem) { p.Demand = nil }, "no demand points"},
		{"duplicate edge", func(p *Problem) { p.Topology.Edges[1].ID = "a" }, `edge "a" given twice`},
		{"zero weight", func(p *Problem) { p.Demand[0].Weight = 0 }, "weight 0"},
		{"unlocated demand", func(p *Problem) { p.Demand[0].Lat = math.NaN(); p.Demand[0].Lon = math.NaN() }, `demand point "p0" has no lat/lon, and the topology has no regions:`},
		{"affinity leaves no demand", func(p *Problem) {
			p.Catalog = &Catalog{Classes: []Class{{Name: "x", Prefixes: []string{""}, Affinity: Affinity{"*": 0}}}}
		}, "leaves it no demand"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := lineProblem()
			tt.edit(&q)
			_, err := Solve(context.Background(), q, Config{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Solve error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}
